"""A story on the SVD renderer (issue 25, item 9): each shot is one SVD job of its own, kept as
a clip in the work folder, so a second render (a retry, a restart) reuses the shots already
made and runs no denoising step for them. On the CPU with the tiny random-weight pipeline."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from fanslymotion import story_render, video
from fanslymotion.backends import select_renderer
from fanslymotion.models import Progress
from fanslymotion.renderer import RenderSpec, RenderTask
from fanslymotion.story import Story, StoryShot, Transition
from fanslymotion.story_render import shot_photo_name
from fanslymotion.svd import SVDRenderer

from .conftest import make_settings, photo_bytes

torch.set_num_threads(1)

pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
    ),
]


def test_svd_story_renders_each_shot_and_reuses_them(tmp_path: Path, tiny_svd: Path) -> None:
    settings = make_settings(
        tmp_path / "data", renderer="svd", svd_model=str(tiny_svd), svd_device="cpu", svd_size=128
    )
    renderer = select_renderer(settings)
    assert isinstance(renderer, SVDRenderer)
    renderer.load()
    calls = [0]
    hook = renderer.pipeline.unet.register_forward_pre_hook(
        lambda *_: calls.__setitem__(0, calls[0] + 1)
    )
    story = Story(
        (StoryShot(2.0, "pan_l", caption="One"), StoryShot(2.0, "dolly_in", caption="Два")),
        (Transition("crossfade", 0.5),),
    )
    spec = RenderSpec(
        duration=4, resolution="360p", motion="pan_l", fps=8, steps=2, seed=3, story=story
    )
    folder = tmp_path / "inputs"
    folder.mkdir()
    first = tmp_path / "first.jpg"
    first.write_bytes(photo_bytes(320, 200, seed=1))
    (folder / shot_photo_name(1)).write_bytes(photo_bytes(320, 200, seed=2))
    reports: list[Progress] = []
    line = story.timeline(8)
    try:
        for attempt in range(2):
            task = RenderTask(
                job_id="svd-story",
                spec=spec,
                input_path=first,
                output_path=tmp_path / f"out-{attempt}.mp4",
                work_dir=tmp_path / "work",
                story_dir=folder,
            )
            before = calls[0]
            result = story_render.render(renderer, task, reports.append, threading.Event())
            assert result.frames == line.frames == 16 + 16 - 4
            assert video.probe(task.output_path).frames == line.frames
            if attempt == 0:
                assert calls[0] > before  # the shots were denoised
                assert any(r.message == "shot 2/2" for r in reports)
            else:
                assert calls[0] == before  # both shots reused from the work folder
    finally:
        hook.remove()
        renderer.close()
    assert sorted(p.name for p in (tmp_path / "work" / "story").glob("shot-*.mp4")) == [
        "shot-0.mp4",
        "shot-1.mp4",
    ]
