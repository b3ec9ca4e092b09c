"""A worker's HTTP exchange with the front: what its answers mean (`check`), and how a photo
download or an upload is retried (`retrying`): network trouble with backoff for a while, a 503
(the front is up but its database is away) for as long as the caller holds on."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from ..errors import RenderError

log = logging.getLogger(__name__)


class Refused(Exception):
    """The front refused the attempt's upload: the job was re-run elsewhere or cancelled."""


class Away(ConnectionError):
    """The front answered 503: it is up, but cannot record anything (its database is away)."""


class Rejected(Exception):
    """The front refused the video as damaged and retries the job itself."""


class BadToken(Exception):
    """The front does not accept this worker's token: no job can succeed here."""


async def check(resp: aiohttp.ClientResponse) -> None:
    """What the front's answer means for the attempt, as an exception (nothing for 2xx)."""
    if resp.status == 409:
        raise Refused(await resp.text())
    if resp.status == 422:
        raise Rejected(await resp.text())
    if resp.status in (401, 403):
        raise BadToken("the front refuses FANSLYMOTION_WORKER_TOKEN (not the one it has)")
    if resp.status == 503:
        raise Away("the front answered 503")
    if resp.status >= 500:
        raise ConnectionError(f"the front answered {resp.status}")
    if resp.status >= 400:
        raise RenderError(f"the front refused it ({resp.status}: {await _reason(resp)})")


async def _reason(resp: aiohttp.ClientResponse) -> str:
    """The `error` of the front's error body, or the start of whatever else it sent."""
    text = await resp.text()
    try:
        return str(json.loads(text)["error"])
    except (ValueError, KeyError, TypeError):
        return text[:200]


async def retrying(
    call: Any,
    what: str,
    budget: float,
    hold: Callable[[Away], Awaitable[None]] | None = None,
) -> None:
    """`call` until it succeeds, retrying network trouble with backoff for `budget` seconds.
    With `hold`, a 503 is no trouble of the network: `hold` waits, and the budget starts
    again."""
    deadline = time.monotonic() + budget
    delay = 0.5
    while True:
        try:
            await call()
            return
        except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
            if hold is not None and isinstance(exc, Away):
                await hold(exc)
                deadline, delay = time.monotonic() + budget, 0.5
                continue
            if time.monotonic() + delay > deadline:
                raise RenderError(f"{what}: the front is not reachable ({exc})") from exc
            log.warning("%s failed (%s); again in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def chunks(path: Path) -> Any:
    """The file in 1 MiB pieces, read off the loop."""
    loop = asyncio.get_running_loop()
    handle = await loop.run_in_executor(None, path.open, "rb")
    try:
        while chunk := await loop.run_in_executor(None, handle.read, 1 << 20):
            yield chunk
    finally:
        await loop.run_in_executor(None, handle.close)
