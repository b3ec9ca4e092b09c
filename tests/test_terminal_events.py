"""Terminal events that carry the result (issue 24, item 5): the `completed` webhook and SSE
event say `video: ready` with the (signed) video and poster links, progress 100 and phase
`done`; `cancelled` keeps the progress reached; progress never goes back in an event stream."""

from __future__ import annotations

import asyncio

import aiohttp

from .bot_stack import wait_until
from .conftest import ServiceFactory
from .test_sse import Listener
from .test_webhooks import LOOPBACK, SECRET, Receiver, hooked, receiver

__all__ = ["receiver"]  # the fixture, shared with test_webhooks

TOKEN = "terminal-events-token-01"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_the_completed_webhook_and_event_carry_the_video(
    start_deployed: ServiceFactory, receiver: Receiver
) -> None:
    client = await start_deployed(
        api_token=TOKEN, webhook_secret=SECRET, webhook_allow_hosts=LOOPBACK
    )
    client.session.headers.update(AUTH)
    job_id = await hooked(client, receiver, ["completed"])
    listener = Listener()
    listening = asyncio.create_task(listener.run(client, job_id))
    await receiver.wait_for(lambda ds: len(ds) == 1, 60)
    async with asyncio.timeout(30):
        await listening
    hook = receiver.deliveries[0].body
    event = listener.events[-1]
    assert event.kind == "completed"
    for body in (hook, event.data):
        assert body["status"] == "completed" and body["video"] == "ready"
        assert body["progress"] == 100 and body["phase"] == "done"
        assert "sig=" in body["video_url"] and "sig=" in body["poster_url"]
    # The receiver can use the link as it is: no token, no call back.
    async with aiohttp.ClientSession() as bare:
        url = client.base + hook["video_url"]
        async with bare.get(url) as response:
            assert response.status == 200 and (await response.read())[4:8] == b"ftyp"
        async with bare.get(client.base + hook["poster_url"]) as response:
            assert response.status == 200 and response.content_type == "image/jpeg"


async def test_a_cancelled_stream_never_goes_back(start_deployed: ServiceFactory) -> None:
    client = await start_deployed(progress_interval=0.5)
    status, created = await client.create(duration=12, resolution="720p")
    assert status == 201
    job_id = created["job_id"]
    listener = Listener()
    listening = asyncio.create_task(listener.run(client, job_id))
    await wait_until(
        lambda: any(e.kind == "progress" and e.data["progress"] > 5 for e in listener.events),
        60,
        "a progress event past 5 %",
    )
    status, _, _ = await client.request("POST", f"/job/{job_id}/cancel")
    assert status == 200
    async with asyncio.timeout(30):
        await listening
    progress = [event.data["progress"] for event in listener.events]
    assert listener.kinds[-1] == "cancelled" and progress == sorted(progress), progress
    assert listener.events[-1].data["progress"] == max(progress) > 5
    assert listener.events[-1].data["video"] == "none"
