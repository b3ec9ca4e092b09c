// The operator's page: asks for the admin token first (nothing else is shown without it), then
// Now (live over /admin/live), Queue, Recent, Users, Trends and Actions from /admin/*.

import { apply, language, setLanguage, t } from "./admin_i18n.js";
import { barChart } from "./charts.js";

const TOKEN_KEY = "fanslymotion.admin-token";
const $ = (id) => document.getElementById(id);
const state = { window: "24h", live: null, refreshing: null, actions: [] };

class AdminError extends Error {
  constructor(status, message, code = "") {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function token() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

async function call(path, { method = "GET", json } = {}) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${token()}` };
  const init = { method, headers };
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new AdminError(0, t("error.network"));
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new AdminError(response.status, body.error || response.statusText, body.code || "");
  return body;
}

// -- small helpers ----------------------------------------------------------------------------

function el(name, attrs = {}, ...children) {
  const node = document.createElement(name);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

function when(iso) {
  if (!iso) return t("unknown");
  return new Date(iso).toLocaleString(language(), { dateStyle: "short", timeStyle: "short" });
}

function span(seconds) {
  if (seconds === null || seconds === undefined) return t("unknown");
  const s = Math.round(seconds);
  if (s < 90) return t("seconds", { n: s });
  const m = Math.round(s / 60);
  return m < 90 ? `${m} min` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

function params(job) {
  return `${job.duration} s · ${job.resolution} · ${job.motion_preset} · ${job.aspect} · ${job.fps} fps`;
}

function statusCell(status) {
  return el("td", { class: `status ${status}` }, t(`status.${status}`));
}

function fact(label, value, tone = "") {
  return el("div", { class: tone }, el("dt", {}, label), el("dd", {}, value));
}

function report(exc, where) {
  if (exc instanceof AdminError && exc.status === 401) return askToken(true);
  where.textContent = exc.message;
}

// -- the token --------------------------------------------------------------------------------

function askToken(wrong, off = false) {
  state.live?.abort();
  $("room").hidden = true;
  $("tabs").hidden = true;
  $("token-change").hidden = true;
  $("token-panel").hidden = false;
  $("token-error").textContent = off ? t("token.off") : wrong ? t("token.wrong") : "";
  if (wrong) localStorage.removeItem(TOKEN_KEY);
  $("token-input").focus();
}

async function open() {
  let overview;
  try {
    overview = await call("/admin/overview");
  } catch (exc) {
    if (exc instanceof AdminError && exc.status === 403) return askToken(false, true);
    if (exc instanceof AdminError && exc.status === 401) return askToken(Boolean(token()));
    $("token-error").textContent = exc.message;
    return askToken(false);
  }
  $("token-panel").hidden = true;
  $("room").hidden = false;
  $("tabs").hidden = false;
  $("token-change").hidden = false;
  drawNow(overview);
  await refreshAll();
  follow();
}

// -- Now --------------------------------------------------------------------------------------

function drawNow(o) {
  state.overview = o;
  const renderer = o.renderer || {};
  const facts = $("now-facts");
  facts.replaceChildren(
    fact(t("now.renderer"), `${renderer.name ?? "?"} (${renderer.status ?? "?"})`),
    fact(t("now.device"), renderer.device || t("unknown")),
    fact(t("now.processing"), t(o.paused ? "processing.paused" : "processing.on"), o.paused ? "bad" : "good"),
    fact(t("now.disk"), t("now.diskOf", { free: Math.round(o.free_disk_mb), min: o.min_free_mb }), o.disk_low ? "bad" : ""),
    fact(t("now.queue"), String(o.queue_length)),
    fact(t("now.mode"), t(o.mode === "cluster" ? "now.cluster" : "now.single")),
    fact(t("now.version"), o.versions.label),
    fact(t("now.schema"), o.versions.cluster_schema ? `${o.versions.schema_version} / ${o.versions.cluster_schema}` : String(o.versions.schema_version)),
    fact(t("now.limit"), o.daily_seconds_per_user ? t("seconds", { n: o.daily_seconds_per_user }) : t("now.noLimit")),
  );
  $("version").textContent = o.versions.label;
  const running = $("running");
  running.replaceChildren(
    ...(o.running.length ? o.running.map(drawRun) : [el("p", { class: "hint" }, t("now.idle"))]),
  );
  drawWorkers(o.workers || []);
  $("processing-state").textContent = t("actions.state", { state: t(o.paused ? "processing.paused" : "processing.on") });
  $("live-state").textContent = t("now.live", { time: new Date().toLocaleTimeString(language()) });
}

function drawRun(job) {
  const phase = job.phase ? `${job.phase}${job.phase_steps ? ` ${job.phase_step}/${job.phase_steps}` : ""}` : "";
  const text = el(
    "div",
    {},
    el("strong", {}, job.owner.id),
    ` · ${params(job)}`,
    el("br"),
    el("progress", { max: 100, value: job.progress, "aria-label": job.job_id }),
    el("br"),
    `${job.progress.toFixed(0)} % · ${phase} · ${t("col.eta")}: ${span(job.eta_seconds)} · ${job.job_id}`,
  );
  const row = el("div", { class: "run", "data-job": job.job_id }, text);
  if (job.preview_url) {
    row.append(el("video", { src: job.preview_url, muted: "", autoplay: "", loop: "", playsinline: "", title: t("now.preview") }));
  }
  return row;
}

function drawWorkers(workers) {
  $("workers-box").hidden = workers.length === 0;
  $("workers").tBodies[0].replaceChildren(
    ...workers.map((w) =>
      el(
        "tr",
        { "data-worker": w.name },
        el("td", {}, `${w.name} (${w.host})`),
        el("td", {}, w.state),
        el("td", {}, w.job_id || t("unknown")),
        el("td", { class: "num" }, w.heartbeat_age === undefined ? when(w.last_heartbeat) : span(w.heartbeat_age)),
        el("td", { class: "num" }, String(w.jobs_done)),
        el("td", { class: w.version_differs ? "err" : "" }, w.version ? `${w.version}${w.version_differs ? ` (${t("now.differs")})` : ""}` : t("unknown")),
      ),
    ),
  );
}

async function follow() {
  state.live?.abort();
  const live = new AbortController();
  state.live = live;
  while (!live.signal.aborted) {
    try {
      const response = await fetch("/admin/live", {
        headers: { Accept: "text/event-stream", Authorization: `Bearer ${token()}` },
        signal: live.signal,
        cache: "no-store",
      });
      if (response.status === 401) return askToken(true);
      if (!response.ok) throw new Error(String(response.status));
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim());
          if (data.length) {
            drawNow(JSON.parse(data.join("\n")));
            scheduleRefresh();
          }
        }
      }
    } catch (exc) {
      if (live.signal.aborted) return;
    }
    $("live-state").textContent = t("now.offline");
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function scheduleRefresh() {
  if (state.refreshing) return;
  state.refreshing = setTimeout(async () => {
    state.refreshing = null;
    await refreshAll();
  }, 500);
}

async function refreshAll() {
  await Promise.all([drawQueue(), drawRecent(), drawUsers(), drawTrends()]);
}

// -- Queue and Recent -------------------------------------------------------------------------

async function act(path, where) {
  try {
    await call(path, { method: "POST" });
    await refreshAll();
  } catch (exc) {
    report(exc, where);
  }
}

async function drawQueue() {
  let body;
  try {
    body = await call("/admin/queue");
  } catch (exc) {
    return report(exc, $("queue-error"));
  }
  $("queue-error").textContent = "";
  $("queue-empty").hidden = body.jobs.length > 0;
  $("queue-table").tBodies[0].replaceChildren(
    ...body.jobs.map((job) =>
      el(
        "tr",
        { "data-job": job.job_id },
        el("td", { class: "num" }, String(job.queue_position)),
        el("td", {}, job.owner.id),
        el("td", { class: "job-params" }, params(job)),
        el("td", { class: "num" }, span(job.eta_seconds)),
        el("td", { class: "num" }, span(job.age_seconds)),
        el("td", {}, el("button", { type: "button", class: "danger", onclick: () => act(`/admin/jobs/${job.job_id}/cancel`, $("queue-error")) }, t("btn.cancel"))),
      ),
    ),
  );
}

async function drawRecent() {
  const query = new URLSearchParams({ limit: "30" });
  if ($("filter-status").value) query.set("status", $("filter-status").value);
  if ($("filter-user").value.trim()) query.set("user", $("filter-user").value.trim());
  let body;
  try {
    body = await call(`/admin/jobs?${query}`);
  } catch (exc) {
    return report(exc, $("recent-error"));
  }
  $("recent-error").textContent = "";
  $("recent-table").tBodies[0].replaceChildren(...body.jobs.map(recentRow));
}

function recentRow(job) {
  const buttons = el("div", { class: "row" });
  const actions = el("td", {}, buttons);
  if (job.status === "failed") {
    buttons.append(el("button", { type: "button", class: "retry", onclick: () => act(`/admin/jobs/${job.job_id}/retry`, $("recent-error")) }, t("btn.retry")));
  }
  if (job.video_url) buttons.append(el("a", { class: "button", href: job.video_url, download: "" }, t("btn.download")));
  if (job.status === "queued" || job.status === "processing") {
    buttons.append(el("button", { type: "button", class: "danger", onclick: () => act(`/admin/jobs/${job.job_id}/cancel`, $("recent-error")) }, t("btn.cancel")));
  }
  return el(
    "tr",
    { "data-job": job.job_id, "data-status": job.status },
    el("td", { class: "when" }, when(job.created_at)),
    statusCell(job.status),
    el("td", {}, job.owner.id),
    el("td", { class: "job-params" }, params(job)),
    el("td", {}, job.renderer || t("unknown")),
    el("td", { class: "num" }, job.render_seconds === null ? t("unknown") : `${job.render_seconds.toFixed(1)} s`),
    el("td", { class: "num" }, String(job.attempts)),
    el("td", { class: "err" }, job.error || ""),
    actions,
  );
}

// -- Users ------------------------------------------------------------------------------------

// A live refresh (every job change) must not wipe a limit the operator is still typing: the
// table is redrawn then only when no input differs from what it was drawn with. A save redraws.
function editingUsers() {
  return [...$("users-table").querySelectorAll("input")].some((input) => input.value !== input.defaultValue);
}

let usersAsked = 0; // each draw's ticket: an answer older than the newest draw is dropped

async function drawUsers(force = false) {
  const ticket = ++usersAsked;
  let body;
  try {
    body = await call("/admin/users");
  } catch (exc) {
    return report(exc, $("users-error"));
  }
  // A refresh asked before a save may answer after it: its figures are older, drop them.
  if (ticket !== usersAsked || (!force && editingUsers())) return;
  $("users-error").textContent = "";
  const limit = body.daily_seconds_per_user;
  $("users-default").textContent = t("users.default", { limit: limit ? t("seconds", { n: limit }) : t("now.noLimit") });
  $("users-table").tBodies[0].replaceChildren(...body.users.map(userRow));
}

// A Telegram user by the name the bot last saw (and @username), the owner's id beneath it;
// the id alone where no name is known.
function ownerName(user) {
  const handle = user.username ? `@${user.username}` : "";
  const name = [user.name, handle].filter(Boolean).join(" ");
  if (!name) return [user.owner.id];
  return [el("span", { class: "owner-name" }, name), el("br"), el("span", { class: "muted" }, user.owner.id)];
}

function userRow(user) {
  const id = user.owner.id;
  const input = el("input", { type: "number", min: "0", step: "1", value: user.daily_seconds ?? "", placeholder: user.daily_limit ?? "", "aria-label": `${t("col.limit")} ${id}` });
  const put = async (change) => {
    try {
      await call(`/admin/users/${id}`, { method: "PUT", json: change });
      // Saved: no longer an edit, so a live refresh that supersedes the draw below redraws too.
      input.defaultValue = input.value;
      await drawUsers(true);
    } catch (exc) {
      report(exc, $("users-error"));
    }
  };
  const save = () => put({ daily_seconds: input.value === "" ? null : Number(input.value) });
  const block = el("button", { type: "button", class: user.blocked ? "" : "danger", onclick: () => put({ blocked: !user.blocked }) }, t(user.blocked ? "btn.unblock" : "btn.block"));
  return el(
    "tr",
    { "data-owner": id, "data-blocked": String(user.blocked) },
    el("td", {}, ...ownerName(user), user.blocked ? el("span", { class: "status blocked" }, ` · ${t("user.blocked")}`) : ""),
    el("td", { class: "num" }, t("usage", { jobs: user.jobs_today, seconds: user.seconds_today })),
    el("td", { class: "num" }, t("usage", { jobs: user.jobs_30d, seconds: user.seconds_30d })),
    el("td", { class: "num" }, String(user.failed_30d)),
    el("td", { class: "when" }, when(user.last_seen)),
    el("td", {}, el("div", { class: "row" }, input, el("button", { type: "button", onclick: save }, t("btn.save")))),
    el("td", {}, block),
  );
}

// -- Trends -----------------------------------------------------------------------------------

async function drawTrends() {
  let body;
  try {
    body = await call(`/admin/stats?window=${state.window}`);
  } catch (exc) {
    return report(exc, $("actions-error"));
  }
  for (const button of document.querySelectorAll(".window")) {
    button.classList.toggle("active", button.dataset.window === state.window);
  }
  const rate = body.failure_rate === null ? t("unknown") : `${(body.failure_rate * 100).toFixed(1)} %`;
  $("trend-facts").replaceChildren(
    fact(t("trends.jobs"), String(body.jobs)),
    fact(t("trends.done"), String(body.completed)),
    fact(t("trends.failed"), String(body.failed), body.failed ? "bad" : ""),
    fact(t("trends.rate"), rate),
    fact(t("trends.p50"), span(body.queue_wait_seconds.p50)),
    fact(t("trends.p95"), span(body.queue_wait_seconds.p95)),
  );
  const hourly = body.bucket === "hour";
  const caption = t(hourly ? "trends.perHour" : "trends.perDay");
  $("renders-caption").textContent = caption;
  const points = body.renders.map((r) => ({
    label: hourly ? r.at.slice(11, 13) : r.at.slice(8, 10),
    value: r.count,
    title: `${r.at}: ${r.count}`,
  }));
  $("renders-chart").replaceChildren(barChart(points, { title: caption, labelEvery: hourly ? 3 : 5 }));
  const medians = Object.entries(body.median_render_seconds).map(([res, m]) => ({
    label: res,
    value: m.seconds,
    title: `${res}: ${m.seconds} s (${m.renders})`,
  }));
  $("median-chart").replaceChildren(
    medians.length
      ? barChart(medians, { title: t("trends.median"), height: 140 })
      : el("p", { class: "hint" }, t("trends.noData")),
  );
}

// -- Actions ----------------------------------------------------------------------------------

async function setPaused(paused) {
  try {
    await call(paused ? "/admin/pause" : "/admin/resume", { method: "POST" });
    const time = new Date().toLocaleTimeString(language());
    $("action-log").prepend(el("li", {}, t(paused ? "actions.paused" : "actions.resumed", { time })));
    $("actions-error").textContent = "";
    drawNow(await call("/admin/overview"));
  } catch (exc) {
    report(exc, $("actions-error"));
  }
}

// -- start ------------------------------------------------------------------------------------

function start() {
  apply();
  $("lang-switch").textContent = language() === "ru" ? "English" : "Русский";
  $("lang-switch").addEventListener("click", () => {
    setLanguage(language() === "ru" ? "en" : "ru");
    location.reload();
  });
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    localStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
    open();
  });
  $("token-change").addEventListener("click", () => askToken(false));
  $("recent-filter").addEventListener("submit", (event) => {
    event.preventDefault();
    drawRecent();
  });
  for (const button of document.querySelectorAll(".window")) {
    button.addEventListener("click", () => {
      state.window = button.dataset.window;
      drawTrends();
    });
  }
  $("pause").addEventListener("click", () => setPaused(true));
  $("resume").addEventListener("click", () => setPaused(false));
  if (token()) open();
  else askToken(false);
}

start();
