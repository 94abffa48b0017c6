// medsr reader-study page: blinded items one at a time, answers saved after each one.
"use strict";

const TOKEN_KEY = "medsr-reader-token";
const state = { token: null, info: null, item: null, items: null, shownAt: 0, urls: [] };

// showError, detailOf and api come from common.js; reader calls add the reader's token.
function readerApi(url, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.token) headers.Authorization = "Bearer " + state.token;
  return api(url, Object.assign({}, options, { headers }));
}

function show(panel) {
  for (const id of ["login-panel", "item-panel", "done-panel"]) $(id).hidden = id !== panel;
}

async function init() {
  try {
    state.info = await readerApi("/api/study");
  } catch (e) {
    showError(e.message);
    return;
  }
  document.title = state.info.title;
  $("title").textContent = state.info.title;
  buildForm();
  $("login-form").addEventListener("submit", login);
  $("answer-form").addEventListener("submit", submit);
  $("previous").addEventListener("click", previous);
  $("review").addEventListener("click", () => openPosition(1));
  $("logout").addEventListener("click", logout);
  $("zoom-reset").addEventListener("click", resetZoom);
  const saved = localStorage.getItem(TOKEN_KEY);
  if (saved) {
    state.token = saved;
    try {
      await start();
      return;
    } catch (e) {
      localStorage.removeItem(TOKEN_KEY);
      state.token = null;
    }
  }
  show("login-panel");
}

function buildForm() {
  const info = state.info;
  for (const scale of ["quality", "usefulness"]) {
    const box = $(scale);
    for (const [value, anchor] of Object.entries(info.anchors)) {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "radio";
      input.name = scale;
      input.value = value;
      label.append(input, ` ${value} — ${anchor}`);
      box.append(label);
    }
  }
  for (const [name, text] of Object.entries(info.flags)) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "checkbox";
    input.name = "flag";
    input.value = name;
    label.append(input, " " + text);
    $("flags").append(label);
  }
  for (const [name, text] of Object.entries(info.choices)) {
    const label = document.createElement("label");
    const input = document.createElement("input");
    input.type = "radio";
    input.name = "choice";
    input.value = name;
    label.append(input, " " + text);
    $("choices").append(label);
  }
  $("rating-fields").hidden = info.mode !== "rating";
  $("pairwise-fields").hidden = info.mode !== "pairwise";
}

async function login(event) {
  event.preventDefault();
  showError("");
  const token = $("token").value.trim();
  try {
    await readerApi("/api/study/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token }),
    });
  } catch (e) {
    showError(e.message);
    return;
  }
  state.token = token;
  localStorage.setItem(TOKEN_KEY, token);
  await start();
}

function logout() {
  localStorage.removeItem(TOKEN_KEY);
  state.token = null;
  $("who").textContent = "";
  $("logout").hidden = true;
  $("token").value = "";
  show("login-panel");
}

async function start() {
  const next = await readerApi("/api/study/next");
  $("who").textContent = next.reader;
  $("logout").hidden = false;
  state.items = await readerApi("/api/study/items");
  if (next.item === null) finish(next);
  else await display(next.item, null);
}

function finish(progress) {
  $("done-text").textContent =
    `All ${progress.total} images answered — thank you. You may close this page; ` +
    "you can still review and change your answers.";
  show("done-panel");
}

async function openPosition(position) {
  const entry = state.items[position - 1];
  if (!entry) return;
  try {
    const item = await readerApi("/api/study/items/" + entry.item_id);
    await display(item, item.answer);
  } catch (e) {
    showError(e.message);
  }
}

async function display(item, answer) {
  state.item = item;
  for (const url of state.urls) URL.revokeObjectURL(url);
  state.urls = [];
  const box = $("images");
  box.innerHTML = "";
  const sides = item.images.length === 2 ? ["Left", "Right"] : [""];
  const blobs = await Promise.all(item.images.map((src) => readerApi(src)));
  blobs.forEach((blob, k) => {
    const url = URL.createObjectURL(blob);
    state.urls.push(url);
    const figure = document.createElement("figure");
    const frame = document.createElement("div");
    frame.className = "zoom-frame";
    const img = document.createElement("img");
    img.src = url;
    img.alt = sides[k] ? `${sides[k]} image` : "image to rate";
    img.draggable = false;
    frame.append(img);
    attachZoom(frame);
    figure.append(frame);
    if (sides[k]) {
      const caption = document.createElement("figcaption");
      caption.textContent = sides[k];
      figure.append(caption);
    }
    box.append(figure);
  });
  resetZoom();
  $("answer-form").reset();
  if (answer) {
    for (const [name, value] of Object.entries(answer)) {
      if (name === "flags") {
        for (const flag of value) document.querySelector(`input[name=flag][value=${flag}]`).checked = true;
      } else if (name === "comment") {
        $("comment").value = value;
      } else {
        const input = document.querySelector(`input[name=${name}][value="${value}"]`);
        if (input) input.checked = true;
      }
    }
  }
  $("position").textContent = `Image ${item.position} of ${item.total}`;
  const answered = state.items ? state.items.filter((x) => x.answered).length : 0;
  $("progress").max = item.total;
  $("progress").value = answered;
  $("previous").disabled = item.position <= 1;
  state.shownAt = performance.now();
  show("item-panel");
  window.scrollTo(0, 0);
}

function checked(name) {
  const input = document.querySelector(`input[name=${name}]:checked`);
  return input ? input.value : null;
}

async function submit(event) {
  event.preventDefault();
  showError("");
  const comment = $("comment").value;
  const elapsed_s = (performance.now() - state.shownAt) / 1000;
  let body;
  if (state.info.mode === "rating") {
    const quality = checked("quality");
    const usefulness = checked("usefulness");
    if (quality === null || usefulness === null) {
      showError("Please rate both image quality and diagnostic usefulness (1–5).");
      return;
    }
    const flags = [...document.querySelectorAll("input[name=flag]:checked")].map((x) => x.value);
    body = { quality: Number(quality), usefulness: Number(usefulness), flags, comment, elapsed_s };
  } else {
    const choice = checked("choice");
    if (choice === null) {
      showError("Please choose the better image (or no preference).");
      return;
    }
    body = { choice, comment, elapsed_s };
  }
  $("save").disabled = true;
  try {
    await readerApi(`/api/study/items/${state.item.item_id}/answer`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    state.items = await readerApi("/api/study/items");
    const position = state.item.position;
    const later = state.items.find((x) => x.position > position && !x.answered);
    const any = state.items.find((x) => !x.answered);
    const next = later || any;
    if (!next) {
      finish({ total: state.items.length });
    } else {
      await openPosition(next.position);
    }
  } catch (e) {
    showError(e.message);
  } finally {
    $("save").disabled = false;
  }
}

async function previous() {
  if (state.item && state.item.position > 1) await openPosition(state.item.position - 1);
}

// ----------------------------------------------------------------- zoom
// Wheel: zoom around the cursor; drag: pan; double-click or "Fit": back to the whole image.
// Both images of a pair share one zoom and pan, so they always show the same place.
const view = { zoom: 1, x: 0, y: 0 };

function applyZoom() {
  for (const img of document.querySelectorAll("#images img")) {
    img.style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.zoom})`;
    img.classList.toggle("zoomed", view.zoom > 1); // zoomed in: show the pixels as they are
  }
  $("images").dataset.zoom = view.zoom.toFixed(3);
  $("zoom-level").textContent = `${Math.round(view.zoom * 100)} %`;
}

function resetZoom() {
  view.zoom = 1;
  view.x = 0;
  view.y = 0;
  applyZoom();
}

function attachZoom(frame) {
  let drag = null;
  frame.addEventListener("wheel", (event) => {
    event.preventDefault();
    const rect = frame.getBoundingClientRect();
    const px = event.clientX - rect.left;
    const py = event.clientY - rect.top;
    const zoom = Math.min(16, Math.max(1, view.zoom * Math.exp(-event.deltaY * 0.0015)));
    view.x = px - ((px - view.x) * zoom) / view.zoom; // the point under the cursor stays
    view.y = py - ((py - view.y) * zoom) / view.zoom;
    view.zoom = zoom;
    if (zoom === 1) {
      view.x = 0;
      view.y = 0;
    }
    applyZoom();
  });
  frame.addEventListener("pointerdown", (event) => {
    frame.setPointerCapture(event.pointerId);
    drag = { x: event.clientX, y: event.clientY };
  });
  frame.addEventListener("pointermove", (event) => {
    if (!drag) return;
    view.x += event.clientX - drag.x;
    view.y += event.clientY - drag.y;
    drag = { x: event.clientX, y: event.clientY };
    applyZoom();
  });
  const end = () => {
    drag = null;
  };
  frame.addEventListener("pointerup", end);
  frame.addEventListener("pointercancel", end);
  frame.addEventListener("dblclick", resetZoom);
}

document.addEventListener("DOMContentLoaded", init);
