"""Cluster mode with the SVD renderer: a real front and one real worker process that renders
with the tiny random-weight SVD pipeline (tests/svd_tiny.py) on the CPU, on the test's
PostgreSQL. Checks the worker's renderer reaches /health, that a job is rendered by SVD end to
end, and that its denoising progress reaches the front while it runs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fanslymotion import checkpoints, video
from fanslymotion.models import Phase

from .cluster_stack import Cluster, cluster_of, transitions

# Serial: the worker is fenced off after 4 s without a heartbeat (WORKER_TIMEOUT), so a worker
# starved by a second test process would have its job re-run.
pytestmark = [pytest.mark.timeout(180), pytest.mark.serial]

TERMINAL = ("completed", "failed", "cancelled")
WORKER = "box0-cpu"
# 3 s at 4 fps (the cluster tests' FPS): 12 frames, 3 passes of the tiny unet's 6 frames.
DURATION, FRAMES, STEPS = 3, 12, 3


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str) -> Iterator[Cluster]:
    yield from cluster_of(tmp_path, pg_url)


def _svd_worker(cluster: Cluster, tiny_svd: Path) -> Path:
    """Start the one SVD worker; return its own data folder (DATA_DIR/workers/<name>)."""
    worker = cluster.add_worker(
        WORKER,
        FANSLYMOTION_RENDERER="svd",
        FANSLYMOTION_SVD_MODEL=str(tiny_svd),
        FANSLYMOTION_SVD_DEVICE="cpu",
        FANSLYMOTION_SVD_SIZE="128",
        FANSLYMOTION_TORCH_THREADS="1",
        OMP_NUM_THREADS="1",
    )
    return worker.folder / "workers" / WORKER


Seen = list[tuple[str, float]]


def _watch(cluster: Cluster, job_id: str, scratch: Path) -> tuple[dict[str, Any], Seen, bool]:
    """Poll the front's status until the job ends: the final status, every (phase, progress)
    seen, and whether the worker's scratch folder for the job was seen while it ran."""
    seen: Seen = []
    scratch_seen = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        _, body = cluster.front.get(f"/job/status/{job_id}")
        seen.append((body["phase"], body["progress"]))
        if body["status"] in TERMINAL:
            return dict(body), seen, scratch_seen
        scratch_seen = scratch_seen or scratch.is_dir()
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not end:\n{cluster.logs()}")


def test_svd_worker_renders_a_job(cluster: Cluster, tiny_svd: Path) -> None:
    cluster.front.start()
    folder = _svd_worker(cluster, tiny_svd)
    (worker,) = cluster.wait_workers(1, timeout=90)
    assert worker["name"] == WORKER and worker["renderer"] == "svd", worker
    state = worker["renderer_state"]
    assert (state["name"], state["status"], state["device"]) == ("svd", "ready", "cpu"), state

    job_id = cluster.front.create(duration=DURATION, seed=5, steps=STEPS)
    scratch = checkpoints.work_dir(folder, job_id)
    final, seen, scratch_seen = _watch(cluster, job_id, scratch)
    assert final["status"] == "completed", cluster.logs()
    assert final["renderer"] == "svd" and final["progress"] == 100

    # The SVD denoising steps' progress came through PG and the front while it ran.
    denoising = [p for phase, p in seen if phase == Phase.ANIMATING and 0 < p < 100]
    assert denoising, f"no live denoising progress seen: {sorted(set(seen))}"

    _, result = cluster.front.get(f"/job/result/{job_id}")
    assert (result["renderer"], result["frames"]) == ("svd", FRAMES), result
    row = cluster.shared(job_id)
    assert (row["status"], row["renderer"], row["worker"]) == ("completed", "svd", WORKER)
    mp4 = cluster.front.data_dir / "hot" / f"{job_id}.mp4"
    assert sum(1 for _ in video.read_frames(mp4, luma=True)) == FRAMES

    # Its checkpoints lived in the worker's own folder while it ran, and went with the job.
    assert scratch_seen, "the SVD checkpoints were never in the worker's folder"
    assert not scratch.exists()
    assert transitions(cluster.front.log(), job_id) == ["processing", "completed"]
    assert "Traceback" not in cluster.logs()
