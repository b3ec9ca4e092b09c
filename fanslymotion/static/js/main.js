// The page: choose a photo, preview the camera, submit, watch the job live, play the result,
// browse the gallery. Every job action goes through the same HTTP API as any other client.

import {
  ApiError,
  inTelegram,
  mediaUrl,
  request,
  setToken,
  streamEvents,
  token,
  userId,
} from "./api.js";
import { Gallery, ratioName } from "./gallery.js";
import { apply, language, phase, setLanguage, t } from "./i18n.js";
import { keepPhoto, photoOf } from "./photos.js";
import { PhotoPicker } from "./picker.js";
import { CameraStage } from "./stage.js";
import { upscaleWarning } from "./upscale.js";
import { Storyboard } from "./story.js";

const OPTIONS_KEY = "fanslymotion.options";
const JOB_KEY = "fanslymotion.job";
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const FPS = [24, 30]; // the frame rates a job may ask for

const $ = (id) => document.getElementById(id);
const state = {
  config: null,
  photo: null, // the File chosen in the form
  picker: null,
  jobId: null,
  watching: null, // AbortController of the event stream being read
  result: null,
  progress: null, // the last status or progress shown
  blobs: [], // object URLs to release when the result changes
  story: null, // the storyboard (issue 25)
};
// The photo's stage: the path played over it, a tapped subject, or the frames of the editor.
const stage = new CameraStage("", {
  onChange: () => optionsChanged(),
  onPath: (path) => showWarning(path),
  onEditing: (on) => {
    $("opt-motion").disabled = on;
    showFraming();
  },
  kept: () => (state.keptCamera ? readOptions().camera : null),
});
const { preview, focus, editor } = stage;
const gallery = new Gallery($("gallery"), {
  play: (jobId) => showResult(jobId, { scroll: true }),
  download: (jobId) => download(jobId),
  cancel: (jobId) => cancel(jobId, $("gallery-error")),
  again: (jobId) => again(jobId, {}, $("gallery-error")),
  failed: (exc, where) => report(exc, where),
});

// -- errors and the token ---------------------------------------------------------------------

/** Say what went wrong, in words; a refused token sends the user back to the token form. */
function report(exc, where) {
  if (exc instanceof ApiError && exc.status === 401 && inTelegram()) {
    refusedInTelegram(exc);
    return;
  }
  if (exc instanceof ApiError && exc.status === 401) {
    askToken(Boolean(token()));
    return;
  }
  if (exc instanceof ApiError && exc.status === 0) where.textContent = t("error.network");
  else if (exc instanceof ApiError && exc.code === "daily_limit" && exc.resetAt) {
    const time = exc.resetAt.toLocaleString(language(), { dateStyle: "short", timeStyle: "short" });
    where.textContent = t("error.dailyLimit", { time });
  } else if (exc instanceof ApiError && exc.code === "user_blocked") {
    where.textContent = t("error.blocked");
  } else if (exc instanceof ApiError) where.textContent = exc.message;
  else {
    where.textContent = String(exc?.message || exc);
  }
}

function askToken(wrong) {
  setToken("");
  preview.stop();
  state.watching?.abort();
  state.watching = null;
  for (const id of ["make", "job", "result", "gallery"]) $(id).hidden = true;
  $("gallery-grid").replaceChildren(); // without the token no job data stays on the page
  $("token-panel").hidden = false;
  $("token-change").hidden = true;
  $("token-error").textContent = wrong ? t("token.wrong") : "";
  $("token-input").focus();
}

/** Telegram's launch data was refused (forged or too old): say so; no job data stays. */
function refusedInTelegram(exc) {
  preview.stop();
  state.watching?.abort();
  state.watching = null;
  for (const id of ["make", "job", "result", "gallery"]) $(id).hidden = true;
  $("gallery-grid").replaceChildren();
  $("tma-panel").hidden = false;
  $("tma-error").textContent = t(exc.code === "tma_expired" ? "tma.expired" : "tma.refused");
}

async function saveToken(event) {
  event.preventDefault();
  const value = $("token-input").value.trim();
  if (!value) return;
  $("token-error").textContent = "";
  try {
    await request(`/jobs?user_id=${userId()}&limit=1`, { bearer: value });
  } catch (exc) {
    if (exc instanceof ApiError && exc.status === 401) $("token-error").textContent = t("token.wrong");
    else report(exc, $("token-error"));
    return;
  }
  setToken(value);
  $("token-input").value = "";
  $("token-panel").hidden = true;
  await open();
}

// -- options ----------------------------------------------------------------------------------

function fillSelect(select, values, label) {
  select.replaceChildren(
    ...values.map((value) => {
      const option = document.createElement("option");
      option.value = String(value);
      option.textContent = label(value);
      return option;
    }),
  );
}

function fillOptions() {
  const c = state.config;
  const keep = readOptions();
  fillSelect($("opt-duration"), c.durations, (n) => t("opt.seconds", { n }));
  fillSelect($("opt-resolution"), c.resolutions, (r) => r);
  fillSelect($("opt-motion"), c.presets, (p) => t(`motion.${p}`));
  fillSelect($("opt-aspect"), c.aspects, (a) => (a === "auto" ? t("aspect.auto") : a));
  // The service's own rate comes first when a job cannot ask for it (it is then left unsaid).
  const rates = FPS.includes(c.fps) ? FPS : ["", ...FPS];
  fillSelect($("opt-fps"), rates, (n) =>
    n === "" ? t("opt.fpsDefault", { n: c.fps }) : t("opt.fpsValue", { n }),
  );
  for (const name of ["fps", "loop"]) {
    for (const el of document.querySelectorAll(`[data-field=${name}]`)) el.hidden = !offers(name);
  }
  const fps = FPS.includes(c.fps) ? c.fps : "";
  const defaults = { duration: "6", resolution: "720p", motion_preset: "dolly_in", fps };
  const saved = { ...defaults, ...keep };
  for (const [name, value] of Object.entries(saved)) {
    const field = $("options").elements.namedItem(name);
    if (field?.type === "checkbox") field.checked = value === true;
    else if (field && value !== undefined) field.value = String(value);
  }
  $("strength-value").value = $("opt-strength").value;
}

function readOptions() {
  try {
    return JSON.parse(localStorage.getItem(OPTIONS_KEY) || "{}") || {};
  } catch {
    return {};
  }
}

/** Whether this service's /job/create takes a field (a newer page may meet an older service). */
function offers(field) {
  return Boolean(state.config?.job_fields?.includes(field));
}

/** The chosen parameters, typed as the JSON form of /job/create takes them. */
function options() {
  const form = $("options").elements;
  const out = {
    duration: Number(form.namedItem("duration").value),
    resolution: form.namedItem("resolution").value,
    motion_preset: form.namedItem("motion_preset").value,
    aspect: form.namedItem("aspect").value,
    strength: Number(form.namedItem("strength").value),
  };
  if (offers("fps") && form.namedItem("fps").value) out.fps = Number(form.namedItem("fps").value);
  const aim = stage.aim();
  if (offers("camera") && aim.camera) out.camera = aim.camera;
  if (offers("focus") && aim.focus) out.focus = aim.focus;
  if (offers("loop")) out.loop = form.namedItem("loop").checked;
  const seed = form.namedItem("seed").value.trim();
  return seed === "" ? out : { ...out, seed: Number(seed) };
}

/** The parameters of a job that shape its camera, as /camera takes them. */
function cameraParams() {
  const fields = state.config.camera_fields || [];
  return Object.fromEntries(Object.entries(options()).filter(([name]) => fields.includes(name)));
}

function optionsChanged() {
  $("strength-value").value = $("opt-strength").value;
  const kept = { seed: "", ...options(), editing: stage.editing };
  localStorage.setItem(OPTIONS_KEY, JSON.stringify(kept));
  showFraming();
  refreshPreview();
}

// -- the camera editor and the resolution warning -------------------------------------------

function showWarning(path) {
  const resolution = $("opt-resolution").value;
  const warning = path && upscaleWarning(path, resolution, state.config.resolutions);
  $("upscale").hidden = !warning;
  if (!warning) return;
  const factor = warning.factor.toFixed(1);
  $("upscale-text").textContent = t("warn.upscale", { factor, resolution });
  $("upscale-lower").hidden = !warning.lower;
  $("upscale-lower").textContent = t("warn.lower", { resolution: warning.lower });
  $("upscale-lower").dataset.resolution = warning.lower || "";
}

function useLower() {
  $("opt-resolution").value = $("upscale-lower").dataset.resolution;
  optionsChanged();
  $("opt-resolution").focus();
}

async function refreshPreview() {
  if (!state.photo || $("stage").hidden) return;
  const params = cameraParams();
  const photo = state.photo;
  const known = state.subject?.photo === photo;
  const aimed = params.camera || params.focus; // the user's aim: no subject to look for
  if (!aimed && !known) {
    // Once per photo the service sees it, to find its subject as a job would (faces first);
    // after that the preview aims at what it found, without sending the photo again.
    params.image_data = await dataUrl(photo);
    if (photo !== state.photo) return;
  } else if (!aimed && state.subject.framing !== "centre") {
    params.focus = { x: state.subject.x, y: state.subject.y };
  }
  try {
    await preview.show(params);
  } catch (exc) {
    report(exc, $("photo-error"));
  }
  if (params.image_data && preview.path?.subject && photo === state.photo) {
    state.subject = { photo, framing: preview.path.framing, ...preview.path.subject };
    showFraming();
  }
}

/** How the camera is aimed, in words: the subject found, or the user's own path. */
function showFraming() {
  const framing = stage.editing ? "camera" : focus.value() ? "focus" : state.subject?.framing;
  $("framing").textContent = framing ? t(`framing.${framing}`) : "";
}

// -- the photo --------------------------------------------------------------------------------

/** A photo accepted by the picker: show it (when the browser can) and let Animate go. */
function photoChosen(file, size, kept) {
  state.photo = file;
  state.subject = null; // the service looks at each new photo once
  state.keptCamera = kept; // the photo from before a reload: its camera too
  const saved = kept && offers("focus") ? readOptions().focus : null;
  focus.set(saved ? saved.x : null, saved?.y, { quiet: true }); // a new photo: no point yet
  editor.keys = []; // the frames start again from the new photo's first path
  $("stage").hidden = !size;
  if (!size) $("photo-error").textContent = t("photo.nopreview");
  $("animate").disabled = false;
  refreshPreview();
}

/** No usable photo in the field any more: nothing to animate, nothing shown; `why` says why. */
function photoGone(why) {
  state.photo = null;
  preview.stop();
  $("animate").disabled = true;
  $("stage").hidden = true;
  $("photo-error").textContent = why;
  $("make-error").textContent = "";
  $("upscale").hidden = true;
}

// -- submitting and watching a job ------------------------------------------------------------

/** The photo as a data: URL, which the JSON form's image_data takes as it is. */
function dataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

/** Create a job: the JSON form, so that numbers, booleans and the camera keep their types. */
async function submit(photo, params, where) {
  let created;
  try {
    const fields = Object.entries(params).filter(([, v]) => v !== undefined && v !== null);
    const body = { user_id: userId(), ...Object.fromEntries(fields) };
    body.image_data = await dataUrl(photo);
    created = await request("/job/create", { method: "POST", json: body });
  } catch (exc) {
    report(exc, where);
    return;
  }
  await keepPhoto(created.job_id, photo);
  watch(created.job_id, created, { fresh: true });
  reveal($("job"));
  gallery.load(0);
}

/** Scroll an element into view when it is not (on a phone the job and result cards are below). */
function reveal(element) {
  const box = element.getBoundingClientRect();
  if (box.top >= 0 && box.bottom <= window.innerHeight) return;
  const still = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  element.scrollIntoView({ behavior: still ? "auto" : "smooth", block: "start" });
}

function onSubmit(event) {
  event.preventDefault();
  if (!state.photo) return;
  $("make-error").textContent = "";
  submit(state.photo, options(), $("make-error"));
}

function showProgress(body) {
  state.progress = body;
  const status = body.status;
  const progress = Number(body.progress ?? 0);
  const job = $("job");
  const changed = job.dataset.status !== status;
  job.dataset.status = status;
  $("job-progress").value = status === "completed" ? 100 : progress;
  if (changed) {
    // Only a change of status is announced (the region is polite); the figures below are not.
    $("job-status").textContent = t(`job.${status}`);
    if (state.config) gallery.load();
  }
  const eta = body.eta_seconds ?? body.estimated_time;
  const detail = [];
  if (status === "queued" && body.queue_position) {
    detail.push(t("job.position", { n: body.queue_position }));
  }
  if (status === "processing") detail.push(`${progress.toFixed(0)} %`);
  if (status === "processing" && phase(body)) detail.push(phase(body));
  if (!TERMINAL.has(status) && eta != null) detail.push(t("job.eta", { s: Math.ceil(eta) }));
  $("job-detail").textContent = detail.join(" · ");
  showJobWarnings(body.warnings || []);
  $("job-cancel").hidden = TERMINAL.has(status);
  if (status === "failed" && body.error) $("job-error").textContent = body.error;
}

/** What the service warned about this job (an enlarged photo, a loop SVD cannot close). */
function showJobWarnings(warnings) {
  const words = (w) => {
    if (w.code === "upscale") return t("warn.jobUpscale", { factor: Number(w.factor).toFixed(1) });
    if (w.code === "svd_no_loop") return t("warn.svdNoLoop");
    return w.message || w.code;
  };
  $("job-warnings").replaceChildren(
    ...warnings.map((w) => {
      const item = document.createElement("li");
      item.textContent = words(w);
      return item;
    }),
  );
}

/** Follow a job through its event stream until it ends; reconnect if the stream drops. */
async function watch(jobId, first, { fresh = false } = {}) {
  state.watching?.abort();
  const controller = new AbortController();
  state.watching = controller;
  state.jobId = jobId;
  localStorage.setItem(JOB_KEY, jobId);
  $("job").hidden = false;
  $("job").dataset.jobId = jobId;
  $("job").dataset.status = "";
  $("job-error").textContent = "";
  $("result").hidden = true;
  if (first) showProgress({ progress: 0, ...first });
  let last = first || {};
  while (!controller.signal.aborted) {
    try {
      await streamEvents(
        jobId,
        (_name, data) => {
          if (data.job_id && data.job_id !== jobId) return;
          if (!data.status) return; // e.g. "closing": the service stops; read the status below
          if ($("job-error").textContent === t("job.lost")) $("job-error").textContent = "";
          last = { ...last, ...data };
          showProgress(last);
        },
        controller.signal,
      );
      if (!TERMINAL.has(last.status)) last = await request(`/job/status/${jobId}`);
    } catch (exc) {
      if (controller.signal.aborted) return;
      if (exc instanceof ApiError && exc.status !== 0) {
        report(exc, $("job-error"));
        if (exc.status === 404) localStorage.removeItem(JOB_KEY);
        return;
      }
      $("job-error").textContent = t("job.lost");
    }
    if (TERMINAL.has(last.status)) break;
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  if (controller.signal.aborted) return;
  $("job-error").textContent = last.status === "failed" ? last.error || t("job.failed") : "";
  showProgress(last);
  gallery.load();
  // A job made here ends with its video in view; one found after a reload just shows it.
  if (last.status === "completed") await showResult(jobId, { scroll: fresh });
}

async function cancel(jobId, where) {
  try {
    const body = await request(`/job/${jobId}/cancel`, { method: "POST" });
    if (jobId === state.jobId) showProgress(body);
    gallery.load();
  } catch (exc) {
    report(exc, where);
  }
}

// -- the result -------------------------------------------------------------------------------

function releaseBlobs() {
  for (const url of state.blobs) URL.revokeObjectURL(url);
  state.blobs = [];
}

async function showResult(jobId, { scroll = false } = {}) {
  $("result-error").textContent = "";
  let result;
  let video;
  let poster = "";
  try {
    result = await request(`/job/result/${jobId}`);
    releaseBlobs();
    video = await mediaUrl(result.video_url);
    if (result.poster_url) poster = await mediaUrl(result.poster_url);
  } catch (exc) {
    report(exc, $("result-error"));
    $("result").hidden = false;
    return;
  }
  state.blobs = [video, poster].filter((url) => url.startsWith("blob:"));
  state.result = result;
  const player = $("video");
  player.poster = poster;
  player.src = video;
  player.dataset.jobId = jobId;
  const link = $("download");
  link.href = video;
  link.download = `fanslymotion-${jobId}.mp4`;
  showParams(result);
  fillOtherMotions(result);
  $("result").hidden = false;
  if (scroll) reveal($("result"));
  player.play().catch(() => {
    // autoplay refused: the controls are there
  });
}

function fillOtherMotions(result) {
  const current = result.parameters.motion_preset;
  const others = state.config.presets.filter((p) => p !== current);
  fillSelect($("other-motion"), others, (p) => t(`motion.${p}`));
}

function showParams(result) {
  const p = result.parameters;
  const rows = [
    ["param.duration", t("opt.seconds", { n: result.duration ?? p.duration })],
    ["param.size", `${result.width}x${result.height} (${p.resolution})`],
    ["param.motion", p.camera ? t("aim.camera") : t(`motion.${p.motion_preset}`)],
    ["param.aspect", aspectUsed(result)],
    ["param.strength", String(p.strength)],
    ["param.seed", String(result.seed)],
    ["param.fps", result.fps ? t("opt.fpsValue", { n: result.fps }) : ""],
    ["param.loop", p.loop ? t("param.yes") : ""],
    ["param.framing", result.framing ? t(`aim.${result.framing}`) : ""],
    ["param.renderer", result.renderer || ""],
  ];
  const shown = rows.filter(([, value]) => value);
  $("result-params").replaceChildren(
    ...shown.flatMap(([key, value]) => {
      const dt = document.createElement("dt");
      dt.textContent = t(key);
      const dd = document.createElement("dd");
      dd.textContent = value;
      return [dt, dd];
    }),
  );
}

/** The ratio the video has: "auto" says which one the photo gave. */
function aspectUsed(result) {
  const aspect = result.parameters.aspect;
  if (aspect !== "auto" || !result.width) return aspect;
  return t("param.aspectAuto", { ratio: ratioName(result.width, result.height, state.config.aspects) });
}

/** Send a finished job's photo again with its parameters, changed by `changes`. */
async function again(jobId, changes, where) {
  where.textContent = "";
  let result;
  try {
    result = await request(`/job/result/${jobId}`);
  } catch (exc) {
    report(exc, where);
    return;
  }
  const photo = await photoOf(jobId);
  if (!photo) {
    where.textContent = t("result.nophoto");
    return;
  }
  const p = result.parameters;
  const params = {
    duration: p.duration,
    resolution: p.resolution,
    motion_preset: p.motion_preset,
    aspect: p.aspect,
    strength: p.strength,
  };
  // The newer choices travel too, where this service takes them.
  for (const name of ["fps", "loop", "focus", "camera"]) {
    if (offers(name) && p[name] !== undefined && p[name] !== null) params[name] = p[name];
  }
  if (!FPS.includes(params.fps)) delete params.fps; // the service's own rate: left unsaid
  if (changes.motion_preset) delete params.camera; // another motion replaces an aimed camera
  Object.assign(params, changes);
  await submit(photo, params, where);
}

async function download(jobId) {
  try {
    const result = await request(`/job/result/${jobId}`);
    const url = await mediaUrl(result.video_url);
    const link = document.createElement("a");
    link.href = url;
    link.download = `fanslymotion-${jobId}.mp4`;
    document.body.append(link);
    link.click();
    link.remove();
    if (url.startsWith("blob:")) setTimeout(() => URL.revokeObjectURL(url), 60_000);
  } catch (exc) {
    report(exc, $("gallery-error"));
  }
}

// -- start ------------------------------------------------------------------------------------

function translate() {
  apply();
  $("lang-switch").textContent = language() === "ru" ? "English" : "Русский";
  $("lang-switch").lang = language() === "ru" ? "en" : "ru";
  // Inside Telegram the user is the Telegram account, not this browser's random id.
  $("user-note").textContent = inTelegram() ? t("tma.user") : t("user.note", { id: userId() });
  if (!$("file-input").files.length) $("file-name").textContent = t("photo.none");
  stage.translate();
  state.story?.translate();
  showFraming();
  if (preview.path) showWarning(preview.path);
  if (state.config) {
    fillOptions();
    gallery.load();
    if (state.result) {
      showParams(state.result);
      fillOtherMotions(state.result);
    }
    if (state.progress) {
      $("job").dataset.status = ""; // say the status again, in the new language
      showProgress(state.progress);
    }
  }
}

/** With the token (if any) known: show the form, the gallery and the job left running. */
async function open() {
  $("make").hidden = false;
  $("token-change").hidden = !state.config.token_required || inTelegram();
  await gallery.load(0);
  if (!$("token-panel").hidden || !$("tma-panel").hidden) return; // refused meanwhile
  if (!state.photo) await state.picker.restore();
  const jobId = localStorage.getItem(JOB_KEY);
  if (jobId && !state.watching) watch(jobId);
}

async function main() {
  translate();
  try {
    state.config = await request("/web/config");
  } catch (exc) {
    report(exc, $("make-error"));
    return;
  }
  fillOptions();
  gallery.aspects = state.config.aspects;
  state.picker = new PhotoPicker({
    input: $("file-input"),
    drop: $("drop"),
    name: $("file-name"),
    img: $("photo"),
    config: state.config,
    onPhoto: photoChosen,
    onNone: photoGone,
  });
  $("options").addEventListener("change", optionsChanged);
  $("opt-strength").addEventListener("input", optionsChanged);
  $("options").addEventListener("submit", onSubmit);
  $("seed-random").addEventListener("click", () => {
    $("opt-seed").value = "";
    optionsChanged();
  });
  $("camera-edit").hidden = !offers("camera");
  $("upscale-lower").addEventListener("click", useLower);
  if (readOptions().editing && offers("camera")) stage.setEditing(true);
  $("token-form").addEventListener("submit", saveToken);
  $("token-change").addEventListener("click", () => askToken(false));
  $("job-cancel").addEventListener("click", () => {
    $("job-status").textContent = t("job.cancelling");
    cancel(state.jobId, $("job-error"));
  });
  $("again-variant").addEventListener("click", () =>
    again(state.result.job_id, {}, $("result-error")),
  );
  $("again-motion").addEventListener("click", () =>
    again(
      state.result.job_id,
      { motion_preset: $("other-motion").value, seed: state.result.seed },
      $("result-error"),
    ),
  );
  $("lang-switch").addEventListener("click", () => {
    setLanguage(language() === "ru" ? "en" : "ru");
    translate();
  });
  state.story = new Storyboard(state.config); // issue 25: several photos in one video
  await state.story.start();
  document.body.dataset.ready = "true";
  if (state.config.token_required && !token() && !inTelegram()) {
    askToken(false);
    return;
  }
  await open();
}

main();
