// Drag and drop onto the form, and a status line while the photos are checked. The form works without this.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const zone = document.getElementById("drop-zone");
  const input = document.getElementById("photos");
  const chosen = document.getElementById("chosen");
  const form = document.getElementById("verify-form");
  const status = document.getElementById("status");
  if (!zone || !input || !form) return;
  const describe = () => {
    const count = input.files.length;
    chosen.textContent = count ? `${count} photo${count === 1 ? "" : "s"} chosen` : "";
  };
  input.addEventListener("change", describe);
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => { event.preventDefault(); zone.classList.add("dragging"); });
  }
  for (const name of ["dragleave", "drop"]) {
    zone.addEventListener(name, () => zone.classList.remove("dragging"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      describe();
    }
  });
  form.addEventListener("submit", () => { status.textContent = "Checking your photos…"; });
});
