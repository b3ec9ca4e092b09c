"""Honest health in cluster mode, on real processes and a real PostgreSQL: 503 with the reason
while jobs wait and no worker is live; a worker with a wrong token is refused before it loads
a renderer, and leaves /health after WORKER_TIMEOUT."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster_stack import Cluster, cluster_of, wait_for

# Serial: the worker is fenced off after 4 s without a heartbeat (WORKER_TIMEOUT), so a worker
# starved by a second test process would have its job re-run; a refused one must leave /health
# within WORKER_TIMEOUT + 5 s.
pytestmark = pytest.mark.serial


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str) -> Iterator[Cluster]:
    yield from cluster_of(tmp_path, pg_url)


def test_jobs_waiting_with_no_live_worker_is_503_with_the_reason(cluster: Cluster) -> None:
    cluster.front.start()
    status, body = cluster.front.get("/health")
    assert status == 200 and body["ok"] is True  # nothing waits: nothing is wrong yet
    job_id = cluster.front.create()
    status, body = cluster.front.get("/health")
    assert status == 503 and body["ok"] is False
    assert body["reason"] == "1 job(s) waiting and no live worker to render them"
    cluster.add_worker("box0-gpu0")
    assert cluster.front.wait(job_id, ("completed",), timeout=60)["status"] == "completed"
    status, body = cluster.front.get("/health")
    assert status == 200 and body["ok"] is True and body["reason"] is None


def test_a_refused_worker_loads_nothing_and_leaves_health(cluster: Cluster) -> None:
    cluster.front.start()
    wrong = cluster.add_worker("box0-gpu0", FANSLYMOTION_WORKER_TOKEN="not-the-secret-at-all")
    assert wrong.wait_exit(timeout=60) == 2
    log = wrong.log()
    assert "refuses FANSLYMOTION_WORKER_TOKEN" in log
    assert "renderer: " not in log and "ready: renderer" not in log  # never loaded one

    def names() -> list[str]:
        return [w["name"] for w in cluster.health()["workers"]]

    # WORKER_TIMEOUT is 4 s here: it shows as refused a while at most, then it is gone.
    wait_for(lambda: "box0-gpu0" not in names(), 4 + 5, "the refused worker leaving /health")
