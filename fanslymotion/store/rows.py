"""The rows the store reads and writes, and the one timestamp format of the database."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple

from ..errors import InvalidParams
from ..vocabulary import TERMINAL, Progress


def iso_utc(moment: datetime) -> str:
    """The one timestamp format of the database: ISO 8601 UTC, always with microseconds, so
    every value has the same width and text order is time order (cut-offs included)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def utcnow() -> str:
    return iso_utc(datetime.now(UTC))


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


@dataclass
class Job:
    """One row of `jobs`."""

    job_id: str
    user_id: int
    source: str
    chat_id: int | None
    message_id: int | None
    progress_message_id: int | None
    language: str | None
    duration: int
    resolution: str
    motion_preset: str
    aspect: str
    strength: float
    seed: int
    steps: int
    fps: int
    status: str
    progress: float
    message: str
    error: str | None
    attempts: int
    renderer: str | None
    input_path: str | None
    output_path: str | None
    width: int | None
    height: int | None
    frames: int | None
    size_bytes: int | None
    render_seconds: float | None
    idempotency_key: str | None
    not_before: float
    created_at: str
    started_at: str | None
    completed_at: str | None
    updated_at: str
    archived: int
    phase: str = ""
    phase_step: int = 0
    phase_steps: int = 0
    interruptions: int = 0
    webhook_url: str | None = None
    webhook_events: str | None = None  # a JSON list of event names
    request_digest: str | None = None
    shot: str | None = None  # camera.Shot as JSON
    story: str | None = None  # story.Story as JSON; None for one photo
    photo_pixels: int | None = None  # the photo's width x height, for the ETA; None before

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def with_progress(self, report: Progress, **changes: Any) -> Job:
        """This row as a progress report shows it (live, before it is saved)."""
        return replace(
            self,
            progress=round(report.percent, 1),
            message=report.message,
            phase=report.phase,
            phase_step=report.step,
            phase_steps=report.steps,
            **changes,
        )

    def _shot(self) -> dict[str, Any]:
        return json.loads(self.shot) if self.shot else {}

    @property
    def framing(self) -> str | None:
        """How the path was aimed: face, saliency, centre, focus or camera (None: older rows)."""
        subject = self._shot().get("subject")
        return str(subject["framing"]) if subject else None

    @property
    def warnings(self) -> list[dict[str, Any]]:
        return list(self._shot().get("warnings") or [])

    @property
    def loop(self) -> bool:
        return bool(self._shot().get("loop"))

    @property
    def focus(self) -> dict[str, float] | None:
        focus: dict[str, float] | None = self._shot().get("focus")
        return focus

    @property
    def camera(self) -> dict[str, Any] | None:
        camera: dict[str, Any] | None = self._shot().get("camera")
        return camera


_JOB_COLUMNS = tuple(f.name for f in fields(Job))


@dataclass(frozen=True)
class NewJob:
    """The values a client's request gives a new row; the store adds status and timestamps."""

    job_id: str
    user_id: int
    source: Literal["api", "telegram"]
    chat_id: int | None
    message_id: int | None
    language: str | None
    duration: int
    resolution: str
    motion_preset: str
    aspect: str
    strength: float
    seed: int
    steps: int
    fps: int
    input_path: str
    idempotency_key: str | None
    request_digest: str | None = None
    webhook_url: str | None = None
    webhook_events: str | None = None  # a JSON list of event names
    shot: str | None = None  # camera.Shot as JSON
    story: str | None = None  # story.Story as JSON; None for one photo
    photo_pixels: int | None = None  # the photo's width x height, for the ETA; None before


@dataclass
class OutboxRow:
    """A webhook event due for delivery, with the job as it was when the event happened."""

    msg_id: str
    event: str
    url: str
    attempts: int
    created: float
    job: Job


@dataclass
class Delivery:
    job_id: str
    chat_id: int
    status: str
    attempts: int
    next_attempt_at: float
    file_id: str | None
    last_error: str | None
    created_at: str
    sent_at: str | None


def check_same_request(existing: Job, digest: str | None) -> None:
    """An idempotency key names one request: another one under the same key is refused."""
    if existing.request_digest is not None and digest != existing.request_digest:
        raise InvalidParams(
            "this Idempotency-Key was used for another request (other parameters or photo)",
            code="idempotency_key_reused",
        )


def job_from(row: Mapping[str, Any]) -> Job:
    """A `Job` from a row of either dialect (extra columns ignored, absent later ones default)."""
    return Job(**{name: row[name] for name in _JOB_COLUMNS if name in row})


class UserName(NamedTuple):
    """A Telegram user's name as Telegram sends it: first name, last name, @username (no @)."""

    first_name: str
    last_name: str | None = None
    username: str | None = None


@dataclass(frozen=True)
class OwnerRule:
    """The operator's word on one owner: a daily limit (None: the service's) and a block."""

    daily_seconds: int | None = None
    blocked: bool = False
