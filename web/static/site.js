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
// The queue is paged (runs, and each run's images) and shows the workers' small image variants, so that a
// page with big runs asks for a few dozen things, not one full PNG per image.
const RUN_DONE = ["Done", "Failed", "Cancelled"];
const EVENTS = ["queued", "started", "loading", "step", "image", "failed", "done", "cancelled", "grid", "deleted", "reset"];
const runsShown = new Map();  // run id -> {node, total, done, failed, seen: Set of finished job ids, bulk, rate}
const queue = () => $("#runs");

const SMALL_RUN = 8;  // a run of at most this many images shows them large (450 px variants), others 96 px

function thumbnail(job) {
  // A finished job's image, linking to the image's page: its 96 px variant (450 px in a small run) once a
  // worker made it (a moment after the image), else the job's own PNG (only for the few slots a page shows).
  const own = job.imageUrl || `/api/v1/generation/jobs/${job.id}/image.png`;
  const img = el("img", {alt: job.prompt || "", loading: "lazy", decoding: "async",
                         src: (job.large ? job.previewUrl : job.thumbUrl) || own});
  img.addEventListener("error", () => { if (img.getAttribute("src") !== own) img.src = own; });
  return el("a", {href: `/images/${job.imageId}`}, img);
}

function fillSlot(slot, job, bulk) {
  slot.dataset.state = job.state;
  const body = job.imageId ? thumbnail(job)
    : job.state === "failed" ? el("span", {class: "slot-error", title: job.error || ""}, `failed: ${job.error || "unknown"}`)
    : el("span", {}, job.state);
  slot.replaceChildren(...[body, bulk && job.prompt ? el("figcaption", {}, job.prompt) : null].filter(Boolean));
}

function jobSlot(job, bulk) {
  const slot = el("figure", {class: "slot", "data-job": job.id, title: job.prompt || ""});
  fillSlot(slot, job, bulk);
  return slot;
}

function moreButton(run) {
  const cursor = run.metadata?.nextCursor;
  if (!cursor) return null;
  const button = el("button", {type: "button", class: "wide", "data-role": "more"}, "More images");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const limit = queue().dataset.imagesShown;
      const page = await api("GET", `/api/v1/generation/runs/${run.id}?limit=${limit}&cursor=${encodeURIComponent(cursor)}`);
      const shown = runsShown.get(run.id);
      $(".images", shown.node).append(...page.jobs.map((job) => jobSlot(job, shown.bulk)));
      button.replaceWith(moreButton(page) || "");
    } catch (err) { button.disabled = false; button.textContent = `More images (${err.message})`; }
  });
  return button;
}

function renderRun(run) {
  const prompts = new Set(run.jobs.map((j) => j.prompt));
  const bulk = prompts.size > 1 || (run.request?.prompts?.length || 0) > 1;
  const node = el("article", {class: `run panel${run.total <= SMALL_RUN ? " small" : ""}`, id: `run-${run.id}`,
                              "data-status": run.status},
    el("header", {},
      el("div", {}, el("b", {}, `Run ${run.id}`), " ",
        el("span", {class: `status ${run.status.toLowerCase()}`, "data-role": "status"}, run.status), " ",
        el("span", {class: "muted", "data-role": "count"}, `${run.done}/${run.total}`),
        run.failed ? el("span", {class: "muted"}, ` · ${run.failed} failed`) : null),
      el("div", {class: "hbox"},
        run.done ? el("a", {class: "button", href: `/api/v1/generation/runs/${run.id}/zip`, "data-role": "zip"}, "Zip") : null,
        RUN_DONE.includes(run.status) ? null :
          el("button", {type: "button", class: "danger", "data-role": "cancel", onclick: () => cancelRun(run.id)}, "Cancel"),
        run.failed && RUN_DONE.includes(run.status) && run.status !== "Cancelled" ?
          el("button", {type: "button", "data-role": "retry", onclick: () => retryRun(run.id)}, "Retry failed") : null,
        el("button", {type: "button", class: "danger", "data-role": "delete", onclick: () => deleteRun(run.id)}, "Delete"))),
    el("p", {class: "muted run-prompt"}, bulk ? `${run.total} images from ${prompts.size}+ prompts` : run.jobs[0]?.prompt || ""),
    el("div", {class: "progress"}, el("div", {"data-role": "bar"})),
    el("p", {class: "muted run-step", "data-role": "step"}),
    el("div", {class: "grids", "data-role": "grids"}, ...(run.grids || []).map((url) =>
      el("a", {href: url}, el("img", {src: url, alt: `XYZ grid of run ${run.id}`, loading: "lazy"})))),
    el("div", {class: "images"}, ...run.jobs.map((job) => jobSlot({...job, large: run.total <= SMALL_RUN}, bulk))),
    moreButton(run));
  $('[data-role="bar"]', node).style.width = `${Math.round(run.progress * 100)}%`;  // CSSOM: allowed by the CSP
  return {node, bulk};
}

function showRun(run, where = "append") {  // a run as the API gives it, in place of its older view
  const {node, bulk} = renderRun(run), old = $(`#run-${run.id}`);
  if (old) old.replaceWith(node); else queue()[where](node);
  const seen = new Set(run.jobs.filter((j) => j.state === "done" || j.state === "failed").map((j) => j.id));
  runsShown.set(run.id, {node, total: run.total, done: run.done, failed: run.failed, seen, bulk, rate: []});
  $("#no-runs").hidden = true;
  return node;
}

async function reloadRun(id, where) {
  try { return showRun(await api("GET", `/api/v1/generation/runs/${id}?limit=${queue().dataset.imagesShown}`), where); }
  catch (err) { return null; /* gone: keep the view */ }
}

function duration(seconds) {
  seconds = Math.max(1, Math.round(seconds));
  return seconds < 90 ? `${seconds} s` : seconds < 5400 ? `${Math.round(seconds / 60)} min` : `${(seconds / 3600).toFixed(1)} h`;
}

function eta(run, e) {
  // From the recent step rate (steps per second over the last ~30 step events, across batches): the rest of
  // this batch, then the run's images still waiting, in batches of this batch's size.
  const now = performance.now() / 1000, last = run.rate[run.rate.length - 1];
  const counted = (last?.counted || 0) + (last && e.step > last.step ? e.step - last.step : e.step);
  run.rate.push({t: now, step: e.step, counted});
  if (run.rate.length > 30) run.rate.shift();
  const first = run.rate[0];
  if (run.rate.length < 3 || now - first.t < 0.5) return "";
  const perSecond = (counted - first.counted) / (now - first.t);
  const mine = e.jobs.filter((id) => $(`[data-job="${id}"]`, run.node)).length || 1;
  const waiting = Math.max(0, run.total - run.done - run.failed - mine);
  const steps = (e.steps - e.step) + Math.ceil(waiting / e.jobs.length) * e.steps;
  return perSecond > 0 ? ` · about ${duration(steps / perSecond)} left` : "";
}

function onRunEvent(kind, e) {
  const run = runsShown.get(e.run);
  if (!run) { if (kind === "queued") reloadRun(e.run, "prepend"); return; }  // queued elsewhere (API, another tab)
  if (kind === "queued") { if (e.jobs) reloadRun(e.run); return; }  // failed jobs retried: the run reopens
  if (kind === "grid") { reloadRun(e.run); return; }  // the XYZ grid image, assembled once the run is done
  if (kind === "deleted") { forgetRun(e.run); return; }
  const node = run.node;
  if (RUN_DONE.includes(node.dataset.status)) return;  // ended: later events of it change nothing shown
  const set = (role, text) => { $(`[data-role="${role}"]`, node).textContent = text; };
  const bar = (extra = 0) => {
    $('[data-role="bar"]', node).style.width = `${Math.round(100 * Math.min(1, (run.done + run.failed + extra) / run.total))}%`;
  };
  const slot = (id) => $(`[data-job="${id}"]`, node);
  const finished = (id, field) => { if (!run.seen.has(id)) { run.seen.add(id); run[field] = Math.min(run.total, run[field] + 1); } };
  const finish = (status) => {
    set("status", status); node.dataset.status = status;
    $('[data-role="status"]', node).className = `status ${status.toLowerCase()}`;
    if (status !== "Cancelled") $('[data-role="bar"]', node).style.width = "100%";
    $('[data-role="cancel"]', node)?.remove();
    if (run.done && !$('[data-role="zip"]', node)) {
      $("header .hbox", node).prepend(el("a", {class: "button", href: `/api/v1/generation/runs/${e.run}/zip`, "data-role": "zip"}, "Zip"));
    }
    for (const s of $$(".slot", node)) if (["queued", "running"].includes(s.dataset.state)) fillSlot(s, {state: status.toLowerCase()}, false);
  };
  if (kind === "started") { set("status", "Running"); node.dataset.status = "Running"; set("step", "starting…"); }
  else if (kind === "loading") set("step", "loading model…");
  else if (kind === "step") {
    set("step", `step ${e.step}/${e.steps} · batch of ${e.jobs.length}${eta(run, e)}`);
    const mine = e.jobs.filter((id) => slot(id)).length;
    bar((e.step / e.steps) * mine);
    for (const id of e.jobs) { const s = slot(id); if (s && !$("img", s)) { s.dataset.state = "running"; $("span", s).textContent = `${e.step}/${e.steps}`; } }
  } else if (kind === "image") {
    finished(e.job, "done"); bar(); set("count", `${run.done}/${run.total}`);
    const s = slot(e.job);
    if (s) fillSlot(s, {id: e.job, imageId: e.image, state: "done", prompt: s.title}, run.bulk);
  } else if (kind === "failed" && e.jobs) {  // a batch's jobs failed; the run goes on
    for (const id of e.jobs) {
      finished(id, "failed");
      const s = slot(id);
      if (s) fillSlot(s, {id, state: "failed", error: e.error, prompt: s.title}, run.bulk);
    }
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

function initOlderRuns(box) {
  const button = $("#older-runs");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const page = await api("GET", `${box.dataset.runsUrl}?limit=${box.dataset.runsShown}&jobs=${box.dataset.imagesShown}` +
                                    `&cursor=${encodeURIComponent(box.dataset.older)}`);
      for (const run of page.items) if (!runsShown.has(run.id)) showRun(run);
      box.dataset.older = page.metadata.nextCursor || "";
      button.hidden = !box.dataset.older;
    } finally { button.disabled = false; }
  });
}

function forgetRun(id) {
  runsShown.get(id)?.node.remove();
  runsShown.delete(id);
  $("#no-runs").hidden = runsShown.size > 0;
}

async function deleteRun(id) {
  if (!confirm(`Delete run ${id} and its images that are not posted?`)) return;
  await api("DELETE", `/api/v1/generation/runs/${id}`);
  forgetRun(id);  // as its "deleted" event will
}

async function retryRun(id) {  // a worker queues the failed jobs again; the run's "queued" event redraws it
  const button = $(`#run-${id} [data-role="retry"]`);
  button.disabled = true;
  try { await api("POST", `/api/v1/generation/runs/${id}/retry`); button.textContent = "Retrying…"; }
  catch (err) { button.disabled = false; button.textContent = `Retry failed (${err.message})`; }
}

async function clearFinished() {
  if (!confirm("Delete all your finished runs and their images that are not posted?")) return;
  await api("POST", "/api/v1/generation/runs/clear");
  for (const [id, run] of [...runsShown]) if (RUN_DONE.includes(run.node.dataset.status)) forgetRun(id);
}

async function cancelRun(id) {
  const run = await api("POST", `/api/v1/generation/runs/${id}/cancel`);
  if (RUN_DONE.includes(run.status)) onRunEvent(run.status.toLowerCase(), {run: id});  // as its end event will
}

// ---- the generation form --------------------------------------------------------------------------
// It covers the request schema (gpu/request.py): txt2img, img2img and inpainting (a mask painted on a
// canvas), hires fix, ControlNet, VAE, style, LoRAs, wildcards, combinations and an X/Y/Z grid. It shows the
// chosen family's real defaults, searches the whole catalog as one types, offers only LoRAs that fit the
// checkpoint, and is remembered across reloads (localStorage).
const FORM_KEY = "atelier.generate.form";
const DEFAULT_FIELDS = {width: "#g-width", height: "#g-height", steps: "#g-steps", cfg_scale: "#g-cfg",
                        sampler: "#g-sampler", clip_skip: "#g-clip"};

function readDataUrl(blob) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.addEventListener("load", () => resolve(reader.result));
    reader.addEventListener("error", () => reject(reader.error));
    reader.readAsDataURL(blob);
  });
}

function versionOption(v) {  // {id, label, base} as the server's pickers give them
  return el("option", {value: v.id, "data-base": v.base}, `${v.label} (${v.base})`);
}

function maskPainter() {
  // The init image on one canvas, the mask painted (white, by mouse or touch) on a second one above it.
  const box = $("#g-canvas-box"), image = $("#g-init-canvas"), mask = $("#g-mask-canvas");
  const state = {dataUrl: null, painted: false};
  let drawing = false, last = null;
  const at = (ev) => {
    const r = mask.getBoundingClientRect();
    return [(ev.clientX - r.left) * mask.width / r.width, (ev.clientY - r.top) * mask.height / r.height];
  };
  const stroke = (ev) => {
    const ctx = mask.getContext("2d"), [x, y] = at(ev);
    ctx.strokeStyle = ctx.fillStyle = "#fff";
    ctx.lineCap = ctx.lineJoin = "round";
    ctx.lineWidth = Number($("#g-brush").value) * mask.width / mask.getBoundingClientRect().width;
    ctx.beginPath();
    ctx.moveTo(...(last || [x, y]));
    ctx.lineTo(x, y);
    ctx.stroke();
    last = [x, y];
    state.painted = true;
  };
  mask.addEventListener("pointerdown", (ev) => { drawing = true; last = null; mask.setPointerCapture(ev.pointerId); stroke(ev); });
  mask.addEventListener("pointermove", (ev) => { if (drawing) stroke(ev); });
  for (const kind of ["pointerup", "pointercancel"]) mask.addEventListener(kind, () => { drawing = false; last = null; });
  const clear = () => { mask.getContext("2d").clearRect(0, 0, mask.width, mask.height); state.painted = false; };
  $("#g-mask-clear").addEventListener("click", clear);
  state.load = (dataUrl) => new Promise((resolve, reject) => {
    const img = new Image();
    img.addEventListener("load", () => {
      image.width = mask.width = img.naturalWidth; image.height = mask.height = img.naturalHeight;
      image.getContext("2d").drawImage(img, 0, 0);
      clear();
      state.dataUrl = dataUrl; box.hidden = false;
      resolve(img);
    });
    img.addEventListener("error", () => reject(new Error("not an image the browser can read")));
    img.src = dataUrl;
  });
  state.remove = () => { state.dataUrl = null; clear(); box.hidden = true; $("#g-init-file").value = ""; };
  state.maskUrl = () => {  // white = repaint, black = keep, the init image's size
    if (!state.painted) return null;
    const out = el("canvas");
    out.width = mask.width; out.height = mask.height;
    const ctx = out.getContext("2d");
    ctx.fillStyle = "#000"; ctx.fillRect(0, 0, out.width, out.height);
    ctx.drawImage(mask, 0, 0);
    return out.toDataURL("image/png");
  };
  $("#g-init-remove").addEventListener("click", state.remove);
  return state;
}

function initGeneration() {
  const form = $("#generate-form");
  if (!form) return;
  const runs = $("#runs"), config = JSON.parse($("#gen-config").textContent), loras = [];
  const painter = maskPainter();
  let family = null, controlImage = null;
  const modelBase = () => $("#g-model").selectedOptions[0]?.dataset.base;
  const group = (base) => config.bases[base]?.group || "other";
  const fits = (base) => { const a = group(base), b = group(modelBase()); return a === b || a === "other" || b === "other"; };
  const showError = (text) => { const e = $("#g-error"); e.textContent = text; e.hidden = !text; };

  // -- the family's defaults and sizes, and the LoRAs that fit
  const applyFamily = (force) => {
    const base = config.bases[modelBase()] || {};
    $("#g-family").textContent = base.defaults ? `${modelBase()}: ${base.family} defaults ${base.defaults.width}×` +
      `${base.defaults.height}, ${base.defaults.steps} steps, CFG ${base.defaults.cfg_scale}, ${base.defaults.sampler}` : "";
    if (base.family && (force || base.family !== family)) {
      for (const [key, sel] of Object.entries(DEFAULT_FIELDS)) $(sel).value = base.defaults[key] ?? 1;
      $("#g-size").replaceChildren(el("option", {value: ""}, "Custom"),
        ...base.sizes.map(([name, w, h]) => el("option", {value: `${w}x${h}`}, `${name} · ${w} × ${h}`)));
      for (const sel of ["#g-width", "#g-height"]) $(sel).step = base.limits.multiple;
      $("#g-size").value = `${base.defaults.width}x${base.defaults.height}`;
    }
    family = base.family || family;
    const current = $("#g-lora").value;
    $("#g-lora").replaceChildren(el("option", {value: ""}, "Add a LoRA…"),
      ...config.loras.filter((l) => fits(l.base)).map(versionOption));
    $("#g-lora").value = current;
    for (const chip of $$(".chip", $("#g-loras"))) chip.classList.toggle("misfit", !fits(chip.dataset.base));
  };
  $("#g-size").addEventListener("change", (ev) => {
    if (!ev.target.value) return;
    const [w, h] = ev.target.value.split("x");
    $("#g-width").value = w; $("#g-height").value = h;
  });
  const sizeShown = () => {  // the preset the width and height make, or "Custom"
    const value = `${$("#g-width").value}x${$("#g-height").value}`;
    $("#g-size").value = [...$("#g-size").options].some((o) => o.value === value) ? value : "";
  };
  for (const sel of ["#g-width", "#g-height"]) $(sel).addEventListener("input", sizeShown);
  $("#g-model").addEventListener("change", () => applyFamily(false));

  // -- search as one types, over the whole catalog
  for (const input of $$("input[data-types]", form)) {
    let timer = null;
    input.addEventListener("input", () => {
      clearTimeout(timer);
      const text = input.value.trim(), target = $(input.dataset.target);
      if (text.length < 2) return;
      timer = setTimeout(async () => {
        const params = new URLSearchParams({query: text, limit: "20"});
        for (const t of input.dataset.types.split(",")) params.append("types", t);
        if (input.id === "g-lora-search" && group(modelBase()) !== "other") {  // only LoRAs that fit, so that 20 are 20 usable
          for (const base of Object.keys(config.bases)) if (fits(base)) params.append("baseModels", base);
        }
        const data = await api("GET", `${input.dataset.searchUrl}?${params}`);
        const found = data.items.flatMap((m) => m.modelVersions.map((v) => ({id: v.id, base: v.baseModel,
          label: `${m.name} — ${v.name}`})));
        const isLora = target.id === "g-lora";
        const shown = found.filter((v) => !isLora || fits(v.base));
        if (isLora) { config.loras = [...shown, ...config.loras.filter((l) => !shown.some((v) => v.id === l.id))]; applyFamily(false); }
        else {
          const keep = target.selectedOptions[0];
          target.replaceChildren(...shown.map(versionOption), ...(keep && !shown.some((v) => String(v.id) === keep.value) ? [keep] : []));
        }
        if (shown.length) target.value = shown[0].id;
        if (!isLora) target.dispatchEvent(new Event("change", {bubbles: true}));
        input.classList.toggle("no-results", !shown.length);
      }, 200);
    });
  }

  // -- LoRAs
  const addLora = (item) => {
    if (!item.id || loras.some((l) => l.id === item.id)) return;
    loras.push(item);
    const chip = el("span", {class: "chip", "data-lora": item.id, "data-base": item.base || ""}, `${item.label} · ${item.weight} `,
      el("button", {type: "button", class: "link", "aria-label": "remove", onclick: () => {
        loras.splice(loras.indexOf(item), 1); chip.remove(); save(); }}, "✕"));
    chip.classList.toggle("misfit", !fits(item.base));
    $("#g-loras").append(chip);
  };
  $("#g-lora-add").addEventListener("click", () => {
    const option = $("#g-lora").selectedOptions[0];
    if (!option?.value) return;
    addLora({id: Number(option.value), weight: Number($("#g-lora-weight").value), base: option.dataset.base,
             label: option.textContent.replace(/ \([^)]*\)$/, "")});
    save();
  });

  // -- init image, mask and control image
  const useInit = async (dataUrl) => {
    const img = await painter.load(dataUrl);
    const limits = config.bases[modelBase()]?.limits || {multiple: 8, min_side: 64, max_side: 2048};
    const side = (n) => Math.max(limits.min_side, Math.min(limits.max_side, Math.round(n / limits.multiple) * limits.multiple));
    $("#g-width").value = side(img.naturalWidth); $("#g-height").value = side(img.naturalHeight);
    $("#g-size").value = "";
    $("#g-img2img-box").open = true;
  };
  $("#g-init-file").addEventListener("change", async (ev) => {
    if (ev.target.files[0]) {
      try { await useInit(await readDataUrl(ev.target.files[0])); showError(""); } catch (err) { showError(err.message); }
    }
  });
  for (const pick of $$("#g-init-pick .pick")) {
    pick.addEventListener("click", async () => {
      try { await useInit(await readDataUrl(await (await fetch(pick.dataset.url, {credentials: "same-origin"})).blob())); }
      catch (err) { showError(`Could not load that image: ${err.message}`); }
    });
  }
  $("#g-control-file").addEventListener("change", async (ev) => {
    controlImage = ev.target.files[0] ? await readDataUrl(ev.target.files[0]) : null;
  });

  // -- remembered across reloads
  const fields = () => $$("input[name], select[name], textarea[name]", form).filter((f) => f.type !== "file");
  const save = () => {
    const values = {};
    for (const f of fields()) values[f.name] = f.type === "checkbox" ? f.checked : f.multiple ? [...f.selectedOptions].map((o) => o.value) : f.value;
    const model = $("#g-model").selectedOptions[0];
    values.model = model ? {id: model.value, base: model.dataset.base, label: model.textContent.replace(/ \([^)]*\)$/, "")} : null;
    try { localStorage.setItem(FORM_KEY, JSON.stringify({values, loras, bulk: $("#g-bulk").open})); } catch (err) { /* private mode */ }
  };
  const chooseModel = (m) => {
    if (!m?.id) return;
    const select = $("#g-model");
    if (![...select.options].some((o) => o.value === String(m.id))) select.prepend(versionOption(m));
    select.value = String(m.id);
  };
  const restore = () => {
    let saved = null;
    try { saved = JSON.parse(localStorage.getItem(FORM_KEY) || "null"); } catch (err) { return; }
    if (!saved) return;
    chooseModel(saved.values.model);
    applyFamily(true);
    for (const f of fields()) {
      const v = saved.values[f.name];
      if (v === undefined || f.name === "model") continue;
      if (f.type === "checkbox") f.checked = Boolean(v);
      else if (f.multiple) for (const o of f.options) o.selected = v.includes(o.value);
      else f.value = v;
    }
    sizeShown();
    $("#g-bulk").open = Boolean(saved.bulk);
    for (const l of saved.loras || []) addLora(l);
  };
  const fill = (p) => {  // a link into the form: a model, a LoRA with a checkpoint it fits, or an image's data
    chooseModel(p.model);
    applyFamily(true);
    $("#g-prompts").value = ""; $("#g-bulk").open = false;
    const set = {prompt: "#g-prompt", negative_prompt: "#g-negative", seed: "#g-seed", steps: "#g-steps",
                 cfg_scale: "#g-cfg", sampler: "#g-sampler", clip_skip: "#g-clip", width: "#g-width", height: "#g-height"};
    for (const [key, sel] of Object.entries(set)) if (p[key] !== undefined && p[key] !== null) $(sel).value = p[key];
    if (p.hires) {
      $("#g-hires").checked = true; $("#g-hires-box").open = true;
      $("#g-hires-scale").value = p.hires.scale; $("#g-hires-steps").value = p.hires.steps; $("#g-hires-denoise").value = p.hires.denoising_strength;
    }
    sizeShown();
    if (p.loras) { loras.splice(0); $("#g-loras").replaceChildren(); p.loras.forEach(addLora); }
    $("#g-source").textContent = p.model ? `From ${p.source}` : `From ${p.source}: no checkpoint of the catalog matches it, choose one`;
    $("#g-source").hidden = false;
  };
  restore();
  applyFamily(!family);
  if (config.prefill) { fill(config.prefill); save(); history.replaceState(null, "", location.pathname); }
  form.addEventListener("input", save);
  form.addEventListener("change", save);
  $("#g-bulk").addEventListener("toggle", save);

  for (const run of JSON.parse($("#initial-runs").textContent)) showRun(run);
  followRuns(runs);
  initOlderRuns(runs);
  $("#clear-finished").addEventListener("click", clearFinished);

  // -- the request
  const request = () => {
    const f = new FormData(form), num = (key) => Number(f.get(key));
    const body = {model: num("model"), negative_prompt: f.get("negative_prompt"), seed: Number(f.get("seed") || -1),
                  quantity: Number(f.get("quantity") || 1), clip_skip: Number(f.get("clip_skip") || 1),
                  resources: loras.map((l) => ({id: l.id, weight: l.weight}))};
    const lines = (f.get("prompts") || "").split("\n").map((s) => s.trim()).filter(Boolean);
    if (lines.length) body.prompts = lines;
    else if ((f.get("prompt") || "").trim()) body.prompt = f.get("prompt");
    else throw Object.assign(new Error("Write a prompt (or prompts, one per line, under Bulk)."), {field: "#g-prompt"});
    for (const key of ["steps", "cfg_scale", "width", "height"]) if (f.get(key)) body[key] = num(key);
    if (f.get("sampler")) body.sampler = f.get("sampler");
    if (f.get("style")) body.style = f.get("style");
    if (f.get("vae")) body.vae = num("vae");
    if (painter.dataUrl) {
      body.init_image = painter.dataUrl;
      body.denoising_strength = num("denoising_strength");
      const mask = painter.maskUrl();
      if (mask) body.mask = mask;
    }
    if (f.get("hires")) body.hires = {scale: num("hires_scale"), steps: num("hires_steps"), denoising_strength: num("hires_denoising")};
    if (f.get("controlnet")) {
      if (!controlImage) throw Object.assign(new Error("Choose a control image for the ControlNet."), {field: "#g-control-file"});
      body.controlnet = {model: num("controlnet"), image: controlImage, scale: num("control_scale")};
    }
    const wildcards = f.getAll("wildcards").filter(Boolean).map(Number);
    if (wildcards.length) body.wildcards = wildcards;
    if (f.get("combinatorial")) body.combinatorial = true;
    const axes = {};
    for (const axis of ["x", "y", "z"]) {
      const field = f.get(`grid_${axis}_field`), values = (f.get(`grid_${axis}_values`) || "").trim();
      if (field && values) axes[axis] = {field, values};
    }
    if (Object.keys(axes).length) {
      if (!axes.x) throw Object.assign(new Error("A grid needs its X axis first."), {field: "#g-grid-x-field"});
      body.grid = axes;
    }
    return body;
  };
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    showError("");
    let body;
    try { body = request(); } catch (err) {
      showError(err.message);
      if (err.field) { const box = $(err.field).closest("details"); if (box) box.open = true; $(err.field).focus(); }
      return;
    }
    $("#g-submit").disabled = true;
    try {
      const run = await api("POST", "/api/v1/generation", body);
      const node = runsShown.get(run.id)?.node || showRun(run, "prepend");  // its queued event may have shown it already
      node.scrollIntoView({block: "nearest"});
    } catch (err) {  // a 429 over the user's limits says when to try again
      showError(err.data?.retryAfter ? `${err.message} (try again in ${duration(err.data.retryAfter)})` : err.message);
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
