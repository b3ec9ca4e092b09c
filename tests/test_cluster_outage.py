"""A PostgreSQL outage seen from a real front and worker: requests that need the database answer
503 at once (no 30 s pool wait), /health within a second, and the front serves again within
seconds of the database's return. The session's server is stopped and started again."""

from __future__ import annotations

import base64
import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .cluster_stack import Cluster, cluster_of, transitions, wait_for
from .conftest import photo_bytes
from .pg_server import PostgresServer

# Serial: answers within a second and the front back within seconds are timed.
pytestmark = [pytest.mark.timeout(240), pytest.mark.serial]


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str, postgres: PostgresServer) -> Iterator[Cluster]:
    try:
        yield from cluster_of(tmp_path, pg_url)
    finally:
        if _down(postgres):  # a failure mid-outage must not leave the session without a server
            postgres.resume()


def _down(postgres: PostgresServer) -> bool:
    import psycopg

    try:
        with psycopg.connect(postgres.database_url("postgres"), connect_timeout=2):
            return False
    except psycopg.OperationalError:
        return True


def _create(cluster: Cluster, key: str) -> tuple[int, Any]:
    """POST /job/create with an Idempotency-Key: (status, JSON body)."""
    body = json.dumps(
        {
            "user_id": 3,
            "duration": 3,
            "resolution": "360p",
            "motion_preset": "pan_l",
            "image_data": base64.b64encode(photo_bytes()).decode(),
        }
    ).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{cluster.front.port}/job/create",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Idempotency-Key": key},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _timed(call: Any) -> tuple[float, Any]:
    started = time.monotonic()
    answer = call()
    return time.monotonic() - started, answer


def test_an_outage_answers_at_once_and_the_front_is_back_within_seconds(
    cluster: Cluster, postgres: PostgresServer
) -> None:
    cluster.front.start()
    cluster.add_worker("box0-gpu0")
    cluster.wait_workers(1)
    before = cluster.front.create()
    assert cluster.front.wait(before, ("completed",), timeout=60)["status"] == "completed"
    queued = cluster.front.create(user_id=2)
    postgres.pause()
    try:
        wait_for(
            lambda: cluster.front.get("/health")[1].get("database") == "unreachable",
            10,
            "the front noticing the outage",
        )
        for _ in range(3):
            seconds, (status, body) = _timed(lambda: cluster.front.get("/health"))
            assert seconds < 1.0 and status == 503
            assert body["reason"] == "the job database is unreachable"
        seconds, (status, body) = _timed(
            lambda: cluster.front.call("POST", f"/job/{queued}/cancel")
        )
        assert seconds < 1.0 and status == 503, body
        seconds, (status, body) = _timed(lambda: _create(cluster, "during-the-outage"))
        assert seconds < 1.0 and status == 503, body
    finally:
        postgres.resume()
    resumed = time.monotonic()
    wait_for(lambda: cluster.front.get("/health")[0] == 200, 10, "the front serving again")
    assert time.monotonic() - resumed < 5.0
    status, after_body = _create(cluster, "during-the-outage")  # the client's retry
    assert status == 201, after_body
    after = str(after_body["job_id"])
    status, again = _create(cluster, "during-the-outage")
    assert status == 200 and again["job_id"] == after  # exactly one job for the key
    for job_id in (queued, after):
        assert cluster.front.wait(job_id, ("completed",), timeout=90)["status"] == "completed"
    log = cluster.front.log()
    assert log.count("lost the connection to PostgreSQL") == 1  # one line per change of state
    assert "error connecting in" not in log  # psycopg_pool's own warnings are folded into it


def test_a_video_held_through_an_outage_is_dropped_by_a_stop(
    cluster: Cluster, postgres: PostgresServer
) -> None:
    """A render that ends while PostgreSQL is away is held by its worker; a SIGTERM ends the
    hold within seconds (the worker exits, nothing hangs on the outage), and once the server
    is back the job runs again, counted, and completes once."""
    cluster.front.start()
    worker = cluster.add_worker("box0-gpu0")
    cluster.wait_workers(1)
    job_id = cluster.front.create(duration=6, resolution="1080p", motion_preset="dolly_in")
    wait_for(lambda: cluster.shared(job_id)["progress"] > 50, 90, "the render past half way")
    postgres.pause()
    try:
        wait_for(lambda: f"job {job_id}: rendered while" in worker.log(), 30, "the video held")
        stopped = time.monotonic()
        worker.signal(signal.SIGTERM)
        code = worker.wait_exit(30)
        seconds = time.monotonic() - stopped
        assert code == 0 and seconds < 10.0, worker.log()
    finally:
        postgres.resume()
    assert "Traceback" not in worker.log() and " ERROR " not in worker.log(), worker.log()
    cluster.add_worker("box0-gpu0")  # the unit restarts it
    final = cluster.front.wait(job_id, ("completed", "failed"), timeout=90)
    assert final["status"] == "completed" and final["attempts"] == 1, cluster.logs()
    assert transitions(cluster.front.log(), job_id).count("completed") == 1
