// Bar charts as SVG, drawn from the service's own figures (no library, nothing from the network).

const NS = "http://www.w3.org/2000/svg";

function node(name, attrs = {}, text = "") {
  const el = document.createElementNS(NS, name);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  if (text) el.textContent = text;
  return el;
}

/**
 * A bar chart of `points` ([{label, value, title}]): one <rect class="bar"> per point (zero
 * values get a flat bar), every `labelEvery`-th label under its bar, the largest value on the
 * axis. Returns the <svg>.
 */
export function barChart(points, { title = "", labelEvery = 1, width = 720, height = 180 } = {}) {
  const left = 36;
  const bottom = 22;
  const top = 8;
  const plotW = width - left - 4;
  const plotH = height - top - bottom;
  const most = Math.max(1, ...points.map((p) => p.value));
  const svg = node("svg", {
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-label": title,
    "data-points": points.length,
  });
  svg.append(node("title", {}, title));
  svg.append(node("line", { class: "axis", x1: left, y1: top + plotH, x2: width - 4, y2: top + plotH }));
  svg.append(node("line", { class: "axis", x1: left, y1: top, x2: left, y2: top + plotH }));
  svg.append(node("text", { x: left - 4, y: top + 8, "text-anchor": "end" }, formatValue(most)));
  svg.append(node("text", { x: left - 4, y: top + plotH, "text-anchor": "end" }, "0"));
  const step = plotW / Math.max(1, points.length);
  const barW = Math.min(56, Math.max(1, step * 0.7));
  points.forEach((point, index) => {
    const h = point.value > 0 ? Math.max(1, (point.value / most) * plotH) : 1;
    const x = left + index * step + (step - barW) / 2;
    const bar = node("rect", {
      class: "bar",
      x: x.toFixed(1),
      y: (top + plotH - h).toFixed(1),
      width: barW.toFixed(1),
      height: h.toFixed(1),
      "data-value": point.value,
    });
    bar.append(node("title", {}, point.title ?? `${point.label}: ${point.value}`));
    svg.append(bar);
    if (index % labelEvery === 0) {
      svg.append(
        node("text", { x: (x + barW / 2).toFixed(1), y: height - 6, "text-anchor": "middle" }, point.label),
      );
    }
  });
  return svg;
}

function formatValue(value) {
  return Number.isInteger(value) ? String(value) : value.toFixed(1);
}
