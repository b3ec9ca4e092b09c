"""The page's camera editor, frame rate and loop (issue 21, items 1, 3 and 5 on the page), in
Debian's Chromium against the real service: frames dragged, zoomed and moved with the keyboard,
the path played from /camera, and the job made with exactly the camera the page showed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from .test_process import Process
from .test_web import Console, _page, _photo, _service, landscape, launch_browser

PHOTO = (1200, 800)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_browser()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    # The service's own rate is 12 here (fast tests); a job may still ask for 24 or 30.
    yield from _service(tmp_path_factory.mktemp("web-camera"))


def _open(browser: Any, site: Process, **context: Any) -> tuple[Any, Console]:
    console = Console()
    page = _page(browser, console, **{"viewport": {"width": 1280, "height": 900}, **context})
    page.goto(f"http://127.0.0.1:{site.port}/")
    page.wait_for_selector("body[data-ready=true]")
    page.set_input_files("#file-input", _photo("p.jpg", landscape(*PHOTO), "image/jpeg"))
    page.get_by_label("Duration").select_option("3")
    page.get_by_label("Resolution").select_option("360p")
    page.wait_for_selector(f"#camera-box[data-photo='{PHOTO[0]}x{PHOTO[1]}']")
    return page, console


def _camera(page: Any) -> dict[str, Any]:
    return dict(json.loads(page.get_attribute("#camera-keys", "data-camera")))


def _rect(page: Any, selector: str) -> dict[str, float]:
    return dict(
        page.eval_on_selector(
            selector,
            "el => { const r = el.getBoundingClientRect();"
            " return {x: r.x, y: r.y, w: r.width, h: r.height}; }",
        )
    )


def _key(page: Any, name: str) -> str:
    return f"#camera-keys .key[aria-label^='{name} frame']"


def test_the_editor_aims_the_camera_by_pointer_and_keyboard(browser: Any, site: Process) -> None:
    page, console = _open(browser, site)
    page.get_by_label("Aim the camera myself").check()
    page.wait_for_selector(_key(page, "End"))
    start = _camera(page)
    assert [k["t"] for k in start["keyframes"]] == [0, 1] and start["ease"] == "smooth"

    # The slider zooms the selected frame (Start), and the keyboard moves it.
    page.focus(_key(page, "Start"))
    page.get_by_label("Zoom of the selected frame").fill("1.5")
    page.focus(_key(page, "Start"))
    for _ in range(3):
        page.keyboard.press("Shift+ArrowLeft")  # 5 % each
    page.keyboard.press("ArrowUp")
    first = _camera(page)["keyframes"][0]
    assert first["zoom"] == 1.5
    assert first["x"] == pytest.approx(start["keyframes"][0]["x"] - 0.15, abs=1e-3)
    assert first["y"] == pytest.approx(start["keyframes"][0]["y"] - 0.01, abs=1e-3)
    page.keyboard.press("+")
    assert _camera(page)["keyframes"][0]["zoom"] == pytest.approx(1.575, abs=1e-3)
    # A frame never leaves the photo: far to the left it stops at the edge.
    for _ in range(30):
        page.keyboard.press("Shift+ArrowLeft")
    first = _camera(page)["keyframes"][0]
    assert first["x"] == pytest.approx(0.5 / first["zoom"], abs=1e-3)  # 3:2 photo, 16:9 video
    box = _rect(page, _key(page, "Start"))
    photo = _rect(page, "#photo")
    assert box["x"] == pytest.approx(photo["x"], abs=1.5)

    # The mouse drags the End frame and the wheel zooms it.
    end = _camera(page)["keyframes"][1]
    box = _rect(page, _key(page, "End"))
    page.mouse.move(box["x"] + box["w"] / 2, box["y"] + box["h"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["w"] / 2 + 40, box["y"] + box["h"] / 2 + 20, steps=5)
    page.mouse.up()
    moved = _camera(page)["keyframes"][1]
    assert moved["x"] == pytest.approx(end["x"] + 40 / photo["w"], abs=2e-3)
    assert moved["y"] == pytest.approx(end["y"] + 20 / photo["h"], abs=2e-3)
    page.mouse.wheel(0, -200)
    page.wait_for_function(
        "z => JSON.parse(document.getElementById('camera-keys').dataset.camera)"
        ".keyframes[1].zoom > z",
        arg=moved["zoom"] + 0.1,
    )

    # Two fingers spread apart over the frames: a pinch zooms the selected one (End) in.
    before = _camera(page)["keyframes"][1]["zoom"]
    box = _rect(page, _key(page, "End"))
    cx, cy = box["x"] + box["w"] / 2, box["y"] + box["h"] / 2
    touch = page.context.new_cdp_session(page)
    for kind, spread in (("touchStart", 20), ("touchMove", 40), ("touchMove", 60)):
        points = [{"x": cx - spread, "y": cy, "id": 0}, {"x": cx + spread, "y": cy, "id": 1}]
        touch.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})
    touch.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    page.wait_for_function(
        "z => JSON.parse(document.getElementById('camera-keys').dataset.camera)"
        ".keyframes[1].zoom > z",
        arg=min(before * 1.5, 2.9),
    )

    # A middle frame, then a linear movement; Shift+Tab from the switch reaches the frames.
    page.get_by_role("button", name="Add a middle frame").click()
    page.get_by_label("Movement").select_option("linear")
    camera = _camera(page)
    assert [k["t"] for k in camera["keyframes"]] == [0, 0.5, 1] and camera["ease"] == "linear"
    page.focus("#cam-custom")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.getAttribute('aria-label')").startswith("End")

    # The preview is the service's path through these frames: Play runs it from the Start
    # frame to the End frame.
    page.wait_for_function(
        "() => document.getElementById('framing').textContent.includes('your frames')"
    )
    query = {
        "width": PHOTO[0],
        "height": PHOTO[1],
        "duration": 3,
        "resolution": "360p",
        "motion_preset": "dolly_in",
        "camera": camera,
    }
    status, path = site.call("POST", "/camera", query)
    assert status == 200 and path["framing"] == "camera", path
    # (hidden while the frames are edited: only Play shows the moving window)
    page.wait_for_selector(f"#camera-box[data-frames='{path['frames']}']", state="attached")
    page.get_by_role("button", name="Play the path").click()
    assert page.get_attribute("#cam-play", "aria-pressed") == "true"
    scale = photo["w"] / PHOTO[0]
    for box in (path["boxes"][0], path["boxes"][-1]):  # reached at both ends of the clip
        page.wait_for_function(
            """([x, y]) => { const s = getComputedStyle(document.getElementById('camera-box'));
                return Math.abs(parseFloat(s.left) - x) < 4 && Math.abs(parseFloat(s.top) - y) < 4;
            }""",
            arg=[box[0] * scale, box[1] * scale],
        )

    # Animate: the job gets exactly this camera, and says it followed it.
    page.get_by_role("button", name="Animate").click()
    page.wait_for_selector("#job[data-status=completed]")
    job_id = page.get_attribute("#job", "data-job-id")
    result = site.get(f"/job/result/{job_id}")[1]
    assert result["parameters"]["camera"] == camera
    assert result["framing"] == "camera"
    page.wait_for_function(
        "() => document.getElementById('result-params').innerText.includes('Aimed at')"
    )
    assert "Aimed at\nyour frames" in page.inner_text("#result-params")
    # A reload keeps the editor on, with the same frames over the same photo.
    page.reload()
    page.wait_for_selector(_key(page, "Middle"))
    assert page.get_by_label("Aim the camera myself").is_checked()
    assert _camera(page) == camera
    assert console.errors == []


def test_frame_rate_and_loop_reach_the_job_and_the_preview(browser: Any, site: Process) -> None:
    page, console = _open(browser, site)
    rate = page.get_by_label("Frame rate")
    assert rate.input_value() == ""  # the service's own 12 fps, left unsaid
    assert "12 fps" in page.inner_text("#opt-fps")
    page.wait_for_selector("#camera-box[data-frames='36']")
    rate.select_option("30")
    page.wait_for_selector("#camera-box[data-frames='90']")  # the preview follows the rate
    page.get_by_label("Loop: the camera comes back to where it started").check()
    page.get_by_role("button", name="Animate").click()
    page.wait_for_selector("#job[data-status=completed]")
    page.wait_for_function("() => document.getElementById('video').readyState >= 1")
    duration = page.eval_on_selector("#video", "v => v.duration")
    job_id = page.get_attribute("#job", "data-job-id")
    result = site.get(f"/job/result/{job_id}")[1]
    assert result["fps"] == 30 and result["frames"] == 90
    assert result["parameters"]["loop"] is True and duration == pytest.approx(3.0, abs=0.1)
    params = page.inner_text("#result-params")
    assert "Frame rate\n30 fps" in params and "Loop\nyes" in params
    # The choices come back after a reload, in Russian too.
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.get_by_label("Frame rate").input_value() == "30"
    assert page.get_by_label("Loop: the camera comes back to where it started").is_checked()
    page.get_by_role("button", name="Русский").click()
    assert page.get_by_label("Частота кадров").input_value() == "30"
    assert page.get_by_label("Петля: камера возвращается туда, откуда начала").is_checked()
    assert page.get_by_label("Навести камеру самому").count() == 1
    assert console.errors == []


def test_a_tap_on_the_photo_aims_the_camera_at_that_point(browser: Any, site: Process) -> None:
    page, console = _open(browser, site)
    page.wait_for_function(
        "() => document.getElementById('framing').textContent.includes('stands out')"
        " || document.getElementById('framing').textContent.includes('centred')"
    )
    photo = _rect(page, "#photo")
    page.mouse.click(photo["x"] + photo["w"] * 0.8, photo["y"] + photo["h"] * 0.25)
    focus = json.loads(page.get_attribute("#focus-mark", "data-focus"))
    assert focus == {"x": pytest.approx(0.8, abs=0.01), "y": pytest.approx(0.25, abs=0.01)}
    assert "the point you chose" in page.inner_text("#framing")
    page.focus("#focus-mark")
    page.keyboard.press("ArrowDown")  # 2 % down
    focus = json.loads(page.get_attribute("#focus-mark", "data-focus"))
    assert focus["y"] == pytest.approx(0.27, abs=0.011)
    # The preview is the service's path aimed at the point.
    query = {
        "width": PHOTO[0],
        "height": PHOTO[1],
        "duration": 3,
        "resolution": "360p",
        "motion_preset": "dolly_in",
        "focus": focus,
    }
    status, path = site.call("POST", "/camera", query)
    assert status == 200 and path["framing"] == "focus", path
    scale = photo["w"] / PHOTO[0]
    last = path["boxes"][-1]
    page.wait_for_function(
        """([x, y]) => { const s = getComputedStyle(document.getElementById('camera-box'));
            return Math.abs(parseFloat(s.left) - x) < 4 && Math.abs(parseFloat(s.top) - y) < 4; }""",
        arg=[last[0] * scale, last[1] * scale],
    )
    page.get_by_role("button", name="Animate").click()
    page.wait_for_selector("#job[data-status=completed]")
    result = site.get(f"/job/result/{page.get_attribute('#job', 'data-job-id')}")[1]
    assert result["framing"] == "focus" and result["parameters"]["focus"] == focus
    # Forgetting the point gives the subject back to the service.
    page.get_by_role("button", name="Let the service find the subject").click()
    assert page.is_hidden("#focus-mark")
    assert "the point you chose" not in page.inner_text("#framing")
    assert console.errors == []
