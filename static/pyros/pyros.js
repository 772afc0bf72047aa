// Site-wide behaviour, no inline scripts: a form (or a button) with data-confirm="..." asks before it is
// submitted, with a message that says what the action does (issue #16: irreversible or night-changing
// actions ask first).
document.addEventListener("submit", (event) => {
  const form = event.target;
  const button = event.submitter;
  const message = (button && button.dataset.confirm) || form.dataset.confirm;
  if (message && !window.confirm(message)) event.preventDefault();
}, true);
