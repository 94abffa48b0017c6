// medsr upload and comparison page. Plain JavaScript, no build step, no external code.
"use strict";

const VIEW_LABELS = {
  lr: "LR (input)",
  bicubic: "bicubic",
  sr: "SR",
  consistency: "consistency |degrade(SR) − LR|",
  difference: "SR − bicubic",
  reference: "reference (high resolution)",
};
// Maps (medsr.infer.safety): drawn with their own window and a colour scale, never with the
// image window; jobs finished before they existed have none.
const MAP_VIEWS = ["consistency", "difference"];

function jobViews() {
  const maps = state.job && state.job.consistency;
  const reference = state.job && state.job.reference;
  return Object.keys(VIEW_LABELS).filter(
    (v) => (maps || !MAP_VIEWS.includes(v)) && (reference || v !== "reference")
  );
}

function modelLabel(job) {
  return job.method === "self-supervised" ? `self-supervised x${job.scale}` : `${job.model} x${job.scale}`;
}

const state = {
  info: null,
  job: null,
  slice: 0,
  plane: "axial",
  window: [0, 1],
  cache: new Map(), // "view/slice" -> {shape, data}
  canvases: new Map(), // view -> offscreen canvas rendered with the current window
  zoom: 1,
  panX: 0,
  panY: 0,
  split: 0.5,
  mode: "split",
  left: "bicubic",
  right: "sr",
  tool: null, // "rect" or "lasso" while drawing a region
  drawing: null, // the region being drawn: {points} in image space
  region: null, // {plane, slice, points}: points (x, y) in image space (see toImage)
  regionScores: null,
};

// ----------------------------------------------------------------- setup
// ($, showError and api come from common.js)
async function init() {
  try {
    state.info = await api("/api/info");
  } catch (e) {
    showError(e.message);
    return;
  }
  const info = state.info;
  const model = $("model");
  for (const m of info.models) {
    const option = new Option(m.name + (m.trained ? " (trained)" : " (interpolation)"), m.name);
    model.add(option);
  }
  model.value = info.default_model;
  model.addEventListener("change", fillScales);
  fillScales();
  $("method").addEventListener("change", methodChanged);
  methodChanged();
  $("accepted").textContent =
    "Accepted: " + Object.values(info.upload_kinds).join(", ") +
    `. At most ${formatBytes(info.max_upload_bytes)} and ` +
    `${(info.max_pixels / 1e6).toPrecision(3)} million pixels.`;
  $("privacy").textContent =
    (info.deidentify
      ? "DICOM uploads are de-identified on arrival (PS3.15 Basic Profile). "
      : "DICOM uploads are NOT de-identified by this server. ") +
    `Results are deleted after ${info.retention_hours} h.`;
  $("study-link").hidden = !info.study;
  for (const id of ["left-view", "right-view"]) {
    for (const [value, label] of Object.entries(VIEW_LABELS)) $(id).add(new Option(label, value));
  }
  $("left-view").value = state.left;
  $("right-view").value = state.right;
  $("upload-form").addEventListener("submit", upload);
  setupViewer();
  window.addEventListener("hashchange", () => {
    const m = /job=([0-9a-f]{16})/.exec(location.hash);
    if (m && (!state.job || state.job.id !== m[1])) follow(m[1]);
  });
  const match = /job=([0-9a-f]{16})/.exec(location.hash);
  if (match) follow(match[1]);
  listJobs();
}

const KIND_LABELS = {
  dicom: "DICOM",
  "dicom-zip": "DICOM series",
  nifti: "NIfTI",
  png: "PNG",
  jpeg: "JPEG",
  tiff: "TIFF",
};

async function listJobs() {
  let jobs;
  try {
    jobs = await api("/api/jobs");
  } catch (e) {
    return; // the list is a convenience; errors show where they matter
  }
  const body = document.querySelector("#jobs tbody");
  body.innerHTML = "";
  for (const job of jobs.slice(0, 20)) {
    const row = body.insertRow();
    const when = new Date(job.created_at * 1000);
    row.insertCell().textContent = when.toLocaleString();
    row.insertCell().textContent =
      `${KIND_LABELS[job.kind] || job.kind} ${job.input_shape.join("×")}`;
    row.insertCell().textContent =
      modelLabel(job) + (job.method && job.method !== "in-plane" ? " (through-plane)" : "");
    row.insertCell().textContent = job.status === "failed" ? "failed: " + job.error : job.status;
    const link = document.createElement("a");
    link.href = "#job=" + job.id;
    link.textContent = job.status === "done" ? "open" : "follow";
    row.insertCell().append(link);
  }
  $("jobs-panel").hidden = jobs.length === 0;
  $("jobs-note").textContent = `(kept ${state.info.retention_hours} h)`;
}

function formatBytes(n) {
  if (n >= 2 ** 30) return `${(n / 2 ** 30).toPrecision(3)} GiB`;
  if (n >= 2 ** 20) return `${(n / 2 ** 20).toPrecision(3)} MiB`;
  if (n >= 2 ** 10) return `${(n / 2 ** 10).toPrecision(3)} KiB`;
  return `${n} bytes`;
}

function methodChanged() {
  const method = $("method").value;
  const selfsup = method === "self-supervised";
  $("model").disabled = selfsup;
  $("scale").disabled = selfsup;
  const budget = state.info.selfsup_budget_s;
  $("method-hint").textContent = {
    "in-plane": "Every slice (or the image) grows by the scale.",
    "through-plane":
      "Volumes: the slice axis grows by the scale; the 2D model runs on the planes through it.",
    "self-supervised":
      "Volumes with thick slices: a network is trained on this volume's own in-plane slices" +
      (budget ? ` (at most ${Math.round(budget / 6) / 10} min)` : "") +
      ", then the slice axis is super-resolved to the in-plane spacing. Model and scale are not used.",
  }[method];
}

function fillScales() {
  const m = state.info.models.find((x) => x.name === $("model").value);
  const scale = $("scale");
  scale.innerHTML = "";
  for (const s of m.scales) scale.add(new Option("x" + s, String(s)));
}

// ----------------------------------------------------------------- upload and progress
async function upload(event) {
  event.preventDefault();
  showError("");
  const file = $("file").files[0];
  if (!file) {
    showError("choose a file first");
    return;
  }
  if (file.size > state.info.max_upload_bytes) {
    showError(`the file is larger than the limit of ${formatBytes(state.info.max_upload_bytes)}`);
    return;
  }
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("model", $("model").value);
  form.append("scale", $("scale").value);
  form.append("method", $("method").value);
  $("submit").disabled = true;
  $("progress-box").hidden = false;
  $("stage").textContent = "uploading…";
  $("progress").removeAttribute("value");
  try {
    const job = await api("/api/jobs", { method: "POST", body: form });
    location.hash = "job=" + job.id;
    await follow(job.id);
  } catch (e) {
    $("progress-box").hidden = true;
    showError(e.message);
  } finally {
    $("submit").disabled = false;
  }
}

async function follow(id) {
  $("progress-box").hidden = false;
  $("viewer-panel").hidden = true;
  for (;;) {
    let job;
    try {
      job = await api("/api/jobs/" + id);
    } catch (e) {
      $("progress-box").hidden = true;
      showError(e.message);
      return;
    }
    const bar = $("progress");
    if (job.progress_fraction !== null && job.progress_fraction !== undefined) {
      bar.max = 1; // self-supervised training under a time budget: the fraction estimated
      bar.value = job.progress_fraction;
    } else if (job.progress_total > 0) {
      bar.max = job.progress_total;
      bar.value = job.progress_done;
    } else {
      bar.removeAttribute("value");
    }
    $("progress-box").dataset.unit = job.progress_unit || "tiles";
    let text = job.stage;
    if (job.status === "queued" && job.queue_position > 0) {
      text += ` (${job.queue_position} job(s) ahead)`;
    }
    if (job.progress_total > 0 && job.status === "running") {
      text += ` — ${job.progress_done}/${job.progress_total} ${job.progress_unit || "tiles"}`;
    }
    if (job.seconds_left !== null && job.seconds_left !== undefined && job.status === "running") {
      text += ` — about ${Math.max(0, Math.round(job.seconds_left))} s left`;
    }
    $("stage").textContent = text;
    if (job.status === "failed") {
      listJobs();
      $("progress-box").hidden = true;
      showError("The job failed: " + job.error);
      return;
    }
    if (job.status === "done") {
      listJobs();
      $("progress-box").hidden = true;
      await showJob(job);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
  }
}

// ----------------------------------------------------------------- the viewer
async function showJob(job) {
  state.job = job;
  state.cache.clear();
  state.plane = "axial";
  $("plane").value = "axial";
  state.window = job.window.slice();
  $("preset").value = "auto";
  resetSlider();
  $("slice-bar").hidden = job.slices <= 1;
  $("sr-caption").textContent = `SR (${modelLabel(job)})`;
  const mr = job.mr_windows && Object.keys(job.mr_windows).length > 0 && job.modality !== "CT";
  $("mr-presets").hidden = !mr;
  for (const option of $("mr-presets").querySelectorAll("option")) option.disabled = !mr;
  state.region = null;
  state.drawing = null;
  state.regionScores = null;
  setTool(null);
  $("reference-file").value = "";
  $("viewer-panel").hidden = false;
  $("download-native").href = job.downloads.native;
  const fidelity = job.fidelity_psnr === null ? "∞" : job.fidelity_psnr.toFixed(1);
  $("facts").textContent =
    `${job.modality} · input ${job.input_shape.join("×")} (${job.input_spacing.join("×")} mm)` +
    ` → output ${job.output_shape.join("×")} (${job.output_spacing.join("×")} mm)` +
    ` · ${modelLabel(job)}` +
    (job.method && job.method !== "in-plane" ? " through-plane" : "") +
    ` in ${job.seconds.toFixed(1)} s` +
    ` · fidelity ${fidelity} dB` +
    selfsupFacts(job) +
    (job.deidentified ? " · de-identified on arrival" : "");
  renderMetrics();
  // out-of-distribution warnings (medsr.infer.ood), in words
  const summary = job.consistency;
  $("consistency-facts").hidden = !summary;
  if (summary) {
    const worst = summary.worst;
    const at = ["slice", "row", "column"]
      .filter((key) => key in worst)
      .map((key) => `${key} ${worst[key]}`)
      .join(", ");
    $("consistency-facts").textContent =
      `consistency |degrade(SR) − LR|: 99th percentile ${summary.p99.toPrecision(3)} ` +
      `${summary.units}, worst ${worst.window}×${worst.window} mean ` +
      `${worst.local_mean.toPrecision(3)} at ${at} of the input (${worst.where})`;
  }
  for (const figure of document.querySelectorAll("#side-view figure.map")) figure.hidden = !summary;
  if (summary) {
    const top = summary.display.consistency[1].toPrecision(3);
    $("consistency-caption").textContent =
      `consistency |degrade(SR) − LR| (black 0, white ${top} ${summary.units})`;
  }
  $("side-view").classList.toggle("with-map", Boolean(summary));
  updateViewOptions();
  const warnings = job.warnings || [];
  $("ood").hidden = warnings.length === 0;
  $("ood").textContent = warnings.map((w) => `Warning: ${w}`).join("\n");
  syncWindowInputs();
  await loadSlice();
  fit();
  $("viewer").dataset.ready = "1";
}

// Volume planes cut array axis 0 (axial), 1 (coronal) or 2 (sagittal) of (Z, Y, X).
const PLANES = ["axial", "coronal", "sagittal"];

function shapeOf(view) {
  return view === "lr" ? state.job.input_shape : state.job.output_shape;
}

function sliceCount(view) {
  return state.job.slices > 1 ? shapeOf(view)[PLANES.indexOf(state.plane)] : 1;
}

function resetSlider() {
  const n = sliceCount("sr");
  state.slice = Math.floor(n / 2);
  $("slice").max = String(n - 1);
  $("slice").value = String(state.slice);
}

// The slider counts SR slices; another view shows the slice at the same place.
function viewIndex(view, slice) {
  const n = sliceCount(view);
  return Math.min(n - 1, Math.floor(((slice + 0.5) * n) / sliceCount("sr")));
}

// Height of one displayed row in units of one column's width (non-square pixels, slices).
function rowScale() {
  const sp = state.job.output_spacing;
  if (sp.length === 2) return sp[0] / sp[1];
  const [rows, cols] = { axial: [1, 2], coronal: [0, 2], sagittal: [0, 1] }[state.plane];
  return sp[rows] / sp[cols];
}

async function fetchView(view, slice) {
  const index = viewIndex(view, slice);
  const key = `${state.plane}/${view}/${index}`;
  if (state.cache.has(key)) return state.cache.get(key);
  const response = await fetch(
    `/api/jobs/${state.job.id}/views/${view}/${index}?plane=${state.plane}`
  );
  if (!response.ok) {
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    throw new Error(detailOf(body, response.status));
  }
  const shape = response.headers.get("X-Shape").split(",").map(Number);
  const data = new Float32Array(await response.arrayBuffer());
  const entry = { shape, data };
  state.cache.set(key, entry);
  if (state.cache.size > 60) state.cache.delete(state.cache.keys().next().value);
  return entry;
}

async function loadSlice() {
  try {
    const views = jobViews();
    const entries = await Promise.all(views.map((v) => fetchView(v, state.slice)));
    views.forEach((v, k) => state.canvases.set(v, { entry: entries[k] }));
  } catch (e) {
    showError(e.message);
    return;
  }
  $("slice-label").textContent = `${state.slice + 1} / ${sliceCount("sr")}`;
  renderAll();
  if (state.region && state.job.reference) scoreRegion();
}

function renderPixels(view) {
  const holder = state.canvases.get(view);
  const { shape, data } = holder.entry;
  const [h, w] = shape;
  const color = shape.length === 3;
  const canvas = holder.canvas || document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(w, h);
  const out = image.data;
  const map = MAP_VIEWS.includes(view);
  const [low, high] = map ? state.job.consistency.display[view] : state.window;
  const k = 255 / Math.max(high - low, 1e-12);
  const n = w * h;
  for (let i = 0; i < n; i++) {
    if (map) {
      // consistency: black -> red -> yellow -> white; difference: blue (< 0), black, red (> 0)
      let v = (data[i] - low) / Math.max(high - low, 1e-12);
      v = v < 0 ? 0 : v > 1 ? 1 : v;
      if (view === "consistency") {
        out[4 * i] = Math.min(255, 765 * v);
        out[4 * i + 1] = Math.min(255, Math.max(0, 765 * v - 255));
        out[4 * i + 2] = Math.min(255, Math.max(0, 765 * v - 510));
      } else {
        const signed = 2 * v - 1;
        out[4 * i] = signed > 0 ? 255 * signed : 0;
        out[4 * i + 1] = 0;
        out[4 * i + 2] = signed < 0 ? -255 * signed : 0;
      }
    } else if (color) {
      for (let c = 0; c < 3; c++) {
        const v = (data[3 * i + c] - low) * k;
        out[4 * i + c] = v < 0 ? 0 : v > 255 ? 255 : v;
      }
    } else {
      let v = (data[i] - low) * k;
      v = v < 0 ? 0 : v > 255 ? 255 : v;
      out[4 * i] = out[4 * i + 1] = out[4 * i + 2] = v;
    }
    out[4 * i + 3] = 255;
  }
  ctx.putImageData(image, 0, 0);
  holder.canvas = canvas;
}

function outputSize() {
  const sr = state.canvases.get("sr").entry.shape;
  // the common image space: SR columns wide, SR rows (scaled to the column size) high
  return [sr[1], sr[0] * rowScale()];
}

function drawView(ctx, view, width, height) {
  const [w, h] = outputSize();
  ctx.save();
  ctx.setTransform(state.zoom, 0, 0, state.zoom, state.panX, state.panY);
  // LR pixels shown as blocks, so that the input's real resolution is visible.
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(state.canvases.get(view).canvas, 0, 0, w, h);
  ctx.restore();
}

function sizeCanvas(canvas) {
  const rect = canvas.getBoundingClientRect();
  const width = Math.max(1, Math.round(rect.width));
  const height = Math.max(1, Math.round(rect.height));
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  return [width, height];
}

function renderAll() {
  if (!state.job || !state.canvases.has("sr")) return;
  for (const view of jobViews()) renderPixels(view);
  draw();
}

function draw() {
  if (!state.job || !state.canvases.has("sr")) return;
  if (state.mode === "split") {
    const canvas = $("split-canvas");
    const [width, height] = sizeCanvas(canvas);
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, width, height);
    const x = Math.round(state.split * width);
    drawView(ctx, state.left, width, height);
    ctx.save();
    ctx.beginPath();
    ctx.rect(x, 0, width - x, height);
    ctx.clip();
    ctx.fillRect(x, 0, width - x, height);
    drawView(ctx, state.right, width, height);
    ctx.restore();
    $("divider").style.left = `${x}px`;
    $("tag-left").textContent = VIEW_LABELS[state.left];
    $("tag-right").textContent =
      state.right === "sr" ? `SR (${modelLabel(state.job)})` : VIEW_LABELS[state.right];
    drawRegion(ctx);
  } else {
    for (const canvas of document.querySelectorAll("#side-view canvas")) {
      if (!state.canvases.has(canvas.dataset.view)) continue; // a job without maps
      const [width, height] = sizeCanvas(canvas);
      const ctx = canvas.getContext("2d");
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, width, height);
      drawView(ctx, canvas.dataset.view, width, height);
      drawRegion(ctx);
    }
  }
  const viewer = $("viewer");
  viewer.dataset.zoom = state.zoom.toFixed(4);
  viewer.dataset.split = state.split.toFixed(3);
  viewer.dataset.slice = String(state.slice);
  viewer.dataset.plane = state.plane;
  viewer.dataset.window = state.window.map((v) => v.toFixed(2)).join(",");
}

function activeCanvas() {
  return state.mode === "split" ? $("split-canvas") : document.querySelector("#side-view canvas");
}

function fit() {
  if (!state.job || !state.canvases.has("sr")) return;
  const canvas = activeCanvas();
  const [width, height] = sizeCanvas(canvas);
  const [w, h] = outputSize();
  state.zoom = Math.min(width / w, height / h);
  state.panX = (width - w * state.zoom) / 2;
  state.panY = (height - h * state.zoom) / 2;
  draw();
}

// ----------------------------------------------------------------- window / level
function syncWindowInputs() {
  const [low, high] = state.window;
  $("wl-center").value = ((low + high) / 2).toFixed(1);
  $("wl-width").value = (high - low).toFixed(1);
}

function setWindow(low, high) {
  if (!(high > low)) return;
  state.window = [low, high];
  syncWindowInputs();
  renderAll();
}

function applyPreset() {
  const value = $("preset").value;
  const job = state.job;
  if (!job) return;
  if (value === "auto") setWindow(job.window[0], job.window[1]);
  else if (value === "custom") return;
  else if (value === "full") setWindow(job.value_range[0], job.value_range[1] + 1e-6);
  else if (value.startsWith("mr:")) {
    // MR presets: percentiles of this image's foreground (medsr.display), display only
    const window = job.mr_windows[value.slice(3)];
    if (window) setWindow(window[0], window[1]);
  }
  else {
    const [c, w] = value.split(",").map(Number);
    setWindow(c - w / 2, c + w / 2);
  }
}

// ----------------------------------------------------------------- interaction
function setupViewer() {
  $("mode").addEventListener("change", () => {
    state.mode = $("mode").value;
    $("split-view").hidden = state.mode !== "split";
    $("side-view").hidden = state.mode === "split";
    for (const el of document.querySelectorAll(".split-only")) el.hidden = state.mode !== "split";
    fit();
  });
  $("left-view").addEventListener("change", () => {
    state.left = $("left-view").value;
    draw();
  });
  $("right-view").addEventListener("change", () => {
    state.right = $("right-view").value;
    draw();
  });
  $("preset").addEventListener("change", applyPreset);
  const fromInputs = () => {
    const c = Number($("wl-center").value);
    const w = Number($("wl-width").value);
    if (Number.isFinite(c) && w > 0) {
      $("preset").value = "custom";
      setWindow(c - w / 2, c + w / 2);
    }
  };
  $("wl-center").addEventListener("change", fromInputs);
  $("wl-width").addEventListener("change", fromInputs);
  $("reset-view").addEventListener("click", fit);
  $("tool-rect").addEventListener("click", () => setTool(state.tool === "rect" ? null : "rect"));
  $("tool-lasso").addEventListener("click", () => setTool(state.tool === "lasso" ? null : "lasso"));
  $("region-clear").addEventListener("click", () => {
    state.region = null;
    state.regionScores = null;
    setTool(null);
    renderMetrics();
    draw();
  });
  $("reference-submit").addEventListener("click", uploadReference);
  $("plane").addEventListener("change", async () => {
    state.plane = $("plane").value;
    resetSlider();
    await loadSlice();
    fit();
  });
  $("slice").addEventListener("input", () => {
    state.slice = Number($("slice").value);
    loadSlice();
  });
  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || ["INPUT", "SELECT", "TEXTAREA"].includes(event.target.tagName)) {
      return;
    }
    if (!state.job || state.job.slices <= 1) return;
    const step = { ArrowUp: 1, ArrowRight: 1, ArrowDown: -1, ArrowLeft: -1 }[event.key];
    if (!step) return;
    const next = Math.min(sliceCount("sr") - 1, Math.max(0, state.slice + step));
    if (next !== state.slice) {
      state.slice = next;
      $("slice").value = String(next);
      loadSlice();
    }
    event.preventDefault();
  });
  for (const canvas of [$("split-canvas"), ...document.querySelectorAll("#side-view canvas")]) {
    attachPanZoom(canvas);
  }
  attachDivider();
  window.addEventListener("resize", () => draw());
  $("download-png").addEventListener("click", (event) => {
    if (!state.job) return;
    const [low, high] = state.window;
    const view = state.mode === "split" ? state.right : "sr";
    event.currentTarget.href =
      `/api/jobs/${state.job.id}/png?view=${view}&index=${viewIndex(view, state.slice)}` +
      `&plane=${state.plane}&low=${low}&high=${high}`;
  });
}

function attachPanZoom(canvas) {
  let drag = null;
  canvas.addEventListener("contextmenu", (event) => event.preventDefault());
  canvas.addEventListener("wheel", (event) => {
    if (!state.job) return;
    event.preventDefault();
    const rect = canvas.getBoundingClientRect();
    const x = event.clientX - rect.left;
    const y = event.clientY - rect.top;
    const factor = Math.exp(-event.deltaY * 0.0015);
    const zoom = Math.min(64, Math.max(0.05, state.zoom * factor));
    // keep the image point under the cursor in place
    state.panX = x - ((x - state.panX) * zoom) / state.zoom;
    state.panY = y - ((y - state.panY) * zoom) / state.zoom;
    state.zoom = zoom;
    draw();
  });
  canvas.addEventListener("pointerdown", (event) => {
    if (!state.job) return;
    canvas.setPointerCapture(event.pointerId);
    const level = event.button === 2 || event.shiftKey;
    if (state.tool && !level) {
      // drawing a region instead of panning
      state.drawing = { start: toImage(canvas, event), points: [toImage(canvas, event)] };
      drag = { region: true };
      return;
    }
    drag = { x: event.clientX, y: event.clientY, level, window: state.window.slice() };
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drag) return;
    if (drag.region) {
      const p = toImage(canvas, event);
      if (state.tool === "rect") {
        const q = state.drawing.start;
        state.drawing.points = [q, [p[0], q[1]], p, [q[0], p[1]]];
      } else {
        const last = state.drawing.points[state.drawing.points.length - 1];
        if (Math.hypot(p[0] - last[0], p[1] - last[1]) * state.zoom > 3) state.drawing.points.push(p);
      }
      draw();
      return;
    }
    const dx = event.clientX - drag.x;
    const dy = event.clientY - drag.y;
    if (drag.level) {
      const [low, high] = drag.window;
      const width0 = high - low;
      const centre = (low + high) / 2 + (dy * width0) / 256;
      const width = Math.max(width0 * Math.exp(dx / 200), 1e-6);
      $("preset").value = "custom";
      setWindow(centre - width / 2, centre + width / 2);
    } else {
      state.panX += dx;
      state.panY += dy;
      drag.x = event.clientX;
      drag.y = event.clientY;
      draw();
    }
  });
  const end = () => {
    if (drag && drag.region) finishRegion();
    drag = null;
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  canvas.addEventListener("dblclick", fit);
}

// ----------------------------------------------------------------- reference and region
// Image space: SR columns across, SR rows (times rowScale) down, as drawView draws them.
function toImage(canvas, event) {
  const rect = canvas.getBoundingClientRect();
  const x = (event.clientX - rect.left - state.panX) / state.zoom;
  const y = (event.clientY - rect.top - state.panY) / state.zoom;
  return [x, y];
}

function setTool(tool) {
  state.tool = tool;
  $("tool-rect").classList.toggle("active", tool === "rect");
  $("tool-lasso").classList.toggle("active", tool === "lasso");
  $("viewer").dataset.tool = tool || "";
  $("region-hint").textContent = tool
    ? tool === "rect"
      ? "drag a rectangle on the image (shift-drag still sets the window)"
      : "draw around the region on the image"
    : state.region
      ? "the region is scored on the slice shown"
      : "";
}

function finishRegion() {
  const drawing = state.drawing;
  state.drawing = null;
  if (!drawing || drawing.points.length < 3) {
    draw();
    return;
  }
  state.region = { points: drawing.points };
  setTool(null);
  draw();
  scoreRegion();
}

function drawRegion(ctx) {
  const shape = state.drawing || state.region;
  if (!shape || shape.points.length < 2) return;
  ctx.save();
  ctx.setTransform(state.zoom, 0, 0, state.zoom, state.panX, state.panY);
  ctx.beginPath();
  shape.points.forEach(([x, y], k) => (k === 0 ? ctx.moveTo(x, y) : ctx.lineTo(x, y)));
  ctx.closePath();
  ctx.lineWidth = 2 / state.zoom;
  ctx.strokeStyle = "#ffd400";
  ctx.setLineDash([6 / state.zoom, 4 / state.zoom]);
  ctx.stroke();
  ctx.restore();
}

async function uploadReference() {
  const file = $("reference-file").files[0];
  if (!state.job) return;
  if (!file) {
    showError("choose the high-resolution reference file first");
    return;
  }
  showError("");
  const form = new FormData();
  form.append("file", file, file.name);
  $("reference-submit").disabled = true;
  try {
    state.job.reference = await api(`/api/jobs/${state.job.id}/reference`, {
      method: "POST",
      body: form,
    });
    updateViewOptions();
    await loadSlice();
    renderMetrics();
    if (state.region) await scoreRegion();
  } catch (e) {
    showError(e.message);
  } finally {
    $("reference-submit").disabled = false;
  }
}

async function scoreRegion() {
  if (!state.job || !state.region) return;
  if (!state.job.reference) {
    state.regionScores = null;
    renderMetrics();
    $("region-hint").textContent = "upload a high-resolution reference to score the region";
    return;
  }
  const scale = rowScale();
  const index = viewIndex("sr", state.slice);
  const body = {
    plane: state.plane,
    index: state.job.slices > 1 ? index : 0,
    points: state.region.points.map(([x, y]) => [x, y / scale]),
  };
  try {
    state.regionScores = await api(`/api/jobs/${state.job.id}/region`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  } catch (e) {
    showError(e.message);
    return;
  }
  renderMetrics();
}

function fmt(value, digits) {
  return value === null || value === undefined ? "–" : value.toFixed(digits);
}

function renderMetrics() {
  const job = state.job;
  const table = $("metrics");
  const reference = job && job.reference;
  table.hidden = !reference;
  $("metrics-notes").hidden = true;
  if (!reference) return;
  const region = state.regionScores;
  const head = ["", "PSNR (dB)", "SSIM"];
  if (region) head.push("PSNR inside", "PSNR outside", "SSIM inside", "SSIM outside");
  table.innerHTML = "";
  const caption = table.createCaption();
  caption.textContent =
    "Against the reference: whole output" +
    (region
      ? `; region of ${region.pixels} pixels on ${region.plane} slice ${region.index + 1} (inside / outside)`
      : "; draw a region to score inside and outside it");
  const header = table.createTHead().insertRow();
  for (const text of head) {
    const th = document.createElement("th");
    th.textContent = text;
    header.append(th);
  }
  const body = table.createTBody();
  for (const name of ["sr", "bicubic"]) {
    const row = body.insertRow();
    row.dataset.view = name;
    const whole = reference.metrics[name];
    const cells = [name === "sr" ? `SR (${modelLabel(job)})` : "bicubic", fmt(whole.psnr, 2), fmt(whole.ssim, 4)];
    if (region) {
      const r = region[name];
      cells.push(
        fmt(r.psnr.inside, 2),
        fmt(r.psnr.outside, 2),
        fmt(r.ssim.inside, 4),
        fmt(r.ssim.outside, 4)
      );
    }
    for (const text of cells) row.insertCell().textContent = text;
  }
  if (region && region.notes.length) {
    $("metrics-notes").hidden = false;
    $("metrics-notes").textContent = region.notes.join(" ");
  }
}

function updateViewOptions() {
  const job = state.job;
  for (const id of ["left-view", "right-view"]) {
    for (const option of $(id).options) {
      option.hidden =
        (!job.consistency && MAP_VIEWS.includes(option.value)) ||
        (!job.reference && option.value === "reference");
    }
  }
}

function selfsupFacts(job) {
  const s = job.selfsup;
  if (!s) return "";
  const acq = s.acquisition;
  return (
    ` · trained ${s.steps} steps on this volume (stopped: ${s.stop_reason})` +
    (s.heldout_psnr === null ? "" : `, held-out PSNR ${s.heldout_psnr.toFixed(2)} dB`) +
    ` · slices ${acq.spacing.toPrecision(3)} mm apart, ${acq.thickness.toPrecision(3)} mm thick`
  );
}

function attachDivider() {
  const divider = $("divider");
  let dragging = false;
  divider.addEventListener("pointerdown", (event) => {
    dragging = true;
    divider.setPointerCapture(event.pointerId);
    event.stopPropagation();
  });
  divider.addEventListener("pointermove", (event) => {
    if (!dragging) return;
    const rect = $("split-canvas").getBoundingClientRect();
    state.split = Math.min(1, Math.max(0, (event.clientX - rect.left) / rect.width));
    draw();
  });
  const end = () => {
    dragging = false;
  };
  divider.addEventListener("pointerup", end);
  divider.addEventListener("pointercancel", end);
  divider.addEventListener("keydown", (event) => {
    const step = { ArrowLeft: -0.02, ArrowRight: 0.02 }[event.key];
    if (!step) return;
    state.split = Math.min(1, Math.max(0, state.split + step));
    draw();
    event.preventDefault();
  });
}

document.addEventListener("DOMContentLoaded", init);
