"""The admin API on a cluster's front (real processes, a real PostgreSQL): workers with their
versions, one of another version shown as such, pause and resume through the shared flag, a
failed job retried to completion on a worker, a daily limit, and a worker whose code is older
than the cluster's schema refusing to start with a clear line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fanslymotion.cluster.schema import MIGRATIONS

from .cluster_stack import Cluster, cluster_of, wait_for
from .test_web_admin import TOKEN, call, create


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str) -> Iterator[Cluster]:
    yield from cluster_of(tmp_path, pg_url)


@pytest.mark.serial  # heartbeat age and 5 s deadline
def test_the_admin_api_on_a_cluster(cluster: Cluster) -> None:
    front = cluster.front
    front.env.update(
        FANSLYMOTION_ADMIN_TOKEN=TOKEN,
        FANSLYMOTION_DAILY_SECONDS_PER_USER="6",
        FANSLYMOTION_MAX_RETRIES="0",
    )
    front.start()
    cluster.add_worker("box0-gpu0")
    cluster.add_worker("box1-gpu0", FANSLYMOTION_COMMIT="0123456789abcdef")
    cluster.wait_workers(2)
    status, overview, _ = call(front, "GET", "/admin/overview")
    assert status == 200 and overview["mode"] == "cluster"
    assert overview["versions"]["cluster_schema"] == len(MIGRATIONS)
    label = overview["versions"]["label"]
    workers = {w["name"]: w for w in overview["workers"]}
    assert workers["box0-gpu0"]["version"] == label
    assert workers["box0-gpu0"]["version_differs"] is False
    assert workers["box1-gpu0"]["version"].endswith("+0123456789ab")
    assert workers["box1-gpu0"]["version_differs"] is True
    assert workers["box0-gpu0"]["heartbeat_age"] < 4

    # Pause through the API: the cluster's shared flag; a job waits, then is spoiled.
    assert call(front, "POST", "/admin/pause")[1] == {"paused": True}
    assert cluster.sql("SELECT value FROM fm_flags WHERE name = 'paused'")[0]["value"] == "1"
    _, created, _ = create(front, 1)
    job_id = created["job_id"]
    _, queue, _ = call(front, "GET", "/admin/queue")
    assert [j["job_id"] for j in queue["jobs"]] == [job_id] and queue["paused"] is True
    photo = front.data_dir / "inputs" / f"{job_id}.img"
    good = photo.read_bytes()
    photo.write_bytes(b"not a photo")
    assert call(front, "POST", "/admin/resume")[1] == {"paused": False}
    assert front.wait(job_id, ("completed", "failed"))["status"] == "failed"
    assert cluster.shared(job_id)["status"] == "failed"

    # The operator's retry: the same job, a new attempt on a worker, a real video.
    photo.write_bytes(good)
    status, body, _ = call(front, "POST", f"/admin/jobs/{job_id}/retry")
    assert status == 200 and body["attempts"] == 1
    done = front.wait(job_id, ("completed", "failed"), timeout=60)
    assert done["status"] == "completed" and done["attempts"] == 1, cluster.logs()
    assert cluster.shared(job_id)["attempts"] == 1
    assert (front.data_dir / "hot" / f"{job_id}.mp4").is_file()
    assert call(front, "POST", f"/admin/jobs/{job_id}/retry")[0] == 409

    # Owners' rules and figures live in PostgreSQL beside the jobs: the daily limit holds.
    status, body, _ = call(front, "GET", "/admin/jobs?status=completed")
    assert status == 200 and [j["job_id"] for j in body["jobs"]] == [job_id]
    assert create(front, 1)[0] == 201  # 6 s of 6 ordered today
    status, body, headers = create(front, 1)
    assert status == 429 and body["code"] == "daily_limit" and "X-RateLimit-Reset" in headers
    status, body, _ = call(front, "PUT", "/admin/users/api:2", {"blocked": True})
    assert status == 200 and body["blocked"] is True
    assert create(front, 2)[1]["code"] == "user_blocked"
    _, users, _ = call(front, "GET", "/admin/users")
    one = next(u for u in users["users"] if u["owner"]["id"] == "api:1")
    assert one["seconds_today"] == 6 and one["jobs_today"] == 2 and one["daily_limit"] == 6
    status, stats, _ = call(front, "GET", "/admin/stats?window=24h")
    assert len(stats["renders"]) == 24 and stats["failed"] == 0 and stats["completed"] >= 1
    assert stats["median_render_seconds"]["360p"]["renders"] >= 1
    assert stats["queue_wait_seconds"]["p50"] is not None

    # A worker whose code knows an older schema than the cluster's refuses to start.
    cluster.sql(
        "INSERT INTO fm_schema (version) VALUES (%s) RETURNING version", len(MIGRATIONS) + 1
    )
    old = cluster.add_worker("box2-gpu0")
    assert old.wait_exit(timeout=60) == 2
    assert "refuses to start: the cluster's schema is version" in old.log()
    wait_for(lambda: "box2-gpu0" not in {w["name"] for w in cluster.health()["workers"]}, 5, "")
