// Honest resolution: whether the camera's tightest window must be enlarged more than the
// service allows without a warning, and the largest resolution that needs no enlarging.

const LIMIT = 1.5; // the service warns above this enlargement (issue 21, item 6)

const shortSide = (resolution) => Number.parseInt(resolution, 10);

/**
 * The warning for a camera path (GET /camera's answer) at `resolution`, or null: its own
 * `warnings` when the service sends them, else from its boxes (the output's width over the
 * narrowest window's). `lower` is the resolution to offer instead (null when none is lower).
 */
export function upscaleWarning(path, resolution, resolutions) {
  const speaks = Array.isArray(path.warnings); // a service that warns says so itself
  const told = speaks ? path.warnings.find((w) => w?.code === "upscale" && w.factor) : null;
  if (speaks && !told) return null;
  let factor = told ? Number(told.factor) : 0;
  if (!told) {
    const narrowest = Math.min(...path.boxes.map((b) => b[2] - b[0]));
    factor = path.output.width / narrowest;
  }
  if (!(factor > LIMIT)) return null;
  const here = shortSide(resolution);
  const below = resolutions.filter((r) => shortSide(r) < here);
  const needs = (r) => (factor * shortSide(r)) / here;
  const lower =
    told?.max_resolution ??
    below.filter((r) => needs(r) <= 1).at(-1) ??
    below.filter((r) => needs(r) <= LIMIT).at(-1) ??
    below[0] ??
    null;
  return { factor, lower };
}
