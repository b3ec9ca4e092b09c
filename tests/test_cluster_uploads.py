"""Checked uploads: the front probes every MP4 a worker sends before it completes the job;
anything that is not the job's video is 422, logged, and the job is retried as a failed
attempt. A real front in this process, a real worker process, a real PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fanslymotion import video

from .cluster_stack import TOKEN, WorkerProcess
from .conftest import Client, ServiceFactory

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def front(
    start_service: ServiceFactory, pg_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Client, WorkerProcess]]:
    client = await start_service(
        database_url=pg_url,
        worker_token=TOKEN,
        worker_timeout=4,
        worker_heartbeat=1,
        retry_backoff=0.2,
    )
    worker = WorkerProcess(tmp_path / "box0", "box0-gpu0", pg_url, client.base)
    worker.start()
    try:
        async with asyncio.timeout(60):
            while True:
                _, health, _ = await client.request("GET", "/health")
                if any(w["state"] == "idle" for w in health["workers"]):
                    break
                await asyncio.sleep(0.1)
        yield client, worker
    finally:
        worker.kill()


def _clip(path: Path, frames: int, width: int = 64, height: int = 48) -> Path:
    rng = np.random.default_rng(1)
    pictures = (rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for _ in range(frames))
    video.encode(pictures, path, width=width, height=height, fps=4, preset="ultrafast")
    return path


def test_check_video_takes_the_right_file_only(tmp_path: Path) -> None:
    good = _clip(tmp_path / "good.mp4", 12)
    assert video.check_video(good, frames=12, fps=4, width=64, height=48) is None
    assert video.check_video(good, frames=13, fps=4, width=64, height=48) == (
        "it has 12 frames, not 13"
    )
    assert video.check_video(good, frames=12, fps=4, width=96, height=48) == (
        "it is 64x48, not 96x48"
    )
    seven = tmp_path / "seven.mp4"
    seven.write_bytes(b"1234567")
    assert video.check_video(seven, frames=12, fps=4, width=64, height=48) is not None
    data = good.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 2 // 3])  # the end of the frames is missing
    assert video.check_video(cut, frames=12, fps=4, width=64, height=48) is not None


async def _processing(client: Client, job_id: str) -> dict[str, Any]:
    """The shared row once a worker renders the job."""
    assert client.service.cluster is not None
    db = client.service.cluster.db
    async with asyncio.timeout(60):
        while True:
            rows = await db.jobs([job_id])
            if rows and rows[0]["status"] == "processing" and rows[0]["worker"]:
                return dict(rows[0])
            await asyncio.sleep(0.05)


@pytest.mark.serial  # attempts counted under a 4 s heartbeat timeout
async def test_seven_bytes_are_refused_and_the_job_retried(
    front: tuple[Client, WorkerProcess], caplog: pytest.LogCaptureFixture
) -> None:
    client, _ = front
    status, body = await client.create(duration=12, resolution="1080p", motion_preset="dolly_in")
    assert status == 201, body
    job_id = body["job_id"]
    row = await _processing(client, job_id)
    headers = {
        "Authorization": f"Bearer {TOKEN}",
        "X-Worker": str(row["worker"]),
        "Content-Type": "video/mp4",
        "X-Width": "1920",
        "X-Height": "1080",
        "X-Frames": "48",
        "X-Render-Seconds": "1.0",
        "X-Renderer": "motion",
    }
    with caplog.at_level(logging.WARNING, logger="fanslymotion.cluster.front"):
        status, answer, _ = await client.request(
            "PUT",
            f"/internal/jobs/{job_id}/video?attempt={row['attempts']}",
            data=b"1234567",
            headers=headers,
        )
    assert status == 422, answer
    assert answer["ok"] is False and answer["code"] == "bad_video"
    assert f"job {job_id} attempt={row['attempts']}: upload from box0-gpu0 refused" in caplog.text
    final = await client.wait(job_id, limit=120)
    assert final["status"] == "completed" and final["attempts"] == 1, final
    status, data, _ = await client.request("GET", f"/job/download/{job_id}")
    assert status == 200 and len(data) > 1000
    served = client.service.settings.data_dir / "hot" / f"{job_id}.mp4"
    assert video.probe(served).frames == 48
