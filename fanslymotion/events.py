"""The job events listeners follow (SSE clients, the bot): what they carry and the hub that
fans them out, one bounded queue per listener."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from .store import Job
from .vocabulary import Preview


@dataclass(frozen=True)
class JobEvent:
    """A change seen by listeners (SSE clients, the bot): a committed status, live progress,
    or a new live preview (`preview` set; SVD only)."""

    kind: Literal["status", "progress", "preview"]
    job: Job
    eta_seconds: float | None = None
    preview: Preview | None = None


class _Closed:
    """Marker put in subscriber queues when the service stops."""


_CLOSED: Any = _Closed()


def is_closed(event: object) -> bool:
    return event is _CLOSED


class EventHub:
    """Every listener's queue; a slow listener may miss progress, never a status change."""

    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[JobEvent]] = set()

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[JobEvent]]:
        """Every JobEvent from now on, until the context ends or the hub closes."""
        subscriber: asyncio.Queue[JobEvent] = asyncio.Queue(maxsize=10_000)
        self._subscribers.add(subscriber)
        try:
            yield subscriber
        finally:
            self._subscribers.discard(subscriber)

    def publish(self, event: JobEvent) -> None:
        for subscriber in list(self._subscribers):
            if subscriber.full() and event.kind == "progress":
                continue
            with contextlib.suppress(asyncio.QueueFull):
                subscriber.put_nowait(event)

    def close(self) -> None:
        """Tell every listener the service stops."""
        for subscriber in list(self._subscribers):
            subscriber.put_nowait(_CLOSED)
