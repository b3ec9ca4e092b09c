// The camera preview: the crop window of every frame, as the service computes it (GET /camera),
// drawn over the photo and played at the clip's real duration, in a loop. It is asked with
// POST and a JSON body, so numbers, booleans and the editor's `camera` keep their types.

import { request } from "./api.js";

export class CameraPreview {
  constructor(image, box, onPath = () => {}) {
    this.image = image;
    this.box = box;
    this.onPath = onPath; // called with each path that arrives
    this.path = null;
    this.started = 0;
    this.frame = 0;
    this.pending = null;
    this.tick = this.tick.bind(this);
  }

  /** Fetch the path for the photo's size and these parameters, then animate it (over
   * `seconds` when given: a story's shot lasts its own length, which /camera may not take). */
  async show(params, seconds = null) {
    const width = this.image.naturalWidth;
    const height = this.image.naturalHeight;
    if (!width || !height) return;
    this.pending?.abort();
    const pending = new AbortController();
    this.pending = pending;
    try {
      const json = { width, height, ...params };
      const path = await request("/camera", { method: "POST", json, signal: pending.signal });
      if (pending.signal.aborted) return;
      this.path = path;
      this.seconds = seconds || path.duration;
      this.started = performance.now();
      this.box.dataset.frames = String(path.frames);
      this.box.dataset.output = `${path.output.width}x${path.output.height}`;
      this.box.dataset.photo = `${path.photo.width}x${path.photo.height}`;
      this.onPath(path);
      if (!this.frame) this.frame = requestAnimationFrame(this.tick);
    } catch (exc) {
      if (exc.name !== "AbortError") throw exc;
    }
  }

  /** Play the path from its start again. */
  restart() {
    this.started = performance.now();
  }

  stop() {
    this.pending?.abort();
    if (this.frame) cancelAnimationFrame(this.frame);
    this.frame = 0;
    this.path = null;
  }

  tick(now) {
    this.frame = requestAnimationFrame(this.tick);
    const path = this.path;
    if (!path || !this.image.clientWidth) return;
    const boxes = path.boxes;
    // Position along the clip, looping; frames are evenly spread from t = 0 to t = 1.
    // (A frame's timestamp may be a little older than the moment the path arrived.)
    const t = (Math.max(0, now - this.started) / 1000 / this.seconds) % 1;
    const at = t * (boxes.length - 1);
    const i = Math.min(boxes.length - 1, Math.floor(at));
    const j = Math.min(boxes.length - 1, i + 1);
    const f = at - i;
    const mix = (k) => boxes[i][k] + (boxes[j][k] - boxes[i][k]) * f;
    const sx = this.image.clientWidth / path.photo.width;
    const sy = this.image.clientHeight / path.photo.height;
    const style = this.box.style;
    style.left = `${mix(0) * sx}px`;
    style.top = `${mix(1) * sy}px`;
    style.width = `${(mix(2) - mix(0)) * sx}px`;
    style.height = `${(mix(3) - mix(1)) * sy}px`;
    this.box.dataset.frame = String(i);
  }
}
