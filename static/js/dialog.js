// The consent dialog is rendered open, so it works without JavaScript; with it, it becomes a true
// modal (focus stays inside, the page behind is inert). It closes only by a choice or "Not now".
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  for (const dialog of document.querySelectorAll("dialog[data-modal]")) {
    dialog.close();
    dialog.showModal();
    dialog.addEventListener("cancel", (event) => event.preventDefault());
    dialog.addEventListener("close", () => {
      if (!dialog.open) dialog.showModal();
    });
  }
});
