// Choosing the photo: the file picker, drag and drop and paste (all three fill the same file
// field), the checks the browser can make before an upload, and the photo chosen last, kept in
// IndexedDB so that a reload (mid-render too) finds it again.

import { draftPhoto, keepDraft } from "./photos.js";
import { t } from "./i18n.js";

// What the browser may fail to show although the service could take it: HEIF/AVIF containers
// (an ISO media file: "ftyp" at byte 4).
const CONTAINER = "ftyp";

/** The refusals known from the file alone: empty, not an image, too big. "" when none. */
export function refusal(file, config) {
  const type = file.type || "";
  const image = type.startsWith("image/") && type !== "image/svg+xml";
  const extensions = /\.(jpe?g|png|webp|bmp|tiff?|gif|heic|heif|avif)$/i;
  if (!image && !(type === "" && extensions.test(file.name || ""))) {
    return t("photo.type", { supported: config.supported });
  }
  if (file.size === 0) return t("photo.empty");
  if (file.size > config.max_upload_bytes) return t("photo.size", { mb: config.max_upload_mb });
  return "";
}

/** Whether a file the browser could not decode may still be a photo the service reads. */
async function container(file) {
  const head = new Uint8Array(await file.slice(0, 12).arrayBuffer());
  return String.fromCharCode(...head.slice(4, 8)) === CONTAINER;
}

/** Load the file into the <img>: its natural size, or null when the browser cannot decode it. */
function load(img, file) {
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  return new Promise((resolve) => {
    img.onload = () => resolve({ width: img.naturalWidth, height: img.naturalHeight });
    img.onerror = () => resolve(null);
    img.src = URL.createObjectURL(file);
  });
}

/**
 * The photo field. `onPhoto(file, size, kept)` gets each photo accepted (size null when the
 * browser cannot show it, kept true for the one found after a reload); `onNone(message)` says the field holds no usable photo any more.
 */
export class PhotoPicker {
  constructor({ input, drop, name, img, config, onPhoto, onNone }) {
    Object.assign(this, { input, drop, name, img, config, onPhoto, onNone });
    this.turn = 0; // the latest choice wins over a slower earlier one
    input.addEventListener("change", () => this.choose(input.files[0], { fromField: true }));
    drop.addEventListener("dragover", (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      this.choose(e.dataTransfer?.files?.[0]);
    });
    document.addEventListener("paste", (e) => {
      const file = [...(e.clipboardData?.files || [])][0];
      if (file) {
        e.preventDefault();
        this.choose(file);
      }
    });
  }

  /** The photo chosen before the page was reloaded, if any. */
  async restore() {
    const file = await draftPhoto();
    if (file) await this.choose(file, { kept: true });
  }

  /** Put the file in the field, so that it names what was dropped or pasted too. */
  show(file) {
    if (file && this.input.files[0] !== file) {
      const data = new DataTransfer();
      data.items.add(file);
      this.input.files = data.files;
    }
    if (!file) this.input.value = "";
    this.name.textContent = file ? file.name || t("photo.pasted") : t("photo.none");
  }

  async choose(file, { fromField = false, kept = false } = {}) {
    if (!file) return;
    const turn = ++this.turn;
    this.onNone(""); // whatever was there before is gone, even if this one is refused
    if (!fromField) this.show(file);
    else this.name.textContent = file.name;
    const refused = refusal(file, this.config);
    if (refused) return this.refuse(refused);
    const size = await load(this.img, file);
    if (turn !== this.turn) return;
    if (!size) {
      if (!(await container(file))) {
        return this.refuse(t("photo.unreadable", { supported: this.config.supported }));
      }
      if (turn !== this.turn) return;
      return this.accept(file, null, kept);
    }
    const c = this.config;
    if (Math.min(size.width, size.height) < c.min_side) {
      return this.refuse(t("photo.small", { min: c.min_side, w: size.width, h: size.height }));
    }
    if (size.width * size.height > c.max_pixels) {
      return this.refuse(t("photo.pixels", { mp: c.max_pixels / 1e6 }));
    }
    return this.accept(file, size, kept);
  }

  refuse(message) {
    this.show(null);
    this.onNone(message);
    keepDraft(null);
  }

  accept(file, size, kept) {
    if (!kept) keepDraft(file);
    this.onPhoto(file, size, kept);
  }
}
