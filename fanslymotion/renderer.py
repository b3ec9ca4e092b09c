"""Renderers: turn one job (a photo and its parameters) into an MP4 file.

Two backends share one small interface: `MotionRenderer` (the CPU camera-motion engine, always
available, here) and `SVDRenderer` (Stable Video Diffusion on CUDA, in the `svd` package, imported only
when SVD is a candidate). This module never imports app, bot or queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue as thread_queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeVar

from . import camera, motion, photo, subject, video
from .camera import Shot
from .config import Settings
from .errors import Cancelled, FanslyError, RenderError, Unavailable
from .story import Story
from .vocabulary import Phase, Progress
from .vocabulary import Preview as Preview  # where the renderers' callers look for it

if TYPE_CHECKING:  # torch, numpy and PIL load lazily: the camera-motion renderer needs no torch
    import numpy as np
    import numpy.typing as npt
    from PIL.Image import Image as PILImage

    FrameArray = npt.NDArray[np.uint8]

log = logging.getLogger(__name__)

T = TypeVar("T")

ProgressFn = Callable[[Progress], None]
"""Called from the render thread with each progress report."""

RendererStatus = Literal["loading", "ready", "failed"]


@dataclass(frozen=True)
class RenderSpec:
    """What a job asks for. Validated before it gets here (see motion's constants)."""

    duration: int
    resolution: str
    motion: str
    aspect: str = "auto"
    strength: float = 0.5
    seed: int = 0
    fps: int = 24
    steps: int = 25
    shot: Shot = field(default_factory=Shot)
    """How the clip is aimed (focus, keyframes, loop, the subject the front found)."""
    story: Story | None = None
    """A story job's shots, transitions, look, captions and watermark (None: one photo)."""

    @property
    def frames(self) -> int:
        if self.story is not None:
            return self.story.timeline(self.fps).frames
        return self.duration * self.fps


@dataclass(frozen=True)
class RenderTask:
    job_id: str
    spec: RenderSpec
    input_path: Path
    output_path: Path  # a temporary name; the queue renames it once the render succeeds
    metadata: Mapping[str, str] = field(default_factory=dict)
    work_dir: Path | None = None
    """data/work/<job>/: SVD's pass checkpoints and preview (the motion renderer ignores it)."""
    on_preview: Callable[[Preview], None] | None = None
    """Called from a render thread each time a new preview is in place."""
    story_dir: Path | None = None
    """A story job's other photos, music and logo (see story_render); None for one photo."""


@dataclass(frozen=True)
class RenderResult:
    frames: int
    width: int
    height: int
    fps: int
    renderer: str


@dataclass
class RendererState:
    name: str
    status: RendererStatus
    reason: str
    device: str = "cpu"
    extra: dict[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "device": self.device,
            **self.extra,
        }


class Renderer:
    """Interface of a backend. `load` and `render` run only in the GPU thread."""

    name = "base"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = RendererState(self.name, "loading", "not loaded yet")

    def load(self) -> None:
        """Load models; sets `state`. Raises only on a fatal start-up error."""
        self.state.status = "ready"

    def render(
        self, task: RenderTask, progress: ProgressFn, cancel: threading.Event
    ) -> RenderResult:
        raise NotImplementedError

    def close(self) -> None:
        """Free what `load` took."""

    def _open_photo(self, task: RenderTask) -> tuple[PILImage, tuple[int, int]]:
        """The job's photo (validated, EXIF applied, RGB) and the exact output size."""
        image = photo.load_photo(
            task.input_path, max_pixels=self.settings.max_pixels, min_side=self.settings.min_side
        )
        spec = task.spec
        return image, motion.output_size(spec.resolution, spec.aspect, image.width, image.height)

    def _encode(
        self,
        task: RenderTask,
        frames: Iterable[FrameArray],
        size: tuple[int, int],
        on_frame: Callable[[int], None],
        progress: ProgressFn,
        cancel: threading.Event | None = None,
        pix_fmt: str = "rgb24",
    ) -> RenderResult:
        """Stream `frames` (RGB, or I420 with `pix_fmt="yuv420p"`) into the task's MP4 (with
        `metadata`) and report the end; `cancel` is also heard while ffmpeg finishes the file."""
        spec = task.spec
        width, height = size
        video.encode(
            frames,
            task.output_path,
            width=width,
            height=height,
            fps=spec.fps,
            crf=self.settings.crf,
            preset=self.settings.x264_preset,
            metadata=self.metadata(task, size),
            on_frame=on_frame,
            check=None if cancel is None else lambda: check_cancel(cancel),
            pix_fmt=pix_fmt,
        )
        progress(Progress(100.0, Phase.FINISHING, eta=0.0))
        return RenderResult(spec.frames, width, height, spec.fps, self.name)

    def metadata(self, task: RenderTask, size: tuple[int, int]) -> dict[str, str]:
        """The MP4's tags: what was asked, with the aspect it resolved to and the renderer that
        really made it; the task's own tags go on top."""
        spec = task.spec
        aspect = motion.aspect_of(*size)
        return {
            "title": f"FanslyMotion {spec.motion} {spec.duration}s {spec.resolution}",
            "comment": (
                f"job_id={task.job_id} motion={spec.motion} duration={spec.duration}"
                f" resolution={spec.resolution} aspect={aspect} strength={spec.strength:g}"
                f" seed={spec.seed} steps={spec.steps} fps={spec.fps} renderer={self.name}"
            ),
            "fanslymotion_seed": str(spec.seed),
            "fanslymotion_motion": spec.motion,
            "fanslymotion_aspect": aspect,
            "fanslymotion_renderer": self.name,
            **task.metadata,
        }

    def memory_stats(self) -> dict[str, float]:
        """Accelerator memory in bytes by kind (e.g. allocated, reserved); empty on the CPU."""
        return {}

    def estimate_seconds(self, spec: RenderSpec) -> float:
        """A first guess of the render time, before the queue has measured real ones."""
        return 1.0 + spec.frames * 0.05

    def scratch_bytes(self, spec: RenderSpec) -> int:
        """At most this many bytes of the job's work folder (checkpoints) on disk."""
        return 0


def check_cancel(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise Cancelled()


class MotionRenderer(Renderer):
    """The camera-motion engine on the CPU: exact sub-pixel camera paths over the still photo."""

    name = "motion"

    def __init__(self, settings: Settings, reason: str = "selected") -> None:
        super().__init__(settings)
        self.state = RendererState(self.name, "loading", reason)

    def load(self) -> None:
        # The first job waits for no compiler and no import of Pillow's plugins.
        motion.warm(roll=self.settings.camera_roll)
        photo.warm()
        self.state.status = "ready"

    def estimate_seconds(self, spec: RenderSpec) -> float:
        # Dominated by x264 and the resampling, both linear in output pixels.
        short = motion.RESOLUTIONS.get(spec.resolution, 720)
        return 0.5 + spec.frames * short * short * 16 / 9 * 1.5e-8

    def render(
        self, task: RenderTask, progress: ProgressFn, cancel: threading.Event
    ) -> RenderResult:
        spec = task.spec
        progress(Progress(0.0, Phase.PREPARING))
        image, (width, height) = self._open_photo(task)
        total = spec.frames
        shot = spec.shot
        if shot.subject is None:  # a job made without one (the CLI, an older row): look now
            found = None if shot.focus or shot.keyframes else subject.find_subject(image)
            shot = camera.aim(shot, found)
        # The seed's variation includes its slight roll unless CAMERA_ROLL is off: the compiled
        # YUV renderer rolls a frame for about twice an upright one's CPU (docs/benchmarks.md).
        path = camera.plan(
            spec.motion,
            spec.strength,
            image.size,
            (width, height),
            shot=shot,
            seed=spec.seed,
            roll=self.settings.camera_roll,
        )
        started = time.monotonic()
        begun: list[float] = []  # when the first frame came out of the engine

        def timed(frames: Iterator[FrameArray]) -> Iterator[FrameArray]:
            for frame in frames:
                if not begun:
                    begun.append(time.monotonic())
                yield frame

        def on_frame(done: int) -> None:
            check_cancel(cancel)
            # The rate of the frames alone: the time before the first one is the shrink of the
            # photo and ffmpeg's start, which counted per frame made a big photo's ETA jump.
            elapsed = time.monotonic() - (begun[0] if begun else started)
            eta = elapsed / done * (total - done) if done else None
            # The last few percent are ffmpeg's flush and the move into place.
            progress(Progress(min(99.0, 99.0 * done / total), Phase.RENDERING, eta=eta))

        frames = timed(motion.render_path_yuv(image, path, total))
        return self._encode(
            task, frames, (width, height), on_frame, progress, cancel, pix_fmt="yuv420p"
        )


RENDER_NICENESS = 10


StoryFn = Callable[["Renderer", RenderTask, ProgressFn, threading.Event], RenderResult]
"""How a story job is rendered with a renderer (story_render.render, given by the composer)."""


@dataclass
class _Work:
    task: RenderTask
    progress: ProgressFn
    cancel: threading.Event
    future: asyncio.Future[RenderResult]


class RenderWorker:
    """The one thread that owns the renderer, and the renderer's final choice.

    `start()` picks the candidate (a start-up error for RENDERER=svd without CUDA or weights)
    and loads it in the thread; `ready()` gives the renderer that really serves, decided once:
    under `auto` a candidate that fails to load is replaced by the camera-motion renderer,
    under `svd` the failure is raised. `render()` hands one job to the thread and awaits its
    result; progress comes back on the event loop through `call_soon_threadsafe`, and the
    thread never touches asyncio objects itself. A thread killed by a BaseException delivers it
    to the job as a retryable error, and the next render gets a fresh thread.

    Nothing is dropped: on its way out the thread settles `ready` and every job still in its
    inbox, under the lock that `render` takes to hand a job over, so no job goes to an inbox
    that no thread reads any more.
    """

    def __init__(
        self,
        settings: Settings,
        candidate: Renderer | Callable[[], Renderer],
        *,
        stories: StoryFn | None = None,
    ) -> None:
        self._settings = settings
        self._stories = stories
        self._choose = candidate if callable(candidate) else None
        self._candidate: Renderer | None = None if callable(candidate) else candidate
        self._renderer: Renderer | None = None
        self._inbox: thread_queue.Queue[_Work | None] = thread_queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # the hand-over of a job against the thread's way out
        self._open = False  # True while a thread reads the inbox
        self._ready: asyncio.Future[Renderer] | None = None
        self.fallback_reason: str | None = None
        """Why the candidate could not serve, when the camera-motion renderer replaced it."""

    def start(self) -> None:
        if self._choose is not None:  # e.g. backends.select_renderer: may raise Unavailable
            self._candidate = self._choose()
        candidate = self._candidate
        assert candidate is not None
        log.info("renderer: %s (%s)", candidate.name, candidate.state.reason)
        self._ready = asyncio.get_running_loop().create_future()
        self._spawn()

    @property
    def renders_stories(self) -> bool:
        """Whether this thread was given the story renderer (story_render.render)."""
        return self._stories is not None

    @property
    def renderer(self) -> Renderer | None:
        """The renderer that serves, once `ready()`; None while it loads."""
        return self._renderer

    @property
    def state(self) -> RendererState:
        """The serving renderer's state, or the candidate's while it loads."""
        chosen = self._renderer or self._candidate
        assert chosen is not None, "start() first"
        return chosen.state

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    async def ready(self) -> Renderer:
        """The renderer that serves; raises `Unavailable` when none can (RENDERER=svd)."""
        assert self._ready is not None, "start() first"
        return await asyncio.shield(self._ready)

    async def render(
        self, task: RenderTask, on_progress: ProgressFn, cancel: threading.Event
    ) -> RenderResult:
        """Render `task` in the thread. `on_progress` runs on the event loop."""
        await self.ready()
        loop = asyncio.get_running_loop()

        def progress(report: Progress) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed during shutdown
                loop.call_soon_threadsafe(on_progress, report)

        future: asyncio.Future[RenderResult] = loop.create_future()
        with self._lock:
            if not self._open:
                log.error("the render thread had died; starting a new one")
                self._spawn()
            self._inbox.put(_Work(task, progress, cancel, future))
        return await future

    async def stop(self, grace: float) -> None:
        """End the thread after its current work; wait up to `grace` seconds."""
        self._inbox.put(None)
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, grace)
            if self._thread.is_alive():
                log.warning("the render thread did not end within %.1fs", grace)

    # -- in the thread --

    def _spawn(self) -> None:
        """A new thread on the inbox (the caller holds the lock, or no thread can run yet)."""
        self._open = True
        self._thread = threading.Thread(target=self._main, name="gpu", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        # Render below the event loop's CPU priority: on Linux nice is per thread and ffmpeg
        # inherits it, so on a CPU-bound box the API still answers promptly during a render.
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), RENDER_NICENESS)
        try:
            if self._renderer is not None or self._load():
                self._serve()
        except BaseException as exc:  # SystemExit and the like end this thread, not the jobs
            log.error("the render thread stopped: %s: %s", type(exc).__name__, exc)
        finally:
            self._close_inbox()

    def _serve(self) -> None:
        renderer = self._renderer
        assert renderer is not None
        while (work := self._inbox.get()) is not None:
            try:
                result = self._render(renderer, work)
            except Exception as exc:  # every job's failure goes back to the loop
                self._settle(work.future, exc)
            except BaseException:
                self._settle(work.future, RenderError("the renderer stopped unexpectedly"))
                raise
            else:
                self._settle(work.future, result)
        with contextlib.suppress(Exception):
            renderer.close()

    def _render(self, renderer: Renderer, work: _Work) -> RenderResult:
        if work.task.spec.story is None:
            return renderer.render(work.task, work.progress, work.cancel)
        if self._stories is None:
            raise RenderError("this service cannot render stories", retryable=False)
        return self._stories(renderer, work.task, work.progress, work.cancel)

    def _close_inbox(self) -> None:
        """On the thread's way out: settle `ready` and every job left in the inbox; a job handed
        over after this goes to a new thread (see `render`)."""
        with self._lock:
            self._open = False
            if self._ready is not None and self._renderer is None:
                self._settle(self._ready, Unavailable("the render thread stopped while loading"))
            while True:
                try:
                    work = self._inbox.get_nowait()
                except thread_queue.Empty:
                    return
                if work is not None:
                    self._settle(work.future, RenderError("the renderer stopped unexpectedly"))

    def _load(self) -> bool:
        """Load the candidate, or fall back; settle `ready`. False when nothing can serve."""
        candidate = self._candidate
        assert candidate is not None
        try:
            candidate.load()
            chosen = candidate
        except Exception as exc:
            reason = exc.message if isinstance(exc, FanslyError) else f"{type(exc).__name__}: {exc}"
            candidate.state.status, candidate.state.reason = "failed", reason
            if self._settings.renderer == "svd" or isinstance(candidate, MotionRenderer):
                log.error("renderer %s failed to load: %s", candidate.name, reason)
                assert self._ready is not None
                self._settle(self._ready, Unavailable(reason))
                return False
            self.fallback_reason = reason
            log.error("%s; falling back to the camera-motion renderer", reason)
            chosen = MotionRenderer(self._settings, reason)
            chosen.load()
        log.info("renderer %s %s (%s)", chosen.name, chosen.state.status, chosen.state.reason)
        self._renderer = chosen
        assert self._ready is not None
        self._settle(self._ready, chosen)
        return True

    def _settle(self, future: asyncio.Future[T], outcome: T | BaseException) -> None:
        def settle() -> None:
            if future.done():
                return
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            future.get_loop().call_soon_threadsafe(settle)
