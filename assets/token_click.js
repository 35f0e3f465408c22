// The token row: a click selects a token (and marks it at once, before the server answers).
element.addEventListener('click', (event) => {
  const chip = event.target.closest('[data-index]');
  if (!chip) return;
  element.querySelectorAll('.pl-chip.selected').forEach((c) => c.classList.remove('selected'));
  chip.classList.add('selected');
  trigger('select', {index: Number(chip.dataset.index), value: chip.textContent});
});
