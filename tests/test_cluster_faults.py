"""The fault run as a test: a front, three workers and the session's PostgreSQL as real
processes; the database stopped for 15 s, and for longer than the workers' budget for an
unreachable front (`WORKER_FRONT_RETRY`, 20 s here), while jobs render and others are
submitted; a worker SIGKILLed during the long outage, the front SIGKILLed mid-run. Every job
completes exactly once, no request waits 3 s during an outage, and the recovery times that
docs/cluster.md promises hold. The figures it measured are printed (pytest -s) and kept as
test properties.

Slow on purpose (about a minute on 2 shared cores), and still in every run
(marked `slow`: `-m "not slow"` leaves it out of a quick local run)."""

from __future__ import annotations

import base64
import json
import math
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fanslymotion import video

from .cluster_stack import Cluster, cluster_of, transitions, wait_for
from .conftest import photo_bytes
from .pg_server import PostgresServer

# Serial: the run's figures (first 503, slowest answer, back in service) have deadlines.
pytestmark = [pytest.mark.timeout(600), pytest.mark.slow, pytest.mark.serial]

WORKER_TIMEOUT = 4.0  # cluster_stack's FANSLYMOTION_WORKER_TIMEOUT
SHORT_OUTAGE = 15.0
FRONT_RETRY = 20.0  # the workers' WORKER_FRONT_RETRY (60 s by default)
LONG_OUTAGE = FRONT_RETRY + 2.0  # past it: a held video outlasts the budget
LONG = {"duration": 12, "resolution": "1080p", "motion_preset": "dolly_in"}
TERMINAL = ("completed", "failed", "cancelled")


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str, postgres: PostgresServer) -> Iterator[Cluster]:
    try:
        yield from cluster_of(tmp_path, pg_url)
    finally:
        if postgres.down():  # a failure mid-outage must not leave the session without a server
            postgres.resume()


class Probe:
    """Requests a client makes during an outage, each timed: the slowest answer counts."""

    def __init__(self, cluster: Cluster, watched: str) -> None:
        self.cluster = cluster
        self.watched = watched  # a job whose status a client follows
        self.slowest = 0.0
        self.started = time.monotonic()
        self.first_503: float | None = None  # seconds from the start until the first 503
        self.answers: dict[str, set[int]] = {}
        self.keys: list[str] = []  # creates answered 503, to retry after the outage
        self.accepted: list[str] = []  # creates answered 201 (before the front noticed)
        self._round = 0

    def one_round(self) -> None:
        """/health, /metrics, a status read, a create with its own Idempotency-Key."""
        self._round += 1
        key = f"outage-{id(self)}-{self._round}"
        calls: list[tuple[str, Callable[[], int]]] = [
            ("health", lambda: self.cluster.front.get("/health")[0]),
            ("metrics", lambda: _status_of(self.cluster, "GET", "/metrics")),
            ("status", lambda: _status_of(self.cluster, "GET", f"/job/status/{self.watched}")),
        ]
        if self._round % 12 == 1:  # a submit every few seconds: each becomes a job later
            calls.append(("create", lambda: self._create(key)))
        for name, call in calls:
            started = time.monotonic()
            status = call()
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.answers.setdefault(name, set()).add(status)
            if status == 503 and self.first_503 is None:
                self.first_503 = time.monotonic() - self.started

    def _create(self, key: str) -> int:
        status, body = create(self.cluster, key, user_id=7)
        if status == 201:
            self.accepted.append(str(body["job_id"]))
        else:
            self.keys.append(key)
        return status

    def during(self, seconds: float, also: Callable[[], None] | None = None) -> None:
        """Probe for `seconds`, calling `also` between rounds."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.one_round()
            if also is not None:
                also()
            time.sleep(0.3)


def create(cluster: Cluster, key: str, **params: Any) -> tuple[int, Any]:
    """POST /job/create with an Idempotency-Key: (status, JSON body)."""
    body = {
        "user_id": 3,
        "duration": 3,
        "resolution": "360p",
        "motion_preset": "pan_l",
        "image_data": base64.b64encode(photo_bytes()).decode(),
        **params,
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{cluster.front.port}/job/create",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Idempotency-Key": key},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _status_of(cluster: Cluster, method: str, path: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{cluster.front.port}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _rendering(cluster: Cluster, job_id: str, above: float = 5.0) -> str:
    """The worker's name once the job renders past `above` percent."""

    def check() -> str | None:
        row = cluster.shared(job_id)
        return row["worker"] if row["status"] == "processing" and row["progress"] > above else None

    return str(wait_for(check, 120, f"job {job_id} rendering past {above}%"))


def _back(cluster: Cluster, resumed: float, orphan: str | None = None) -> tuple[float, float]:
    """Seconds from the database's return until the front answers /health with 200, and
    until `orphan` (a job whose worker died during the outage) is queued again."""
    served = requeued = 0.0

    def check() -> bool:
        nonlocal served, requeued
        if not served and cluster.front.get("/health")[0] == 200:
            served = time.monotonic() - resumed
        if orphan is not None and not requeued and cluster.shared(orphan)["attempts"] == 1:
            requeued = time.monotonic() - resumed
        return bool(served and (requeued or orphan is None))

    wait_for(check, 30, "the front serving again (and the orphan re-queued)")
    return served, requeued


def _retry_creates(cluster: Cluster, keys: list[str]) -> list[str]:
    """The clients' retries after an outage: exactly one job per Idempotency-Key."""
    made = []
    for key in keys:
        status, body = create(cluster, key, user_id=7)
        assert status == 201, body
        again_status, again = create(cluster, key, user_id=7)
        assert again_status == 200 and again["job_id"] == body["job_id"]
        made.append(str(body["job_id"]))
    return made


def test_the_fault_run(
    cluster: Cluster, postgres: PostgresServer, record_property: Callable[[str, object], None]
) -> None:
    figures: dict[str, float] = {}
    cluster.front.start()
    for index in range(3):
        cluster.add_worker(f"box{index}-gpu0", FANSLYMOTION_WORKER_FRONT_RETRY=str(FRONT_RETRY))
    cluster.wait_workers(3)
    jobs: list[str] = []

    # 1. A 15 s outage while two long jobs render and clients keep submitting.
    jobs += [cluster.front.create(user_id=1, **LONG), cluster.front.create(user_id=2, **LONG)]
    jobs += [cluster.front.create(user_id=3 + i) for i in range(2)]
    _rendering(cluster, jobs[0])
    postgres.pause()
    short = Probe(cluster, jobs[0])
    short.during(SHORT_OUTAGE)
    postgres.resume()
    resumed = time.monotonic()
    figures["short_outage_back_s"] = _back(cluster, resumed)[0]
    figures["short_outage_slowest_answer_s"] = short.slowest
    figures["short_outage_first_503_s"] = short.first_503 or math.inf
    jobs += short.accepted + _retry_creates(cluster, short.keys)

    # 2. Past the workers' front budget: one render ends during it, and another worker is
    # SIGKILLed mid-render.
    held = cluster.front.create(user_id=4, **LONG)
    orphan = cluster.front.create(user_id=5, **LONG)
    jobs += [held, orphan]
    holder = cluster.workers[_rendering(cluster, held)]
    victim = cluster.workers[_rendering(cluster, orphan)]
    assert holder is not victim
    postgres.pause()
    longer = Probe(cluster, jobs[0])  # an ended job: read from PostgreSQL, so a 503
    paused = longer.started
    victim.signal(signal.SIGKILL)
    longer.during(LONG_OUTAGE - (time.monotonic() - paused))
    assert f"job {held}: rendered while" in holder.log(), holder.log()  # its own line
    postgres.resume()
    resumed = time.monotonic()
    figures["long_outage_s"] = resumed - paused
    back, requeued = _back(cluster, resumed, orphan)
    figures["long_outage_back_s"], figures["long_outage_requeue_s"] = back, requeued
    figures["long_outage_slowest_answer_s"] = longer.slowest
    figures["long_outage_first_503_s"] = longer.first_503 or math.inf
    jobs += longer.accepted + _retry_creates(cluster, longer.keys)
    assert cluster.front.wait(held, TERMINAL, timeout=60)["attempts"] == 0  # kept, not re-run

    # 3. The front SIGKILLed while the orphan's re-run renders, and started again.
    _rendering(cluster, orphan)
    assert cluster.front.stop(signal.SIGKILL) == -signal.SIGKILL
    cluster.front.start()

    finals = {job_id: cluster.front.wait(job_id, TERMINAL, timeout=180) for job_id in jobs}
    assert {f["status"] for f in finals.values()} == {"completed"}, cluster.logs()
    log = cluster.front.log()
    for job_id in jobs:
        assert transitions(log, job_id).count("completed") == 1, job_id
        assert cluster.shared(job_id)["status"] == "completed"
    assert finals[orphan]["attempts"] == 1  # the SIGKILL's attempt, counted once
    frames = sum(1 for _ in video.read_frames(cluster.front.data_dir / "hot" / f"{held}.mp4"))
    assert frames == 48
    for name, probe in (("short", short), ("long", longer)):
        assert 503 in probe.answers["health"], (name, probe.answers)
        assert probe.answers["create"] <= {201, 503}, (name, probe.answers)
        assert probe.answers["status"] <= {200, 503}, (name, probe.answers)  # never a 500

    # What the issue promises, as measured.
    print("fault run:", json.dumps({k: round(v, 2) for k, v in figures.items()}))
    for name, value in figures.items():
        record_property(name, round(value, 2))
    assert figures["short_outage_first_503_s"] < 3.0
    assert figures["long_outage_first_503_s"] < 3.0
    assert figures["short_outage_slowest_answer_s"] < 3.0
    assert figures["long_outage_slowest_answer_s"] < 3.0
    assert figures["short_outage_back_s"] < 5.0
    assert figures["long_outage_back_s"] < 5.0
    assert figures["long_outage_requeue_s"] < WORKER_TIMEOUT + 5.0
    assert log.count("lost the connection to PostgreSQL") == 2  # one line per change of state
    assert log.count("connection to PostgreSQL is back") == 2
    assert "Traceback" not in log
    for worker in (holder, *(w for w in cluster.workers.values() if w not in (holder, victim))):
        text = worker.log()
        assert text.count("lost the connection to PostgreSQL") == 2, text  # one per outage
        assert text.count("the connection to PostgreSQL is back") == 2, text
        assert "Traceback" not in text and " ERROR " not in text, text
