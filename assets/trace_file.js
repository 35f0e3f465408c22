// "Open a trace file": the browser reads the file and puts its text in the box below; the
// text is then sent with "Replay" like any typed value (no upload, nothing stored).
element.addEventListener('change', (event) => {
  const file = event.target.files && event.target.files[0];
  if (!file) return;
  file.text().then((text) => {
    const box = document.querySelector('#trace-text textarea');
    box.value = text;
    box.dispatchEvent(new Event('input', {bubbles: true}));
  });
});
