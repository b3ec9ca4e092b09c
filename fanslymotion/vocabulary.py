"""The job vocabulary shared by every part of the service, the render thread included: a job's
statuses, the phases of a render and one progress report. Nothing here knows the HTTP API."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal


class JobStatus(StrEnum):
    """A job's state. queued -> processing -> completed | failed | cancelled; a retry, a stop or
    a crash brings a processing job back to queued."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


WebhookEvent = Literal["started", "progress", "completed", "failed", "cancelled"]

DONE = "done"
"""The phase a completed job's row and its terminal events say: the end, not a render's phase
(no renderer reports it)."""

ACTIVE: frozenset[str] = frozenset({JobStatus.QUEUED, JobStatus.PROCESSING})
TERMINAL: frozenset[str] = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class Phase(StrEnum):
    """What a render is doing. Every renderer reports one of these; the bot and the page have a
    text for each in every language (`phase_<value>` in texts.py)."""

    STARTING = "starting"
    LOADING = "loading"
    PREPARING = "preparing"
    RESUMED = "resumed"
    RENDERING = "rendering"
    ANIMATING = "animating"
    DECODING = "decoding"
    ENCODING = "encoding"
    FINISHING = "finishing"
    SHOT = "shot"
    """A story's shot renders: step is the shot, steps how many ("shot 2/4")."""


@dataclass(frozen=True)
class Progress:
    """One progress report of a render: percent 0-100 of the whole job, the phase, the pass
    (`step` of `steps`, 0 of 0 when the phase has none) and the seconds left when known."""

    percent: float
    phase: Phase
    step: int = 0
    steps: int = 0
    eta: float | None = None

    @property
    def message(self) -> str:
        """The phase in plain English for logs and API clients, e.g. "animating 2/4"."""
        return f"{self.phase} {self.step}/{self.steps}" if self.steps else str(self.phase)


@dataclass(frozen=True)
class Preview:
    """A live preview of a render in progress (SVD only): a small MP4 of the frames so far."""

    path: Path
    frames: int
    passes_done: int
    passes: int
    size_bytes: int
