"""How background loops wait and stop.

A loop stops on a flag and a wake-up: its owner sets the flag, sets the event the loop waits
on, and gives it a while to end on its own; cancelling is only the backup. Waits with a limit
go through `wait_event` (asyncio.timeout): `asyncio.wait_for` around a wait can swallow a
cancel that arrives as the wait completes on Python 3.11 (CPython gh-86296), and a loop that
lost its cancel never ends. A test reads the package for `wait_for` so it does not come back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

CANCEL_GRACE = 2.0
"""Seconds a task gets to unwind after the backup cancel before it is reported as stuck."""


async def wait_event(event: asyncio.Event, within: float | None) -> bool:
    """Wait until `event` is set, at most `within` seconds (None: no limit); True when set."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(within):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True


async def stop_tasks(
    tasks: Iterable[asyncio.Task[Any] | asyncio.Future[Any]], grace: float, what: str
) -> list[asyncio.Future[Any]]:
    """End tasks that were told to stop: wait up to `grace` seconds for them, cancel those
    still running, give them `CANCEL_GRACE` more, and log each that still did not end. Every
    task's exception is retrieved (and logged), so none is reported "never retrieved".

    Returns the tasks that did not end."""
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    if pending and grace > 0:
        _, pending = await asyncio.wait(pending, timeout=grace)
    for task in pending:
        log.warning("%s: %s did not stop within %.1fs; cancelled", what, _name(task), grace)
        task.cancel()
    if pending:
        _, pending = await asyncio.wait(pending, timeout=CANCEL_GRACE)
    for task in pending:
        log.error("%s: %s did not end even when cancelled; left behind", what, _name(task))
    for task in tasks:
        if task.done() and not task.cancelled() and (error := task.exception()) is not None:
            log.error("%s: %s ended with %s: %s", what, _name(task), type(error).__name__, error)
    return list(pending)


def _name(task: asyncio.Future[Any]) -> str:
    return task.get_name() if isinstance(task, asyncio.Task) else repr(task)


def watch(task: asyncio.Future[Any], what: str) -> None:
    """Log a fire-and-forget task's failure when it ends, so none goes unobserved (and
    asyncio never reports "Task exception was never retrieved")."""

    def done(ended: asyncio.Future[Any]) -> None:
        if not ended.cancelled() and (error := ended.exception()) is not None:
            log.error("%s failed: %s: %s", what, type(error).__name__, error)

    task.add_done_callback(done)
