"""Story jobs through the job service: the row keeps the story, each shot is rendered with the
job's renderer, progress says `shot i/n`, the MP4 has every frame and the music; a renderer
that makes clips resumes at the shot it reached."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fanslymotion import music, story_render, video
from fanslymotion.config import Settings
from fanslymotion.datadir import story_inputs
from fanslymotion.dispatcher import LocalExecutor
from fanslymotion.errors import InvalidParams, RenderError
from fanslymotion.models import JobRequest
from fanslymotion.queue import JobQueue
from fanslymotion.renderer import (
    MotionRenderer,
    ProgressFn,
    Renderer,
    RenderResult,
    RenderTask,
    RenderWorker,
)
from fanslymotion.store import Job, Store
from fanslymotion.story import Story, parse_story
from fanslymotion.story_intake import StoryFiles
from tests.storytools import photo_jpeg, tune, write_wav

from .conftest import make_settings

FPS = 8


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    db = await Store.open(tmp_path / "data" / "fanslymotion.sqlite3")
    yield db
    await db.close()


class ClipRenderer(Renderer):
    """A renderer that writes each clip as an MP4 of its own (as SVD does), made by the real
    camera-motion renderer; it can fail once on a chosen shot, as a crash would."""

    name = "clips"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.inner = MotionRenderer(settings)
        self.rendered: list[str] = []
        self.fail_once: set[str] = set()

    def render(
        self, task: RenderTask, progress: ProgressFn, cancel: threading.Event
    ) -> RenderResult:
        if task.job_id.split("-")[-1] in self.fail_once:
            self.fail_once.discard(task.job_id.split("-")[-1])
            raise RenderError("the process died here")
        self.rendered.append(task.job_id.split("-")[-1])
        return self.inner.render(task, progress, cancel)


def _story() -> Story:
    return parse_story(
        {
            "shots": [
                {"duration": 2, "motion_preset": "pan_l", "caption": "One"},
                {
                    "duration": 3,
                    "motion_preset": "dolly_in",
                    "caption": "Два",
                    "transition": "slide",
                },
                {"duration": 2},
            ],
            "transition": {"kind": "crossfade", "seconds": 0.5},
            "look": "warm",
            "watermark": {"text": "@me", "corner": "top_left"},
        }
    )


def _request(story: Story) -> JobRequest:
    seconds = story.timeline(FPS).seconds
    return JobRequest(
        user_id=7,
        duration=max(1, round(seconds)),
        resolution="360p",
        motion_preset=story.shots[0].motion,
        story=story,
    )


async def _wait(jobs: JobQueue, job_id: str, messages: list[str]) -> Job:
    async with asyncio.timeout(120), jobs.subscribe() as events:
        while (job := await jobs.get(job_id)).status not in ("completed", "failed"):
            event = await events.get()
            if getattr(event, "job", None) is not None and event.job.job_id == job_id:
                messages.append(event.job.message)
    return job


async def test_a_story_job_renders_every_shot_with_music(tmp_path: Path, store: Store) -> None:
    settings = make_settings(tmp_path / "data", fps=FPS)
    worker = RenderWorker(settings, MotionRenderer(settings), stories=story_render.render)
    jobs = JobQueue(settings, store, LocalExecutor(settings, store, worker))
    await jobs.start()
    try:
        story = _story()
        audio = write_wav(tmp_path / "tune.wav", tune(12.0, level=0.02)).read_bytes()
        files = StoryFiles((photo_jpeg("coffee"), photo_jpeg("chelsea")), audio=audio)
        job, created = await jobs.submit(
            _request(story), photo_jpeg("astronaut"), story_files=files
        )
        assert created and job.story is not None
        assert (story_inputs(settings.data_dir, job.job_id) / "shot-2.img").is_file()
        saved = Story.from_json(job.story)
        assert [s.aim.subject is not None for s in saved.shots] == [True] * 3
        messages: list[str] = []
        done = await _wait(jobs, job.job_id, messages)
        assert done.status == "completed", done.error
        line = saved.timeline(FPS)
        assert done.frames == line.frames
        assert "shot 2/3" in messages and "shot 3/3" in messages
        out = settings.data_dir / (done.output_path or "")
        info = video.probe(out)
        assert info.frames == line.frames == (16 + 24 + 16) - 4 - 5  # 0.5 s, 0.6 s at 8 fps
        assert (info.width, info.height) == (360, 360)  # the first photo's square aspect
        assert abs(music.audio_seconds(out) - line.seconds) <= 1 / FPS
        assert abs(music.integrated_loudness(out) + 14.0) <= 1.0
        assert info.metadata.get("fanslymotion_story_shots") == "3"
        # The inputs go when the job ends (in the background, which stop() waits for).
        await jobs.stop()
        assert not story_inputs(settings.data_dir, job.job_id).exists()
    finally:
        await jobs.stop()


async def test_bad_parts_are_refused_before_queueing(tmp_path: Path, store: Store) -> None:
    settings = make_settings(tmp_path / "data", fps=FPS)
    worker = RenderWorker(settings, MotionRenderer(settings), stories=story_render.render)
    jobs = JobQueue(settings, store, LocalExecutor(settings, store, worker))
    await jobs.start()
    try:
        story = _story()
        silent = write_wav(tmp_path / "s.wav", tune(5.0, level=0.0)).read_bytes()
        good = (photo_jpeg("coffee"), photo_jpeg("chelsea"))
        with pytest.raises(InvalidParams) as caught:
            await jobs.submit(
                _request(story), photo_jpeg("astronaut"), story_files=StoryFiles(good, silent)
            )
        assert caught.value.code == "audio_silent"
        with pytest.raises(Exception) as broken:
            await jobs.submit(
                _request(story),
                photo_jpeg("astronaut"),
                story_files=StoryFiles((good[0], b"not a photo at all")),
            )
        assert "shots[2].image" in str(broken.value)
        assert await store.count_jobs() == 0
    finally:
        await jobs.stop()


async def test_a_clip_renderer_resumes_at_the_shot_it_reached(tmp_path: Path, store: Store) -> None:
    settings = make_settings(tmp_path / "data", fps=FPS, renderer="auto")
    renderer = ClipRenderer(settings)
    renderer.fail_once = {"shot1"}
    worker = RenderWorker(settings, renderer, stories=story_render.render)
    jobs = JobQueue(settings, store, LocalExecutor(settings, store, worker))
    await jobs.start()
    try:
        story = _story()
        files = StoryFiles((photo_jpeg("coffee"), photo_jpeg("rocket")))
        job, _ = await jobs.submit(_request(story), photo_jpeg("chelsea"), story_files=files)
        done = await _wait(jobs, job.job_id, [])
        assert done.status == "completed", done.error
        assert done.attempts == 1  # one retry
        # shot 0 was rendered once: the retry found its clip and went on from shot 1.
        assert renderer.rendered == ["shot0", "shot1", "shot2"]
        info = video.probe(settings.data_dir / (done.output_path or ""))
        assert info.frames == Story.from_json(done.story or "").timeline(FPS).frames
        assert done.renderer == "clips"
    finally:
        await jobs.stop()


async def test_an_executor_without_the_story_renderer_refuses_stories(
    tmp_path: Path, store: Store
) -> None:
    settings = make_settings(tmp_path / "data", fps=FPS)
    worker = RenderWorker(settings, MotionRenderer(settings))  # no stories=
    jobs = JobQueue(settings, store, LocalExecutor(settings, store, worker))
    await jobs.start()
    try:
        files = StoryFiles((photo_jpeg("coffee"), photo_jpeg("chelsea")))
        with pytest.raises(InvalidParams) as caught:
            await jobs.submit(_request(_story()), photo_jpeg("astronaut"), story_files=files)
        assert caught.value.code == "stories_unavailable"
        assert await store.count_jobs() == 0
    finally:
        await jobs.stop()
