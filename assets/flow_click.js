// The information-flow graph: a click on a line shows what it carries, head by head.
element.addEventListener('click', (event) => {
  const edge = event.target.closest('[data-text]');
  const detail = element.querySelector('.pl-flow-detail');
  if (!edge || !detail) return;
  element.querySelectorAll('.pl-edge.selected').forEach((e) => e.classList.remove('selected'));
  edge.classList.add('selected');
  detail.textContent = edge.dataset.text;
});
