// The layers x heads grid: a click on a panel shows that head's whole matrix below.
element.addEventListener('click', (event) => {
  const panel = event.target.closest('[data-layer]');
  if (!panel) return;
  const index = [Number(panel.dataset.layer), Number(panel.dataset.head)];
  trigger('select', {index: index, value: null});
});
