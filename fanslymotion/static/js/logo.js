// The story's watermark logo: a small PNG, checked in the browser against the service's own
// limits (GET /web/config) so that a wrong file is refused in words before anything is sent.

import { t } from "./i18n.js";

const PNG = [137, 80, 78, 71, 13, 10, 26, 10]; // the eight bytes every PNG file starts with

/** Why `file` cannot be the logo, in words, or "" when it can. */
export async function logoProblem(file, { max_logo_bytes: maxBytes, max_logo_side: maxSide }) {
  const head = new Uint8Array(await file.slice(0, PNG.length).arrayBuffer());
  if (!PNG.every((byte, i) => head[i] === byte)) return t("logo.notPng", { name: file.name });
  if (file.size > maxBytes) {
    return t("logo.tooLarge", { kb: Math.ceil(file.size / 1000), max: Math.floor(maxBytes / 1000) });
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    return t("logo.unreadable", { name: file.name });
  }
  const { width, height } = bitmap;
  bitmap.close();
  if (Math.max(width, height) > maxSide) return t("logo.tooWide", { w: width, h: height, max: maxSide });
  return "";
}

/** The limits in words, shown beside the picker. */
export function logoLimits({ max_logo_bytes: maxBytes, max_logo_side: maxSide }) {
  return t("logo.limits", { kb: Math.floor(maxBytes / 1000), px: maxSide });
}
