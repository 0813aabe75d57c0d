// Atelier's small front-end script: copy buttons, filters, search suggestions, chunked uploads,
// the generation queue (Server-Sent Events), moderation and the rating game. No framework.
"use strict";
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const csrf = () => $('meta[name="csrf-token"]').content;

async function api(method, url, body, headers = {}) {
  const init = {method, credentials: "same-origin", headers: {"X-CSRFToken": csrf(), ...headers}};
  if (body !== undefined) {
    if (body instanceof Blob || body instanceof FormData) init.body = body;
    else { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
  }
  const res = await fetch(url, init);
  const data = res.headers.get("Content-Type")?.includes("json") ? await res.json() : null;
  if (!res.ok) throw Object.assign(new Error(data?.error || `HTTP ${res.status}`), {data, status: res.status});
  return data;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

// ---- small things -----------------------------------------------------------------------------
async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
  const area = el("textarea", {class: "offscreen"});  // plain-http installs
  area.value = text;
  document.body.append(area);
  area.select();
  const ok = document.execCommand("copy");
  area.remove();
  if (!ok) throw new Error("copy refused");
}

document.addEventListener("click", async (ev) => {
  const button = ev.target.closest("[data-copy]");
  if (!button) return;
  ev.preventDefault();
  const label = button.textContent;
  try { await copyText(button.dataset.copy); button.textContent = "Copied"; }
  catch (e) { button.textContent = "Copy failed"; }
  setTimeout(() => { button.textContent = label; }, 1200);
});
document.addEventListener("change", (ev) => {
  if (ev.target.matches("[data-autosubmit]")) ev.target.form.requestSubmit();
});
document.addEventListener("click", (ev) => {  // a blurred thumbnail is revealed by a click, not followed
  const thumb = ev.target.closest(".blurred");
  if (thumb) { ev.preventDefault(); thumb.classList.remove("blurred"); }
});

// ---- search suggestions -----------------------------------------------------------------------
function initSuggest() {
  const input = $("#search"), list = $("#suggestions");
  if (!input) return;
  let timer = null, active = -1;
  const close = () => { list.hidden = true; active = -1; };
  input.addEventListener("input", () => {
    clearTimeout(timer);
    const text = input.value.trim();
    if (text.length < 2) return close();
    timer = setTimeout(async () => {
      const data = await api("GET", `${input.dataset.suggest}?q=${encodeURIComponent(text)}&limit=8`);
      // a suggestion names a model: it opens that model's page
      list.replaceChildren(...data.models.map((m) => el("li", {}, el("a", {href: m.url}, m.name))));
      list.hidden = !data.models.length;
    }, 150);
  });
  input.addEventListener("keydown", (ev) => {
    const items = $$("a", list);
    if (list.hidden || !items.length) return;
    if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      ev.preventDefault();
      active = (active + (ev.key === "ArrowDown" ? 1 : -1) + items.length) % items.length;
      items.forEach((a, i) => a.classList.toggle("active", i === active));
    } else if (ev.key === "Enter" && active >= 0) { ev.preventDefault(); location.href = items[active].href; }
    else if (ev.key === "Escape") close();
  });
  document.addEventListener("click", (ev) => { if (!ev.target.closest(".searchbox")) close(); });
}

// ---- chunked model-file upload (the resumable upload API) --------------------------------------
function initUploads() {
  for (const box of $$(".uploader")) {
    const input = $(".file-input", box), bar = $(".progress", box), status = $(".upload-status", box);
    input.addEventListener("change", async () => {
      const file = input.files[0];
      if (!file) return;
      input.disabled = true; bar.hidden = false;
      const show = (fraction, text) => { $("div", bar).style.width = `${Math.round(fraction * 100)}%`; status.textContent = text; };
      try {
        let up = await api("POST", "/api/v1/uploads", {
          modelVersionId: Number(box.dataset.versionId), filename: file.name, size: file.size, type: $(".file-type", box).value});
        const chunk = Math.min(up.chunkSize, 8 * 1024 * 1024);
        while (up.offset < file.size) {
          const end = Math.min(up.offset + chunk, file.size);
          up = await api("PUT", up.uploadUrl, file.slice(up.offset, end),
                         {"Content-Range": `bytes ${up.offset}-${end - 1}/${file.size}`});
          show(up.offset / file.size, `Uploading… ${Math.round(100 * up.offset / file.size)}%`);
        }
        while (up.state === "processing") {  // hashing and scanning run in the workers
          show(1, "Uploaded. Hashing and scanning…");
          await new Promise((r) => setTimeout(r, 700));
          up = await api("GET", `/api/v1/uploads/${up.id}`);
        }
        show(1, up.state === "done" ? "Ready." : `Rejected: ${up.error}`);
        location.reload();
      } catch (err) {
        status.textContent = `Upload failed: ${err.message}`;
        input.disabled = false;
      }
    });
  }
}

function initShowcaseUploads() {
  for (const box of $$(".showcase-uploader")) {
    const input = $(".image-input", box);
    input.addEventListener("change", async () => {
      input.disabled = true;
      try {
        for (const file of input.files) {
          const form = new FormData();
          form.append("file", file);
          form.append("modelVersionId", box.dataset.versionId);
          await api("POST", "/api/v1/images", form);  // scanned and resized by the workers
        }
        location.reload();
      } catch (err) { alert(`Image upload failed: ${err.message}`); input.disabled = false; }
    });
  }
}

// ---- the generation page: one event stream for all of the user's runs ------------------------------
const RUN_DONE = ["Done", "Failed", "Cancelled"];
const EVENTS = ["queued", "started", "step", "image", "failed", "done", "cancelled", "reset"];
const runsShown = new Map();  // run id -> {node, total, done: Set of job ids, failed: Set of job ids}

function renderRun(run) {
  const slots = run.jobs.map((job) => el("div", {class: "slot", "data-job": job.id, title: job.prompt},
    job.imageUrl ? el("img", {src: job.imageUrl, alt: job.prompt}) : job.state));
  const node = el("article", {class: "run panel", id: `run-${run.id}`, "data-status": run.status},
    el("header", {},
      el("div", {}, el("b", {}, `Run ${run.id}`), " ",
        el("span", {class: `status ${run.status.toLowerCase()}`, "data-role": "status"}, run.status), " ",
        el("span", {class: "muted", "data-role": "count"}, `${run.done}/${run.total}`)),
      RUN_DONE.includes(run.status) ? null :
        el("button", {type: "button", class: "danger", "data-role": "cancel", onclick: () => cancelRun(run.id)}, "Cancel")),
    el("p", {class: "muted run-prompt"}, run.jobs[0]?.prompt || ""),
    el("div", {class: "progress"}, el("div", {"data-role": "bar"})),
    el("p", {class: "muted run-step", "data-role": "step"}),
    el("div", {class: "images"}, ...slots));
  $('[data-role="bar"]', node).style.width = `${Math.round(run.progress * 100)}%`;  // CSSOM: allowed by the CSP
  return node;
}

function showRun(run, where = "append") {  // a run as the API gives it, in place of its older view
  const node = renderRun(run), old = $(`#run-${run.id}`);
  if (old) old.replaceWith(node); else $("#runs")[where](node);
  const ids = (state) => new Set(run.jobs.filter((j) => j.state === state).map((j) => j.id));
  runsShown.set(run.id, {node, total: run.total, done: ids("done"), failed: ids("failed")});
}

async function reloadRun(id, where) {
  try { showRun(await api("GET", `/api/v1/generation/runs/${id}`), where); } catch (err) { /* gone: keep the view */ }
}

function onRunEvent(kind, e) {
  const run = runsShown.get(e.run);
  if (!run) { if (kind === "queued") reloadRun(e.run, "prepend"); return; }  // queued elsewhere (API, another tab)
  if (kind === "queued") { if (e.jobs) reloadRun(e.run); return; }  // failed jobs retried: the run reopens
  const node = run.node;
  if (RUN_DONE.includes(node.dataset.status)) return;  // ended: later events of it change nothing shown
  const set = (role, text) => { $(`[data-role="${role}"]`, node).textContent = text; };
  const bar = (extra = 0) => {
    $('[data-role="bar"]', node).style.width = `${Math.round(100 * Math.min(1, (run.done.size + run.failed.size + extra) / run.total))}%`;
  };
  const slot = (id) => $(`[data-job="${id}"]`, node);
  const finish = (status) => {
    set("status", status); node.dataset.status = status;
    $('[data-role="status"]', node).className = `status ${status.toLowerCase()}`;
    if (status !== "Cancelled") $('[data-role="bar"]', node).style.width = "100%";
    $('[data-role="cancel"]', node)?.remove();
    for (const s of $$(".slot", node)) if (!$("img", s) && !s.textContent.startsWith("failed")) s.textContent = status.toLowerCase();
  };
  if (kind === "started") { set("status", "Running"); node.dataset.status = "Running"; }
  else if (kind === "step") {
    set("step", `step ${e.step}/${e.steps} · batch of ${e.jobs.length}`);
    const mine = e.jobs.filter((id) => slot(id)).length;
    bar((e.step / e.steps) * mine);
    for (const id of e.jobs) { const s = slot(id); if (s && !$("img", s)) s.textContent = `${e.step}/${e.steps}`; }
  } else if (kind === "image") {
    run.done.add(e.job); bar(); set("count", `${run.done.size}/${run.total}`);
    slot(e.job)?.replaceChildren(el("a", {href: `/images/${e.image}`}, el("img", {src: `/api/v1/generation/jobs/${e.job}/image.png`, alt: `seed ${e.seed}`})));
  } else if (kind === "failed" && e.jobs) {  // a batch's jobs failed; the run goes on
    for (const id of e.jobs) { if (slot(id)) { run.failed.add(id); slot(id).textContent = "failed"; } }
    bar(); set("step", e.error);
  } else if (kind === "failed") finish("Failed");
  else if (kind === "done") { set("step", ""); finish("Done"); }
  else if (kind === "cancelled") finish("Cancelled");
}

function followRuns(box) {
  // One stream of every event of the user's runs (it counts once against the user's stream cap). Refused
  // or ended for good, the page reads its unfinished runs every few seconds and tries the stream again.
  let after = box.dataset.eventsAfter, source = null, polling = null;
  const unfinished = () => [...runsShown.keys()].filter((id) => !RUN_DONE.includes(runsShown.get(id).node.dataset.status));
  const connect = () => {
    source = new EventSource(`${box.dataset.eventsUrl}?after=${after}`, {withCredentials: true});
    source.addEventListener("open", () => { clearInterval(polling); polling = null; });
    for (const kind of EVENTS) {
      source.addEventListener(kind, (ev) => {
        if (ev.lastEventId) after = ev.lastEventId;
        if (kind === "reset") unfinished().forEach((id) => reloadRun(id));
        else onRunEvent(kind, JSON.parse(ev.data));
      });
    }
    source.addEventListener("error", () => {
      if (source.readyState !== EventSource.CLOSED) return;  // the browser reconnects with Last-Event-ID
      if (!polling) polling = setInterval(() => unfinished().forEach((id) => reloadRun(id)), 4000);
      setTimeout(connect, 15000);
    });
  };
  connect();
}

async function cancelRun(id) {
  const run = await api("POST", `/api/v1/generation/runs/${id}/cancel`);
  if (RUN_DONE.includes(run.status)) onRunEvent(run.status.toLowerCase(), {run: id});  // as its end event will
}

function initGeneration() {
  const form = $("#generate-form");
  if (!form) return;
  const runs = $("#runs"), loras = [];
  $("#g-size").addEventListener("change", (ev) => {
    const [w, h] = ev.target.value ? ev.target.value.split("x") : ["", ""];
    $("#g-width").value = w; $("#g-height").value = h;
  });
  for (const run of JSON.parse($("#initial-runs").textContent)) showRun(run);
  followRuns(runs);
  $("#g-lora-add").addEventListener("click", () => {
    const select = $("#g-lora"), option = select.selectedOptions[0];
    if (!select.value || loras.some((l) => l.id === Number(select.value))) return;
    const item = {id: Number(select.value), weight: Number($("#g-lora-weight").value)};
    loras.push(item);
    const chip = el("span", {class: "chip", "data-lora": item.id}, `${option.textContent} · ${item.weight} `,
      el("button", {type: "button", class: "link", "aria-label": "remove", onclick: () => {
        loras.splice(loras.indexOf(item), 1); chip.remove(); }}, "✕"));
    $("#g-loras").append(chip);
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(form), error = $("#g-error");
    const body = {model: Number(f.get("model")), negative_prompt: f.get("negative_prompt"),
                  seed: Number(f.get("seed") || -1), quantity: Number(f.get("quantity") || 1),
                  clip_skip: Number(f.get("clip_skip") || 1), resources: loras.map((l) => ({id: l.id, weight: l.weight}))};
    const lines = (f.get("prompts") || "").split("\n").map((s) => s.trim()).filter(Boolean);
    if (lines.length) body.prompts = lines; else body.prompt = f.get("prompt");
    for (const key of ["steps", "cfg_scale", "width", "height"]) if (f.get(key)) body[key] = Number(f.get(key));
    if (f.get("sampler")) body.sampler = f.get("sampler");
    error.hidden = true;
    $("#g-submit").disabled = true;
    try {
      const run = await api("POST", "/api/v1/generation", body);
      $("#no-runs").hidden = true;
      if (!runsShown.has(run.id)) showRun(run, "prepend");  // its queued event may have shown it already
    } catch (err) {
      error.textContent = err.message; error.hidden = false;
    } finally { $("#g-submit").disabled = false; }
  });
}

// ---- moderation and the rating game ------------------------------------------------------------
function initModeration() {
  for (const card of $$(".review")) {
    card.addEventListener("click", async (ev) => {
      const button = ev.target.closest("[data-action]");
      if (!button) return;
      const body = {action: button.dataset.action};
      if (body.action === "set-level") body.level = $("[data-level]", card).value;
      try { await api("POST", `/api/v1/moderation/images/${card.dataset.imageId}`, body); card.remove(); }
      catch (err) { alert(err.message); }
    });
  }
}

function initRatingGame() {
  const box = $("#rating-game");
  if (!box) return;
  const img = $("#rate-image"), status = $("#rate-status");
  let current = null;
  const next = async () => {
    const data = await api("GET", "/api/v1/rating-game/next");
    current = data.item;
    img.hidden = !current;
    if (current) { img.src = current.url; status.textContent = `Image ${current.id}`; }
    else status.textContent = "Nothing left to rate. Thank you!";
  };
  $("#rate-buttons").addEventListener("click", async (ev) => {
    const button = ev.target.closest("[data-level]");
    if (!button || !current) return;
    await api("POST", `/api/v1/rating-game/${current.id}`, {level: button.dataset.level});
    next();
  });
  next();
}

document.addEventListener("DOMContentLoaded", () => {
  initSuggest(); initUploads(); initShowcaseUploads(); initGeneration(); initModeration(); initRatingGame();
});
