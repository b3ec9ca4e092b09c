"""Cancel and stop reach the encoder, on real processes: while x264 finishes the file (the
flush after the last frame, long with the `veryslow` preset), a cancel or a SIGTERM stops
ffmpeg within a second, and a SIGKILLed service takes its ffmpeg along."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster_stack import Cluster, cluster_of, wait_for
from .test_process import Process

# Serial: ffmpeg must be gone within a second of the cancel, the stop or the kill.
pytestmark = [
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc"),
    pytest.mark.serial,
]


def _stat(pid: int) -> tuple[str, str, int] | None:
    """(command, state, parent) of a live process, None once it is gone (or a zombie)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = text[text.index("(") + 1 : text.rindex(")")]
    state, parent = text[text.rindex(")") + 2 :].split()[:2]
    return None if state in ("Z", "X") else (name, state, int(parent))


def encoders_of(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        info = _stat(int(entry.name)) if entry.name.isdigit() else None
        if info is not None and info[2] == parent and "ffmpeg" in info[0]:
            found.append(int(entry.name))
    return found


def gone_within(pids: list[int], limit: float) -> float:
    """Seconds until every pid is gone; fails past `limit` (and kills what is left)."""
    started = time.monotonic()
    while time.monotonic() - started < limit * 3:
        if all(_stat(pid) is None for pid in pids):
            return time.monotonic() - started
        time.sleep(0.01)
    for pid in pids:
        if _stat(pid) is not None:
            os.kill(pid, signal.SIGKILL)
    raise AssertionError(f"ffmpeg {pids} still running {limit * 3:.1f}s later")


def flushing(process: Process) -> tuple[str, list[int]]:
    """A long job whose frames all went to ffmpeg, which is still writing the file."""
    assert process.proc is not None
    job_id = process.create(duration=12, resolution="1080p", motion_preset="dolly_in")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        _, body = process.get(f"/job/status/{job_id}")
        encoders = encoders_of(process.proc.pid)
        if body["status"] == "processing" and body["progress"] >= 99 and encoders:
            return job_id, encoders
        assert body["status"] in ("queued", "processing"), body
        time.sleep(0.02)
    raise AssertionError("the render never reached the encoder's flush")


@pytest.fixture
def slow_encoder(tmp_path: Path) -> Iterator[Process]:
    process = Process(tmp_path, FANSLYMOTION_X264_PRESET="veryslow")
    yield process
    if process.proc is not None and process.proc.poll() is None:
        process.proc.kill()
        process.proc.wait()


def test_cancel_during_the_flush_stops_ffmpeg_within_a_second(slow_encoder: Process) -> None:
    slow_encoder.start()
    job_id, encoders = flushing(slow_encoder)
    started = time.monotonic()
    status, body = slow_encoder.call("POST", f"/job/{job_id}/cancel")
    assert status == 200, body
    gone_within(encoders, 1.0)
    assert time.monotonic() - started < 1.0
    final = slow_encoder.wait(job_id, ("cancelled", "completed", "failed"))
    assert final["status"] == "cancelled"
    assert slow_encoder.stop(signal.SIGTERM) == 0


def test_sigterm_during_the_flush_parks_the_job_and_stops_ffmpeg(slow_encoder: Process) -> None:
    slow_encoder.start()
    job_id, encoders = flushing(slow_encoder)
    assert slow_encoder.proc is not None
    started = time.monotonic()
    slow_encoder.proc.send_signal(signal.SIGTERM)
    assert gone_within(encoders, 1.0) < 1.0
    assert slow_encoder.proc.wait(timeout=30) == 0
    assert time.monotonic() - started < 5.0
    row = slow_encoder.row(job_id)
    assert (row["status"], row["attempts"]) == ("queued", 0)  # parked, not completed or failed
    assert "Traceback" not in slow_encoder.log()


def test_a_sigkilled_service_takes_its_ffmpeg_along(slow_encoder: Process) -> None:
    slow_encoder.start()
    _, encoders = flushing(slow_encoder)
    assert slow_encoder.stop(signal.SIGKILL) == -signal.SIGKILL
    assert gone_within(encoders, 1.0) < 1.0


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str) -> Iterator[Cluster]:
    yield from cluster_of(tmp_path, pg_url)


def test_a_sigkilled_worker_takes_its_ffmpeg_along(cluster: Cluster) -> None:
    cluster.front.start()
    worker = cluster.add_worker("box0-gpu0", FANSLYMOTION_X264_PRESET="veryslow")
    cluster.wait_workers(1)
    job_id = cluster.front.create(duration=12, resolution="1080p", motion_preset="dolly_in")
    assert worker.proc is not None
    pid = worker.proc.pid

    def in_flush() -> list[int] | None:
        _, body = cluster.front.get(f"/job/status/{job_id}")
        encoders = encoders_of(pid)
        return encoders if body["progress"] >= 99 and encoders else None

    encoders = wait_for(in_flush, 120, "the worker's encoder flushing")
    worker.signal(signal.SIGKILL)
    assert worker.wait_exit() == -signal.SIGKILL
    assert gone_within(encoders, 1.0) < 1.0
