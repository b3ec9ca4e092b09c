"""The render thread cannot drop a job: `ready()` always resolves, a job handed over while the
thread dies is settled, and results go to the loop of the future they settle."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from fanslymotion import video
from fanslymotion.config import Settings
from fanslymotion.errors import RenderError, Unavailable
from fanslymotion.renderer import (
    MotionRenderer,
    ProgressFn,
    RenderResult,
    RenderSpec,
    RenderTask,
    RenderWorker,
)

from .conftest import make_settings, photo_bytes


class Doom(BaseException):
    """Not an Exception: what ends a thread (as SystemExit or a KeyboardInterrupt would)."""


class DoomedLoad(MotionRenderer):
    def load(self) -> None:
        raise Doom("the load was killed")


class HeldThenDoomed(MotionRenderer):
    """The first render waits for `release`, then ends its thread; later ones render."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, "test: held, then dies")
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def render(
        self, task: RenderTask, progress: ProgressFn, cancel: threading.Event
    ) -> RenderResult:
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            self.release.wait(30)
            raise Doom("the render thread was killed mid-job")
        return super().render(task, progress, cancel)


def task_for(tmp_path: Path, name: str) -> RenderTask:
    photo = tmp_path / f"{name}.jpg"
    photo.write_bytes(photo_bytes())
    return RenderTask(
        job_id=name,
        spec=RenderSpec(duration=3, resolution="360p", motion="micro", fps=4),
        input_path=photo,
        output_path=tmp_path / f"{name}.mp4",
    )


@pytest.mark.parametrize("renderer", ["auto", "motion"])
async def test_a_base_exception_in_load_still_resolves_ready(tmp_path: Path, renderer: str) -> None:
    settings = make_settings(tmp_path / "data", renderer=renderer)
    worker = RenderWorker(settings, DoomedLoad(settings, "test: dies while loading"))
    worker.start()
    try:
        async with asyncio.timeout(10):
            with pytest.raises(Unavailable, match="stopped while loading"):
                await worker.ready()
    finally:
        await worker.stop(5)
    assert not worker.is_alive()  # the thread ended (it settled `ready` on its way out)


async def test_a_job_handed_over_while_the_thread_dies_is_settled(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    renderer = HeldThenDoomed(settings)
    worker = RenderWorker(settings, renderer)
    worker.start()
    try:
        await worker.ready()
        first = asyncio.ensure_future(
            worker.render(task_for(tmp_path, "first"), lambda _: None, threading.Event())
        )
        await asyncio.get_running_loop().run_in_executor(None, renderer.entered.wait, 10)
        # The thread is alive and busy: the second job goes into its inbox, then it dies.
        second = asyncio.ensure_future(
            worker.render(task_for(tmp_path, "second"), lambda _: None, threading.Event())
        )
        await asyncio.sleep(0.05)
        renderer.release.set()
        async with asyncio.timeout(10):
            outcomes = await asyncio.gather(first, second, return_exceptions=True)
        assert all(isinstance(o, RenderError) and o.retryable for o in outcomes), outcomes
        # The next job gets a fresh thread and a real video.
        async with asyncio.timeout(60):
            result = await worker.render(
                task_for(tmp_path, "third"), lambda _: None, threading.Event()
            )
        assert result.frames == 12
        assert video.probe(tmp_path / "third.mp4").frames == 12
        assert worker.is_alive()
    finally:
        renderer.release.set()
        await worker.stop(10)


async def test_results_go_to_the_loop_of_their_future(tmp_path: Path) -> None:
    """A worker started on one loop serves a render awaited on another loop (in its own thread):
    the result is set on that loop, which wakes and returns it."""
    settings = make_settings(tmp_path / "data")
    worker = RenderWorker(settings, MotionRenderer(settings, "test"))
    worker.start()
    try:
        await worker.ready()
        seen: list[float] = []

        def elsewhere() -> RenderResult:
            async def render() -> RenderResult:
                async with asyncio.timeout(60):
                    return await worker.render(
                        task_for(tmp_path, "other"),
                        lambda report: seen.append(report.percent),
                        threading.Event(),
                    )

            return asyncio.run(render())

        result = await asyncio.get_running_loop().run_in_executor(None, elsewhere)
        assert result.frames == 12 and seen and max(seen) == 100.0
        assert video.probe(tmp_path / "other.mp4").frames == 12
    finally:
        await worker.stop(10)
