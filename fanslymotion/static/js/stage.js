// A photo's camera stage: the service's path played over the photo (preview.js), a subject the
// user taps (focus.js) and the frames of the camera editor (editor.js), which "Aim the camera
// myself" switches on. The single-photo form and a story's shot each have one, over the same
// markup whose ids differ by a prefix ("" for the form, "shot-" for the storyboard's editor).

import { CameraEditor } from "./editor.js";
import { FocusPoint } from "./focus.js";
import { t } from "./i18n.js";
import { CameraPreview } from "./preview.js";

export class CameraStage {
  /**
   * `onChange()`: after every change of the aim; `onPath(path)`: each path from /camera;
   * `onEditing(on)`: the editor switched; `kept()`: a camera to start the frames from (one
   * kept from before a reload), or null for the path's own first and last windows.
   */
  constructor(prefix, { onChange, onPath = () => {}, onEditing = () => {}, kept = () => null }) {
    const $ = (id) => document.getElementById(`${prefix}${id}`);
    Object.assign(this, { onChange, onPath, onEditing, kept });
    this.element = $("stage");
    this.image = $("photo");
    this.custom = $("cam-custom");
    this.tools = $("cam-tools");
    this.layer = $("camera-keys");
    this.playButton = $("cam-play");
    this.editing = false;
    this.preview = new CameraPreview(this.image, $("camera-box"), (path) => this.pathArrived(path));
    this.focus = new FocusPoint({ image: this.image, mark: $("focus-mark"), clear: $("focus-clear"), onChange });
    this.editor = new CameraEditor({
      image: this.image,
      layer: this.layer,
      controls: {
        zoom: $("cam-zoom"),
        middle: $("cam-middle"),
        ease: $("cam-ease"),
        selected: $("cam-selected"),
        help: `${prefix}camera-help`,
      },
      onChange,
    });
    this.custom.addEventListener("change", () => {
      this.setEditing(this.custom.checked);
      onChange();
    });
    this.playButton.addEventListener("click", () => this.setPlaying(!this.playing()));
  }

  playing() {
    return this.element.classList.contains("playing");
  }

  /** What a job is sent to aim its camera: `{camera}` (the frames), `{focus}` or nothing. */
  aim() {
    if (this.editing && this.editor.keys.length >= 2) return { camera: this.editor.value() };
    if (!this.editing && this.focus.value()) return { focus: this.focus.value() };
    return {};
  }

  /** Each path from /camera: the editor learns the output's shape (and starts from it). */
  pathArrived(path) {
    const aspect = path.output.width / path.output.height;
    if (this.editing && !this.editor.keys.length) {
      this.editor.reset(this.editor.keysFrom(path, this.kept()), aspect);
      setTimeout(() => this.onChange()); // the path through these frames, in place of the preset's
    }
    this.editor.setAspect(aspect);
    this.onPath(path);
  }

  /** The editor on or off: on, it starts from the path shown (or the camera kept). */
  setEditing(on) {
    this.editing = on;
    this.custom.checked = on;
    this.tools.hidden = !on;
    this.layer.hidden = !on;
    this.element.classList.toggle("editing", on);
    this.onEditing(on);
    this.setPlaying(false);
    const path = this.preview.path;
    if (on && path) this.editor.reset(this.editor.keysFrom(path, this.kept()), path.output.width / path.output.height);
    if (!on) this.editor.keys = [];
  }

  setPlaying(on) {
    this.element.classList.toggle("playing", on);
    this.playButton.setAttribute("aria-pressed", String(on));
    this.playButton.textContent = t(on ? "cam.stop" : "cam.play");
    if (on) this.preview.restart();
  }

  /** Say everything again in the language chosen. */
  translate() {
    this.editor.draw();
    this.focus.draw();
    this.playButton.textContent = t(this.playing() ? "cam.stop" : "cam.play");
  }
}
