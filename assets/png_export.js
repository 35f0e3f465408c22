// "Save as PNG" under the layers x heads grid and the one-head matrix: the picture is drawn
// in the browser from what is on the page (nothing is asked of the server) and downloaded.
function download(canvas, name) {
  canvas.toBlob((blob) => {
    const link = document.createElement('a');
    link.href = URL.createObjectURL(blob);
    link.download = name;
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }, 'image/png');
}
function shown(node) { return getComputedStyle(node).display !== 'none'; }
function saveGrid(box, name, title) {
  const panels = [...box.querySelectorAll('.pl-panel')];
  const layers = Math.max(...panels.map((p) => Number(p.dataset.layer))) + 1;
  const heads = Math.max(...panels.map((p) => Number(p.dataset.head))) + 1;
  const cell = [220, 18], left = 70, top = 44, gap = 10;
  const canvas = document.createElement('canvas');
  canvas.width = left + heads * (cell[0] + gap);
  canvas.height = top + layers * (cell[1] + gap) + 8;
  const context = canvas.getContext('2d');
  context.fillStyle = '#fff';
  context.fillRect(0, 0, canvas.width, canvas.height);
  context.fillStyle = '#111';
  context.font = '13px sans-serif';
  context.fillText(title, 8, 16);
  context.imageSmoothingEnabled = false;
  for (let h = 0; h < heads; h++) context.fillText('head ' + (h + 1), left + h * (cell[0] + gap), 36);
  for (const panel of panels) {
    const l = Number(panel.dataset.layer), h = Number(panel.dataset.head);
    const strip = [...panel.querySelectorAll('img.pl-strip')].find(shown);
    const y = top + l * (cell[1] + gap);
    if (h === 0) context.fillText('layer ' + (l + 1), 8, y + 13);
    if (strip) context.drawImage(strip, left + h * (cell[0] + gap), y, cell[0], cell[1]);
  }
  download(canvas, name);
}
function saveSvg(box, name) {
  const svg = box.querySelector('svg').cloneNode(true);
  const original = [...box.querySelector('svg').querySelectorAll('image')];
  [...svg.querySelectorAll('image')].forEach((image, i) => { if (!shown(original[i])) image.remove(); });
  svg.setAttribute('xmlns', 'http://www.w3.org/2000/svg');
  const width = Number(svg.getAttribute('width')), height = Number(svg.getAttribute('height'));
  const picture = new Image();
  picture.onload = () => {
    const canvas = document.createElement('canvas');
    canvas.width = width;
    canvas.height = height;
    const context = canvas.getContext('2d');
    context.fillStyle = '#fff';
    context.fillRect(0, 0, width, height);
    context.drawImage(picture, 0, 0);
    download(canvas, name);
  };
  picture.src = 'data:image/svg+xml;charset=utf-8,' + encodeURIComponent(new XMLSerializer().serializeToString(svg));
}
element.addEventListener('click', (event) => {
  const button = event.target.closest('[data-png]');
  if (!button) return;
  event.stopPropagation();
  const box = button.parentElement;
  if (button.dataset.png === 'grid') saveGrid(box, button.dataset.name, button.dataset.title);
  else saveSvg(box, button.dataset.name);
});
