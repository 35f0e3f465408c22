// Shared by the heatmap components: a floating tooltip with the query, the key and the weight.
let tip = document.getElementById('pl-tip');
if (!tip) {
  tip = document.createElement('div');
  tip.id = 'pl-tip';
  document.body.appendChild(tip);
}
let labelCache = ['', []];
function labels(node) {
  const raw = node.closest('[data-labels]').dataset.labels;
  if (labelCache[0] !== raw) labelCache = [raw, JSON.parse(raw)];
  return labelCache[1];
}
function explain(event) {
  const map = event.target.closest('[data-w]');
  if (!map) return null;
  const box = map.getBoundingClientRect();
  const rows = map.dataset.w.split(';');
  const y = (event.clientY - box.top) / box.height;
  const row = Math.min(rows.length - 1, Math.floor(y * rows.length));
  const cols = Number(map.dataset.cols);
  const col = Math.min(cols - 1, Math.floor((event.clientX - box.left) / box.width * cols));
  if (row < 0 || col < 0) return null;
  const names = labels(map);
  const query = Number(map.dataset.q0) + row;
  const weight = rows[row].split(',')[col];
  const where = map.dataset.head ? map.dataset.head + '\n' : '';
  if (weight === undefined) return where + names[query] + ' cannot see ' + names[col] + ' (later)';
  return where + names[query] + ' → ' + names[col] + ' (token ' + col + '): ' + weight + '%';
}
function show(event) {
  const text = explain(event);
  tip.style.display = text ? 'block' : 'none';
  if (!text) return;
  tip.textContent = text;
  const x = Math.min(event.clientX + 14, window.innerWidth - tip.offsetWidth - 8);
  const y = Math.min(event.clientY + 14, window.innerHeight - tip.offsetHeight - 8);
  tip.style.left = Math.max(4, x) + 'px';
  tip.style.top = Math.max(4, y) + 'px';
}
element.addEventListener('pointermove', show);
element.addEventListener('pointerdown', show);
element.addEventListener('pointerleave', () => { tip.style.display = 'none'; });
