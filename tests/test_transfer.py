"""How a worker retries the front (`cluster.transfer.retrying`), against real sockets on
127.0.0.1: network trouble for `WORKER_FRONT_RETRY` seconds and then a render error; a 503
held for as long as the caller holds on, past that budget."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from fanslymotion.cluster.transfer import Away, check, retrying
from fanslymotion.errors import RenderError

from .conftest import make_settings


@pytest.fixture
async def front() -> AsyncIterator[tuple[str, list[int]]]:
    """A front that answers 503 to the first four requests, then 200; the statuses it gave."""
    given: list[int] = []

    async def video(request: web.Request) -> web.Response:
        given.append(503 if len(given) < 4 else 200)
        return web.Response(status=given[-1])

    app = web.Application()
    app.router.add_put("/video", video)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/video", given
    finally:
        await runner.cleanup()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _request(
    method: str, url: str, tries: list[str] | None = None
) -> Callable[[], Awaitable[None]]:
    """The worker's `once`: one request to the front, its answer read by `check`."""

    async def once() -> None:
        if tries is not None:
            tries.append(url)
        async with aiohttp.ClientSession() as http, http.request(method, url) as resp:
            await check(resp)

    return once


def test_the_budget_is_a_setting(tmp_path: Path) -> None:
    assert make_settings(tmp_path).worker_front_retry == 60.0
    assert make_settings(tmp_path, worker_front_retry="5").worker_front_retry == 5.0


async def test_an_unreachable_front_is_retried_for_the_budget_then_a_render_error() -> None:
    tries: list[str] = []
    once = _request("PUT", f"http://127.0.0.1:{_closed_port()}/video", tries)
    # Backoff 0.5 s, then 1 s: the third failure comes 1.5 s in, and 2 s more would pass the
    # budget (with seconds to spare either way on a loaded machine).
    with pytest.raises(RenderError, match="job j: upload: the front is not reachable"):
        await retrying(once, "job j: upload", 2.9)
    assert len(tries) == 3


async def test_a_503_is_held_past_the_budget(front: tuple[str, list[int]]) -> None:
    url, given = front
    holds: list[str] = []

    async def hold(exc: Away) -> None:
        holds.append(str(exc))
        await asyncio.sleep(0.3)

    # Four holds of 0.3 s outlast the 1 s budget: a held video is never given up for it.
    await retrying(_request("PUT", url), "job j: upload", 1.0, hold=hold)
    assert given == [503, 503, 503, 503, 200]
    assert holds == ["the front answered 503"] * 4


async def test_without_a_hold_a_503_is_network_trouble(front: tuple[str, list[int]]) -> None:
    url, given = front

    # The photo's download: backoff 0.5 s, and the next 1 s would pass the budget.
    with pytest.raises(RenderError, match=r"the front is not reachable \(the front answered 503\)"):
        await retrying(_request("PUT", url), "job j: photo", 1.4)
    assert given == [503, 503]


async def test_a_refusal_is_not_retried(front: tuple[str, list[int]]) -> None:
    url, given = front

    # A 4xx other than 401, 403, 409 and 422 is the front's answer, not trouble to retry.
    with pytest.raises(RenderError, match=r"the front refused it \(405"):
        await retrying(_request("GET", url), "job j: photo", 60.0)
    assert given == []
