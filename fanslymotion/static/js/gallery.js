// The gallery: this browser's jobs (GET /jobs), newest first, as a grid of posters with what
// each is (motion, length, size, ratio, variant) and its status, in pages.

import { mediaUrl, request, token, userId } from "./api.js";
import { t } from "./i18n.js";

const PAGE = 12;
const ACTIVE = new Set(["queued", "processing"]);

/** The name of the listed ratio ("9:16") nearest to width:height (sizes are rounded to even). */
export function ratioName(width, height, aspects) {
  const ratio = width / height;
  let best = `${width}:${height}`;
  let off = Infinity;
  for (const name of aspects) {
    const [w, h] = name.split(":").map(Number);
    if (!w || !h) continue; // "auto"
    const distance = Math.abs(Math.log(w / h / ratio));
    if (distance < off) [best, off] = [name, distance];
  }
  return best;
}

export class Gallery {
  constructor(root, actions) {
    this.root = root;
    this.grid = root.querySelector("#gallery-grid");
    this.empty = root.querySelector("#gallery-empty");
    this.prev = root.querySelector("#gallery-prev");
    this.next = root.querySelector("#gallery-next");
    this.page = root.querySelector("#gallery-page");
    this.pages = root.querySelector("#gallery-pages");
    this.error = root.querySelector("#gallery-error");
    this.actions = actions; // { play(jobId), cancel(jobId), again(job), failed(exc) }
    this.aspects = []; // the ratios the service offers, to name a video's ratio
    this.offset = 0;
    this.more = false;
    this.prev.addEventListener("click", () => this.load(Math.max(0, this.offset - PAGE)));
    this.next.addEventListener("click", () => this.load(this.offset + PAGE));
  }

  async load(offset = this.offset) {
    this.error.textContent = "";
    let list;
    try {
      const query = new URLSearchParams({ user_id: userId(), limit: PAGE, offset });
      list = await request(`/jobs?${query}`);
    } catch (exc) {
      this.actions.failed(exc, this.error);
      return;
    }
    this.offset = offset;
    this.more = list.jobs.length === PAGE;
    this.grid.replaceChildren(...list.jobs.map((job) => this.tile(job)));
    this.empty.hidden = list.jobs.length > 0 || offset > 0;
    this.prev.disabled = offset === 0;
    this.next.disabled = !this.more;
    this.pages.hidden = offset === 0 && !this.more; // one page: nothing to page through
    this.page.textContent = t("gallery.page", { n: Math.floor(offset / PAGE) + 1 });
    this.root.hidden = false;
  }

  tile(job) {
    const item = document.createElement("li");
    item.className = "tile";
    item.dataset.jobId = job.job_id;
    item.dataset.status = job.status;
    const thumb = document.createElement("button");
    thumb.type = "button";
    thumb.className = "thumb";
    thumb.textContent = `${t(`motion.${job.motion_preset}`)} · ${job.duration} s · ${job.resolution}`;
    thumb.setAttribute("aria-label", `${t("gallery.play")}: ${thumb.textContent}`);
    thumb.disabled = job.status !== "completed";
    thumb.addEventListener("click", () => this.actions.play(job.job_id));
    const meta = document.createElement("div");
    meta.className = "meta";
    const what = document.createElement("p");
    what.className = "what";
    what.textContent = thumb.textContent;
    const details = document.createElement("p");
    details.className = "details";
    details.hidden = true;
    if (job.status === "completed") this.poster(job.job_id, thumb, details);

    const badge = document.createElement("span");
    badge.className = `badge ${job.status}`;
    badge.textContent = t(`status.${job.status}`);
    const when = document.createElement("time");
    when.dateTime = job.created_at;
    when.textContent = new Date(job.created_at).toLocaleString();
    const actions = document.createElement("div");
    actions.className = "actions";
    const label = thumb.textContent;
    const add = (key, onClick) => actions.append(this.button(key, label, onClick));
    if (job.status === "completed") {
      add("gallery.play", () => this.actions.play(job.job_id));
      add("gallery.download", () => this.actions.download(job.job_id));
    }
    if (ACTIVE.has(job.status)) add("gallery.cancel", () => this.actions.cancel(job.job_id));
    add("gallery.resubmit", () => this.actions.again(job.job_id));
    meta.append(what, details, badge, when, actions);
    item.append(thumb, meta);
    return item;
  }

  button(key, what, onClick) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary";
    button.textContent = t(key);
    button.setAttribute("aria-label", `${t(key)}: ${what}`); // which video, for screen readers
    button.addEventListener("click", onClick);
    return button;
  }

  /** The video's first frame in the thumbnail, and its size, ratio and variant below it. */
  async poster(jobId, thumb, details) {
    try {
      const result = await request(`/job/result/${jobId}`);
      if (result.width) {
        const ratio = ratioName(result.width, result.height, this.aspects);
        details.textContent = [
          `${result.width}x${result.height}`,
          ratio,
          t("gallery.seed", { seed: result.seed }),
        ].join(" · ");
        details.hidden = false;
      }
      let media;
      if (result.poster_url) {
        media = document.createElement("img");
        media.alt = "";
        media.src = await mediaUrl(result.poster_url);
      } else if (result.video_url && (!token() || result.video_url.includes("?"))) {
        // No poster from the service: the video's first frame, fetched by the browser itself.
        media = document.createElement("video");
        media.muted = true;
        media.preload = "metadata";
        media.src = `${result.video_url}#t=0.001`;
      } else {
        return;
      }
      media.className = "thumb";
      media.style.pointerEvents = "none";
      thumb.replaceChildren(media);
      thumb.style.padding = "0";
    } catch {
      // the text label stays: a missing poster is not worth an error message
    }
  }
}
