"""The page's storyboard (issue 25, item 7) in Debian's Chromium against the real service: three
photos added, reordered by keyboard and by drag, a caption, music with its length, kept across a
reload, rendered, and the story played."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .storytools import photo_jpeg, tune, write_wav
from .test_process import Process
from .test_web import Console, _page, _photo, _service, launch_browser

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
