// A switch toggles with Space, and with Enter as the WAI-ARIA switch pattern allows. Left to the
// browser, Enter on a checkbox submits its form: in the pop-up, one key press on a switch that
// starts On would record "allowed".
"use strict";

document.addEventListener("keydown", (event) => {
  const target = event.target;
  if (event.key !== "Enter" || !(target instanceof HTMLInputElement) || target.getAttribute("role") !== "switch") return;
  event.preventDefault();
  if (!event.repeat) target.click();  // a held key flips it once, as Space does
});
