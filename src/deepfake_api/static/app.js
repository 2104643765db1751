"use strict";
// The demo page: send images (a queue, one at a time) to POST /predict, or an image URL to
// POST /predict/url, and show each verdict. Vanilla JS, no inline
// script or style anywhere (the page is served with a strict CSP); bar geometry is set
// through the CSSOM, which the CSP allows.

const HISTORY_SIZE = 5;
const $ = (id) => document.getElementById(id);
const el = {
  dropzone: $("dropzone"), choose: $("choose"), file: $("file"),
  previewBox: $("preview-box"), preview: $("preview"), previewName: $("preview-name"),
  outcome: $("outcome"), progress: $("progress"), error: $("error"), errorTitle: $("error-title"), errorDetail: $("error-detail"),
  result: $("result"), label: $("verdict-label"), score: $("score"), bar: $("bar"),
  band: $("bar-band"), fill: $("bar-fill"), threshold: $("bar-threshold"),
  bandText: $("band-text"), thresholdText: $("threshold-text"),
  imageInfo: $("image-info"), time: $("processing-time"), requestId: $("request-id"), warnings: $("warnings"),
  errorRequestId: $("error-request-id"),
  history: $("history"), historyEmpty: $("history-empty"), model: $("model-info"),
  boxes: $("boxes"), faces: $("faces"), faceDetail: $("face-detail"), noFace: $("no-face"),
  queueBox: $("queue-box"), queue: $("queue"), urlForm: $("url-form"), urlInput: $("image-url"),
};
const queue = [];  // every file or URL asked for, in order: {name, file|url, state, body, problem, objectUrl}
let pumping = false;
const history = [];  // newest first: {url, name, body}
let previewUrl = null;

function release(url) {
  // An object URL lives while the preview, a history thumbnail or the queue shows it.
  if (url && url !== previewUrl && !history.some((item) => item.url === url) && !queue.some((q) => q.objectUrl === url)) {
    URL.revokeObjectURL(url);
  }
}

const pct = (x) => `${(Math.min(1, Math.max(0, x)) * 100).toFixed(2)}%`;
const fmt = (x, digits = 3) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
const FACE_STATUS = { too_small: "too small to judge", not_judged: "not judged (over the per-image cap)" };

function faceText(face, i) {
  const verdict = face.status === "judged" ? `${face.label}, P(fake) ${fmt(face.score)}` : FACE_STATUS[face.status];
  return `Face ${i + 1}: ${verdict}`;
}

function selectFace(body, i) {
  const face = body.faces[i];
  const detectors = (face.detectors || []).map((d) => `${d.name} ${fmt(d.score)}`).join(", ");
  el.faceDetail.textContent = faceText(face, i) + (detectors ? ` (detectors: ${detectors})` : "");
  el.faceDetail.dataset.face = String(i);
  for (const node of [...el.boxes.children, ...el.faces.children]) {
    node.classList.toggle("selected", node.dataset.face === String(i));
  }
}

function renderFaces(body) {
  // Boxes are in the pixels of the EXIF-oriented image, which is also how the browser shows it.
  const w = body.image.oriented_width, h = body.image.oriented_height;
  const boxes = [], items = [];
  body.faces.forEach((face, i) => {
    const box = document.createElement("button");
    box.type = "button";
    box.className = "face-box";
    box.dataset.face = String(i);
    box.dataset.label = face.status === "judged" ? face.label : face.status;
    box.setAttribute("aria-label", faceText(face, i));
    box.style.left = `${(face.box.x / w) * 100}%`;
    box.style.top = `${(face.box.y / h) * 100}%`;
    box.style.width = `${(face.box.width / w) * 100}%`;
    box.style.height = `${(face.box.height / h) * 100}%`;
    box.textContent = String(i + 1);
    box.addEventListener("click", () => selectFace(body, i));
    boxes.push(box);
    const item = document.createElement("li");
    const pick = Object.assign(document.createElement("button"), { type: "button", textContent: faceText(face, i) });
    pick.className = "face-item";
    item.dataset.face = String(i);
    item.dataset.label = box.dataset.label;
    pick.addEventListener("click", () => selectFace(body, i));
    item.append(pick);
    items.push(item);
  });
  el.boxes.replaceChildren(...boxes);
  el.faces.replaceChildren(...items);
  el.faceDetail.textContent = "";
  const judged = body.faces.filter((f) => f.status === "judged").length;
  el.noFace.hidden = body.label !== "no_face";
  el.noFace.textContent = body.faces.length
    ? "Faces were found, but none large enough to judge: no verdict."
    : "No face was found in this image: no verdict (the service judges faces).";
  if (judged) selectFace(body, body.faces.findIndex((f) => f.status === "judged" && f.score === body.score));
}

function show(which, requestId = "") {
  // The request id on the outcome tells which request the shown verdict or error answers.
  el.outcome.dataset.requestId = requestId;
  el.progress.hidden = which !== "progress";
  el.error.hidden = which !== "error";
  el.result.hidden = which !== "result";
}

function renderResult(body) {
  const [low, high] = body.uncertain_band;
  el.result.dataset.label = body.label;
  el.label.textContent = body.label;
  el.score.textContent = fmt(body.score);
  el.band.style.left = pct(low);
  el.band.style.width = pct(high - low);
  el.fill.style.width = pct(body.score ?? 0);
  el.bar.hidden = body.score === null;
  renderFaces(body);
  el.threshold.style.left = pct(body.threshold);
  el.bandText.textContent = `${fmt(low, 2)}–${fmt(high, 2)}`;
  el.thresholdText.textContent = fmt(body.threshold, 2);
  el.bar.setAttribute("aria-label",
    `Score ${fmt(body.score)} on a scale from 0 (real) to 1 (fake); threshold ${fmt(body.threshold, 2)}; ` +
    `uncertain between ${fmt(low, 2)} and ${fmt(high, 2)}`);
  el.imageInfo.textContent = `${body.image.width} × ${body.image.height} px, ${body.image.format}`;
  el.time.textContent = `${fmt(body.processing_time_ms, 1)} ms`;
  el.requestId.textContent = body.request_id;
  el.warnings.replaceChildren(...body.warnings.map((w) => Object.assign(document.createElement("li"), { textContent: w })));
  el.warnings.hidden = body.warnings.length === 0;
  show("result", body.request_id);
}

function renderError({ title, detail, requestId = "" }) {
  el.errorTitle.textContent = title;
  el.errorDetail.textContent = detail;
  el.errorRequestId.textContent = requestId;
  el.errorRequestId.parentElement.hidden = !requestId;
  show("error", requestId);
}

async function problemOf(response) {
  // Errors are application/problem+json; anything else (a proxy's HTML page) gets a generic text.
  let problem = {};
  try { problem = await response.json(); } catch { /* not JSON */ }
  const title = `${problem.title || response.statusText || "Request failed"} (${response.status})`;
  let detail = problem.detail || "The server could not handle this image.";
  if (response.status === 503) {
    const wait = response.headers.get("Retry-After");
    detail += ` The service is busy or starting: please retry${wait ? ` in ${wait} s` : " shortly"}.`;
  }
  return { title, detail, requestId: problem.request_id || response.headers.get("X-Request-ID") || "" };
}

function setPreview(name, url, isImage) {
  const old = previewUrl;
  previewUrl = url;
  el.previewBox.hidden = !isImage;
  if (isImage) el.preview.src = url;
  el.previewName.textContent = name;
  release(old);
}

function addToHistory(file, url, body) {
  history.unshift({ url, name: file.name || "pasted image", body });
  for (const old of history.splice(HISTORY_SIZE)) release(old.url);
  renderHistory();
}

function renderHistory() {
  el.history.replaceChildren(...history.map((item) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "history-item";
    button.dataset.label = item.body.label;
    button.setAttribute("aria-label",
      `${item.name}: ${item.body.label}, P(fake) ${fmt(item.body.score)}. Show this result again`);
    const thumb = Object.assign(document.createElement("img"), { src: item.url, alt: "" });
    const label = Object.assign(document.createElement("span"), { className: "label", textContent: item.body.label });
    const score = Object.assign(document.createElement("span"), { className: "history-score", textContent: fmt(item.body.score) });
    const name = Object.assign(document.createElement("span"), { className: "history-name", textContent: item.name });
    button.append(thumb, label, score, name);
    button.addEventListener("click", () => {
      setPreview(item.name, item.url, true);
      renderResult(item.body);
    });
    li.append(button);
    return li;
  }));
  el.historyEmpty.hidden = history.length > 0;
}

function renderQueue() {
  el.queueBox.hidden = queue.length < 2 && !queue.some((q) => q.url);
  el.queue.replaceChildren(...queue.map((item, i) => {
    const li = document.createElement("li");
    li.dataset.state = item.state;
    li.dataset.index = String(i);
    const button = document.createElement("button");
    button.type = "button";
    button.className = "queue-item";
    button.disabled = item.state === "waiting" || item.state === "checking";
    const status = {
      waiting: "waiting", checking: "checking…",
      done: item.body ? `${item.body.label}${item.body.score === null ? "" : `, P(fake) ${fmt(item.body.score)}`}` : "",
      error: item.problem ? item.problem.title : "",
    }[item.state];
    button.textContent = `${item.name}: ${status}`;
    if (item.body) button.dataset.label = item.body.label;
    button.addEventListener("click", () => showItem(item));
    li.append(button);
    return li;
  }));
}

function showItem(item) {
  if (item.objectUrl) setPreview(item.name, item.objectUrl, item.isImage);
  else setPreview(item.name, null, false);
  if (item.body) renderResult(item.body);
  else if (item.problem) renderError(item.problem);
}

function enqueue(items) {
  queue.push(...items);
  renderQueue();
  pump();
}

async function pump() {
  // One request at a time: the page is a client among others, and each answer is shown as it comes.
  if (pumping) return;
  pumping = true;
  try {
    for (let item = next(); item; item = next()) {
      item.state = "checking";
      renderQueue();
      await check(item);
      renderQueue();
    }
  } finally {
    pumping = false;
  }
}

const next = () => queue.find((q) => q.state === "waiting");

function fileItem(file) {
  const objectUrl = URL.createObjectURL(file);
  // Only images get a preview: a broken <img> for, say, a text file would only confuse.
  return { name: file.name || "pasted image", file, objectUrl, state: "waiting",
           isImage: !file.type || file.type.startsWith("image/") };
}

async function check(item) {
  if (item.objectUrl) setPreview(item.name, item.objectUrl, item.isImage);
  else setPreview(item.name, null, false);
  show("progress");
  el.outcome.setAttribute("aria-busy", "true");
  let request;
  if (item.file) {
    const form = new FormData();
    form.append("file", item.file, item.file.name || "pasted-image");
    request = { method: "POST", body: form };
  } else {
    request = { method: "POST", body: JSON.stringify({ url: item.url }), headers: { "Content-Type": "application/json" } };
  }
  try {
    const response = await fetch(item.file ? "/predict" : "/predict/url", request);
    if (response.ok) {
      item.body = await response.json();
      item.state = "done";
      renderResult(item.body);
      if (item.file) addToHistory(item.file, item.objectUrl, item.body);
    } else {
      item.problem = await problemOf(response);
      item.state = "error";
      renderError(item.problem);
    }
  } catch {
    item.state = "error";
    item.problem = {
      title: "The service could not be reached",
      detail: "The upload failed before an answer came back (the file may be too large, or the server is down). Please retry.",
    };
    renderError(item.problem);
  } finally {
    el.outcome.removeAttribute("aria-busy");
  }
}

function imageFromClipboard(data) {
  for (const item of data ? data.items : []) {
    if (item.kind === "file") return item.getAsFile();
  }
  return null;
}

async function loadModelInfo() {
  try {
    const response = await fetch("/health");
    const body = await response.json();
    const name = body.model ? `${body.model.name} ${body.model.version}` : "not loaded";
    el.model.textContent = body.ready ? name : `${name} (starting…)`;
  } catch {
    el.model.textContent = "unavailable";
  }
}

el.choose.addEventListener("click", () => el.file.click());
el.file.addEventListener("change", () => {
  enqueue([...el.file.files].map(fileItem));
  el.file.value = "";  // choosing the same file again checks it again
});
el.urlForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const url = el.urlInput.value.trim();
  if (!url) return;
  enqueue([{ name: url, url, state: "waiting" }]);
  el.urlInput.value = "";
});

for (const type of ["dragenter", "dragover"]) {
  el.dropzone.addEventListener(type, (event) => {
    event.preventDefault();
    el.dropzone.classList.add("dragging");
  });
}
el.dropzone.addEventListener("dragleave", () => el.dropzone.classList.remove("dragging"));
el.dropzone.addEventListener("drop", (event) => {
  event.preventDefault();
  el.dropzone.classList.remove("dragging");
  const files = event.dataTransfer ? [...event.dataTransfer.files] : [];
  if (files.length) enqueue(files.map(fileItem));
});
// A file dropped beside the zone must not make the browser navigate away to it.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());

document.addEventListener("paste", (event) => {
  const file = imageFromClipboard(event.clipboardData);
  if (!file) return;
  event.preventDefault();
  enqueue([fileItem(file)]);
});

loadModelInfo();
