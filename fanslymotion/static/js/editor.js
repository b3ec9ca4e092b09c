// The camera editor: the start and end frames (and an optional middle one) drawn over the photo,
// dragged with a mouse or a finger, zoomed with the wheel, a pinch or the slider, and moved with
// the keyboard. Its value is the job's `camera` ({"keyframes": [{t, x, y, zoom}], "ease"}): each
// frame's centre in photo fractions and its zoom relative to the largest window of the output's
// aspect that fits. The path between the frames is the service's: the preview asks /camera.

import { t } from "./i18n.js";

const ZOOM = [1, 3];
const STEP = 0.01; // an arrow key moves a frame 1 % of the photo (Shift: 5 %)
const ZOOM_STEP = 0.05;
const NAMES = { 0: "cam.start", 0.5: "cam.middle", 1: "cam.end" };

const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
const round = (v) => Math.round(v * 10000) / 10000;

export class CameraEditor {
  /**
   * `image`: the photo's <img>; `layer`: the element over it that holds the frames; `controls`:
   * { zoom (range), middle (button), ease (select), selected (output), help (the id of the
   * words that say how to move a frame) }; `onChange()` is called after every change (a drag
   * calls it once it ends). Each stage (stage.js) has its own editor over its own elements.
   */
  constructor({ image, layer, controls, onChange }) {
    Object.assign(this, { image, layer, controls, onChange });
    this.aspect = 16 / 9;
    this.keys = [];
    this.selected = 0;
    this.pointers = new Map(); // pointerId -> {x, y}: a pinch needs two
    this.gesture = null;
    this.ease = "smooth";
    controls.zoom.addEventListener("input", () => this.zoomTo(Number(controls.zoom.value)));
    controls.zoom.addEventListener("change", () => this.onChange());
    controls.ease.addEventListener("change", () => {
      this.ease = controls.ease.value;
      this.draw();
      this.onChange();
    });
    controls.middle.addEventListener("click", () => this.toggleMiddle());
    layer.addEventListener("pointerdown", (e) => this.down(e));
    layer.addEventListener("pointermove", (e) => this.move(e));
    for (const name of ["pointerup", "pointercancel"]) {
      layer.addEventListener(name, (e) => this.up(e));
    }
    layer.addEventListener("wheel", (e) => this.wheel(e), { passive: false });
    new ResizeObserver(() => this.draw()).observe(image);
  }

  /** Start from frames (e.g. the preset's first and last windows) for an output aspect. */
  reset(keys, aspect) {
    this.aspect = aspect;
    this.keys = keys.map((k) => ({ ...k }));
    this.selected = 0;
    this.build();
    this.fit();
  }

  /**
   * Frames to start from: `kept` (a camera from before a reload) when it is one, else the first
   * and last windows of a path from /camera (photo pixels), as centres and zooms.
   */
  keysFrom(path, kept) {
    if (Array.isArray(kept?.keyframes) && kept.keyframes.length >= 2) {
      this.ease = kept.ease === "linear" ? "linear" : "smooth";
      return kept.keyframes;
    }
    const { width, height } = path.photo;
    const aspect = path.output.width / path.output.height;
    const baseWidth = width / height > aspect ? height * aspect : width;
    return [
      [0, path.boxes[0]],
      [1, path.boxes[path.boxes.length - 1]],
    ].map(([at, [x0, y0, x1, y1]]) => ({
      t: at,
      x: (x0 + x1) / 2 / width,
      y: (y0 + y1) / 2 / height,
      zoom: baseWidth / (x1 - x0),
    }));
  }

  /** The output's aspect changed: the frames keep their centres and zooms, kept inside. */
  setAspect(aspect) {
    if (Math.abs(aspect - this.aspect) < 1e-9) return;
    this.aspect = aspect;
    this.fit();
  }

  /** The job's `camera`. */
  value() {
    return {
      keyframes: this.keys.map((k) => ({
        t: k.t,
        x: round(k.x),
        y: round(k.y),
        zoom: round(k.zoom),
      })),
      ease: this.ease,
    };
  }

  /** The largest window of the output's aspect in the photo, in photo fractions. */
  base() {
    const ratio = this.image.naturalWidth / this.image.naturalHeight;
    return ratio > this.aspect ? [this.aspect / ratio, 1] : [1, ratio / this.aspect];
  }

  /** Keep a frame inside the photo (the service refuses a window that leaves it). */
  keep(key) {
    const [bw, bh] = this.base();
    key.zoom = clamp(key.zoom, ...ZOOM);
    const w = bw / key.zoom / 2;
    const h = bh / key.zoom / 2;
    key.x = clamp(key.x, w, 1 - w);
    key.y = clamp(key.y, h, 1 - h);
  }

  fit() {
    for (const key of this.keys) this.keep(key);
    this.draw();
  }

  build() {
    this.layer.replaceChildren(
      ...this.keys.map((key, i) => {
        const frame = document.createElement("button");
        frame.type = "button";
        frame.className = "key";
        frame.dataset.t = String(key.t);
        const tag = document.createElement("span");
        tag.className = "tag";
        frame.append(tag);
        frame.setAttribute("aria-describedby", this.controls.help);
        frame.addEventListener("focus", () => this.select(i));
        frame.addEventListener("keydown", (e) => this.key(e, i));
        return frame;
      }),
    );
    this.controls.middle.textContent = t(this.keys.length > 2 ? "cam.removeMiddle" : "cam.addMiddle");
    this.draw();
  }

  /** Put every frame where its key says, and say it in words (the language may have changed). */
  draw() {
    const width = this.image.clientWidth;
    const height = this.image.clientHeight;
    const [bw, bh] = this.base();
    this.keys.forEach((key, i) => {
      const frame = this.layer.children[i];
      if (!frame) return;
      const w = bw / key.zoom;
      const h = bh / key.zoom;
      Object.assign(frame.style, {
        left: `${(key.x - w / 2) * width}px`,
        top: `${(key.y - h / 2) * height}px`,
        width: `${w * width}px`,
        height: `${h * height}px`,
      });
      const name = t(NAMES[key.t] ?? "cam.middle");
      frame.firstChild.textContent = name;
      frame.classList.toggle("selected", i === this.selected);
      frame.setAttribute(
        "aria-label",
        t("cam.keyLabel", {
          name,
          x: Math.round(key.x * 100),
          y: Math.round(key.y * 100),
          zoom: key.zoom.toFixed(2),
        }),
      );
    });
    this.layer.dataset.camera = JSON.stringify(this.value()); // what a job will be sent
    const key = this.keys[this.selected];
    if (key) {
      this.controls.zoom.value = String(key.zoom);
      this.controls.selected.value = t(NAMES[key.t] ?? "cam.middle");
    }
    this.controls.middle.textContent = t(this.keys.length > 2 ? "cam.removeMiddle" : "cam.addMiddle");
    this.controls.ease.value = this.ease;
  }

  select(i) {
    this.selected = i;
    this.draw();
  }

  zoomTo(zoom, i = this.selected) {
    const key = this.keys[i];
    if (!key) return;
    key.zoom = zoom;
    this.keep(key);
    this.draw();
  }

  toggleMiddle() {
    if (this.keys.length > 2) {
      this.keys.splice(1, 1);
      this.selected = 0;
    } else {
      const [a, b] = [this.keys[0], this.keys[this.keys.length - 1]];
      const middle = { t: 0.5, x: (a.x + b.x) / 2, y: (a.y + b.y) / 2, zoom: (a.zoom + b.zoom) / 2 };
      this.keys.splice(1, 0, middle);
      this.keep(middle);
      this.selected = 1;
    }
    this.build();
    this.layer.children[this.selected]?.focus();
    this.onChange();
  }

  key(event, i) {
    const step = event.shiftKey ? STEP * 5 : STEP;
    const moves = {
      ArrowLeft: [-step, 0, 1],
      ArrowRight: [step, 0, 1],
      ArrowUp: [0, -step, 1],
      ArrowDown: [0, step, 1],
      "+": [0, 0, 1 + ZOOM_STEP],
      "=": [0, 0, 1 + ZOOM_STEP],
      PageUp: [0, 0, 1 + ZOOM_STEP],
      "-": [0, 0, 1 / (1 + ZOOM_STEP)],
      _: [0, 0, 1 / (1 + ZOOM_STEP)],
      PageDown: [0, 0, 1 / (1 + ZOOM_STEP)],
    };
    const move = moves[event.key];
    if (!move) return;
    event.preventDefault();
    const key = this.keys[i];
    key.x += move[0];
    key.y += move[1];
    key.zoom *= move[2];
    this.keep(key);
    this.draw();
    this.onChange();
  }

  down(event) {
    const frame = event.target.closest(".key");
    this.pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
    try {
      this.layer.setPointerCapture(event.pointerId);
    } catch {
      // a pointer the browser no longer tracks: the drag simply ends at the layer's edge
    }
    if (this.pointers.size === 2) {
      // A pinch: zoom the selected frame by how far the two fingers go apart.
      this.gesture = { pinch: this.spread(), zoom: this.keys[this.selected].zoom };
      return;
    }
    if (!frame) return;
    event.preventDefault();
    const i = [...this.layer.children].indexOf(frame);
    this.select(i);
    frame.focus({ preventScroll: true });
    const key = this.keys[i];
    this.gesture = { i, x: event.clientX, y: event.clientY, from: [key.x, key.y] };
  }

  move(event) {
    if (!this.pointers.has(event.pointerId) || !this.gesture) return;
    this.pointers.set(event.pointerId, { x: event.clientX, y: event.clientY });
    const g = this.gesture;
    if (g.pinch) {
      if (this.pointers.size === 2) this.zoomTo((g.zoom * this.spread()) / g.pinch);
      return;
    }
    const key = this.keys[g.i];
    key.x = g.from[0] + (event.clientX - g.x) / this.image.clientWidth;
    key.y = g.from[1] + (event.clientY - g.y) / this.image.clientHeight;
    this.keep(key);
    this.draw();
  }

  up(event) {
    if (!this.pointers.delete(event.pointerId)) return;
    if (this.gesture && this.pointers.size === 0) {
      this.gesture = null;
      this.onChange();
    }
  }

  spread() {
    const [a, b] = [...this.pointers.values()];
    return Math.max(1, Math.hypot(a.x - b.x, a.y - b.y));
  }

  wheel(event) {
    const frame = event.target.closest(".key");
    if (!frame) return;
    event.preventDefault();
    const i = [...this.layer.children].indexOf(frame);
    this.select(i);
    this.zoomTo(this.keys[i].zoom * Math.exp(-event.deltaY * 0.002), i);
    clearTimeout(this.wheeling);
    this.wheeling = setTimeout(() => this.onChange(), 150); // once the wheel rests
  }
}
