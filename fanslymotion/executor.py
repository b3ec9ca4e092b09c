"""The executor port: where the job service (`queue.JobQueue`) has its jobs rendered.

The service owns the state machine (submit, fair order, cancel, pause, events, ETAs, the retry
policy); an executor only renders. Two implement the port: `dispatcher.LocalExecutor` (the
single box's dispatcher and GPU thread) and `cluster.front.ClusterExecutor` (PostgreSQL,
procrastinate and the worker processes). An executor tells the service what happens through
`Reports`: a job started, its progress and previews, how its attempt ended.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .camera import Shot
from .metrics import Metrics
from .renderer import Renderer, RenderSpec
from .retry import Outcome
from .store import Job
from .story import Story
from .vocabulary import Preview, Progress


@dataclass(frozen=True)
class Rendered:
    """An attempt that made its video, in place at `output_path` (under the data folder)."""

    output_path: str
    width: int
    height: int
    frames: int
    size_bytes: int


@dataclass(frozen=True)
class CancelledByUser:
    """An attempt stopped because its user cancelled the job."""


Ending = Rendered | CancelledByUser | Outcome


class Reports(Protocol):
    """What an executor tells the job service (on the event loop)."""

    def started(self, job: Job, note: str) -> None:
        """`job` (its committed `processing` row) started rendering."""

    def progress(self, job: Job, report: Progress, updated_at: str | None = None) -> None:
        """Live progress of a running job."""

    def preview(self, job_id: str, preview: Preview) -> None:
        """A new preview of a running job is in place."""

    async def finished(self, job: Job, ending: Ending, seconds: float) -> None:
        """An attempt ended: the service commits what follows (the retry policy's answer)."""

    def settled(self, job: Job, note: str) -> None:
        """A change the executor's own store of record already committed (a job left
        `processing`, or ended while queued)."""


class Executor(Protocol):
    """Renders the jobs the service queues and reports back through `Reports`."""

    @property
    def paused(self) -> bool:
        """Whether processing is paused (the flag lives in the executor's store of record)."""

    @property
    def renderer(self) -> Renderer | None:
        """The renderer of this process, once loaded; None where workers render."""

    @property
    def renderer_name(self) -> str:
        """The name of the renderer that serves, or of the one loading."""

    @property
    def renders_stories(self) -> bool:
        """Whether a story job can render here (the job service refuses one at submit, 422
        `stories_unavailable`, where it cannot)."""

    def serving(self) -> tuple[str, Callable[[RenderSpec], float]] | None:
        """The serving renderer's name and its first guess of a render's seconds (nan when it
        has none); None while nothing can serve."""

    def lanes(self) -> int:
        """How many jobs render at once."""

    async def start(self, reports: Reports) -> None:
        """Recover what was interrupted and start taking jobs."""

    async def stop(self, grace: float) -> None:
        """Take no more jobs; what runs here is parked back in the queue within `grace`."""

    async def ready(self) -> None:
        """Return once the executor can render (raises `Unavailable` when it never will)."""

    async def admit(self) -> None:
        """Raise `Unavailable` when a submit cannot be taken now (before anything is written)."""

    async def enqueued(self, job: Job) -> None:
        """A new job is committed in the service's store."""

    async def cancel(self, job: Job) -> None:
        """Stop `job` wherever the executor has it; what follows is reported back."""

    async def set_paused(self, paused: bool) -> None:
        """Pause or resume processing (raises `Unavailable` when that cannot be recorded)."""

    async def health(self) -> dict[str, Any]:
        """The executor's part of /health, with "ok" for whether it can serve."""

    async def refresh_metrics(self, metrics: Metrics) -> None:
        """Bring the executor's gauges up to date."""


def spec_of(job: Job) -> RenderSpec:
    """What the renderer makes of a job's row."""
    return RenderSpec(
        duration=job.duration,
        resolution=job.resolution,
        motion=job.motion_preset,
        aspect=job.aspect,
        strength=job.strength,
        seed=job.seed,
        fps=job.fps,
        steps=job.steps,
        shot=Shot.from_json(job.shot),
        story=Story.from_json(job.story) if job.story else None,
    )
