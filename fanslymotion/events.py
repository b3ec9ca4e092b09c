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


BACKLOG = 10_000
"""Events a listener may have waiting before it misses progress and previews (the live figures
come again with the next report); status changes and the close always get in."""


class EventHub:
    """Every listener's queue; a slow listener may miss progress, never a status change."""

    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue[JobEvent]] = set()

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[JobEvent]]:
        """Every JobEvent from now on, until the context ends or the hub closes."""
        subscriber: asyncio.Queue[JobEvent] = asyncio.Queue()  # bounded in publish
        self._subscribers.add(subscriber)
        try:
            yield subscriber
        finally:
            self._subscribers.discard(subscriber)

    def publish(self, event: JobEvent) -> None:
        for subscriber in list(self._subscribers):
            if event.kind != "status" and subscriber.qsize() >= BACKLOG:
                continue
            subscriber.put_nowait(event)

    def end(self, subscriber: asyncio.Queue[JobEvent]) -> None:
        """Tell one listener to stop, as `close` tells all (its owner stops before the hub)."""
        subscriber.put_nowait(_CLOSED)

    def close(self) -> None:
        """Tell every listener the service stops."""
        for subscriber in list(self._subscribers):
            subscriber.put_nowait(_CLOSED)
