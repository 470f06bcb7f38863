// drylocal's dashboard: plain browser JavaScript, no build step and nothing fetched from outside.
// It uses what any dryAPI client uses: the task routes, request-status, the Pusher-protocol socket and
// the OpenAPI document (to draw one playground form per task), plus /dashboard/state.
// Every value from the server (jobs, models, the bench report, the OpenAPI document) reaches the page as
// text: textContent, new Option and element properties, never markup; URLs are checked before use. The
// page's Content-Security-Policy (server/dashboard.py) allows no inline script or style.
"use strict";

const API = "/api/v1/client";
const KEY_ITEM = "drylocal-key";

// The key lives in sessionStorage: it survives a reload of this tab but not closing the tab or the
// browser, and no other tab or later visit inherits it, so it is not left on disk for whoever (or
// whatever script) reads the browser profile afterwards. Earlier versions kept it in localStorage:
// move it over once and delete it there.
function storedKey() {
  const legacy = localStorage.getItem(KEY_ITEM);
  if (legacy !== null) {
    if (!sessionStorage.getItem(KEY_ITEM)) sessionStorage.setItem(KEY_ITEM, legacy);
    localStorage.removeItem(KEY_ITEM);
  }
  return sessionStorage.getItem(KEY_ITEM) || "";
}

const state = { key: storedKey(), jobs: new Map(), schema: null, socket: null, clientId: null };
const $ = (selector) => document.querySelector(selector);

function textCell(text, tag = "td") {
  const cell = document.createElement(tag);
  cell.textContent = text;
  return cell;
}

function say(text, ok = false) {
  $("#message").textContent = text || "";
  $("#message").classList.toggle("ok", ok);
}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${state.key}`, Accept: "application/json", ...(options.headers || {}) },
  });
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    // Both error forms: the Laravel object {field: [messages]} (default) and the docs' array.
    const errors = body && body.errors ? body.errors : [];
    const lists = Array.isArray(errors) ? errors.map((e) => e.messages) : Object.values(errors);
    const fields = lists.map((messages) => messages.join(" ")).join(" ");
    throw new Error(`${(body && body.message) || `HTTP ${response.status}`} ${fields}`.trim());
  }
  return body;
}

// ------------------------------------------------------------------ jobs
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

function sameOriginUrl(text) {
  try {
    const url = new URL(text, location.href);
    return url.origin === location.origin ? url : null;
  } catch {
    return null;
  }
}

function previewSource(preview) {
  // Only a JPEG or PNG data URL, bare base64 (a JPEG), or a result file of this server.
  if (typeof preview !== "string" || !preview) return null;
  const data = /^data:image\/(?:jpeg|png);base64,(.*)$/s.exec(preview);
  if (data) return BASE64.test(data[1]) ? preview : null;
  if (BASE64.test(preview)) return `data:image/jpeg;base64,${preview}`;
  const url = sameOriginUrl(preview);
  return url && url.pathname.startsWith("/results/") ? url.href : null;
}

function resultHref(resultUrl) {
  // A signed result URL may name the server's public address, so any http(s) URL, but no javascript: or data:.
  try {
    const url = new URL(resultUrl, location.href);
    return ["http:", "https:"].includes(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

function statusCell(job) {
  const cell = document.createElement("td");
  const pill = document.createElement("span");
  pill.className = "pill";
  const status = String(job.status ?? "");
  if (/^[a-z_]+$/.test(status)) pill.classList.add(`status-${status}`);
  pill.textContent = status;
  cell.append(pill);
  if (job.error_message) {
    const error = document.createElement("div");
    error.className = "job-error";
    error.textContent = `${job.error_code}: ${job.error_message}`;
    cell.append(error);
  }
  return cell;
}

const STAGE = { pending: 0, processing: 1, in_progress: 2, done: 3, error: 3 };

function isStale(update, known) {
  // A state snapshot fetched before a socket event may arrive after it: it must not undo it.
  if (known.status === undefined) return false;
  const [was, now] = [STAGE[known.status] ?? 0, STAGE[update.status] ?? 0];
  return now < was || (now === was && Number(update.progress || 0) < Number(known.progress || 0));
}

function mergeJob(update, live = false) {
  const known = state.jobs.get(update.request_id) || {};
  if (isStale(update, known)) {
    update = { request_id: update.request_id, task: update.task, model: update.model, created_at: update.created_at };
  }
  const merged = { ...known, ...Object.fromEntries(Object.entries(update).filter(([, v]) => v !== undefined)) };
  // The last preview stays on show beside the result; the mark says it came over the socket.
  merged.preview = update.preview || known.preview || null;
  merged.livePreview = Boolean((live && update.preview) || known.livePreview);
  state.jobs.set(update.request_id, merged);
  renderJobs();
}

function renderJobs() {
  const rows = [...state.jobs.values()].sort((a, b) => (b.created_at || 0) - (a.created_at || 0)).slice(0, 50);
  const body = $("#jobs tbody");
  body.replaceChildren(...rows.map((job) => {
    const row = document.createElement("tr");
    row.dataset.requestId = job.request_id;
    const cells = [String(job.request_id).slice(0, 8), job.task || "", job.model || ""].map((text) => textCell(text));
    const status = statusCell(job);
    const progress = document.createElement("td");
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = Number(job.progress || 0);
    progress.append(bar);
    const preview = document.createElement("td");
    const source = previewSource(job.preview);
    if (source) {
      const image = document.createElement("img");
      image.className = "preview";
      image.src = source;
      image.alt = "preview";
      image.dataset.source = job.livePreview ? "live" : "stored";
      preview.append(image);
    }
    const result = document.createElement("td");
    const href = job.result_url ? resultHref(job.result_url) : null;
    if (href) {
      const link = document.createElement("a");
      link.href = href;
      link.textContent = "result";
      link.className = "result-link";
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      result.append(link);
    }
    row.append(...cells, status, progress, preview, result);
    return row;
  }));
}

// ------------------------------------------------------------------ state: models, memory, bench
function megabytes(bytes) {
  return `${(bytes / 1e6).toFixed(bytes < 1e8 ? 1 : 0)} MB`;
}

function renderModels(snapshot) {
  const { memory, models } = snapshot;
  const share = memory.budget_bytes ? Math.min(100, (100 * memory.in_use_bytes) / memory.budget_bytes) : 0;
  $("#memory-used").style.width = `${share}%`;
  const deaths = memory.inference_process_deaths ? `; the inference process died ${memory.inference_process_deaths} time${memory.inference_process_deaths === 1 ? "" : "s"} (see the log)` : "";
  $("#memory-text").textContent = `${megabytes(memory.in_use_bytes)} of ${megabytes(memory.budget_bytes)} (${memory.device})${deaths}`;
  $("#models tbody").replaceChildren(...models.map((model) => {
    const row = document.createElement("tr");
    const texts = [model.slug, megabytes(model.memory_bytes), model.busy ? "running" : `idle ${model.idle_seconds} s`, `${model.load_seconds} s`];
    row.append(...texts.map((text) => textCell(text)));
    return row;
  }));
  $("#queue-depth").textContent = `${snapshot.queue_depth} queued`;
}

function renderBench(report) {
  if (!report) return;
  const perModel = report.models || report.per_model || {};
  const entries = Array.isArray(perModel) ? perModel.map((m) => [m.model || m.slug, m]) : Object.entries(perModel);
  if (!entries.length) return;
  const columns = [...new Set(entries.flatMap(([, m]) => Object.keys(m).filter((k) => ["number", "string"].includes(typeof m[k]))))];
  const table = document.createElement("table");
  const head = document.createElement("tr");
  head.append(...["model", ...columns].map((column) => textCell(column, "th")));
  table.createTHead().append(head);
  const body = table.createTBody();
  for (const [name, values] of entries) {
    const row = document.createElement("tr");
    const shown = columns.map((c) => (typeof values[c] === "number" ? String(+values[c].toFixed(4)) : values[c] ?? ""));
    row.append(...[name ?? "", ...shown].map((text) => textCell(String(text))));
    body.append(row);
  }
  $("#bench").replaceChildren(table);
}

async function refresh() {
  if (!state.key) return;
  try {
    const snapshot = await api("/dashboard/state");
    for (const job of snapshot.jobs) mergeJob({ ...job, preview: job.preview || null });
    renderModels(snapshot);
    renderBench(snapshot.bench_report);
    if (!state.socket) connect(snapshot.account.client_id, snapshot.app_key);
  } catch (error) {
    say(error.message);
  }
}

// ------------------------------------------------------------------ the Pusher-protocol socket
function setSocketState(text) {
  const pill = $("#socket-state");
  pill.textContent = text;
  pill.className = `pill ${text}`;
}

function connect(clientId, appKey) {
  state.clientId = clientId;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/app/${encodeURIComponent(appKey)}?protocol=7&client=drylocal-dashboard&version=1.0`);
  const channel = `private-client.${clientId}`;
  state.socket = socket;
  setSocketState("connecting");
  socket.onmessage = async (message) => {
    const frame = JSON.parse(message.data);
    const data = typeof frame.data === "string" && frame.data ? JSON.parse(frame.data) : frame.data;
    if (frame.event === "pusher:connection_established") {
      try {
        const { auth } = await api("/broadcasting/auth", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ socket_id: data.socket_id, channel_name: channel }),
        });
        socket.send(JSON.stringify({ event: "pusher:subscribe", data: { channel, auth } }));
      } catch (error) {
        say(`Live updates refused: ${error.message}`);
      }
    } else if (frame.event === "pusher:ping") {
      socket.send(JSON.stringify({ event: "pusher:pong", data: {} }));
    } else if (frame.event === "pusher_internal:subscription_succeeded") {
      setSocketState("connected");
    } else if (frame.event === "request.status.updated") {
      mergeJob(data, true);
    }
  };
  socket.onclose = () => {
    setSocketState("offline");
    state.socket = null;
    // Reconnect, unless another key (another account's channel) took over meanwhile.
    setTimeout(() => state.clientId === clientId && !state.socket && connect(clientId, appKey), 1000);
  };
}

// ------------------------------------------------------------------ playground, drawn from the OpenAPI document
function taskPaths(schema) {
  return Object.keys(schema.paths).filter((path) =>
    path.startsWith(`${API}/`) && schema.paths[path].post && !path.endsWith("price-calculation") && !path.includes("{"));
}

function bodySchema(operation) {
  const content = (operation.requestBody && operation.requestBody.content) || {};
  const multipart = content["multipart/form-data"];
  const hasFiles = multipart && Object.values(multipart.schema.properties || {}).some((p) => p.format === "binary");
  if (hasFiles) return { multipart: true, schema: multipart.schema };
  const chosen = content["application/json"] || multipart || content["application/x-www-form-urlencoded"];
  return { multipart: false, schema: chosen ? chosen.schema : { properties: {} } };
}

async function drawForm(path) {
  const form = $("#playground");
  form.replaceChildren();
  const { multipart, schema } = bodySchema(state.schema.paths[path].post);
  form.dataset.path = path;
  form.dataset.multipart = multipart ? "1" : "";
  const task = path.slice(API.length + 1);
  for (const [name, property] of Object.entries(schema.properties || {})) {
    if (name === "webhook_url") continue;
    const label = document.createElement("label");
    label.textContent = (schema.required || []).includes(name) ? `${name} *` : name;
    let input;
    if (name === "model") {
      input = document.createElement("select");
      try {
        const models = await api(`${API}/models?per_page=50&filter[inference_types]=${encodeURIComponent(task)}`);
        for (const model of models.data) input.append(new Option(model.name || model.slug, model.slug));
      } catch (error) {
        say(error.message);
      }
    } else if (property.format === "binary") {
      input = document.createElement("input");
      input.type = "file";
    } else if (property.type === "boolean") {
      input = document.createElement("input");
      input.type = "checkbox";
    } else if (property.type === "integer" || property.type === "number") {
      input = document.createElement("input");
      input.type = "number";
      input.step = property.type === "integer" ? "1" : "any";
    } else if (["prompt", "text", "input", "caption", "lyrics", "negative_prompt", "instruct"].includes(name) || property.type === "array") {
      input = document.createElement("textarea");
      if (property.type === "array") input.placeholder = "JSON array";
    } else {
      input = document.createElement("input");
      input.type = "text";
    }
    input.name = name;
    input.dataset.kind = property.format === "binary" ? "file" : property.type || "string";
    label.htmlFor = input.id = `field-${name}`;
    form.append(label, input);
  }
  const submit = document.createElement("button");
  submit.type = "submit";
  submit.textContent = "Submit";
  form.append(submit);
}

function formBody(form) {
  const multipart = Boolean(form.dataset.multipart);
  const json = {};
  const data = new FormData();
  for (const input of form.querySelectorAll("[name]")) {
    const kind = input.dataset.kind;
    if (kind === "file") {
      for (const file of input.files) data.append(input.name, file);
      continue;
    }
    if (kind === "boolean") {
      if (multipart) data.append(input.name, input.checked ? "1" : "0");
      else json[input.name] = input.checked;
      continue;
    }
    if (input.value === "") continue;
    let value = input.value;
    if (kind === "integer" || kind === "number") value = Number(value);
    if (kind === "array" || kind === "object") value = JSON.parse(value);
    if (multipart) data.append(input.name, typeof value === "object" ? JSON.stringify(value) : String(value));
    else json[input.name] = value;
  }
  return multipart ? { body: data } : { body: JSON.stringify(json), headers: { "Content-Type": "application/json" } };
}

async function submitForm(event) {
  event.preventDefault();
  const form = event.target;
  try {
    const answer = await api(form.dataset.path, { method: "POST", ...formBody(form) });
    const data = answer.data || answer;
    if (data.request_id) {
      mergeJob({ request_id: data.request_id, task: form.dataset.path.slice(API.length + 1), status: "pending", progress: 0, created_at: Date.now() / 1000 });
      say(`Submitted ${data.request_id}`, true);
    } else {
      say(JSON.stringify(data), true);  // the prompt boosters answer at once
    }
  } catch (error) {
    say(error.message);
  }
}

async function loadPlayground() {
  state.schema = await fetch("/schema/openapi.json").then((response) => response.json());
  const select = $("#task");
  select.replaceChildren(...taskPaths(state.schema).map((path) => new Option(path.slice(API.length + 1), path)));
  select.onchange = () => drawForm(select.value);
  if (select.value) await drawForm(select.value);
}

// ------------------------------------------------------------------ start
$("#key-form").onsubmit = (event) => {
  event.preventDefault();
  state.key = $("#key").value.trim();
  sessionStorage.setItem(KEY_ITEM, state.key);
  state.clientId = null;
  state.jobs.clear();
  if (state.socket) state.socket.close();
  say("");
  refresh().then(loadPlayground);
};
$("#playground").onsubmit = submitForm;
$("#key").value = state.key;
if (state.key) refresh().then(loadPlayground);
setInterval(refresh, 2000);
