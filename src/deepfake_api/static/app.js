"use strict";
// The demo page: send images (a queue, one at a time) to POST /predict, or an image URL to
// POST /predict/url, and show each verdict; or a video to POST /videos, then follow its job. Vanilla JS, no inline
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
  heatmap: $("heatmap"), showHeat: $("show-heatmaps"), heatLegend: $("heat-legend"),
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

function kindWords(kind) {
  // "looks like: face swap 72 %"; only faces not judged real have a kind (when the model has a kind head).
  if (!kind) return "";
  const name = (n) => n.replaceAll("_", " ");
  const p = Math.round(kind.probability * 100);
  return kind.name === "unknown"
    ? `kind unknown (most likely ${name(kind.probabilities[0].name)} ${p} %)`
    : `looks like: ${name(kind.name)} ${p} %`;
}

function disagreement(face) {
  const a = face.agreement;
  if (!a || a.status !== "disagree") return "";
  return `detectors disagree: ${a.says_fake.join(", ")} say fake (≥ ${a.fake_at}), ${a.says_real.join(", ")} say real (≤ ${a.real_at})`;
}

function heatColour(v) {
  // The legend's ramp: pale yellow (weak) to crimson (strongest), more opaque as it grows.
  const mix = (a, b) => Math.round(a + (b - a) * v);
  return `rgba(${mix(255, 220)}, ${mix(230, 20)}, ${mix(80, 60)}, ${(0.35 + 0.55 * v).toFixed(3)})`;
}

function drawHeatmaps(canvas, faces, w, h) {
  // Each explained face's grid (cells over the aligned crop) warped onto the image by the crop's
  // affine transform: every cell is a quadrilateral in image pixels. Cells at 0 stay clear.
  const scale = Math.min(1, 1024 / Math.max(w, h));
  canvas.width = Math.max(1, Math.round(w * scale));
  canvas.height = Math.max(1, Math.round(h * scale));
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  let drawn = 0;
  for (const face of faces) {
    const heat = face.heatmap;
    if (!heat) continue;
    const n = heat.grid.length, cell = heat.crop_size / n;
    const [[a, b, c], [d, e, f]] = heat.transform;
    const at = (x, y) => [(a * x + b * y + c) * scale, (d * x + e * y + f) * scale];
    for (let r = 0; r < n; r++) {
      for (let col = 0; col < n; col++) {
        const v = heat.grid[r][col];
        if (!(v > 0)) continue;
        const pts = [[col, r], [col + 1, r], [col + 1, r + 1], [col, r + 1]].map(([x, y]) => at(x * cell, y * cell));
        ctx.beginPath();
        ctx.moveTo(...pts[0]);
        for (const p of pts.slice(1)) ctx.lineTo(...p);
        ctx.closePath();
        ctx.fillStyle = heatColour(v);
        ctx.fill();
      }
    }
    drawn++;
  }
  canvas.dataset.faces = String(drawn);
  return drawn;
}

function selectFace(body, i) {
  const face = body.faces[i];
  const detectors = (face.detectors || []).map((d) => `${d.name} ${fmt(d.score)}`).join(", ");
  const extra = [kindWords(face.kind), disagreement(face)].filter(Boolean).join("; ");
  el.faceDetail.textContent = faceText(face, i) + (detectors ? ` (detectors: ${detectors})` : "") + (extra ? `; ${extra}` : "");
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
    const kind = kindWords(face.kind), split = disagreement(face);
    if (kind) item.append(" · ", Object.assign(document.createElement("span"), { className: "face-kind", textContent: kind }));
    if (split) item.append(" · ", Object.assign(document.createElement("span"), { className: "face-disagree", textContent: split }));
    item.dataset.kind = face.kind ? face.kind.name : "";
    item.dataset.agreement = face.agreement ? face.agreement.status : "";
    items.push(item);
  });
  el.boxes.replaceChildren(...boxes);
  el.faces.replaceChildren(...items);
  el.heatLegend.hidden = drawHeatmaps(el.heatmap, body.faces, w, h) === 0;
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

function problemFrom(status, statusText, problem, retryAfter, requestId, what = "image") {
  // Errors are application/problem+json; anything else (a proxy's HTML page) gets a generic text.
  const title = `${problem.title || statusText || "Request failed"} (${status})`;
  let detail = problem.detail || `The server could not handle this ${what}.`;
  if (status === 503) {
    detail += ` The service is busy or starting: please retry${retryAfter ? ` in ${retryAfter} s` : " shortly"}.`;
  }
  return { title, detail, requestId: problem.request_id || requestId || "" };
}

async function problemOf(response, what = "image") {
  let problem = {};
  try { problem = await response.json(); } catch { /* not JSON */ }
  return problemFrom(response.status, response.statusText, problem, response.headers.get("Retry-After"),
    response.headers.get("X-Request-ID"), what);
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
    // Always explained: the heatmap costs next to nothing per face (bench/explain.py); the toggle shows it.
    const response = await fetch(item.file ? "/predict?explain=true" : "/predict/url?explain=true", request);
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

// ---- Tabs -------------------------------------------------------------------------------------

const tabs = [$("tab-images"), $("tab-video")];
function selectTab(tab) {
  for (const t of tabs) {
    const on = t === tab;
    t.setAttribute("aria-selected", String(on));
    t.tabIndex = on ? 0 : -1;
    $(t.getAttribute("aria-controls")).hidden = !on;
  }
}
for (const tab of tabs) {
  tab.addEventListener("click", () => selectTab(tab));
  tab.addEventListener("keydown", (event) => {  // arrow keys move between tabs (WAI-ARIA tabs pattern)
    if (event.key !== "ArrowRight" && event.key !== "ArrowLeft") return;
    const other = tabs[(tabs.indexOf(tab) + 1) % tabs.length];
    selectTab(other);
    other.focus();
  });
}

// ---- Video: upload (with progress), poll the job, plot each face track, show the evidence -------

const v = {
  drop: $("video-drop"), choose: $("choose-video"), file: $("video-file"), status: $("video-status"),
  name: $("video-name"), upload: $("video-upload"), uploadText: $("video-upload-text"),
  analysis: $("video-analysis"), analysisText: $("video-analysis-text"), state: $("video-state"),
  cancel: $("video-cancel"), error: $("video-error"), errorTitle: $("video-error-title"),
  errorDetail: $("video-error-detail"), result: $("video-result"), label: $("video-label"),
  score: $("video-score"), noFace: $("video-no-face"), plot: $("video-plot"), tracks: $("video-tracks"),
  frames: $("video-frames"), info: $("video-info"), sampling: $("video-sampling"), time: $("video-time"),
  jobId: $("video-job-id"), warnings: $("video-warnings"),
};
const SVG = "http://www.w3.org/2000/svg";
const FINAL = ["done", "failed", "cancelled"];
let videoJob = null;  // the job being shown: {id, cancelled}

const mb = (bytes) => `${(bytes / 1e6).toFixed(1)} MB`;
function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, val] of Object.entries(attrs)) node.setAttribute(k, String(val));
  if (text !== undefined) node.textContent = text;
  return node;
}

function videoError(problem) {
  v.errorTitle.textContent = problem.title;
  v.errorDetail.textContent = problem.detail + (problem.requestId ? ` (request ${problem.requestId})` : "");
  v.error.hidden = false;
}

function uploadVideo(file) {
  // XMLHttpRequest, not fetch: only it reports upload progress.
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/videos?explain=true");
    xhr.responseType = "text";
    xhr.upload.addEventListener("progress", (event) => {
      if (!event.lengthComputable) return;
      v.upload.max = event.total;
      v.upload.value = event.loaded;
      v.uploadText.textContent = `${mb(event.loaded)} of ${mb(event.total)}`;
    });
    xhr.addEventListener("load", () => resolve(xhr));
    xhr.addEventListener("error", () => reject(new Error("network")));
    xhr.addEventListener("abort", () => reject(new Error("aborted")));
    const form = new FormData();
    form.append("file", file, file.name || "video");
    xhr.send(form);
  });
}

function showJobProgress(job) {
  const { done, planned } = job.progress;
  v.analysis.max = planned || 1;
  v.analysis.value = planned ? done : 0;
  v.analysisText.textContent = planned ? `${done} of ${planned} frames` : "";
  v.state.textContent = {
    queued: "Queued: waiting for a worker…", running: "Analysing frames…", done: "Done.",
    failed: "The analysis failed.", cancelled: "Cancelled.",
  }[job.state];
  v.status.dataset.state = job.state;
  v.cancel.hidden = FINAL.includes(job.state);
}

async function checkVideo(file) {
  const mine = { id: null, cancelled: false };
  videoJob = mine;
  for (const node of [v.error, v.result]) node.hidden = true;
  v.status.hidden = false;
  v.name.textContent = file.name || "video";
  v.upload.value = 0;
  v.analysis.value = 0;
  v.analysisText.textContent = "";
  v.uploadText.textContent = "";
  v.state.textContent = "Uploading…";
  v.status.dataset.state = "uploading";
  v.cancel.hidden = true;
  let xhr;
  try {
    xhr = await uploadVideo(file);
  } catch {
    v.state.textContent = "";
    videoError({ title: "The upload failed", detail: "The video did not reach the service (too large, or the server is down). Please retry." });
    return;
  }
  let body = {};
  try { body = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
  if (xhr.status !== 202 && xhr.status !== 200) {
    v.state.textContent = "";
    videoError(problemFrom(xhr.status, xhr.statusText, body, xhr.getResponseHeader("Retry-After"),
      xhr.getResponseHeader("X-Request-ID"), "video"));
    return;
  }
  mine.id = body.id;
  v.jobId.textContent = body.id;
  let job = body;
  while (!FINAL.includes(job.state) && videoJob === mine) {
    showJobProgress(job);
    await new Promise((r) => setTimeout(r, 1000));
    const response = await fetch(`/jobs/${job.id}`).catch(() => null);
    if (!response) continue;  // a blip: poll again
    if (!response.ok) {
      videoError(await problemOf(response, "video"));
      return;
    }
    job = await response.json();
  }
  if (videoJob !== mine) return;  // another video was chosen meanwhile
  showJobProgress(job);
  if (job.state === "done") renderVideo(job);
  else if (job.state === "failed") {
    videoError({ title: `${job.problem.title}`, detail: job.problem.detail, requestId: job.request_id || "" });
  }
}

function renderVideo(job) {
  const res = job.result;
  v.result.dataset.label = res.label;
  v.label.textContent = res.label;
  v.score.textContent = fmt(res.score);
  v.noFace.hidden = res.label !== "no_face";
  renderPlot(res);
  v.tracks.replaceChildren(...res.tracks.map((t) => {
    const li = document.createElement("li");
    li.dataset.label = t.label;
    li.dataset.track = String(t.id);
    const swatch = Object.assign(document.createElement("span"), { className: `swatch track-${t.id % 6}` });
    swatch.setAttribute("aria-hidden", "true");
    li.append(swatch, `Face ${t.id + 1}: ${t.label}, P(fake) ${fmt(t.score)} over ${t.frames} frames ` +
      `(${fmt(t.first_time_s, 1)}–${fmt(t.last_time_s, 1)} s)`);
    return li;
  }));
  renderTopFrames(job.id, res);
  const info = res.video;
  v.info.textContent = `${info.width} × ${info.height} px, ${info.codec} in ${info.container}` +
    (info.duration_s ? `, ${fmt(info.duration_s, 1)} s` : "") + (info.rotation ? `, rotated ${info.rotation}°` : "");
  v.sampling.textContent = `${res.sampling.frames_analysed} frames, one every ${fmt(res.sampling.step_s, 2)} s`;
  v.time.textContent = job.started_at && job.finished_at ? `${fmt(job.finished_at - job.started_at, 1)} s` : "–";
  v.warnings.replaceChildren(...res.warnings.map((w) => Object.assign(document.createElement("li"), { textContent: w })));
  v.warnings.hidden = res.warnings.length === 0;
  v.result.hidden = false;
}

function renderPlot(res) {
  // P(fake) against time: one line per face track, the uncertain band and the threshold behind.
  const W = 640, H = 240, left = 40, right = 12, top = 12, bottom = 28;
  const end = Math.max(res.video.duration_s || 0, ...res.frames.map((f) => f.time_s), 0.001);
  const x = (t) => left + (t / end) * (W - left - right);
  const y = (p) => top + (1 - p) * (H - top - bottom);
  const [low, high] = res.uncertain_band;
  const nodes = [
    svg("title", { id: "video-plot-title" }, "P(fake) of each face track over time"),
    svg("rect", { class: "band", x: left, y: y(high), width: W - left - right, height: y(low) - y(high) }),
    svg("line", { class: "threshold", x1: left, x2: W - right, y1: y(res.threshold), y2: y(res.threshold) }),
    svg("line", { class: "axis", x1: left, x2: left, y1: top, y2: H - bottom }),
    svg("line", { class: "axis", x1: left, x2: W - right, y1: H - bottom, y2: H - bottom }),
    svg("text", { class: "tick", x: left - 6, y: y(1) + 4, "text-anchor": "end" }, "1"),
    svg("text", { class: "tick", x: left - 6, y: y(0) + 4, "text-anchor": "end" }, "0"),
    svg("text", { class: "tick", x: left, y: H - 8 }, "0 s"),
    svg("text", { class: "tick", x: W - right, y: H - 8, "text-anchor": "end" }, `${fmt(end, 1)} s`),
  ];
  for (const track of res.tracks) {
    const points = [];
    for (const frame of res.frames) {
      for (const face of frame.faces) {
        if (face.track === track.id && face.status === "judged") points.push([frame.time_s, face.score]);
      }
    }
    const cls = `track-${track.id % 6}`;
    const g = svg("g", { "data-track": track.id, "data-label": track.label });
    g.append(svg("polyline", { class: `series ${cls}`, points: points.map(([t, p]) => `${x(t).toFixed(1)},${y(p).toFixed(1)}`).join(" ") }));
    for (const [t, p] of points) {
      const dot = svg("circle", { class: `point ${cls}`, cx: x(t).toFixed(1), cy: y(p).toFixed(1), r: 3 });
      dot.append(svg("title", {}, `Face ${track.id + 1} at ${fmt(t, 2)} s: P(fake) ${fmt(p)}`));
      g.append(dot);
    }
    nodes.push(g);
  }
  v.plot.replaceChildren(...nodes);
}

function renderTopFrames(jobId, res) {
  // Boxes are in the pixels of the upright frame; the kept JPEG is that frame scaled down.
  const turned = (res.video.rotation || 0) % 180 !== 0;
  const w = turned ? res.video.height : res.video.width, h = turned ? res.video.width : res.video.height;
  v.frames.replaceChildren(...res.top_frames.filter((t) => t.image).map((top) => {
    const li = document.createElement("li");
    li.dataset.index = String(top.index);
    const figure = document.createElement("figure");
    const frame = Object.assign(document.createElement("div"), { className: "preview-frame" });
    const img = Object.assign(document.createElement("img"), { src: top.image, alt: `Frame at ${fmt(top.time_s, 2)} s` });
    const boxes = Object.assign(document.createElement("div"), { className: "boxes" });
    const faces = (res.frames.find((f) => f.index === top.index) || { faces: [] }).faces;
    for (const face of faces) {
      const box = Object.assign(document.createElement("span"), { className: "face-box", textContent: String(face.track + 1) });
      box.dataset.label = face.status === "judged" ? face.label : face.status;
      box.dataset.track = String(face.track);
      if (face.track === top.track) box.classList.add("evidence");
      box.style.left = `${(face.box.x / w) * 100}%`;
      box.style.top = `${(face.box.y / h) * 100}%`;
      box.style.width = `${(face.box.width / w) * 100}%`;
      box.style.height = `${(face.box.height / h) * 100}%`;
      boxes.append(box);
    }
    const heat = Object.assign(document.createElement("canvas"), { className: "heatmap" });
    heat.setAttribute("aria-hidden", "true");
    drawHeatmaps(heat, top.faces || [], w, h);
    frame.append(img, heat, boxes);
    const caption = Object.assign(document.createElement("figcaption"), {
      textContent: `${fmt(top.time_s, 2)} s · face ${top.track + 1} · P(fake) ${fmt(top.score)}`,
    });
    figure.append(frame, caption);
    li.append(figure);
    return li;
  }));
}

v.choose.addEventListener("click", () => v.file.click());
v.file.addEventListener("change", () => {
  if (v.file.files.length) checkVideo(v.file.files[0]);
  v.file.value = "";
});
for (const type of ["dragenter", "dragover"]) {
  v.drop.addEventListener(type, (event) => { event.preventDefault(); v.drop.classList.add("dragging"); });
}
v.drop.addEventListener("dragleave", () => v.drop.classList.remove("dragging"));
v.drop.addEventListener("drop", (event) => {
  event.preventDefault();
  v.drop.classList.remove("dragging");
  const files = event.dataTransfer ? [...event.dataTransfer.files] : [];
  if (files.length) checkVideo(files[0]);
});
v.cancel.addEventListener("click", async () => {
  if (!videoJob || !videoJob.id) return;
  v.cancel.disabled = true;
  try {
    const response = await fetch(`/jobs/${videoJob.id}`, { method: "DELETE" });
    if (!response.ok && response.status !== 204) videoError(await problemOf(response, "video"));
  } finally {
    v.cancel.disabled = false;
  }
});

el.showHeat.addEventListener("change", () => document.body.classList.toggle("heatmaps-off", !el.showHeat.checked));

loadModelInfo();
