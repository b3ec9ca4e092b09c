"""The cluster's front in this process (so its events can be watched) with a real worker
process and a real PostgreSQL: live progress, SSE, webhooks, pause, health and metrics."""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from fanslymotion.store import parse_time

from .cluster_stack import TOKEN, WorkerProcess
from .conftest import Client, ServiceFactory
from .test_admin import TOKEN as ADMIN_TOKEN
from .test_admin import admin
from .test_webhooks import LOOPBACK, SECRET, Receiver, hooked

# Serial: the worker is fenced off after 4 s without a heartbeat (WORKER_TIMEOUT), so a worker
# starved by a second test process would have its job re-run.
pytestmark = [pytest.mark.timeout(180), pytest.mark.serial]


@pytest.fixture
async def front(
    start_service: ServiceFactory, pg_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Client, WorkerProcess]]:
    client = await start_service(
        database_url=pg_url,
        worker_token=TOKEN,
        admin_token=ADMIN_TOKEN,
        worker_timeout=4,
        worker_heartbeat=1,
        max_queued=50,
        webhook_secret=SECRET,
        webhook_allow_hosts=LOOPBACK,
        webhook_backoff=0.2,
    )
    worker = WorkerProcess(tmp_path / "box0", "box0-gpu0", pg_url, client.base)
    worker.start()
    try:
        await _until(client, lambda h: any(w["state"] == "idle" for w in h["workers"]))
        yield client, worker
    finally:
        worker.kill()


async def _until(client: Client, check: Any, within: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        _, body, _ = await client.request("GET", "/health")
        if check(body):
            return dict(body)
        await asyncio.sleep(0.1)
    raise AssertionError(f"/health never matched: {body}")


LONG: dict[str, Any] = {"duration": 12, "resolution": "1080p", "motion_preset": "dolly_in"}


async def test_live_progress_reaches_the_front_within_a_second(
    front: tuple[Client, WorkerProcess],
) -> None:
    client, _ = front
    seen: list[tuple[float, str, float]] = []
    delays: list[float] = []
    async with client.service.jobs.subscribe() as events:
        status, body = await client.create(**LONG)
        assert status == 201
        job_id = body["job_id"]
        async with asyncio.timeout(120):
            while True:
                event = await events.get()
                if event.job.job_id != job_id:
                    continue
                seen.append((time.time(), event.kind, event.job.progress))
                if event.kind == "progress":  # from the worker's write to this process
                    written = parse_time(event.job.updated_at)
                    assert written is not None
                    delays.append(time.time() - written.timestamp())
                if event.kind == "status" and event.job.terminal:
                    break
    assert seen[-1][1] == "status"
    final = await client.wait(job_id)
    assert final["status"] == "completed" and final["renderer"] == "motion"
    progress = [(at, percent) for at, kind, percent in seen if kind == "progress"]
    assert len(progress) >= 5
    percents = [p for _, p in progress]
    assert percents == sorted(percents) and 0 <= percents[0] < percents[-1] <= 100
    # Written every 0.1 s there, NOTIFY brings it here: typically within a second. The bound
    # on every report is looser because on this 2-core machine, with other test processes
    # runnable, one report was seen taking 2.6 s (CI, load 10); polling (the old reconciler
    # ran every 10 s) would still fail it.
    assert statistics.median(delays) < 1.0 and max(delays) < 5.0, delays
    # While it animates, the worker writes every PROGRESS_INTERVAL and each write arrives.
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(progress) if b[1] < 90]
    assert statistics.median(gaps) < 1.0 and max(gaps) < 5.0, gaps
    row = await client.service.store.get_job(job_id)
    assert row is not None and row.status == "completed" and row.phase_steps == 0


async def test_sse_and_webhooks_behave_as_on_one_box(
    front: tuple[Client, WorkerProcess],
) -> None:
    client, _ = front
    receiver = Receiver()
    await receiver.start()
    try:
        job_id = await hooked(client, receiver, ["started", "progress", "completed"])
        kinds: list[str] = []
        async with client.session.get(f"{client.base}/job/{job_id}/events") as stream:
            async with asyncio.timeout(120):
                async for raw in stream.content:
                    line = raw.decode().strip()
                    if line.startswith("event:"):
                        kinds.append(line.split(":", 1)[1].strip())
                    if line.startswith("data:") and '"completed"' in line:
                        break
        assert "progress" in kinds and kinds[-1] in ("status", "done", "completed")
        await receiver.wait_for(lambda ds: any(d.event == "completed" for d in ds), 30)
        events = [d.event for d in receiver.deliveries]
        assert events[0] == "started" and events[-1] == "completed"
        done = receiver.of("completed")[0].body
        assert done["status"] == "completed" and done["job_id"] == job_id
        assert done["renderer"] == "motion"
    finally:
        await receiver.close()


async def test_pause_stops_workers_taking_jobs_until_resume(
    front: tuple[Client, WorkerProcess], pg_url: str
) -> None:
    client, worker = front
    jobs = client.service.jobs
    await jobs.pause()
    status, body = await client.create()
    assert status == 201
    job_id = body["job_id"]
    import psycopg

    async with await psycopg.AsyncConnection.connect(pg_url) as conn:
        cur = await conn.execute(
            "SELECT p.queue_name, p.status FROM fm_jobs f JOIN procrastinate_jobs p"
            " ON p.id = f.pq_id WHERE f.job_id = %s",
            (job_id,),
        )
        assert await cur.fetchone() == ("render-paused", "todo")
    health = await _until(client, lambda h: h["paused"])
    assert health["ok"] is False and "paused" in health["reason"]
    # Two heartbeats of the idle worker while the job waits: it is not taking it.
    first = (await _until(client, lambda h: h["workers"]))["workers"][0]["last_heartbeat"]
    await _until(
        client,
        lambda h: h["workers"][0]["last_heartbeat"] > first and h["workers"][0]["state"] == "idle",
    )
    assert (await client.wait(job_id, ("queued",)))["status"] == "queued"
    assert f"job {job_id} processing" not in worker.log()
    await jobs.resume()
    assert (await client.wait(job_id))["status"] == "completed"


async def test_health_and_metrics_list_the_workers(front: tuple[Client, WorkerProcess]) -> None:
    client, worker = front
    status, body = await client.create(**LONG)
    assert status == 201
    job_id = body["job_id"]
    health = await _until(client, lambda h: h["workers"][0]["job_id"] == job_id)
    (seen,) = health["workers"]
    assert health["mode"] == "cluster" and health["database"] == "ok"
    assert seen["name"] == "box0-gpu0" and seen["renderer"] == "motion"
    assert seen["state"] == "busy" and seen["last_heartbeat"].endswith("Z")
    assert seen["renderer_state"]["status"] == "ready"
    _, text, _ = await client.request("GET", "/metrics")
    metrics = text.decode() if isinstance(text, bytes) else str(text)
    assert 'fanslymotion_worker_up{renderer="motion",worker="box0-gpu0"} 1.0' in metrics
    assert 'fanslymotion_worker_busy{renderer="motion",worker="box0-gpu0"} 1.0' in metrics
    assert "fanslymotion_worker_heartbeat_age_seconds" in metrics
    await client.request("POST", f"/job/{job_id}/cancel")
    worker.kill()
    health = await _until(client, lambda h: h["workers"][0]["state"] == "lost", 30)
    assert json.loads(json.dumps(health)) == health  # the whole answer stays plain JSON


async def test_etas_come_from_the_times_the_workers_measured(
    front: tuple[Client, WorkerProcess],
) -> None:
    client, _ = front
    status, body = await client.create(user_id=5)
    assert status == 201
    measured = await client.wait(body["job_id"])
    assert measured["status"] == "completed"
    row = await client.service.store.get_job(body["job_id"])
    assert row is not None and row.render_seconds is not None and row.renderer == "motion"
    status, running = await client.create(user_id=6, **LONG)
    await _until(client, lambda h: h["workers"][0]["job_id"] == running["job_id"])
    waiting = [(await client.create(user_id=7 + i))[1]["job_id"] for i in range(2)]
    statuses = [(await client.request("GET", f"/job/status/{j}"))[1] for j in waiting]
    assert [s["queue_position"] for s in statuses] == [1, 2]
    assert all(s["eta_seconds"] is not None and s["eta_seconds"] > 0 for s in statuses)
    # Both ETAs from one snapshot: two status requests apart see the running job's rest move
    # (on a loaded box, by more than a render), which says nothing of the queue's sum.
    _, queue = await admin(client, "GET", "/admin/queue")
    assert [j["job_id"] for j in queue["jobs"]] == waiting
    first, second = (j["eta_seconds"] for j in queue["jobs"])
    assert first is not None and second is not None and 0 < first < second
    # One lane: the second starts when the first ends, which takes what the worker measured.
    assert second - first == pytest.approx(row.render_seconds, abs=0.2)
    await client.request("POST", f"/job/{running['job_id']}/cancel")
