// The card of a written token: a click on a candidate writes the joke on from it (a branch).
element.addEventListener('click', (event) => {
  const candidate = event.target.closest('[data-token-id]');
  if (!candidate) return;
  candidate.classList.add('pending');
  trigger('select', {index: Number(candidate.dataset.tokenId), value: candidate.textContent});
});
