// The camera of one shot of the storyboard: the single photo's stage (stage.js) over the shot's
// photo in a dialog, so that a shot is aimed as a single photo is: a tapped subject (`focus`)
// or Start and End frames (and a middle one) dragged, zoomed or moved with the keyboard
// (`camera`), its path played as the service computes it (/camera) at the shot's length.

import { request } from "./api.js";
import { apply, t } from "./i18n.js";
import { CameraStage } from "./stage.js";

const $ = (id) => document.getElementById(id);

/** The duration /camera takes nearest to a shot's (the path's shape does not depend on it). */
function nearest(seconds, durations) {
  return durations.reduce((a, b) => (Math.abs(b - seconds) < Math.abs(a - seconds) ? b : a));
}

function dataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

export class ShotCamera {
  /** `onChange(shot)`: the shot's `camera` or `focus` changed; `onClose(shot)`: the dialog shut. */
  constructor(config, { onChange, onClose }) {
    Object.assign(this, { config, onChange, onClose });
    this.dialog = $("shot-camera");
    this.shot = null;
    this.stage = null;
    this.subjects = new Map(); // shot id -> the subject the service found in its photo
    this.dialog.addEventListener("close", () => this.closed());
  }

  /** Open shot `n` (from 1) of a story of `resolution` and `aspect` (an aspect's name). */
  async open(shot, n, { resolution, aspect }) {
    this.dialog.replaceChildren($("shot-camera-template").content.cloneNode(true));
    apply(this.dialog);
    $("shot-camera-title").textContent = t("shotcam.title", { n });
    Object.assign(this, { shot, n, resolution, aspect });
    this.stage = new CameraStage("shot-", {
      onChange: () => this.changed(),
      kept: () => shot.camera || null,
    });
    this.stage.translate();
    $("shot-camera-done").addEventListener("click", () => this.dialog.close());
    const image = this.stage.image;
    image.alt = t("story.shot", { n });
    image.src = shot.url;
    this.dialog.showModal();
    await image.decode();
    if (this.shot !== shot) return;
    if (shot.focus) this.stage.focus.set(shot.focus.x, shot.focus.y, { quiet: true });
    if (shot.camera) this.stage.setEditing(true);
    await this.refresh();
  }

  /** Say the open dialog again in the language chosen. */
  translate() {
    if (!this.shot) return;
    apply(this.dialog);
    $("shot-camera-title").textContent = t("shotcam.title", { n: this.n });
    this.stage.image.alt = t("story.shot", { n: this.n });
    this.stage.translate();
  }

  /** The shot's aim follows the stage; the path shown follows the aim. */
  changed() {
    const aim = this.stage.aim();
    this.shot.camera = aim.camera || null;
    this.shot.focus = aim.focus || null;
    this.onChange(this.shot);
    this.refresh();
  }

  async refresh() {
    const { shot, stage } = this;
    const params = {
      width: stage.image.naturalWidth,
      height: stage.image.naturalHeight,
      duration: nearest(shot.duration, this.config.durations),
      resolution: this.resolution,
      motion_preset: shot.motion,
      aspect: this.aspect,
      ...stage.aim(),
    };
    const subject = this.subjects.get(shot.id);
    if (!params.camera && !params.focus) {
      // The service looks at the photo once, as a job would (faces first); after that the
      // path is aimed at what it found without sending the photo again.
      if (!subject) params.image_data = await dataUrl(shot.file);
      else if (subject.framing !== "centre") params.focus = { x: subject.x, y: subject.y };
    }
    $("shot-camera-error").textContent = "";
    try {
      await stage.preview.show(params, shot.duration);
    } catch (exc) {
      if (this.shot === shot) $("shot-camera-error").textContent = exc.message;
      return;
    }
    const path = stage.preview.path;
    if (params.image_data && path?.subject) this.subjects.set(shot.id, { framing: path.framing, ...path.subject });
    stage.layer.dataset.framing = path?.framing || "";
  }

  closed() {
    const shot = this.shot;
    this.stage?.preview.stop();
    this.stage = null;
    this.shot = null;
    this.dialog.replaceChildren();
    if (shot) this.onClose(shot);
  }
}
