"""The page's photo handling, result and gallery (issue 21, item 8), in Debian's Chromium against
the real service: each defect found in the trial, driven as a user would meet it."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from .test_process import Process
from .test_web import (
    DROP_OR_PASTE,
    Console,
    _page,
    _photo,
    _service,
    landscape,
    launch_browser,
)

PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_browser()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    yield from _service(tmp_path_factory.mktemp("web-photo"))


def banded(width: int, height: int) -> bytes:
    """A photo with a red band along the top and a blue one along the bottom: a thumbnail that
    crops the frame loses one or both."""
    pixels = np.full((height, width, 3), (120, 140, 110), np.uint8)
    band = height // 6
    pixels[:band] = (220, 30, 30)
    pixels[-band:] = (30, 40, 220)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=92)
    return out.getvalue()


def _open(browser: Any, site: Process, **context: Any) -> tuple[Any, Console, list[str]]:
    console = Console()
    page = _page(browser, console, **context)
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    page.goto(f"http://127.0.0.1:{site.port}/")
    page.wait_for_selector("body[data-ready=true]")
    return page, console, posts


def _field(page: Any) -> dict[str, Any]:
    """What the photo field holds and shows."""
    return dict(
        page.evaluate(
            """() => ({files: [...document.getElementById('file-input').files].map(f => f.name),
                       shown: document.getElementById('file-name').textContent,
                       stage: !document.getElementById('stage').hidden,
                       animate: !document.getElementById('animate').disabled,
                       error: document.getElementById('photo-error').textContent})"""
        )
    )


def test_a_refused_file_takes_the_old_photo_away(browser: Any, site: Process) -> None:
    page, console, posts = _open(browser, site)
    good = _photo("good.jpg", landscape(480, 360), "image/jpeg")
    for bad, words in (
        (_photo("notes.txt", b"plain words", "text/plain"), "not a supported image"),
        (_photo("fake.jpg", b"\x00junk" * 300, "image/jpeg"), "not a photo"),
        (_photo("empty.jpg", b"", "image/jpeg"), "The file is empty"),
    ):
        page.set_input_files("#file-input", good)
        page.wait_for_function("() => !document.getElementById('animate').disabled")
        assert _field(page)["stage"]
        page.set_input_files("#file-input", bad)
        page.wait_for_function(
            "w => document.getElementById('photo-error').textContent.includes(w)", arg=words
        )
        field = _field(page)
        assert field == {
            "files": [],
            "shown": "No photo chosen",
            "stage": False,
            "animate": False,
            "error": field["error"],
        }, bad["name"]
    # A refused file right after a good one, before the good one has even loaded: the later
    # choice wins, and the good photo never comes back.
    page.set_input_files("#file-input", good)
    page.set_input_files("#file-input", _photo("fake.jpg", b"\x00junk" * 300, "image/jpeg"))
    page.wait_for_function("() => document.getElementById('photo-error').textContent !== ''")
    page.get_by_label("Duration").select_option("3")  # a change that redraws the preview
    assert not _field(page)["animate"] and not _field(page)["stage"]
    # Nothing went to the service: not the refused files, not the old photo.
    assert [u for u in posts if "/job/create" in u] == []
    assert console.errors == []


def test_drop_and_paste_fill_the_file_field_in_the_pages_language(
    browser: Any, site: Process
) -> None:
    page, console, _ = _open(browser, site, locale="ru-RU")
    assert _field(page)["shown"] == "Фото не выбрано"
    assert page.inner_text("#drop .file-button") == "Выбрать файл"
    page.evaluate(DROP_OR_PASTE, ["drop", "dropped.jpg", "image/jpeg", list(landscape(320, 240))])
    page.wait_for_selector("#stage:not([hidden])")
    assert _field(page)["files"] == ["dropped.jpg"] and _field(page)["shown"] == "dropped.jpg"
    page.evaluate(DROP_OR_PASTE, ["paste", "pasted.png", "image/png", list(banded(200, 300))])
    page.wait_for_function("() => document.getElementById('photo').naturalWidth === 200")
    assert _field(page)["files"] == ["pasted.png"] and _field(page)["shown"] == "pasted.png"
    assert _field(page)["animate"]
    # The file picker, reached with the keyboard, says it has focus.
    page.focus("#file-input")
    outline = page.eval_on_selector(".file-button", "b => getComputedStyle(b).outlineStyle")
    assert outline == "solid"
    assert console.errors == []


def test_a_reload_mid_render_keeps_the_photo_and_the_form(browser: Any, site: Process) -> None:
    page, console, _ = _open(browser, site)
    page.set_input_files("#file-input", _photo("mine.jpg", landscape(640, 400), "image/jpeg"))
    chosen = {"Duration": "12", "Resolution": "1080p", "Aspect": "1:1"}
    for label, value in chosen.items():
        page.get_by_label(label, exact=True).select_option(value)
    page.get_by_label("Motion", exact=True).select_option("tilt_up")
    page.get_by_label("Variant (seed)").fill("4242")
    page.get_by_label("Variant (seed)").dispatch_event("change")
    page.get_by_role("button", name="Animate").click()
    page.wait_for_selector("#job[data-status=processing]")
    job_id = page.get_attribute("#job", "data-job-id")
    try:
        page.reload()
        page.wait_for_selector(f"#job[data-job-id='{job_id}'][data-status=processing]")
        page.wait_for_function("() => document.getElementById('photo').naturalWidth === 640")
        field = _field(page)
        assert field["files"] == ["mine.jpg"] and field["shown"] == "mine.jpg"
        assert field["stage"] and field["animate"] and field["error"] == ""
        for label, value in chosen.items():
            assert page.get_by_label(label, exact=True).input_value() == value
        assert page.get_by_label("Motion", exact=True).input_value() == "tilt_up"
        assert page.get_by_label("Variant (seed)").input_value() == "4242"
        page.wait_for_selector("#camera-box[data-output='1080x1080']")  # the preview is back
    finally:
        site.call("POST", f"/job/{job_id}/cancel")
    assert console.errors == []


def test_on_a_phone_the_video_comes_into_view_whole_in_the_card_and_named(
    browser: Any, site: Process
) -> None:
    page, console, _ = _open(browser, site, viewport=PHONE)
    assert page.is_hidden("#gallery-pages")  # no videos: nothing to page through
    page.set_input_files("#file-input", _photo("tall.jpg", banded(360, 640), "image/jpeg"))
    page.get_by_label("Duration").select_option("3")
    page.get_by_label("Resolution").select_option("360p")
    page.get_by_label("Strength").fill("0.2")
    page.get_by_role("button", name="Animate").click()
    page.wait_for_function("() => document.getElementById('video').readyState >= 2")
    # The video ends up on the screen without the user scrolling.
    page.wait_for_function(
        """() => { const r = document.getElementById('video').getBoundingClientRect();
                   return r.height > 100 && r.top >= 0 && r.bottom <= window.innerHeight; }"""
    )
    params = page.inner_text("#result-params")
    assert "9:16 (auto, from the photo)" in params and "auto\n" not in params + "\n"
    job_id = page.get_attribute("#video", "data-job-id")
    result = site.get(f"/job/result/{job_id}")[1]
    assert (result["width"], result["height"]) == (360, 640)

    # The gallery card: what the video is, and a thumbnail that shows all of the frame.
    tile = f"#gallery-grid li[data-job-id='{job_id}']"
    page.wait_for_selector(f"{tile} .details:not([hidden])")
    assert page.inner_text(f"{tile} .what") == "Dolly in (zoom) · 3 s · 360p"
    seed = result["seed"]
    assert page.inner_text(f"{tile} .details") == f"360x640 · 9:16 · variant {seed}"
    page.wait_for_function(
        f"""() => {{ const m = document.querySelector("{tile} .thumb .thumb");
                    return m && (m.naturalWidth > 0 || m.readyState >= 2); }}"""
    )
    page.locator(tile).scroll_into_view_if_needed()
    shot = np.asarray(Image.open(io.BytesIO(page.locator(f"{tile} button.thumb").screenshot())))
    middle = shot[:, shot.shape[1] // 2, :3].astype(int)
    rows = len(middle)
    red = [(r > 150 and g < 90 and b < 90) for r, g, b in middle]
    blue = [(b > 150 and r < 90 and g < 100) for r, g, b in middle]
    assert any(red[: rows // 4]) and any(blue[-rows // 4 :]), "the thumbnail cuts the frame"
    assert page.is_hidden("#gallery-pages")  # one video, one page
    assert console.errors == []


@pytest.mark.parametrize("viewport", [PHONE, {"width": 1280, "height": 900}])
def test_the_russian_seed_field_shows_all_of_its_placeholder(
    browser: Any, site: Process, viewport: dict[str, int]
) -> None:
    page, console, _ = _open(browser, site, locale="ru-RU", viewport=viewport)
    fits = page.evaluate(
        """() => {
            const field = document.getElementById('opt-seed');
            const style = getComputedStyle(field);
            const context = document.createElement('canvas').getContext('2d');
            context.font = `${style.fontSize} ${style.fontFamily}`;
            const room = field.clientWidth - parseFloat(style.paddingLeft)
                - parseFloat(style.paddingRight);
            return [field.placeholder, context.measureText(field.placeholder).width, room];
        }"""
    )
    assert fits[0] == "случайный" and fits[1] <= fits[2], fits
    wide = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert wide <= 0
    assert console.errors == []


def test_a_small_photo_is_warned_about_before_animate_with_a_lower_choice(
    browser: Any, site: Process
) -> None:
    page, console, posts = _open(browser, site)
    page.get_by_label("Motion", exact=True).select_option("pan_r")
    page.get_by_label("Resolution").select_option("720p")
    # 600x400 at 720p: the window (at most 400 px high) is enlarged to 720 lines, 2x or more.
    page.set_input_files("#file-input", _photo("small.jpg", landscape(600, 400), "image/jpeg"))
    page.wait_for_selector("#upscale:not([hidden])")
    words = page.inner_text("#upscale-text")
    assert words.startswith("At 720p the camera's closest frame enlarges the photo ")
    factor = float(words.split("photo ")[1].split("×")[0])
    assert factor >= 2.0
    assert [u for u in posts if "/job/create" in u] == []  # said before anything is sent
    # Animate anyway: the job carries the warning, and its card says it in words.
    page.get_by_label("Duration").select_option("3")
    page.get_by_role("button", name="Animate").click()
    page.wait_for_selector("#job-warnings li")
    assert page.inner_text("#job-warnings").startswith("This video enlarges the photo ")
    job_id = page.get_attribute("#job", "data-job-id")
    warned = site.get(f"/job/status/{job_id}")[1]["warnings"]
    assert [w["code"] for w in warned] == ["upscale"] and warned[0]["factor"] > 1.5
    # One tap: a resolution the photo can fill, and the warning goes.
    lower = page.get_by_role("button", name="Use 360p instead")
    lower.click()
    assert page.get_by_label("Resolution").input_value() == "360p"
    page.wait_for_selector("#upscale[hidden]", state="attached")
    page.wait_for_selector("#camera-box[data-output='640x360']")
    # A big photo at a low resolution: no warning at all.
    page.set_input_files("#file-input", _photo("big.jpg", landscape(1600, 1200), "image/jpeg"))
    page.wait_for_selector("#camera-box[data-photo='1600x1200'][data-output='640x360']")
    assert page.is_hidden("#upscale")
    assert console.errors == []
