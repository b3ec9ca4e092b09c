// The storyboard: several photos in one video (issue 25). Photos come in by the picker, a drop
// or a paste into the section; each shot has its length, motion and caption, moves by drag or
// by its Up/Down buttons (keyboard), and can be removed; the story has its transition, look,
// watermark and music (its length shown, a start offset and a play button). The total length
// follows every edit, as the service counts it. Everything is kept across a reload: the
// choices in localStorage, the photos and the music in IndexedDB (photos.js).

import { ApiError, mediaUrl, request, userId } from "./api.js";
import { t } from "./i18n.js";
import { keepPhoto, photoOf } from "./photos.js";

const KEY = "fanslymotion.story";
const MOTIONS = ["micro", "pan_l", "pan_r", "tilt_up", "tilt_down", "dolly_in"];
const MAX_SHOTS = 10;
const FPS = 24;

const $ = (id) => document.getElementById(id);

/** The story's length in seconds, counted as the service does (story.py's timeline). */
export function storySeconds(shots, transition, seconds = 0.6, fps = FPS) {
  if (!shots.length) return 0;
  let frames = shots.reduce((sum, s) => sum + Math.round(s.duration * fps), 0);
  if (transition !== "cut") {
    let overlap = Math.max(1, Math.round(seconds * fps));
    if (transition === "fade" && overlap % 2 === 0) overlap += 1;
    frames -= overlap * (shots.length - 1);
  }
  return frames / fps;
}

export class Storyboard {
  constructor(fps = FPS) {
    this.fps = fps; // the service's frame rate: a story's frames are counted at it
    this.shots = []; // {id, file, url, duration, motion, caption}
    this.music = null;
    this.next = 1;
    this.dragged = null;
    this.list = $("story-shots");
  }

  async start() {
    const saved = JSON.parse(localStorage.getItem(KEY) || "{}");
    for (const [id, value] of Object.entries({
      "story-transition": saved.transition,
      "story-look": saved.look,
      "story-resolution": saved.resolution,
      "story-watermark": saved.watermark,
      "story-music-start": saved.musicStart,
    })) {
      if (value !== undefined) $(id).value = value;
    }
    for (const shot of saved.shots || []) {
      const file = await photoOf(`story-${shot.id}`);
      if (file) this.shots.push({ ...shot, file, url: URL.createObjectURL(file) });
      this.next = Math.max(this.next, shot.id + 1);
    }
    if (saved.music) this.setMusic(await photoOf("story-music"), false);
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
    for (const id of ["story-transition", "story-look", "story-resolution", "story-watermark", "story-music-start"]) {
      $(id).addEventListener("input", () => this.changed());
    }
    $("story-music").addEventListener("change", (e) => this.setMusic(e.target.files[0] || null, true));
    $("story-music-play").addEventListener("click", () => this.play());
    $("story-render").addEventListener("click", () => this.render());
    this.draw();
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
        shots: this.shots.map(({ id, duration, motion, caption }) => ({ id, duration, motion, caption })),
        transition: $("story-transition").value,
        look: $("story-look").value,
        resolution: $("story-resolution").value,
        watermark: $("story-watermark").value,
        musicStart: $("story-music-start").value,
        music: Boolean(this.music),
      }),
    );
    this.draw();
  }

  draw() {
    this.list.replaceChildren(...this.shots.map((shot, i) => this.item(shot, i)));
    const seconds = storySeconds(this.shots, $("story-transition").value, 0.6, this.fps);
    $("story-total").textContent = t("story.total", { s: seconds.toFixed(2) });
    $("story-render").disabled = this.shots.length === 0;
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
    motion.addEventListener("change", () => {
      shot.motion = motion.value;
      this.changed();
    });
    const caption = this.field("text", shot.caption, (v) => (shot.caption = v.slice(0, 120)));
    caption.className = "shot-caption";
    caption.maxLength = 120;
    caption.setAttribute("aria-label", t("story.caption", { n: i + 1 }));
    li.append(
      img,
      duration,
      motion,
      caption,
      this.button("↑", "shot-up", t("story.up"), () => this.move(i, -1)),
      this.button("↓", "shot-down", t("story.down"), () => this.move(i, 1)),
      this.button("✕", "shot-remove", t("story.remove"), () => this.remove(i)),
    );
    return li;
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
    const transition = $("story-transition").value;
    const mark = $("story-watermark").value.trim();
    const story = {
      shots: this.shots.map((s) => ({ duration: s.duration, motion_preset: s.motion, caption: s.caption })),
      transition,
      look: $("story-look").value,
      music_start: Number($("story-music-start").value) || 0,
    };
    if (mark) story.watermark = { text: mark };
    form.append("story", JSON.stringify(story));
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
