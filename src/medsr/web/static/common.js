// Shared by the medsr pages: element lookup, the error box, JSON API calls whose errors read
// as the server's message. Plain JavaScript, no build step, no external code.
"use strict";

const $ = (id) => document.getElementById(id);

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function detailOf(body, status) {
  if (body && typeof body.detail === "string") return body.detail;
  if (body && Array.isArray(body.detail)) {
    return body.detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
  }
  return `the server answered ${status}`;
}

// The parsed JSON body (a Blob for a PNG); an Error with the server's detail and .status for
// any 4xx/5xx answer.
async function api(url, options = {}) {
  const response = await fetch(url, options);
  if (response.ok && response.headers.get("content-type") === "image/png") return response.blob();
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = null;
  }
  if (!response.ok) {
    const error = new Error(detailOf(body, response.status));
    error.status = response.status;
    throw error;
  }
  return body;
}
