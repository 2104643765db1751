"use strict";
const form = document.getElementById("form");
const input = document.getElementById("file");
const preview = document.getElementById("preview");
const result = document.getElementById("result");

input.addEventListener("change", () => {
  const file = input.files[0];
  if (!file) return;
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const file = input.files[0];
  if (!file) { result.textContent = "Choose an image first."; return; }
  const body = new FormData();
  body.append("file", file);
  result.textContent = "Checking…";
  try {
    const response = await fetch("/predict", { method: "POST", body });
    const data = await response.json();
    if (!response.ok) { result.textContent = `${data.title}: ${data.detail}`; return; }
    result.textContent = `${data.label} (P(fake) = ${(data.score * 100).toFixed(1)} %) — model ${data.model.version}`;
  } catch (err) {
    result.textContent = "The service could not be reached.";
  }
});
