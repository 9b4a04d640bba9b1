// predictq console: plain JavaScript, no dependencies. Every value that came from the API or a client's data is
// written with textContent or setAttribute, never parsed as HTML. The key lives in this tab's sessionStorage and
// travels only in the Authorization header.
"use strict";

const KEY_STORAGE = "predictq.apiKey";
const LIST_EVERY_MS = 2000;
const JOB_EVERY_MS = 500;
const SUMMARY_EVERY_MS = 2000;
const FIRST_ERRORS = 20;
const CLOSED = new Set(["succeeded", "failed", "cancelled"]);
const UPLOAD_TYPES = { csv: "text/csv", ndjson: "application/x-ndjson", jsonl: "application/x-ndjson",
                       json: "application/json" };
const SVG = "http://www.w3.org/2000/svg";

const state = { key: "", model: null, jobId: null, watched: null, upload: null, listTimer: null, jobTimer: null,
                summaryOf: null, summaryAt: 0 };

const $ = (id) => document.getElementById(id);

function el(tag, text, attrs) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

const integer = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
const percent = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1) + "%");
const number = (x, digits = 4) => (x === null || x === undefined ? "–" : Number(x).toPrecision(digits));
const megabytes = (bytes) => (bytes / 1e6).toFixed(1) + " MB";

function seconds(s) {
  if (s === null || s === undefined) return "–";
  if (s < 90) return Math.round(s) + " s";
  return Math.round(s / 60) + " min";
}

// ---- API calls: the key goes in a header, never in a URL ----

class ApiError extends Error {
  constructor(status, body) {
    const detail = body && body.error ? body.error : { code: "http_" + status, message: "request failed" };
    super(detail.message);
    this.status = status;
    this.code = detail.code;
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + state.key }, options.headers || {});
  const response = await fetch(path, Object.assign({}, options, { headers, cache: "no-store" }));
  if (!response.ok) {
    let body = null;
    try { body = await response.json(); } catch (_) { body = null; }
    throw new ApiError(response.status, body);
  }
  return response;
}

const apiJson = async (path, options) => (await api(path, options)).json();

// ---- key ----

async function useKey(key) {
  state.key = key;
  try {
    state.model = await apiJson("/v1/model");
  } catch (err) {
    state.key = "";
    sessionStorage.removeItem(KEY_STORAGE);
    $("key-status").textContent = err.status === 401 ? "That key was refused." : "Cannot reach the API: " + err.message;
    $("main").hidden = true;
    return;
  }
  sessionStorage.setItem(KEY_STORAGE, key);
  $("key-status").textContent = "Key accepted.";
  $("api-key").value = "";
  $("model-line").textContent = "Model " + state.model.version + ", cutoff " + state.model.cutoff;
  $("main").hidden = false;
  buildPredictForm(state.model);
  refreshJobs();
  clearInterval(state.listTimer);
  state.listTimer = setInterval(refreshJobs, LIST_EVERY_MS);
}

function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
  state.key = "";
  clearInterval(state.listTimer);
  clearTimeout(state.jobTimer);
  $("main").hidden = true;
  $("model-line").textContent = "Enter an API key to start.";
  $("key-status").textContent = "Key forgotten.";
}

// ---- jobs list ----

async function refreshJobs() {
  if (!state.key) return;
  let page;
  try {
    page = await apiJson("/v1/jobs?limit=20");
  } catch (err) {
    return;  // a missed poll is retried on the next tick
  }
  const body = $("jobs-table").tBodies[0];
  clear(body);
  for (const job of page.items) {
    const row = el("tr", null, { "data-job-id": job.id, "data-state": job.state });
    const open = el("button", job.id, { type: "button", class: "link mono", "aria-label": "Open job " + job.id });
    open.addEventListener("click", () => selectJob(job.id));
    const cell = el("td");
    cell.append(open);
    const bar = el("progress", null, { max: 1, value: job.progress, "aria-label": "Progress of job " + job.id });
    const barCell = el("td");
    barCell.append(bar, el("span", " " + percent(job.progress), { class: "figure" }));
    row.append(cell, el("td", job.state + (job.outcome ? " (" + job.outcome.replaceAll("_", " ") + ")" : "")),
               barCell, el("td", integer(job.rows_done) + " / " + integer(job.rows_total)),
               el("td", (job.created_at || "").replace("T", " ").replace("Z", " UTC")));
    body.append(row);
  }
  if (state.upload && !state.upload.jobId) {
    // The upload's job exists as soon as its first chunk is read; track its scoring while the upload goes on.
    const mine = page.items.find((job) => Date.parse(job.created_at) >= state.upload.startedAt - 2000
                                          && !job.upload_complete && !CLOSED.has(job.state));
    if (mine) {
      state.upload.jobId = mine.id;
      watchJob(mine.id);
    }
  }
}

// ---- upload ----

function contentType(name) {
  const extension = name.toLowerCase().split(".").pop();
  return UPLOAD_TYPES[extension] || null;
}

function setBar(id, value) {
  const bar = $(id);
  bar.value = Math.max(0, Math.min(1, value));
  bar.setAttribute("data-value", String(bar.value));
}

function startUpload(file) {
  $("upload-error").textContent = "";
  const type = contentType(file.name);
  if (!type) {
    $("upload-error").textContent = "Choose a .csv, .ndjson, .jsonl or .json file.";
    return;
  }
  if (state.upload) {
    $("upload-error").textContent = "An upload is already running.";
    return;
  }
  const xhr = new XMLHttpRequest();
  state.upload = { xhr, startedAt: Date.now(), lookedAt: 0, jobId: null, size: file.size };
  setBar("upload-progress", 0);
  setBar("score-progress", 0);
  $("score-text").textContent = "";
  $("upload-text").textContent = "Uploading " + file.name + " (" + megabytes(file.size) + ")";
  $("cancel-job").disabled = false;
  xhr.upload.addEventListener("progress", (event) => {
    if (state.upload && !state.upload.jobId && Date.now() - state.upload.lookedAt > 500) {
      state.upload.lookedAt = Date.now();
      refreshJobs();  // find the job the upload is creating, to show its scoring while the upload goes on
    }
    const total = event.lengthComputable ? event.total : file.size;
    setBar("upload-progress", total ? event.loaded / total : 0);
    $("upload-text").textContent = megabytes(event.loaded) + " of " + megabytes(total) + " sent";
  });
  xhr.upload.addEventListener("load", () => {
    setBar("upload-progress", 1);
    $("upload-text").textContent = megabytes(file.size) + " sent; waiting for the last chunk to be staged";
  });
  xhr.addEventListener("load", () => finishUpload(xhr, file));
  xhr.addEventListener("error", () => failUpload("The upload failed: the connection was lost."));
  xhr.addEventListener("abort", () => failUpload("The upload was cancelled."));
  xhr.open("POST", "/v1/jobs");
  xhr.setRequestHeader("Authorization", "Bearer " + state.key);
  xhr.setRequestHeader("Content-Type", type);
  xhr.send(file);
}

function finishUpload(xhr, file) {
  let body = null;
  try { body = JSON.parse(xhr.responseText); } catch (_) { body = null; }
  state.upload = null;
  if (xhr.status !== 202 || !body || !body.id) {
    const message = body && body.error ? body.error.message : "HTTP " + xhr.status;
    failUpload("The upload was refused: " + message);
    return;
  }
  setBar("upload-progress", 1);
  $("upload-text").textContent = file.name + ": " + megabytes(file.size) + " uploaded";
  selectJob(body.id);
}

function failUpload(message) {
  state.upload = null;
  $("upload-error").textContent = message;
  $("cancel-job").disabled = !state.watched;
}

async function cancel() {
  const upload = state.upload;
  const jobId = upload ? upload.jobId : state.watched;
  // The job is cancelled first, so the server ends the upload as cancelled rather than as a failed upload.
  if (jobId) {
    try {
      await api("/v1/jobs/" + encodeURIComponent(jobId), { method: "DELETE" });
    } catch (err) {
      $("upload-error").textContent = "Cancel failed: " + err.message;
    }
  }
  if (upload) upload.xhr.abort();
  refreshJobs();
}

// ---- one job ----

function selectJob(jobId) {
  state.jobId = jobId;
  state.summaryOf = null;
  state.summaryAt = 0;
  $("outcome-text").removeAttribute("data-final");
  $("job-view").hidden = false;
  $("job-id").textContent = jobId;
  clear($("errors-table").tBodies[0]);
  watchJob(jobId);
}

function watchJob(jobId) {
  state.watched = jobId;
  clearTimeout(state.jobTimer);
  pollJob(jobId);
}

async function pollJob(jobId) {
  if (state.watched !== jobId || !state.key) return;
  let job;
  try {
    job = await apiJson("/v1/jobs/" + encodeURIComponent(jobId));
  } catch (err) {
    $("score-text").textContent = err.status === 410 ? "This job expired." : "Cannot read the job: " + err.message;
    return;
  }
  showScoring(job);
  if (state.jobId === jobId) showJobState(job);
  if (CLOSED.has(job.state)) {
    $("cancel-job").disabled = !state.upload;
    if (state.jobId === jobId && state.summaryOf !== jobId) {
      state.summaryOf = jobId;
      showSummary(jobId, true);
      showFirstErrors(jobId);
    }
    return;
  }
  if (state.jobId === jobId && Date.now() - state.summaryAt > SUMMARY_EVERY_MS && job.chunks_done > 0) {
    state.summaryAt = Date.now();
    showSummary(jobId, false);  // the chunks committed so far
  }
  $("cancel-job").disabled = false;
  state.jobTimer = setTimeout(() => pollJob(jobId), JOB_EVERY_MS);
}

function showScoring(job) {
  setBar("score-progress", job.progress);
  const parts = [integer(job.rows_done) + " of " + integer(job.rows_total) + " rows" +
                 (job.upload_complete ? "" : " received so far")];
  if (job.rows_per_second) parts.push(integer(Math.round(job.rows_per_second)) + " rows/s");
  if (!CLOSED.has(job.state) && job.eta_seconds !== null) parts.push("about " + seconds(job.eta_seconds) + " left");
  if (CLOSED.has(job.state)) parts.push(job.state);
  $("score-text").textContent = parts.join(" · ");
}

function showJobState(job) {
  const words = [job.state];
  if (job.outcome) words.push("(" + job.outcome.replaceAll("_", " ") + ")");
  if (job.reason) words.push("— " + job.reason);
  words.push("· " + integer(job.rows_done) + " rows done, " + integer(job.rows_failed) + " failed");
  $("job-state").textContent = words.join(" ");
  $("job-state").setAttribute("data-state", job.state);
}

async function showSummary(jobId, final) {
  let summary;
  try {
    summary = await apiJson("/v1/jobs/" + encodeURIComponent(jobId) + "/summary");
  } catch (err) {
    $("outcome-text").textContent = "No summary: " + err.message;
    return;
  }
  if (state.jobId !== jobId || (!final && state.summaryOf === jobId)) return;  // stale, or the final one is due
  drawHistogram(summary.phat_histogram, summary.business_outcome_1.cutoff);
  const outcome = summary.business_outcome_1;
  const text = $("outcome-text");
  text.textContent = integer(outcome.count) + " of " + integer(summary.rows_scored) + " scored rows (" +
    percent(outcome.share) + ") have business_outcome 1, phat ≥ " + outcome.cutoff + "; the cutoff was set for " +
    percent(outcome.training_share) + ".";
  text.setAttribute("data-count", String(outcome.count));
  text.setAttribute("data-rows", String(summary.rows_scored));
  // data-final: the job had closed, so these are the figures of every chunk
  if (final) text.setAttribute("data-final", "true"); else text.removeAttribute("data-final");
  showQuality(summary);
}

function drawHistogram(histogram, cutoff) {
  const plot = $("histogram");
  clear(plot);
  const width = 640, height = 240, left = 56, right = 12, top = 26, bottom = 34;
  const innerW = width - left - right, innerH = height - top - bottom;
  const counts = histogram.counts;
  const most = Math.max(1, ...counts);
  const x = (p) => left + p * innerW;
  const total = counts.reduce((a, b) => a + b, 0);
  plot.setAttribute("data-total", String(total));
  plot.append(svg("line", { x1: left, y1: top + innerH, x2: left + innerW, y2: top + innerH, class: "axis" }));
  plot.append(svg("line", { x1: left, y1: top, x2: left, y2: top + innerH, class: "axis" }));
  for (const [i, count] of counts.entries()) {
    const h = (count / most) * innerH;
    const from = histogram.edges[i], to = histogram.edges[i + 1];
    const bar = svg("rect", { x: x(from) + 1, y: top + innerH - h, width: Math.max(innerW / counts.length - 2, 1),
                              height: h, class: "bar", "data-bin": i, "data-count": count });
    bar.append(svg("title", {}, "phat " + from.toFixed(2) + "–" + to.toFixed(2) + ": " + integer(count) + " rows"));
    plot.append(bar);
  }
  for (const tick of [0, 0.25, 0.5, 0.75, 1]) {
    plot.append(svg("text", { x: x(tick), y: height - 12, class: "tick", "text-anchor": "middle" }, String(tick)));
  }
  plot.append(svg("text", { x: left - 6, y: top + 10, class: "tick", "text-anchor": "end" }, integer(most)));
  plot.append(svg("text", { x: left - 6, y: top + innerH, class: "tick", "text-anchor": "end" }, "0"));
  plot.append(svg("line", { x1: x(cutoff), y1: top, x2: x(cutoff), y2: top + innerH, class: "cutoff",
                            "data-cutoff": cutoff }));
  plot.append(svg("text", { x: x(cutoff), y: top - 8, class: "cutoff-label", "text-anchor": "middle" },
                  "cutoff " + cutoff));

  const body = $("histogram-table").tBodies[0];
  clear(body);
  for (const [i, count] of counts.entries()) {
    body.append(rowOf([histogram.edges[i].toFixed(2), histogram.edges[i + 1].toFixed(2), integer(count)]));
  }
}

function rowOf(cells, attrs) {
  const row = el("tr", null, attrs);
  for (const cell of cells) row.append(cell instanceof Node ? wrap(cell) : el("td", cell));
  return row;
}

function wrap(node) {
  const cell = el("td");
  cell.append(node);
  return cell;
}

function showQuality(summary) {
  const warned = new Set(summary.drift.map((w) => w.column).filter(Boolean));
  const list = $("drift-list");
  clear(list);
  for (const warning of summary.drift) list.append(el("li", warning.message, { class: "warning",
                                                                             "data-kind": warning.kind }));
  if (!summary.drift.length) list.append(el("li", "No warnings: this job looks like the training data.",
                                            { class: "ok" }));
  const body = $("quality-table").tBodies[0];
  clear(body);
  for (const input of summary.inputs) {
    const levels = el("ul", null, { class: "levels" });
    for (const level of input.levels || []) {
      levels.append(el("li", level.level + ": " + percent(level.share) + " / " + percent(level.training_share)));
    }
    const numeric = input.kind === "numeric";
    const row = rowOf([
      input.column,
      integer(input.missing) + " (" + percent(input.missing_rate) + ")",
      percent(input.training_missing_rate),
      numeric ? number(input.mean) + " (" + number(input.sd) + ")" : "–",
      numeric ? number(input.training_mean) + " (" + number(input.training_sd) + ")" : "–",
      numeric ? number(input.mean_shift, 2) : "–",
      levels,
    ], { "data-column": input.column });
    if (warned.has(input.column)) row.classList.add("warned");
    body.append(row);
  }
}

async function showFirstErrors(jobId) {
  const body = $("errors-table").tBodies[0];
  clear(body);
  let response;
  try {
    response = await api("/v1/jobs/" + encodeURIComponent(jobId) + "/errors?format=ndjson");
  } catch (err) {
    $("errors-caption").textContent = "Row errors unavailable: " + err.message;
    return;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let pending = "", shown = 0;
  while (shown < FIRST_ERRORS) {
    const { value, done } = await reader.read();
    if (done) break;
    pending += decoder.decode(value, { stream: true });
    const lines = pending.split("\n");
    pending = lines.pop();
    for (const line of lines) {
      if (!line.trim() || shown >= FIRST_ERRORS) continue;
      const error = JSON.parse(line);
      body.append(rowOf([integer(error.row), error.column === null ? "(record)" : error.column, error.message]));
      shown += 1;
    }
  }
  reader.cancel().catch(() => {});
  $("errors-caption").textContent = shown ? "The first " + shown + " row errors" : "No row errors";
}

async function download(kind, format) {
  const jobId = state.jobId;
  const status = $("download-status");
  status.textContent = "Downloading " + kind + " as " + format + "…";
  try {
    const response = await api("/v1/jobs/" + encodeURIComponent(jobId) + "/" + kind + "?format=" + format);
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const link = el("a", null, { href: url, download: jobId + "-" + kind + "." + format, hidden: "" });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    status.textContent = "Downloaded " + kind + " (" + megabytes(blob.size) + ").";
    status.setAttribute("data-bytes", String(blob.size));
  } catch (err) {
    status.textContent = "Download failed: " + err.message;
  }
}

// ---- one row ----

function buildPredictForm(model) {
  const fields = $("predict-fields");
  clear(fields);
  for (const input of model.inputs) {
    const id = "predict-" + input.column;
    const wrapper = el("div", null, { class: "field" });
    const label = el("label", input.column, { for: id });
    let control;
    if (input.kind === "categorical") {
      control = el("select", null, { id, name: input.column });
      control.append(el("option", "(missing)", { value: "" }));
      for (const level of input.levels) control.append(el("option", level, { value: level }));
    } else {
      control = el("input", null, { id, name: input.column, type: "text", inputmode: "decimal",
                                    placeholder: "missing", autocomplete: "off" });
    }
    wrapper.append(label, control);
    fields.append(wrapper);
  }
}

async function predictOne(event) {
  event.preventDefault();
  const record = {};
  for (const input of state.model.inputs) {
    const value = $("predict-" + input.column).value.trim();
    if (value === "") record[input.column] = null;
    else if (input.kind === "numeric" && /^-?[0-9]*\.?[0-9]+(e-?[0-9]+)?$/i.test(value)) record[input.column] = Number(value);
    else record[input.column] = value;
  }
  const result = $("predict-result");
  try {
    const scored = await apiJson("/predict", { method: "POST", headers: { "Content-Type": "application/json" },
                                               body: JSON.stringify(record) });
    result.textContent = "phat " + scored.phat.toFixed(6) + " · business_outcome " + scored.business_outcome;
    result.setAttribute("data-phat", String(scored.phat));
    result.setAttribute("data-outcome", String(scored.business_outcome));
  } catch (err) {
    result.textContent = "Not scored: " + err.message;
    result.removeAttribute("data-phat");
  }
}

// ---- wiring ----

function wire() {
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (key) useKey(key);
  });
  $("key-forget").addEventListener("click", forgetKey);
  $("file-input").addEventListener("change", (event) => {
    const file = event.target.files[0];
    if (file) startUpload(file);
    event.target.value = "";
  });
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) startUpload(file);
  });
  $("cancel-job").addEventListener("click", cancel);
  for (const button of document.querySelectorAll(".downloads button")) {
    button.addEventListener("click", () => download(button.dataset.kind, button.dataset.format));
  }
  $("predict-form").addEventListener("submit", predictOne);
  const saved = sessionStorage.getItem(KEY_STORAGE);
  if (saved) useKey(saved);
}

document.addEventListener("DOMContentLoaded", wire);
