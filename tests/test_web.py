"""The web page: the camera route and `/` negotiation against the real app, then the page itself
in Debian's Chromium (Playwright) against the real service process on 127.0.0.1."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import tomllib
import urllib.request
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fanslymotion import models, motion, web

from .conftest import Client, ServiceFactory, assert_error_body, make_settings, photo_bytes
from .test_process import Process

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
ROOT = Path(__file__).resolve().parents[1]
# Where the flow test leaves its screenshot when asked: FANSLYMOTION_WEB_SCREENSHOT=docs/web.png
SCREENSHOT = os.environ.get("FANSLYMOTION_WEB_SCREENSHOT", "")
TOKEN = "open-sesame-for-tests"

# -- the camera route and `/` (no browser) ---------------------------------------------------


async def test_camera_route_gives_the_motion_renderers_boxes(client: Client) -> None:
    query = "width=800&height=600&duration=3&resolution=360p&motion_preset=dolly_in"
    status, body, _ = await client.request("GET", f"/camera?{query}&aspect=1:1&strength=0.7")
    assert status == 200, body
    assert body["output"] == {"width": 360, "height": 360} and body["aspect"] == "1:1"
    assert body["frames"] == 3 * 4 == len(body["boxes"])  # the tests' FPS is 4
    assert body["renderer"] == "motion" and body["duration"] == 3
    expected = motion.CameraPath("dolly_in", 0.7, (800, 600), (360, 360)).boxes(12)
    for got, want in zip(body["boxes"], expected, strict=True):
        assert got == pytest.approx(want, abs=1e-3)
        x0, y0, x1, y1 = got
        assert 0 <= x0 < x1 <= 800 and 0 <= y0 < y1 <= 600
        assert (x1 - x0) / (y1 - y0) == pytest.approx(1.0, rel=1e-4)
    widths = [b[2] - b[0] for b in body["boxes"]]
    assert widths == sorted(widths, reverse=True) and widths[-1] < 0.8 * widths[0]  # zooms in

    # auto aspect follows the photo, as a job would: a portrait photo gets 9:16.
    status, body, _ = await client.request(
        "GET", "/camera?width=600&height=1000&duration=6&resolution=480p&motion_preset=pan_l"
    )
    assert status == 200 and body["aspect"] == "9:16", body
    assert body["output"] == {"width": 480, "height": 854} and body["frames"] == 24
    lefts = [b[0] for b in body["boxes"]]
    assert lefts[0] > lefts[-1]  # pan_l: the window moves left over the photo


async def test_camera_route_takes_a_frame_rate_in_the_query(client: Client) -> None:
    query = "width=800&height=600&duration=3&resolution=360p&motion_preset=pan_l"
    for fps in (24, 30):
        status, body, _ = await client.request("GET", f"/camera?{query}&fps={fps}&loop=true")
        assert status == 200, body
        assert body["fps"] == fps and body["frames"] == len(body["boxes"]) == 3 * fps
        assert body["loop"] is True


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("height=600&duration=3&resolution=360p&motion_preset=micro", "width"),
        ("width=800&height=600&duration=5&resolution=360p&motion_preset=micro", "duration"),
        ("width=800&height=600&duration=3&resolution=4k&motion_preset=micro", "resolution"),
        ("width=800&height=600&duration=3&resolution=360p&motion_preset=spin", "motion_preset"),
        (
            "width=800&height=600&duration=3&resolution=360p&motion_preset=micro&aspect=2:1",
            "aspect",
        ),
        (
            "width=800&height=600&duration=3&resolution=360p&motion_preset=micro&strength=2",
            "strength",
        ),
        (
            "width=800&height=600&duration=3&resolution=360p&motion_preset=micro&strength=x",
            "strength",
        ),
        ("width=0&height=600&duration=3&resolution=360p&motion_preset=micro", "width"),
        ("width=9000&height=9000&duration=3&resolution=360p&motion_preset=micro", "megapixels"),
        ("width=800&height=600&duration=3&resolution=360p&motion_preset=micro&fps=60", "fps"),
    ],
)
async def test_camera_route_refuses_as_the_api_does(client: Client, query: str, words: str) -> None:
    status, body, _ = await client.request("GET", f"/camera?{query}")
    assert status == 422
    assert_error_body(body, 422)
    assert words in body["error"]


def test_camera_boxes_for_svd_follow_the_centre_crop() -> None:
    # SVD cuts a 1000x500 photo to 896x640 (7:5) for 4:3, then moves the camera inside.
    boxes = motion.camera_boxes("pan_r", 1.0, (1000, 500), (640, 480), 8, crop_size=(896, 640))
    x0, y0, x1, y1 = motion.centre_crop((1000, 500), (896, 640))
    assert (x0, y0, x1, y1) == pytest.approx((150.0, 0.0, 850.0, 500.0))
    inside = motion.CameraPath("pan_r", 1.0, (896, 640), (640, 480)).boxes(8)
    for box, inner in zip(boxes, inside, strict=True):
        assert 150 - 1e-9 <= box[0] < box[2] <= 850 + 1e-9 and 0 <= box[1] < box[3] <= 500
        scale = 700 / 896
        expected = (
            150 + inner[0] * scale,
            inner[1] * scale,
            150 + inner[2] * scale,
            inner[3] * scale,
        )
        assert box == pytest.approx(expected)
    # Without a crop it is exactly the motion renderer's path.
    plain = motion.camera_boxes("pan_r", 1.0, (1000, 500), (640, 480), 8)
    assert plain == list(motion.CameraPath("pan_r", 1.0, (1000, 500), (640, 480)).boxes(8))


def test_camera_path_with_the_svd_renderer_follows_its_working_crop(tmp_path: Path) -> None:
    from fanslymotion import svd

    settings = make_settings(tmp_path)
    query = {"width": "1200", "height": "600", "duration": "3", "resolution": "480p"}
    params = web.parse_camera_query({**query, "motion_preset": "pan_l", "aspect": "4:3"}, settings)
    body = web.camera_path(params, settings, "svd")
    assert body["renderer"] == "svd" and body["output"] == {"width": 640, "height": 480}
    work = svd.svd_working_size("4:3", settings.svd_size)
    want = motion.camera_boxes("pan_l", 0.5, (1200, 600), (640, 480), 12, crop_size=work)
    assert body["boxes"] == [pytest.approx(b, abs=1e-3) for b in want]
    assert body["boxes"] != web.camera_path(params, settings, "motion")["boxes"]


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (BROWSER_ACCEPT, True),
        ("text/html", True),
        ("*/*", False),
        ("", False),
        ("application/json", False),
        ("application/json, text/html", False),
        ("text/html;q=0.5, application/json", False),
        ("application/json;q=0.1, text/html", True),
        ("text/html;q=0", False),
    ],
)
def test_accept_negotiation(accept: str, html: bool) -> None:
    assert web.prefers_html(accept) is html


async def test_root_is_the_page_for_browsers_and_json_for_api_clients(
    start_service: ServiceFactory,
) -> None:
    client = await start_service(api_token="s3cret-for-the-page")
    status, index, response = await client.request("GET", "/")  # aiohttp sends Accept: */*
    assert status == 200 and index["name"] == "FanslyMotion"
    assert response.headers["Vary"] == "Accept"
    status, page, response = await client.request("GET", "/", headers={"Accept": BROWSER_ACCEPT})
    assert status == 200 and response.content_type == "text/html"
    assert b'<script type="module" src="/static/js/main.js">' in page
    assert response.headers["Vary"] == "Accept"
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "media-src 'self' blob:;" in policy
    # The page, its files and the camera route need no token; job data does.
    for path, kind in [
        ("/static/js/main.js", "application/javascript"),
        ("/static/app.css", "text/css"),
        ("/favicon.ico", "image/svg+xml"),
    ]:
        status, _, response = await client.request("GET", path)
        assert status == 200 and response.content_type == kind, path
    status, config, _ = await client.request("GET", "/web/config")
    assert status == 200 and config["token_required"] is True
    assert config["max_upload_bytes"] == client.service.settings.max_upload_bytes
    # The page offers only what this service's /job/create and /camera take.
    assert set(config["job_fields"]) == set(models.JobParams.model_fields)
    assert set(config["camera_fields"]) == set(web.CameraBody.model_fields)
    status, body, _ = await client.request("GET", "/jobs?user_id=1")
    assert status == 401
    status, body, _ = await client.request("GET", "/static/../app.py")
    assert status in (403, 404) and body["ok"] is False


def test_the_page_has_every_word_in_both_languages() -> None:
    source = (web.STATIC_DIR / "js" / "i18n.js").read_text(encoding="utf-8")
    english, russian = source.split("\n  ru: {")
    keys = [set(re.findall(r'^\s+"([\w.]+)":', part, re.M)) for part in (english, russian)]
    assert keys[0] and keys[0] == keys[1], keys[0] ^ keys[1]


def test_the_page_words_every_phase_in_both_languages() -> None:
    from fanslymotion.models import Phase

    source = (web.STATIC_DIR / "js" / "i18n.js").read_text(encoding="utf-8")
    english, russian = source.split("\n  ru: {")
    for phase in Phase:
        assert f'"phase.{phase.value}"' in english, phase
        assert f'"phase.{phase.value}"' in russian, phase


def test_every_static_file_is_package_data() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["fanslymotion"]
    files = [p.relative_to(web.STATIC_DIR.parent).as_posix() for p in web.STATIC_DIR.rglob("*")]
    files = [f for f in files if (web.STATIC_DIR.parent / f).is_file()]
    assert "static/index.html" in files and "static/js/main.js" in files
    missing = [f for f in files if not any(fnmatch(f, p) for p in patterns)]
    assert not missing, f"not in package-data: {missing}"


# -- the page in Chromium ---------------------------------------------------------------------


class Console:
    """Console errors and uncaught exceptions of one page, for the no-console-errors checks."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def watch(self, page: Any) -> Any:
        page.on(
            "console",
            lambda msg: self.errors.append(f"console: {msg.text}") if msg.type == "error" else None,
        )
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc} {exc.stack}"))
        return page


def launch_browser() -> Iterator[Any]:
    """Debian's Chromium under Playwright, headless (the page tests skip without it)."""
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium: `scripts/dev` installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_browser()


def _service(path: Path, **env: str) -> Iterator[Process]:
    path.mkdir(parents=True, exist_ok=True)
    proc = Process(path, FANSLYMOTION_FPS="12", **env)
    try:
        proc.start()
        yield proc
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.stop(signal.SIGTERM)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """The service the page tests share: no token, 1 MB uploads (to test the size refusal)."""
    yield from _service(
        tmp_path_factory.mktemp("web"),
        FANSLYMOTION_MAX_UPLOAD_MB="1",
        FANSLYMOTION_MAX_QUEUED="20",  # the paging test queues 13 jobs for one user
        FANSLYMOTION_MAX_ACTIVE_PER_USER="20",
    )


@pytest.fixture(scope="module")
def token_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    yield from _service(tmp_path_factory.mktemp("web-token"), FANSLYMOTION_API_TOKEN=TOKEN)


def _get_with_token(proc: Process, path: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{proc.port}{path}", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body: dict[str, Any] = json.loads(response.read())
    return body


# Fire a drop (on the drop zone) or a paste (on the document) carrying one file.
DROP_OR_PASTE = """([kind, name, type, bytes]) => {
    const data = new DataTransfer();
    data.items.add(new File([new Uint8Array(bytes)], name, {type}));
    const event = kind === "drop"
        ? new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true})
        : new ClipboardEvent("paste", {clipboardData: data, bubbles: true, cancelable: true});
    (kind === "drop" ? document.getElementById("drop") : document).dispatchEvent(event);
}"""


def _page(browser: Any, console: Console, **context: Any) -> Any:
    page = browser.new_context(**context).new_page()
    page.set_default_timeout(30_000)
    return console.watch(page)


def _box(page: Any) -> dict[str, float]:
    return dict(
        page.evaluate(
            """() => {
                const s = getComputedStyle(document.getElementById("camera-box"));
                return {left: parseFloat(s.left), top: parseFloat(s.top),
                        width: parseFloat(s.width), height: parseFloat(s.height)};
            }"""
        )
    )


def landscape(width: int, height: int) -> bytes:
    """A smooth picture (sky, sun, hills), so that a screenshot of the page stays small."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32) / height
    sky = np.stack([90 + 120 * y, 150 + 80 * y, 235 - 30 * y], axis=-1)
    sun = ((x - 0.95) ** 2 + (y - 0.3) ** 2) < 0.012
    sky[sun] = (255, 214, 110)
    for base, amp, freq, colour in (
        (0.62, 0.06, 5.0, (70, 130, 80)),
        (0.75, 0.05, 9.0, (40, 95, 55)),
    ):
        hill = y > base + amp * np.sin(x * freq)
        sky[hill] = colour
    out = io.BytesIO()
    Image.fromarray(sky.clip(0, 255).astype(np.uint8)).save(out, format="JPEG", quality=90)
    return out.getvalue()


def _background(page: Any) -> float:
    """Mean of the page background's RGB channels (0 black, 255 white)."""
    colour = page.evaluate("getComputedStyle(document.body).backgroundColor")
    channels = [float(v) for v in colour[colour.index("(") + 1 : colour.index(")")].split(",")[:3]]
    return sum(channels) / 3


def _photo(name: str, data: bytes, mime: str) -> dict[str, Any]:
    return {"name": name, "mimeType": mime, "buffer": data}


def test_page_makes_a_video_cancels_one_and_keeps_both(browser: Any, site: Process) -> None:
    console = Console()
    page = _page(browser, console, viewport={"width": 1280, "height": 900})
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url))
    page.goto(f"http://127.0.0.1:{site.port}/")
    page.wait_for_selector("body[data-ready=true]")
    assert page.get_by_role("button", name="Animate").is_disabled()
    assert _background(page) > 200  # light by default

    # A photo, the options, and the camera preview moving over it.
    page.set_input_files("#file-input", _photo("photo.jpg", landscape(960, 720), "image/jpeg"))
    page.get_by_label("Duration").select_option("3")
    page.get_by_label("Resolution").select_option("480p")
    page.get_by_label("Motion", exact=True).select_option("pan_r")
    page.wait_for_selector("#camera-box[data-frames='36'][data-output='854x480']")
    first = _box(page)
    page.wait_for_function(
        "x => Math.abs(parseFloat(getComputedStyle(document.getElementById('camera-box')).left)"
        " - x) > 3",
        arg=first["left"],
    )
    second = _box(page)
    shown = page.eval_on_selector("#photo", "img => [img.clientWidth, img.clientHeight]")
    for box in (first, second):
        assert (
            box["width"] > 0
            and box["left"] >= -0.5
            and box["left"] + box["width"] <= shown[0] + 0.5
        )
        assert box["width"] / box["height"] == pytest.approx(854 / 480, rel=0.02)
    assert first["left"] != second["left"]

    # Submit and watch the progress bar; the video plays inline.
    page.evaluate(
        """() => {
            window.progressSeen = [];
            const bar = document.getElementById("job-progress");
            new MutationObserver(() => window.progressSeen.push(bar.value))
                .observe(bar, {attributes: true, attributeFilter: ["value"]});
        }"""
    )
    page.get_by_role("button", name="Animate").click()
    page.wait_for_selector("#job[data-status=completed]")
    page.wait_for_function("() => document.getElementById('video').readyState >= 2")
    page.wait_for_function("() => document.getElementById('video').currentTime > 0")
    video = page.eval_on_selector(
        "#video", "v => ({d: v.duration, w: v.videoWidth, h: v.videoHeight, job: v.dataset.jobId})"
    )
    assert video["d"] == pytest.approx(3.0, abs=0.1) and (video["w"], video["h"]) == (854, 480)
    done_id = video["job"]
    assert site.get(f"/job/status/{done_id}")[1]["status"] == "completed"
    seen = page.evaluate("window.progressSeen")
    assert len({v for v in seen if 0 < v < 100}) >= 2, seen
    assert "854x480" in page.inner_text("#result-params")
    # The first frame as the poster: the service's poster_url when it has one, else the
    # gallery shows the video's own first frame.
    result = site.get(f"/job/result/{done_id}")[1]
    tile = f"#gallery-grid li[data-job-id='{done_id}'] .thumb"
    if result.get("poster_url"):
        assert page.get_attribute("#video", "poster", timeout=5000).endswith(result["poster_url"])
        page.wait_for_function(f'() => document.querySelector("{tile} img")?.naturalWidth > 0')
    else:
        page.wait_for_function(f'() => document.querySelector("{tile} video")?.readyState >= 1')

    # A long second job: a reload comes back to it, and Cancel really cancels it.
    page.get_by_label("Duration").select_option("12")
    page.get_by_label("Resolution").select_option("1080p")
    page.get_by_role("button", name="Animate").click()
    page.wait_for_function(
        "id => { const j = document.getElementById('job');"
        " return j.dataset.jobId !== id && j.dataset.status === 'processing'; }",
        arg=done_id,
    )
    long_id = page.get_attribute("#job", "data-job-id")
    # The phase and the time left, in words.
    page.wait_for_selector("#job-detail:text('rendering frames')")
    page.wait_for_selector("#job-detail:text('s left')")
    if SCREENSHOT:  # the page at work: preview, live progress and the gallery
        page.wait_for_function("() => document.getElementById('job-progress').value > 15")
        page.screenshot(path=str(ROOT / SCREENSHOT), full_page=True)
    page.reload()
    page.wait_for_selector(f"#job[data-job-id='{long_id}'][data-status=processing]")
    # The options chosen last came back with the page.
    assert page.get_by_label("Duration").input_value() == "12"
    assert page.get_by_label("Motion", exact=True).input_value() == "pan_r"
    page.get_by_role("button", name="Cancel", exact=True).click()
    page.wait_for_selector("#job[data-status=cancelled]")
    assert site.get(f"/job/status/{long_id}")[1]["status"] == "cancelled"

    # Both in the gallery after a reload, with their status.
    page.reload()
    page.wait_for_selector(f"#gallery-grid li[data-job-id='{long_id}'][data-status=cancelled]")
    page.wait_for_selector(f"#gallery-grid li[data-job-id='{done_id}'][data-status=completed]")
    assert page.locator("#gallery-grid li").count() == 2
    assert console.errors == []
    # Nothing came from anywhere but the service (and the page's own blob: URLs).
    here = f"http://127.0.0.1:{site.port}/"
    assert [u for u in asked if not u.startswith((here, "blob:", "data:"))] == []


def test_page_refuses_files_in_words_in_russian_on_a_phone(browser: Any, site: Process) -> None:
    console = Console()
    page = _page(
        browser,
        console,
        locale="ru-RU",
        viewport={"width": 390, "height": 844},
        color_scheme="dark",
    )
    page.goto(f"http://127.0.0.1:{site.port}/")
    page.wait_for_selector("body[data-ready=true]")
    assert _background(page) < 60  # dark by the system's preference
    assert page.get_by_role("button", name="Оживить").is_visible()
    wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert wide <= 0, "the page scrolls sideways on a phone"

    page.set_input_files("#file-input", _photo("notes.txt", b"not a photo", "text/plain"))
    assert "не поддерживаемое изображение" in page.inner_text("#photo-error")
    page.set_input_files("#file-input", _photo("big.jpg", os.urandom(1_200_000), "image/jpeg"))
    assert "больше 1 МБ" in page.inner_text("#photo-error")
    page.set_input_files("#file-input", _photo("tiny.png", photo_bytes(40, 40, "PNG"), "image/png"))
    page.wait_for_function(
        "() => document.getElementById('photo-error').textContent.includes('64')"
    )
    assert "слишком маленькое" in page.inner_text("#photo-error")
    assert page.get_by_role("button", name="Оживить").is_disabled()

    # Drag and drop, and paste, take the same path as the file picker.
    page.evaluate(DROP_OR_PASTE, ["drop", "notes.txt", "text/plain", list(b"plain text")])
    assert "не поддерживаемое изображение" in page.inner_text("#photo-error")
    page.evaluate(DROP_OR_PASTE, ["paste", "p.jpg", "image/jpeg", list(landscape(320, 240))])
    page.wait_for_selector("#camera-box[data-frames='72']")  # 6 s at 12 fps, the default
    assert page.inner_text("#photo-error") == ""

    # A file the browser cannot tell from a photo (it may be a HEIF this browser cannot show):
    # the service's refusal, in its words.
    heif = b"\x00\x00\x00\x18ftypheic" + b"\x00junk" * 300
    page.set_input_files("#file-input", _photo("x.heic", heif, "image/heic"))
    page.get_by_role("button", name="Оживить").click()
    page.wait_for_selector("#make-error:text('not a supported image')")
    # Chromium logs the refused request itself ("the server responded with a status of 415").
    assert [e for e in console.errors if "415" not in e] == [], console.errors
    console.errors.clear()

    # The switch: English, kept across a reload; every control has a label.
    page.get_by_role("button", name="English").click()
    assert page.get_by_role("button", name="Animate").is_visible()
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.get_by_role("button", name="Animate").is_visible()
    for label in ("Duration", "Resolution", "Aspect", "Strength", "Variant (seed)"):
        assert page.get_by_label(label, exact=True).count() == 1, label
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select')]
            .filter(el => !el.labels || el.labels.length === 0).map(el => el.id)"""
    )
    assert unlabelled == []
    assert console.errors == []


def test_page_asks_for_the_token_and_plays_with_it(browser: Any, token_site: Process) -> None:
    console = Console()
    page = _page(browser, console)
    page.goto(f"http://127.0.0.1:{token_site.port}/")
    page.wait_for_selector("#token-panel:not([hidden])")
    assert page.is_hidden("#gallery") and page.is_hidden("#make")

    page.get_by_label("API token", exact=True).fill("wrong")
    page.get_by_role("button", name="Save").click()
    page.wait_for_selector("#token-error:text('was not accepted')")
    assert page.is_hidden("#gallery") and page.is_hidden("#make")

    page.get_by_label("API token", exact=True).fill(TOKEN)
    page.keyboard.press("Enter")  # the keyboard alone gets through the page
    page.wait_for_selector("#gallery:not([hidden])")
    page.set_input_files("#file-input", _photo("p.jpg", photo_bytes(480, 360), "image/jpeg"))
    page.get_by_label("Duration").select_option("3")
    page.get_by_label("Resolution").select_option("360p")
    page.get_by_role("button", name="Random").focus()
    page.keyboard.press("Tab")  # the next control is the main button
    assert page.evaluate("document.activeElement.id") == "animate"
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.getElementById('video').readyState >= 2")
    video = page.eval_on_selector("#video", "v => [v.duration, v.videoWidth, v.src]")
    assert video[0] == pytest.approx(3.0, abs=0.1) and video[1] == 640
    # No signed URL yet: the page fetched the MP4 with the header and plays it from memory.
    assert video[2].startswith("blob:") or "?" in video[2]
    first_id = page.get_attribute("#video", "data-job-id")

    # "Other motion": the same photo (kept in the browser) and seed, another camera move.
    page.get_by_label("Motion for the next video").select_option("tilt_up")
    page.get_by_role("button", name="Other motion").click()
    page.wait_for_function(
        "id => { const v = document.getElementById('video');"
        " return v.dataset.jobId !== id && v.readyState >= 2; }",
        arg=first_id,
    )
    second_id = page.get_attribute("#video", "data-job-id")
    first, second = (_get_with_token(token_site, f"/job/result/{i}") for i in (first_id, second_id))
    assert second["parameters"]["motion_preset"] == "tilt_up" and second["seed"] == first["seed"]
    assert second["parameters"]["duration"] == 3 and second["width"] == 640
    page.wait_for_selector(f"#gallery-grid li[data-job-id='{second_id}'][data-status=completed]")

    # The token stays in the browser: a reload goes straight to the gallery.
    page.reload()
    page.wait_for_selector("#gallery-grid li[data-status=completed]")
    assert page.is_hidden("#token-panel")
    # The one refused request is the wrong token's 401, which Chromium itself logs.
    assert [e for e in console.errors if "401" not in e] == [], console.errors
    assert len(console.errors) <= 1


def test_gallery_pages_through_a_users_jobs(browser: Any, site: Process) -> None:
    console = Console()
    page = _page(browser, console)
    page.goto(f"http://127.0.0.1:{site.port}/")
    page.wait_for_selector("body[data-ready=true]")
    user = int(page.evaluate("localStorage.getItem('fanslymotion.user')"))
    assert 0 < user <= 2**53
    jobs = [site.create(user_id=user, duration=12, resolution="1080p") for _ in range(13)]
    try:
        page.reload()
        page.wait_for_selector(f"#gallery-grid li[data-job-id='{jobs[-1]}']")  # newest first
        assert page.locator("#gallery-grid li").count() == 12
        assert page.is_disabled("#gallery-prev") and page.is_visible("#gallery-pages")
        page.get_by_role("button", name="Older").click()
        page.wait_for_selector(f"#gallery-grid li[data-job-id='{jobs[0]}']")
        assert page.locator("#gallery-grid li").count() == 1
        assert page.inner_text("#gallery-page") == "Page 2" and page.is_disabled("#gallery-next")
        # Cancel from the gallery: the tile's own button, and the API agrees.
        page.get_by_role("button", name="Cancel: ", exact=False).click()
        page.wait_for_selector(f"#gallery-grid li[data-job-id='{jobs[0]}'][data-status=cancelled]")
        assert site.get(f"/job/status/{jobs[0]}")[1]["status"] == "cancelled"
        page.get_by_role("button", name="Newer").click()
        page.wait_for_selector(f"#gallery-grid li[data-job-id='{jobs[-1]}']")
    finally:
        for job_id in jobs:
            site.call("POST", f"/job/{job_id}/cancel")
    assert console.errors == []
