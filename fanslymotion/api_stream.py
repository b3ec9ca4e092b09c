"""Server-Sent Events of one job: the stream that writes them (ids that name the state, progress
that never goes back) and the small judgements the relay in `api` makes with it."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from . import api_files, models
from .config import Settings
from .vocabulary import Preview

HEARTBEAT = 15.0
"""Seconds between comment lines on a quiet stream: proxies and browsers keep it open."""
QUEUE_REFRESH = 1.0
"""Seconds at least between two recomputations of a waiting job's place while another job
renders (its progress moves the ETA)."""


def event_id(body: models.JobStatusOut) -> str:
    """An id that names the state an event carries: attempt, stage, progress, place (and a
    waiting job's ETA, which it is told about). A client that reconnects with it gets nothing
    twice: the current state only if it differs."""
    stage = {"queued": 0, "processing": 1}.get(body.status, 2)
    place = body.queue_position or 0
    phase = f".{body.phase}{body.phase_step}" if body.phase else ""
    wait = f".{round(body.eta_seconds)}" if stage == 0 and body.eta_seconds is not None else ""
    return f"{body.attempts}.{stage}.{round(body.progress * 10)}.{place}{wait}{phase}"


class Stream:
    """One SSE response: events with ids, each carrying a status body."""

    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response
        self.last: models.JobStatusOut | None = None
        self.sent: str | None = None  # the id of the last event sent
        self.reached = 0.0  # the highest progress sent

    def _forward(self, body: models.JobStatusOut) -> models.JobStatusOut:
        """The body with progress never below what was sent already: the live figure runs
        ahead of the row, which a later event (cancelled, failed) may carry."""
        if body.progress >= self.reached:
            self.reached = body.progress
            return body
        return body.model_copy(update={"progress": self.reached})

    async def send(self, kind: str, body: models.JobStatusOut) -> None:
        """Send one event; one that would repeat the state just sent is left out (a transition
        can carry the same live figures as the progress report before it)."""
        body = self._forward(body)
        name = event_id(body)
        if kind in ("status", "progress") and self.sent == name:
            return
        data = json.dumps(body.model_dump(mode="json"), separators=(",", ":"))
        await self.response.write(f"id: {name}\nevent: {kind}\ndata: {data}\n\n".encode())
        self.last, self.sent = body, name

    async def send_preview(self, body: models.JobStatusOut, preview: dict[str, Any]) -> None:
        """A `preview` event: the status body with the new preview under `preview`."""
        body = self._forward(body)
        data = json.dumps(
            {**body.model_dump(mode="json"), "preview": preview}, separators=(",", ":")
        )
        name = f"{event_id(body)}.p{preview['passes_done']}"
        await self.response.write(f"id: {name}\nevent: preview\ndata: {data}\n\n".encode())
        self.last = body

    async def heartbeat(self) -> None:
        await self.response.write(b": keep-alive\n\n")


def moved(before: models.JobStatusOut, now: models.JobStatusOut) -> bool:
    """Whether a waiting job's view changed enough to tell: place, state, or ETA by >= 1 s."""
    if (before.status, before.queue_position) != (now.status, now.queue_position):
        return True
    if (before.eta_seconds is None) != (now.eta_seconds is None):
        return True
    return abs((before.eta_seconds or 0.0) - (now.eta_seconds or 0.0)) >= 1.0


def preview_data(settings: Settings, preview: Preview) -> dict[str, Any]:
    """What a `preview` event adds to the status body: where the preview is, how far it goes."""
    job_id = preview.path.parent.name
    return {
        "url": api_files.link(settings, f"/job/{job_id}/preview", job_id),
        "frames": preview.frames,
        "passes_done": preview.passes_done,
        "passes": preview.passes,
        "size": preview.size_bytes,
    }
