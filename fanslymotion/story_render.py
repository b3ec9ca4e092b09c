"""Rendering a story job: each shot by the job's renderer, then the compositor, in the render
thread.

The camera-motion renderer streams each shot's frames straight into the compositor (one
encoder for the whole story), in I420 as x264 takes them. Another renderer (SVD) renders each shot as a clip of its own
into the job's work folder, `story/shot-<i>.mp4`, written under a temporary name and renamed:
a shot already there is not rendered again, so a crash resumes at the shot it reached (and,
within it, at SVD's own pass checkpoints); the compositor then decodes those clips. Progress
says which shot renders (`shot 2/4`), with an ETA over all of them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import camera, compositor, looks, motion, music, photo, video
from .renderer import MotionRenderer, ProgressFn, Renderer, RenderResult, RenderSpec, RenderTask
from .renderer import check_cancel as _check_cancel
from .story import Story, Timeline
from .vocabulary import Phase, Progress

log = logging.getLogger(__name__)

STORY_FOLDER = "story"
MUSIC_NAME = "music.audio"
LOGO_NAME = "logo.png"
RENDERED_SHARE = 90.0
"""Of a pre-rendered story's progress, the share of rendering the shots (the rest: the mix)."""


def shot_photo_name(i: int) -> str:
    """The file of shot i's photo in the story's input folder (shot 0's is the job's input)."""
    return f"shot-{i}.img"


def input_names(text: str) -> list[str]:
    """The files a story (its row's JSON, `Story.to_json`) has in its input folder: the other
    shots' photos, and its music and logo when it came with them. A cluster's worker fetches
    these from the front."""
    data = json.loads(text)
    names = [shot_photo_name(i) for i in range(1, len(data["shots"]))]
    if data.get("music"):
        names.append(MUSIC_NAME)
    if (data.get("watermark") or {}).get("logo"):
        names.append(LOGO_NAME)
    return names


def shot_paths(task: RenderTask, shots: int) -> list[Path]:
    folder = task.story_dir
    rest = [] if folder is None else [folder / shot_photo_name(i) for i in range(1, shots)]
    return [task.input_path, *rest]


def render(
    renderer: Renderer, task: RenderTask, progress: ProgressFn, cancel: threading.Event
) -> RenderResult:
    """Render the story of `task` (its `spec.story`) into `task.output_path`."""
    spec = task.spec
    story = spec.story
    assert story is not None, "not a story"
    settings = renderer.settings
    progress(Progress(0.0, Phase.PREPARING))
    paths = shot_paths(task, len(story.shots))
    with photo.load_photo(
        paths[0], max_pixels=settings.max_pixels, min_side=settings.min_side
    ) as first:
        size = motion.output_size(spec.resolution, spec.aspect, first.width, first.height)
    story = _with_logo(story, task.story_dir)
    line = story.timeline(spec.fps)
    if isinstance(renderer, MotionRenderer):
        open_shot = _streamed(renderer, spec, story, paths, size)
        share, base = 99.0, 0.0
    else:
        clips = _prerender(renderer, task, story, line, size, progress, cancel)
        open_shot = _decoded(clips)
        share, base = 99.0 - RENDERED_SHARE, RENDERED_SHARE
    track = _music(task, story, line)
    started = time.monotonic()
    shots = len(story.shots)

    def on_frame(done: int) -> None:
        _check_cancel(cancel)
        elapsed = time.monotonic() - started
        eta = elapsed / done * (line.frames - done) if done else None
        shot = line.shot_at(done - 1) + 1
        phase = Phase.SHOT if base == 0.0 else Phase.ENCODING
        report = Progress(base + share * done / line.frames, phase, shot, shots, eta)
        progress(report)

    compositor.write(
        story,
        open_shot,
        task.output_path,
        size=size,
        fps=spec.fps,
        music=track,
        crf=settings.crf,
        preset=settings.x264_preset,
        metadata=_metadata(renderer, task, size, line),
        on_frame=on_frame,
        check=lambda: _check_cancel(cancel),
        shots_looked=isinstance(renderer, MotionRenderer),
    )
    progress(Progress(100.0, Phase.FINISHING, eta=0.0))
    return RenderResult(line.frames, size[0], size[1], spec.fps, renderer.name)


def _metadata(
    renderer: Renderer, task: RenderTask, size: tuple[int, int], line: Timeline
) -> dict[str, str]:
    tags = renderer.metadata(task, size)
    shots = len(line.shot_frames)
    tags["title"] = f"FanslyMotion story, {shots} shots, {line.seconds:.2f}s"
    tags["fanslymotion_story_shots"] = str(shots)
    return tags


def _with_logo(story: Story, folder: Path | None) -> Story:
    mark = story.watermark
    if mark is None or mark.png or mark.text or folder is None:
        return story
    return replace(story, watermark=replace(mark, png=(folder / LOGO_NAME).read_bytes()))


def _music(task: RenderTask, story: Story, line: Timeline) -> video.AudioTrack | None:
    if task.story_dir is None or not (task.story_dir / MUSIC_NAME).is_file():
        return None
    return music.prepare(task.story_dir / MUSIC_NAME, story.music_start, line.seconds)


def _streamed(
    renderer: Renderer, spec: RenderSpec, story: Story, paths: list[Path], size: tuple[int, int]
) -> Callable[[int], Iterable[compositor.Frame]]:
    """Shot i's I420 frames from the camera-motion engine (the compiled resampler on Y'CbCr
    planes, as for a single photo), its photo opened when the shot begins. The look is given
    to the photo once rather than to every frame: a colour table and a saturation mix commute
    with the resampling but for rounding at sharp edges, and per frame they cost a 1080p story
    about a third of its CPU (docs/benchmarks.md)."""
    settings = renderer.settings

    def open_shot(i: int) -> Iterator[compositor.Frame]:
        shot = story.shots[i]
        image = photo.load_photo(
            paths[i], max_pixels=settings.max_pixels, min_side=settings.min_side
        )
        try:
            path = camera.plan(
                shot.motion, shot.strength, image.size, size, shot=shot.aim, seed=spec.seed + i
            )
            looked = looks.apply_image(image, story.look)
            yield from motion.render_path_yuv(looked, path, shot.frames(spec.fps))
        finally:
            image.close()

    return open_shot


def _prerender(
    renderer: Renderer,
    task: RenderTask,
    story: Story,
    line: Timeline,
    size: tuple[int, int],
    progress: ProgressFn,
    cancel: threading.Event,
) -> list[Path]:
    """Each shot as a clip of its own in the work folder; those already there are kept."""
    spec = task.spec
    folder = (task.work_dir or task.output_path.parent) / STORY_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    paths = shot_paths(task, len(story.shots))
    total = sum(line.shot_frames)
    clips = []
    before = 0
    for i, shot in enumerate(story.shots):
        clip = folder / f"shot-{i}.mp4"
        clips.append(clip)
        n = line.shot_frames[i]
        if not clip.is_file():
            _check_cancel(cancel)
            done_before = before

            def shot_progress(
                report: Progress, i: int = i, n: int = n, at: int = done_before
            ) -> None:
                share = (at + report.percent / 100.0 * n) / total * RENDERED_SHARE
                progress(
                    Progress(
                        min(share, RENDERED_SHARE),
                        Phase.SHOT,
                        i + 1,
                        len(line.shot_frames),
                        report.eta,
                    )
                )

            sub = RenderSpec(
                duration=max(1, round(shot.seconds)),
                resolution=spec.resolution,
                motion=shot.motion,
                aspect=motion.aspect_of(*size),
                strength=shot.strength,
                seed=spec.seed + i,
                fps=spec.fps,
                steps=spec.steps,
                shot=shot.aim,
            )
            partial = folder / f".shot-{i}.partial.mp4"
            subtask = RenderTask(
                job_id=f"{task.job_id}-shot{i}",
                spec=sub,
                input_path=paths[i],
                output_path=partial,
                work_dir=folder / f"work-{i}",
            )
            renderer.render(subtask, shot_progress, cancel)
            os.replace(partial, clip)
            log.info("job %s: shot %d/%d rendered", task.job_id, i + 1, len(story.shots))
        before += n
    return clips


def _decoded(clips: list[Path]) -> Callable[[int], Iterable[compositor.Frame]]:
    def open_shot(i: int) -> Iterator[np.ndarray]:
        yield from video.read_frames(clips[i])

    return open_shot
