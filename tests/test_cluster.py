"""Cluster mode on real parts: PostgreSQL started by the fixture, the real front and real worker
processes (motion renderer), over HTTP and SQL. Every wait is bounded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fanslymotion import video

from .cluster_stack import Cluster, cluster_of, transitions

pytestmark = pytest.mark.timeout(300)

TERMINAL = ("completed", "failed", "cancelled")


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str) -> Iterator[Cluster]:
    yield from cluster_of(tmp_path, pg_url)


def _frames(cluster: Cluster, job_id: str) -> int:
    path = cluster.front.data_dir / "hot" / f"{job_id}.mp4"
    return sum(1 for _ in video.read_frames(path, luma=True))


def test_three_workers_render_every_job_once(cluster: Cluster) -> None:
    cluster.front.start()
    for index in range(3):
        cluster.add_worker(f"box{index}-gpu0")
    workers = cluster.wait_workers(3)
    assert {w["name"] for w in workers} == {"box0-gpu0", "box1-gpu0", "box2-gpu0"}
    assert all(w["renderer"] == "motion" and w["job_id"] is None for w in workers)
    jobs = [cluster.front.create(user_id=1 + i % 2, duration=3) for i in range(6)]
    finals = [cluster.front.wait(job_id, TERMINAL, timeout=120) for job_id in jobs]
    assert [f["status"] for f in finals] == ["completed"] * 6, cluster.logs()
    assert all(f["attempts"] == 0 for f in finals)
    log = cluster.front.log()
    for job_id in jobs:
        assert transitions(log, job_id) == ["processing", "completed"]
        assert _frames(cluster, job_id) == 12  # 3 s at 4 fps, decoded
        row = cluster.shared(job_id)
        assert row["status"] == "completed" and row["worker"] in cluster.workers
    used = {cluster.shared(job_id)["worker"] for job_id in jobs}
    assert len(used) >= 2, "the jobs were not spread over the workers"
    for worker in cluster.workers.values():
        assert "Traceback" not in worker.log()
    assert "Traceback" not in log
