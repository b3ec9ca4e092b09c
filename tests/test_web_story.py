"""The page's storyboard (issue 25, item 7) in Debian's Chromium against the real service: three
photos added, reordered by keyboard and by drag, a caption, music with its length, kept across a
reload, rendered, and the story played."""

from __future__ import annotations

import base64
import io
import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fanslymotion import video

from .storytools import photo_jpeg, tune, write_wav
from .test_process import Process
from .test_web import Console, _page, _photo, _service, launch_browser
from .test_web_camera import _rect

# Where the storyboard's screenshot goes when asked: FANSLYMOTION_WEB_STORY_SCREENSHOT=x.png
SCREENSHOT = os.environ.get("FANSLYMOTION_WEB_STORY_SCREENSHOT", "")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_browser()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    yield from _service(tmp_path_factory.mktemp("web-story"))


def _order(page: Any) -> list[str]:
    return list(page.eval_on_selector_all("#story-shots li", "els => els.map(e => e.dataset.id)"))


def test_storyboard_adds_reorders_keeps_renders_and_plays(
    browser: Any, site: Process, tmp_path: Path
) -> None:
    console = Console()
    page = _page(browser, console, viewport={"width": 1280, "height": 1000})
    page.goto(f"http://127.0.0.1:{site.port}/")
    page.wait_for_selector("body[data-ready=true]")
    photos = [
        _photo(f"{n}.jpg", photo_jpeg(n), "image/jpeg") for n in ("astronaut", "coffee", "chelsea")
    ]
    page.set_input_files("#story-files", photos)
    page.wait_for_function("() => document.querySelectorAll('#story-shots li').length === 3")
    # 3 x 4 s at the service's 12 fps, less two crossfades of 0.6 s (7 frames each): 34/12 s.
    assert page.text_content("#story-total") == "Total: 10.83 s"
    assert _order(page) == ["1", "2", "3"]

    page.focus("#story-shots li:nth-child(2) .shot-up")  # the keyboard: shot 2 up
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelector('#story-shots li').dataset.id === '2'")
    page.drag_and_drop("#story-shots li[data-id='3']", "#story-shots li[data-id='1']")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#story-shots li')].map(e => e.dataset.id).join() === '2,3,1'"
    )
    page.fill("#story-shots li:nth-child(1) .shot-caption", "Кофе утром")
    page.press("#story-shots li:nth-child(1) .shot-caption", "Tab")
    page.fill("#story-shots li:nth-child(3) input[type=number]", "3")
    page.press("#story-shots li:nth-child(3) input[type=number]", "Tab")
    page.wait_for_function(
        "() => document.getElementById('story-total').textContent === 'Total: 9.83 s'"
    )
    page.select_option("#story-look", "warm")
    music = write_wav(tmp_path / "tune.wav", tune(20.0, level=0.1)).read_bytes()
    page.set_input_files("#story-music", _photo("tune.wav", music, "audio/wav"))
    page.wait_for_function(
        "() => document.getElementById('story-music-length').textContent === '20.0 s long'"
    )

    page.reload()  # everything is kept
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_function("() => document.querySelectorAll('#story-shots li').length === 3")
    assert _order(page) == ["2", "3", "1"]
    assert page.input_value("#story-shots li:nth-child(1) .shot-caption") == "Кофе утром"
    assert page.input_value("#story-look") == "warm"
    page.wait_for_function(
        "() => document.getElementById('story-music-length').textContent === '20.0 s long'"
    )

    if SCREENSHOT:
        page.locator("#story").screenshot(path=SCREENSHOT)
    page.click("#story-render")
    page.wait_for_selector("#story-video:not([hidden])", timeout=90_000)
    assert page.text_content("#story-status") == "Ready: 9.833 s"
    page.evaluate("document.getElementById('story-video').muted = true")
    page.evaluate("document.getElementById('story-video').play()")
    page.wait_for_function("() => document.getElementById('story-video').currentTime > 0.2")
    src = page.eval_on_selector("#story-video", "v => v.src")
    job_id = src.rsplit("/", 1)[-1]
    with urllib.request.urlopen(f"http://127.0.0.1:{site.port}/job/result/{job_id}") as answer:
        result = json.load(answer)
    story = result["story"]
    assert [s["caption"] for s in story["shots"]] == ["Кофе утром", "", ""]
    assert [s["duration"] for s in story["shots"]] == [4, 4, 3]
    assert story["music"] is True
    assert console.errors == []


# -- a shot's camera, a cut's own transition and a logo (issue 25, item 7) ---------------------

LOGO_RGB = (255, 0, 255)


def _png(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format="PNG")
    return out.getvalue()


def _camera(page: Any) -> dict[str, Any]:
    return dict(json.loads(page.get_attribute("#shot-camera-keys", "data-camera")))


def _frames(site: Process, job_id: str, tmp_path: Path) -> np.ndarray:
    status, result = site.get(f"/job/result/{job_id}")
    assert status == 200, result
    status, data = site.get(result["video_url"])
    assert status == 200
    path = tmp_path / f"{job_id}.mp4"
    path.write_bytes(data)
    return np.stack(list(video.read_frames(path)))


def _aim_shot_two(page: Any) -> dict[str, Any]:
    """Open shot 2 in the editor: frames on, Start zoomed and moved by keys, End dragged by the
    mouse, a middle frame, the path played; Escape closes it. Returns the camera it showed."""
    page.get_by_role("button", name="Aim the camera of shot 2").focus()
    page.keyboard.press("Enter")  # the keyboard opens it
    page.wait_for_selector("#shot-camera[open] #shot-photo")
    page.focus("#shot-cam-custom")
    page.keyboard.press("Space")
    page.wait_for_selector("#shot-camera-keys .key[aria-label^='End frame']")
    start = _camera(page)["keyframes"][0]
    page.focus("#shot-camera-keys .key[aria-label^='Start frame']")
    page.fill("#shot-cam-zoom", "1.6")
    page.focus("#shot-camera-keys .key[aria-label^='Start frame']")
    for _ in range(2):
        page.keyboard.press("Shift+ArrowLeft")  # 5 % each
    first = _camera(page)["keyframes"][0]
    assert first["zoom"] == 1.6
    assert first["x"] == pytest.approx(start["x"] - 0.1, abs=1e-3)
    box = _rect(page, "#shot-camera-keys .key[aria-label^='End frame']")
    end = _camera(page)["keyframes"][1]
    photo = _rect(page, "#shot-photo")
    page.mouse.move(box["x"] + box["w"] / 2, box["y"] + box["h"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["w"] / 2 - 30, box["y"] + box["h"] / 2, steps=4)
    page.mouse.up()
    moved = _camera(page)["keyframes"][1]
    # (a 3:2 photo in a 16:9 story: the frame is the photo's width over its zoom, kept inside)
    least = 0.5 / moved["zoom"]
    assert moved["x"] == pytest.approx(max(end["x"] - 30 / photo["w"], least), abs=2e-3)
    assert moved["x"] < end["x"]
    page.get_by_role("button", name="Add a middle frame").click()
    camera = _camera(page)
    assert [k["t"] for k in camera["keyframes"]] == [0, 0.5, 1]
    # Play: the window runs the service's path through these frames, over the shot's photo.
    page.wait_for_selector("#shot-camera-keys[data-framing=camera]", state="attached")
    page.get_by_role("button", name="Play the path").click()
    left = page.eval_on_selector("#shot-camera-box", "b => b.style.left")
    page.wait_for_function(
        "l => document.getElementById('shot-camera-box').style.left !== l", arg=left
    )
    page.keyboard.press("Escape")
    page.wait_for_selector("#shot-camera", state="hidden")
    page.wait_for_function(  # back on the button that opened it
        "() => document.activeElement.getAttribute('aria-label') === 'Aim the camera of shot 2'"
    )
    return camera


def test_storyboard_aims_a_shot_cuts_with_a_slide_and_marks_with_a_logo(
    browser: Any, site: Process, tmp_path: Path
) -> None:
    console = Console()
    page = _page(browser, console, viewport={"width": 1280, "height": 1000})
    page.goto(f"http://127.0.0.1:{site.port}/")
    page.wait_for_selector("body[data-ready=true]")
    names = ("coffee", "chelsea", "astronaut")
    jpegs = [photo_jpeg(n) for n in names]
    page.set_input_files(
        "#story-files",
        [_photo(f"{n}.jpg", j, "image/jpeg") for n, j in zip(names, jpegs, strict=True)],
    )
    page.wait_for_function("() => document.querySelectorAll('#story-shots li').length === 3")
    page.select_option("#story-resolution", "360p")
    for n in (1, 2, 3):
        page.fill(f"#story-shots li:nth-child({n}) input[type=number]", "2")
        page.press(f"#story-shots li:nth-child({n}) input[type=number]", "Tab")
    page.wait_for_function(
        "() => document.getElementById('story-total').textContent === 'Total: 4.83 s'"
    )

    camera = _aim_shot_two(page)
    assert page.inner_text("#story-shots li:nth-child(2) .shot-aim") == "your frames"
    # Shot 3: a tap on its photo aims its camera at that point.
    page.get_by_role("button", name="Aim the camera of shot 3").click()
    page.wait_for_selector("#shot-camera-box[data-frames]", state="attached")
    photo = _rect(page, "#shot-photo")
    page.mouse.click(photo["x"] + photo["w"] * 0.3, photo["y"] + photo["h"] * 0.4)
    focus = json.loads(page.get_attribute("#shot-focus-mark", "data-focus"))
    assert focus == {"x": pytest.approx(0.3, abs=0.01), "y": pytest.approx(0.4, abs=0.01)}
    page.click("#shot-camera-done")
    assert page.inner_text("#story-shots li:nth-child(3) .shot-aim") == "your point"

    # The cut from shot 1 into shot 2 slides for 0.5 s; the total follows.
    before = page.text_content("#story-total")
    page.get_by_label("Transition from shot 1 into shot 2", exact=True).select_option("slide")
    page.fill("#story-shots li:nth-child(1) .cut-seconds", "0.5")
    page.press("#story-shots li:nth-child(1) .cut-seconds", "Tab")
    page.wait_for_function(
        "t => document.getElementById('story-total').textContent !== t", arg=before
    )
    before = page.text_content("#story-total")
    page.fill("#story-transition-seconds", "0.8")  # the story's own, for the other cut
    page.wait_for_function(
        "t => document.getElementById('story-total').textContent !== t", arg=before
    )

    # A logo: a JPEG is refused in words, a small PNG is taken; top left, fully opaque.
    page.set_input_files("#story-logo", _photo("logo.jpg", jpegs[0], "image/jpeg"))
    page.wait_for_function(
        "() => document.getElementById('story-logo-error').textContent.includes('PNG')"
    )
    assert (
        page.text_content("#story-logo-error")
        == "The logo must be a PNG file: logo.jpg is not one."
    )
    noise = np.random.default_rng(1).integers(0, 256, (640, 640, 3), dtype=np.uint8)
    big = io.BytesIO()
    Image.fromarray(noise).save(big, format="PNG")
    limit = site.get("/web/config")[1]["max_logo_bytes"]
    assert len(big.getvalue()) > limit
    page.set_input_files("#story-logo", _photo("big.png", big.getvalue(), "image/png"))
    page.wait_for_function(
        "() => document.getElementById('story-logo-error').textContent.includes('kB')"
    )
    words = f"at most {limit // 1000} kB"
    assert words in page.text_content("#story-logo-error")
    assert page.is_hidden("#story-logo-view")
    page.set_input_files("#story-logo", _photo("logo.png", _png((64, 32), LOGO_RGB), "image/png"))
    page.wait_for_selector("#story-logo-view:not([hidden])")
    assert page.text_content("#story-logo-error") == ""
    page.select_option("#story-corner", "top_left")
    page.fill("#story-opacity", "1")

    page.reload()  # all of it is kept
    page.wait_for_selector("body[data-ready=true]")
    page.wait_for_function("() => document.querySelectorAll('#story-shots li').length === 3")
    assert page.inner_text("#story-shots li:nth-child(2) .shot-aim") == "your frames"
    assert page.input_value("#story-shots li:nth-child(1) .cut-kind") == "slide"
    assert page.input_value("#story-corner") == "top_left"
    page.wait_for_selector("#story-logo-view:not([hidden])")
    total = page.text_content("#story-total")
    if SCREENSHOT:
        page.locator("#story").screenshot(path=SCREENSHOT)

    page.click("#story-render")
    page.wait_for_selector("#story-video:not([hidden])", timeout=90_000)
    job_id = page.eval_on_selector("#story-video", "v => v.src").rsplit("/", 1)[-1]
    status, result = site.get(f"/job/result/{job_id}")
    story = result["story"]
    assert total == f"Total: {story['seconds']:.2f} s"
    assert [(s["transition"], s["transition_seconds"]) for s in story["shots"]] == [
        ("slide", 0.5),
        ("crossfade", 0.8),
        ("", 0.0),
    ]
    assert story["watermark"] == "logo"
    stored = json.loads(site.row(job_id)["story"])  # the job's own story: shot 2's frames
    assert stored["shots"][1]["aim"]["camera"] == camera
    assert stored["shots"][0]["aim"]["camera"] is None
    assert stored["shots"][2]["aim"]["focus"] == focus

    # The logo is in the top-left corner: the same story without it differs only there.
    marked = _frames(site, job_id, tmp_path)
    shots: list[dict[str, Any]] = [
        {"duration": 2, "motion_preset": "micro", "image_data": base64.b64encode(j).decode()}
        for j in jpegs
    ]
    shots[0]["transition"] = {"kind": "slide", "seconds": 0.5}
    shots[1]["camera"] = camera
    shots[2]["focus"] = focus
    plain_story = {"shots": shots, "transition": {"kind": "crossfade", "seconds": 0.8}}
    status, created = site.call(
        "POST",
        "/job/create",
        {"user_id": 7, "resolution": "360p", "seed": result["seed"], "story": plain_story},
    )
    assert status == 201, created
    assert site.wait(created["job_id"], ("completed", "failed"))["status"] == "completed"
    plain = _frames(site, created["job_id"], tmp_path)
    assert marked.shape == plain.shape
    height, width = marked.shape[1:3]
    changed = np.abs(marked.astype(np.int16) - plain.astype(np.int16)).max(axis=-1) > 60
    ys, xs = np.nonzero(changed.any(axis=0))
    assert xs.max() < width / 4 and ys.max() < height / 4  # top left only
    # Inside the logo's edge: 4 px in, past its scaled border and x264's 2x2 chroma blocks,
    # whose colour a photo pixel close to the logo's can pull under the threshold.
    rows, cols = slice(ys.min() + 4, ys.max() - 3), slice(xs.min() + 4, xs.max() - 3)
    inside = marked[:, rows, cols]
    assert np.abs(np.median(inside.reshape(-1, 3), axis=0) - LOGO_RGB).max() < 24
    assert changed.all(axis=0)[rows, cols].all()

    page.get_by_role("button", name="Русский").click()  # the storyboard speaks Russian too
    assert page.get_by_role("button", name="Навести камеру сцены 2").count() == 1
    assert page.get_by_label("Переход из сцены 1 в сцену 2", exact=True).input_value() == "slide"
    assert page.inner_text("#story-shots li:nth-child(2) .shot-aim") == "ваши рамки"
    assert console.errors == []
