"""Server-Sent Events on the real service: finished, running and queued jobs, and resuming.

Every event carries an id and a status body; every stream ends with exactly one terminal
event; a client that reconnects with Last-Event-ID gets nothing it already has.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from .conftest import Client, ServiceFactory

TERMINAL = {"completed", "failed", "cancelled"}


@dataclass
class Event:
    id: str
    kind: str
    data: dict[str, Any]


@dataclass
class Listener:
    """One SSE connection; `events` fills as they arrive, `first` is set by the first one."""

    events: list[Event] = field(default_factory=list)
    first: asyncio.Event = field(default_factory=asyncio.Event)
    status: int = 0
    comments: int = 0

    async def run(self, client: Client, job_id: str, last_id: str | None = None) -> None:
        headers = {"Last-Event-ID": last_id} if last_id is not None else {}
        url = f"{client.base}/job/{job_id}/events"
        async with client.session.get(url, headers=headers) as response:
            self.status = response.status
            fields: dict[str, str] = {}
            async for raw in response.content:
                line = raw.decode().rstrip("\n")
                if line.startswith(":"):
                    self.comments += 1
                elif line == "" and fields:
                    self.events.append(
                        Event(fields["id"], fields["event"], json.loads(fields["data"]))
                    )
                    self.first.set()
                    fields = {}
                elif ": " in line:
                    name, value = line.split(": ", 1)
                    fields[name] = value

    @property
    def kinds(self) -> list[str]:
        return [event.kind for event in self.events]


def check_shape(listener: Listener, job_id: str) -> None:
    """One shape for every event, one terminal event, and it is the last."""
    assert listener.status == 200
    for event in listener.events:
        assert event.data["job_id"] == job_id and event.id
        assert {"status", "progress", "queue_position", "eta_seconds", "phase"} <= set(event.data)
    assert sum(kind in TERMINAL for kind in listener.kinds) == 1
    assert listener.kinds[-1] in TERMINAL


async def listen(client: Client, job_id: str, last_id: str | None = None) -> Listener:
    listener = Listener()
    await asyncio.wait_for(listener.run(client, job_id, last_id), 60)
    return listener


async def test_a_finished_job_still_gets_its_terminal_event(start_deployed: ServiceFactory) -> None:
    client = await start_deployed()
    _, created = await client.create()
    await client.wait(created["job_id"])
    listener = await listen(client, created["job_id"])
    check_shape(listener, created["job_id"])
    assert listener.kinds == ["status", "completed"]
    assert listener.events[-1].data["progress"] == 100


async def test_running_jobs_stream_progress_and_end_once(start_deployed: ServiceFactory) -> None:
    client = await start_deployed()
    """Three listeners at once, each with its own stream, each seeing the whole run."""
    await client.service.jobs.pause()
    _, created = await client.create(duration=6, resolution="480p")
    job_id = created["job_id"]
    listeners = [Listener() for _ in range(3)]
    tasks = [asyncio.create_task(one.run(client, job_id)) for one in listeners]
    await asyncio.wait_for(asyncio.gather(*(one.first.wait() for one in listeners)), 30)
    await client.service.jobs.resume()
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    for one in listeners:
        check_shape(one, job_id)
        assert one.kinds[0] == "status" and one.events[0].data["status"] == "queued"
        progress = [e.data["progress"] for e in one.events if e.kind == "progress"]
        assert progress and progress == sorted(progress) and max(progress) <= 100
        assert any(e.data["phase"] == "rendering" for e in one.events if e.kind == "progress")
        assert one.kinds[-1] == "completed"


async def test_a_waiting_job_hears_its_place_move(start_deployed: ServiceFactory) -> None:
    client = await start_deployed(max_active_per_user=3)
    await client.service.jobs.pause()
    await client.create(user_id=1, duration=6)
    _, mine = await client.create(user_id=2)
    listener = Listener()
    task = asyncio.create_task(listener.run(client, mine["job_id"]))
    await asyncio.wait_for(listener.first.wait(), 30)
    assert listener.events[0].data["queue_position"] == 2
    await client.service.jobs.resume()
    await asyncio.wait_for(task, 60)
    check_shape(listener, mine["job_id"])
    places = [e.data["queue_position"] for e in listener.events if e.data["status"] == "queued"]
    assert places[0] == 2 and 1 in places  # told when the job ahead started
    assert [e.data["status"] for e in listener.events][-1] == "completed"
    ids = [e.id for e in listener.events]
    assert len(set(ids)) == len(ids)


async def test_resume_after_last_event_id(start_deployed: ServiceFactory) -> None:
    client = await start_deployed()
    _, created = await client.create()
    job_id = created["job_id"]
    await client.wait(job_id)
    first = await listen(client, job_id)
    terminal_id = first.events[-1].id
    # The client saw the end: 204 tells EventSource to stop reconnecting.
    again = await listen(client, job_id, last_id=terminal_id)
    assert again.status == 204 and again.events == []
    # A client that saw only an earlier state gets the current one and the end, once each.
    stale = await listen(client, job_id, last_id="0.0.0.1")
    check_shape(stale, job_id)
    assert stale.kinds == ["status", "completed"]


async def test_unknown_job_is_a_json_404(start_deployed: ServiceFactory) -> None:
    client = await start_deployed()
    async with client.session.get(f"{client.base}/job/nope/events") as response:
        assert response.status == 404
        body = await response.json()
    assert body["ok"] is False and body["status"] == 404


async def test_events_of_a_stopping_service_close_the_stream(
    start_deployed: ServiceFactory,
) -> None:
    client = await start_deployed()
    await client.service.jobs.pause()
    _, created = await client.create()
    listener = Listener()
    task = asyncio.create_task(listener.run(client, created["job_id"]))
    await asyncio.wait_for(listener.first.wait(), 30)
    await client.service.jobs.stop()
    # The server may cut the connection right after the last event.
    with contextlib.suppress(aiohttp.ClientPayloadError):
        await asyncio.wait_for(task, 30)
    assert listener.kinds[-1] == "closing"
