// The storyboard: several photos in one video (issue 25). Photos come in by the picker, a drop
// or a paste into the section; each shot has its length, motion, camera (aimed in the single
// photo's editor, shot_camera.js) and caption, moves by drag or
// by its Up/Down buttons (keyboard), and can be removed; each cut may have its own transition
// (else the story's); the story has its look, watermark (a text or a PNG logo, a corner and an
// opacity) and music (its length shown, a start offset and a play button). The total length
// follows every edit, as the service counts it. Everything is kept across a reload: the
// choices in localStorage, the photos, the logo and the music in IndexedDB (photos.js).

import { ApiError, mediaUrl, request, userId } from "./api.js";
import { ratioName } from "./gallery.js";
import { t } from "./i18n.js";
import { logoLimits, logoProblem } from "./logo.js";
import { keepPhoto, photoOf } from "./photos.js";
import { ShotCamera } from "./shot_camera.js";

const KEY = "fanslymotion.story";
const MOTIONS = ["micro", "pan_l", "pan_r", "tilt_up", "tilt_down", "dolly_in"];
const CUTS = ["crossfade", "fade", "slide", "cut"];
const CUT_SECONDS = { min: 0.3, max: 1.5, default: 0.6 }; // story.py's TRANSITION_SECONDS
const MAX_SHOTS = 10;
const FPS = 24;
// Fields kept in localStorage by the id of their element.
const FIELDS = {
  transition: "story-transition",
  transitionSeconds: "story-transition-seconds",
  look: "story-look",
  resolution: "story-resolution",
  watermark: "story-watermark",
  corner: "story-corner",
  opacity: "story-opacity",
  musicStart: "story-music-start",
};

const $ = (id) => document.getElementById(id);

/** A transition's seconds as the service takes them: 0.3 to 1.5, in tenths. */
function clampSeconds(value) {
  const seconds = Math.round(Number(value) * 10) / 10 || CUT_SECONDS.default;
  return Math.min(CUT_SECONDS.max, Math.max(CUT_SECONDS.min, seconds));
}

/** Frames a transition overlaps the next shot by, as story.py's Transition.frames counts. */
function overlap({ kind, seconds }, fps) {
  if (kind === "cut") return 0;
  const n = Math.max(1, Math.round(seconds * fps));
  return kind === "fade" && n % 2 === 0 ? n + 1 : n;
}

/** The story's length in seconds, counted as the service does (story.py's timeline): each
 * shot's own cut (`shot.cut`) into the next one, else the story's `fallback`. */
export function storySeconds(shots, fallback, fps = FPS) {
  let frames = shots.reduce((sum, s) => sum + Math.round(s.duration * fps), 0);
  for (const shot of shots.slice(0, -1)) frames -= overlap(shot.cut || fallback, fps);
  return frames / fps;
}

export class Storyboard {
  constructor(config) {
    this.config = config;
    this.fps = config.fps || FPS; // the service's frame rate: a story's frames are counted at it
    // {id, file, url, duration, motion, caption, cut, camera, focus}: cut is null or {kind,
    // seconds}; camera and focus are null or what /job/create takes for the shot.
    this.shots = [];
    this.music = null;
    this.logo = null;
    this.next = 1;
    this.dragged = null;
    this.list = $("story-shots");
    this.camera = new ShotCamera(config, {
      onChange: () => this.changed(),
      onClose: (shot) => {
        const i = this.shots.indexOf(shot);
        this.list.querySelectorAll(".shot-camera-open")[i]?.focus();
      },
    });
  }

  async start() {
    const saved = JSON.parse(localStorage.getItem(KEY) || "{}");
    for (const [name, id] of Object.entries(FIELDS)) {
      if (saved[name] !== undefined) $(id).value = saved[name];
    }
    for (const shot of saved.shots || []) {
      const file = await photoOf(`story-${shot.id}`);
      if (file) this.shots.push({ ...shot, file, url: URL.createObjectURL(file) });
      this.next = Math.max(this.next, shot.id + 1);
    }
    if (saved.music) this.setMusic(await photoOf("story-music"), false);
    if (saved.logo) this.showLogo(await photoOf("story-logo"));
    $("story-files").addEventListener("change", (e) => this.add([...e.target.files]));
    const drop = $("story-drop");
    drop.addEventListener("dragover", (e) => e.preventDefault());
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      this.add([...e.dataTransfer.files]);
    });
    $("story").addEventListener("paste", (e) => {
      const files = [...(e.clipboardData?.files || [])];
      if (!files.length) return;
      e.preventDefault();
      e.stopPropagation(); // the photo form's own paste is for the single photo
      this.add(files);
    });
    for (const id of Object.values(FIELDS)) $(id).addEventListener("input", () => this.changed());
    $("story-logo").addEventListener("change", (e) => this.setLogo(e.target.files[0] || null));
    $("story-logo-remove").addEventListener("click", () => {
      $("story-logo").value = "";
      this.setLogo(null);
    });
    $("story-music").addEventListener("change", (e) => this.setMusic(e.target.files[0] || null, true));
    $("story-music-play").addEventListener("click", () => this.play());
    $("story-render").addEventListener("click", () => this.render());
    this.draw();
  }

  /** Say everything drawn here again in the language chosen. */
  translate() {
    this.draw();
    this.camera.translate();
    if (this.music) $("story-audio").onloadedmetadata?.();
  }

  add(files) {
    for (const file of files.filter((f) => f.type.startsWith("image/"))) {
      if (this.shots.length >= MAX_SHOTS) break;
      const shot = { id: this.next++, file, url: URL.createObjectURL(file), duration: 4, motion: "micro", caption: "" };
      keepPhoto(`story-${shot.id}`, file);
      this.shots.push(shot);
    }
    this.changed();
  }

  move(index, by) {
    const to = index + by;
    if (to < 0 || to >= this.shots.length) return;
    const [shot] = this.shots.splice(index, 1);
    this.shots.splice(to, 0, shot);
    this.changed();
    this.list.querySelectorAll(by < 0 ? ".shot-up" : ".shot-down")[to]?.focus();
  }

  remove(index) {
    this.shots.splice(index, 1);
    this.changed();
  }

  setMusic(file, keep) {
    this.music = file;
    const audio = $("story-audio");
    $("story-music-length").textContent = "";
    if (file) {
      audio.src = URL.createObjectURL(file);
      audio.onloadedmetadata = () => {
        $("story-music-length").textContent = t("story.musicLength", { s: audio.duration.toFixed(1) });
      };
      if (keep) keepPhoto("story-music", file);
    }
    this.changed();
  }

  /** A logo chosen in the picker: kept when it is a PNG within the limits, else refused in words. */
  async setLogo(file) {
    $("story-logo-error").textContent = "";
    const problem = file ? await logoProblem(file, this.config) : "";
    if (problem) {
      $("story-logo").value = "";
      $("story-logo-error").textContent = problem;
      return;
    }
    if (file) keepPhoto("story-logo", file);
    this.showLogo(file);
    this.changed();
  }

  showLogo(file) {
    this.logo = file;
    const view = $("story-logo-view");
    if (view.src) URL.revokeObjectURL(view.src);
    view.src = file ? URL.createObjectURL(file) : "";
    view.hidden = !file;
    $("story-logo-remove").hidden = !file;
    $("story-logo-name").textContent = file ? file.name : "";
  }

  play() {
    const audio = $("story-audio");
    if (!this.music) return;
    audio.currentTime = Number($("story-music-start").value) || 0;
    audio.play().catch(() => {});
  }

  changed() {
    localStorage.setItem(
      KEY,
      JSON.stringify({
        shots: this.shots.map(({ id, duration, motion, caption, cut, camera, focus }) => ({
          ...{ id, duration, motion, caption, cut, camera, focus },
        })),
        ...Object.fromEntries(Object.entries(FIELDS).map(([name, id]) => [name, $(id).value])),
        music: Boolean(this.music),
        logo: Boolean(this.logo),
      }),
    );
    this.draw();
  }

  draw() {
    this.list.replaceChildren(...this.shots.map((shot, i) => this.item(shot, i)));
    const seconds = storySeconds(this.shots, this.fallback(), this.fps);
    $("story-total").textContent = t("story.total", { s: seconds.toFixed(2) });
    $("story-render").disabled = this.shots.length === 0;
    $("story-opacity-value").value = `${Math.round(Number($("story-opacity").value) * 100)} %`;
    $("story-logo-limits").textContent = logoLimits(this.config);
  }

  /** The story's own transition, which a cut without its own takes. */
  fallback() {
    return { kind: $("story-transition").value, seconds: clampSeconds($("story-transition-seconds").value) };
  }

  item(shot, i) {
    const li = document.createElement("li");
    li.className = "story-shot";
    li.draggable = true;
    li.dataset.id = String(shot.id);
    li.addEventListener("dragstart", () => (this.dragged = i));
    li.addEventListener("dragover", (e) => e.preventDefault());
    li.addEventListener("drop", (e) => {
      e.preventDefault();
      e.stopPropagation();
      if (this.dragged !== null && this.dragged !== i) this.move(this.dragged, i - this.dragged);
      this.dragged = null;
    });
    const img = document.createElement("img");
    img.src = shot.url;
    img.alt = t("story.shot", { n: i + 1 });
    const duration = this.field("number", shot.duration, (v) => (shot.duration = Math.min(12, Math.max(2, Math.round(Number(v) || 4)))));
    duration.min = "2";
    duration.max = "12";
    duration.setAttribute("aria-label", t("story.duration", { n: i + 1 }));
    const motion = document.createElement("select");
    for (const name of MOTIONS) motion.add(new Option(t(`motion.${name}`), name, false, name === shot.motion));
    motion.setAttribute("aria-label", t("story.motion", { n: i + 1 }));
    motion.disabled = Boolean(shot.camera); // the frames replace the preset's path
    motion.addEventListener("change", () => {
      shot.motion = motion.value;
      this.changed();
    });
    const caption = this.field("text", shot.caption, (v) => (shot.caption = v.slice(0, 120)));
    caption.className = "shot-caption";
    caption.maxLength = 120;
    caption.setAttribute("aria-label", t("story.caption", { n: i + 1 }));
    const aim = document.createElement("span");
    aim.className = "shot-aim";
    aim.textContent = shot.camera ? t("aim.camera") : shot.focus ? t("aim.focus") : "";
    li.append(
      img,
      duration,
      motion,
      this.button(t("story.camera"), "shot-camera-open", t("story.cameraOf", { n: i + 1 }), () =>
        this.openCamera(shot, i),
      ),
      aim,
      caption,
      this.button("↑", "shot-up", t("story.up"), () => this.move(i, -1)),
      this.button("↓", "shot-down", t("story.down"), () => this.move(i, 1)),
      this.button("✕", "shot-remove", t("story.remove"), () => this.remove(i)),
    );
    if (i < this.shots.length - 1) li.append(this.cut(shot, i));
    return li;
  }

  /** Aim shot i in the camera editor, at the story's output size (the first photo decides it). */
  async openCamera(shot, i) {
    $("story-error").textContent = "";
    const resolution = $("story-resolution").value;
    try {
      await this.camera.open(shot, i + 1, { resolution, aspect: await this.aspect(resolution) });
    } catch (exc) {
      $("story-error").textContent = exc.message;
    }
  }

  /** The story's aspect: shot 1's "auto" (its photo's shape), as the service resolves it. */
  async aspect(resolution) {
    const image = new Image();
    image.src = this.shots[0].url;
    await image.decode();
    const json = { width: image.naturalWidth, height: image.naturalHeight, duration: 3, resolution, motion_preset: "micro" };
    const path = await request("/camera", { method: "POST", json });
    return ratioName(path.output.width, path.output.height, this.config.aspects);
  }

  /** The cut from shot i into shot i + 1: the story's transition, or its own with its seconds. */
  cut(shot, i) {
    const box = document.createElement("div");
    box.className = "shot-cut";
    const names = { n: i + 1, m: i + 2 };
    const kind = document.createElement("select");
    kind.className = "cut-kind";
    kind.setAttribute("aria-label", t("story.cutKind", names));
    kind.add(new Option(t("story.cutDefault", { kind: t(`story.${$("story-transition").value}`) }), ""));
    for (const name of CUTS) kind.add(new Option(t(`story.${name}`), name, false, shot.cut?.kind === name));
    const seconds = this.field("number", shot.cut?.seconds ?? this.fallback().seconds, (v) => {
      shot.cut = { ...shot.cut, seconds: clampSeconds(v) };
    });
    Object.assign(seconds, { className: "cut-seconds", min: "0.3", max: "1.5", step: "0.1" });
    seconds.setAttribute("aria-label", t("story.cutSeconds", names));
    seconds.hidden = !shot.cut || shot.cut.kind === "cut";
    kind.addEventListener("change", () => {
      shot.cut = kind.value ? { kind: kind.value, seconds: clampSeconds(seconds.value) } : null;
      this.changed();
      this.list.querySelectorAll(".cut-kind")[i]?.focus();
    });
    const arrow = document.createElement("span");
    arrow.className = "cut-arrow";
    arrow.setAttribute("aria-hidden", "true");
    arrow.textContent = "⤵";
    box.append(arrow, kind, seconds);
    return box;
  }

  field(type, value, set) {
    const input = document.createElement("input");
    input.type = type;
    input.value = String(value);
    input.addEventListener("change", () => {
      set(input.value);
      this.changed();
    });
    return input;
  }

  button(text, cls, label, action) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = `secondary ${cls}`;
    button.textContent = text;
    button.setAttribute("aria-label", label);
    button.addEventListener("click", action);
    return button;
  }

  async render() {
    const form = new FormData();
    form.append("user_id", String(userId()));
    form.append("resolution", $("story-resolution").value);
    const fallback = this.fallback();
    const transition = fallback.kind === "cut" ? "cut" : fallback;
    const mark = $("story-watermark").value.trim();
    const story = {
      shots: this.shots.map((s, i) => ({
        duration: s.duration,
        motion_preset: s.motion,
        caption: s.caption,
        camera: s.camera || undefined,
        focus: s.focus || undefined,
        transition: i < this.shots.length - 1 && s.cut ? s.cut : undefined,
      })),
      transition,
      look: $("story-look").value,
      music_start: Number($("story-music-start").value) || 0,
    };
    if (mark || this.logo) {
      story.watermark = { corner: $("story-corner").value, opacity: Number($("story-opacity").value) };
      if (mark) story.watermark.text = mark;
    }
    form.append("story", JSON.stringify(story));
    if (this.logo) form.append("logo", this.logo, this.logo.name || "logo.png");
    for (const shot of this.shots) form.append("image", shot.file, shot.file.name || "photo.jpg");
    if (this.music) form.append("audio", this.music, this.music.name || "music");
    $("story-error").textContent = "";
    $("story-status").textContent = t("story.sending");
    try {
      const created = await request("/job/create", { method: "POST", body: form });
      await this.follow(created.job_id);
    } catch (exc) {
      $("story-status").textContent = "";
      $("story-error").textContent = exc instanceof ApiError ? exc.message : String(exc);
    }
  }

  async follow(jobId) {
    for (;;) {
      const status = await request(`/job/status/${jobId}`);
      const step = status.phase_steps ? ` ${status.phase_step}/${status.phase_steps}` : "";
      $("story-status").textContent = t("story.progress", { p: Math.round(status.progress), step });
      if (status.status === "completed") break;
      if (status.status === "failed" || status.status === "cancelled") throw new Error(status.error || status.status);
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const result = await request(`/job/result/${jobId}`);
    const player = $("story-video");
    player.src = await mediaUrl(result.video_url);
    player.hidden = false;
    $("story-status").textContent = t("story.done", { s: result.duration });
  }
}
