// The subject, pointed at by the user: a tap or click on the photo (or the arrow keys on the
// mark) sets the job's `focus` ({"x", "y"} in photo fractions), which the service then aims at
// in place of the face or region it would find itself.

import { t } from "./i18n.js";

const STEP = 0.02; // an arrow key moves the mark 2 % of the photo (Shift: 10 %)
const clamp = (v) => Math.min(1, Math.max(0, v));
const round = (v) => Math.round(v * 10000) / 10000;

export class FocusPoint {
  /** `mark`: the button drawn at the point; `clear`: the button that forgets it. */
  constructor({ image, mark, clear, onChange }) {
    Object.assign(this, { image, mark, clear, onChange });
    this.point = null;
    image.addEventListener("click", (e) => {
      const box = image.getBoundingClientRect();
      this.set((e.clientX - box.left) / box.width, (e.clientY - box.top) / box.height);
    });
    clear.addEventListener("click", () => this.set(null));
    mark.addEventListener("keydown", (e) => this.key(e));
    new ResizeObserver(() => this.draw()).observe(image);
  }

  /** The job's `focus`, or null when the service should find the subject. */
  value() {
    return this.point && { x: round(this.point.x), y: round(this.point.y) };
  }

  set(x, y, { quiet = false } = {}) {
    this.point = x === null ? null : { x: clamp(x), y: clamp(y) };
    this.draw();
    if (!quiet) this.onChange();
  }

  key(event) {
    const step = event.shiftKey ? STEP * 5 : STEP;
    const moves = {
      ArrowLeft: [-step, 0],
      ArrowRight: [step, 0],
      ArrowUp: [0, -step],
      ArrowDown: [0, step],
    };
    const move = moves[event.key];
    if (!move || !this.point) return;
    event.preventDefault();
    this.set(this.point.x + move[0], this.point.y + move[1]);
  }

  draw() {
    this.mark.hidden = !this.point;
    this.clear.hidden = !this.point;
    if (!this.point) return;
    this.mark.style.left = `${this.point.x * this.image.clientWidth}px`;
    this.mark.style.top = `${this.point.y * this.image.clientHeight}px`;
    this.mark.dataset.focus = JSON.stringify(this.value());
    const where = { x: Math.round(this.point.x * 100), y: Math.round(this.point.y * 100) };
    this.mark.setAttribute("aria-label", t("focus.mark", where));
  }
}
