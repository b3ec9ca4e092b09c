// Talking to the service: the bearer token and user id kept in this browser, JSON requests with
// the service's error messages, the job's event stream, and video/poster URLs.

const TOKEN_KEY = "fanslymotion.token";
const USER_KEY = "fanslymotion.user";

export class ApiError extends Error {
  constructor(status, message, code = "", resetAt = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.resetAt = resetAt; // a daily limit's reset (a Date), from X-RateLimit-Reset
  }
}

export function token() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
}

/** This browser's user id: a random positive integer, made once and kept in localStorage. */
export function userId() {
  let id = Number(localStorage.getItem(USER_KEY));
  if (!Number.isSafeInteger(id) || id <= 0) {
    const words = crypto.getRandomValues(new Uint32Array(2));
    // 2^31 .. 2^52: far from the small ids people type by hand and from Telegram's ids.
    id = 2 ** 31 + ((words[0] * 2 ** 20 + (words[1] >>> 12)) % (2 ** 52 - 2 ** 31));
    localStorage.setItem(USER_KEY, String(id));
  }
  return id;
}

const LAUNCH_KEY = "fanslymotion.tma";

/** Telegram's launch data when the page runs as a Mini App: Telegram.WebApp.initData where
 * Telegram's script is present, else tgWebAppData from the URL fragment (kept for this tab,
 * the fragment does not survive a reload inside Telegram). "" outside Telegram. */
function readLaunchData() {
  const fromScript = globalThis.Telegram?.WebApp?.initData;
  if (fromScript) return fromScript;
  const fromFragment = new URLSearchParams(location.hash.slice(1)).get("tgWebAppData");
  if (fromFragment) {
    sessionStorage.setItem(LAUNCH_KEY, fromFragment);
    return fromFragment;
  }
  return sessionStorage.getItem(LAUNCH_KEY) || "";
}

const LAUNCH = readLaunchData();

/** Whether the page was opened inside Telegram (it acts as that Telegram user, no token). */
export function inTelegram() {
  return Boolean(LAUNCH);
}

function headers(extra = {}, bearer = token()) {
  const out = { Accept: "application/json", ...extra };
  if (LAUNCH) out.Authorization = `tma ${LAUNCH}`;
  else if (bearer) out.Authorization = `Bearer ${bearer}`;
  return out;
}

async function failure(response) {
  let message = `${response.status} ${response.statusText}`;
  let code = "";
  try {
    const body = await response.json();
    if (body && typeof body.error === "string") message = body.error;
    if (body && typeof body.code === "string") code = body.code;
  } catch {
    // not JSON: keep the status line
  }
  const reset = Number(response.headers.get("X-RateLimit-Reset"));
  return new ApiError(response.status, message, code, reset > 0 ? new Date(reset * 1000) : null);
}

/** fetch + JSON (`json` is sent as the body); a non-2xx answer throws ApiError with the
 * service's own message. */
export async function request(path, { method = "GET", body, json, bearer, signal } = {}) {
  let response;
  const extra = json === undefined ? {} : { "Content-Type": "application/json" };
  if (json !== undefined) body = JSON.stringify(json);
  try {
    response = await fetch(path, { method, body, signal, headers: headers(extra, bearer) });
  } catch (exc) {
    if (exc.name === "AbortError") throw exc;
    throw new ApiError(0, "network");
  }
  if (!response.ok) throw await failure(response);
  return response.json();
}

/**
 * Read the job's Server-Sent Events with fetch (EventSource cannot send the bearer header).
 * Calls onEvent(name, data) for each event; resolves when the stream ends.
 */
export async function streamEvents(jobId, onEvent, signal) {
  const response = await fetch(`/job/${jobId}/events`, {
    headers: headers({ Accept: "text/event-stream" }),
    signal,
    cache: "no-store",
  });
  if (!response.ok) throw await failure(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      dispatch(block, onEvent);
    }
  }
}

function dispatch(block, onEvent) {
  let name = "message";
  const data = [];
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue; // a comment: the keep-alive
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") name = value;
    else if (field === "data") data.push(value);
  }
  if (!data.length) return;
  let parsed;
  try {
    parsed = JSON.parse(data.join("\n"));
  } catch {
    return;
  }
  onEvent(name, parsed);
}

/** A URL the page can put in <video src> or <img src> for a service URL. */
export async function mediaUrl(url, signal) {
  if (!url) return "";
  // Without a token, and for a signed URL (it carries its signature in the query), the
  // browser fetches it itself, with Range requests for seeking.
  if ((!token() && !LAUNCH) || url.includes("?")) return url;
  const response = await fetch(url, { headers: headers({ Accept: "*/*" }), signal });
  if (!response.ok) throw await failure(response);
  return URL.createObjectURL(await response.blob());
}
