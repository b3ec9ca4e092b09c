"""`python -m fanslymotion` as a real process: SIGKILL mid-render and SIGTERM, then a restart."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import photo_bytes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Process:
    """One service process on a data dir; HTTP through urllib to keep the test synchronous."""

    def __init__(self, data_dir: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.port = 0  # the service picks a free port; `start` reads it from the log
        self.env = {
            **os.environ,
            "FANSLYMOTION_DATA_DIR": str(data_dir),
            "FANSLYMOTION_PORT": "0",
            "FANSLYMOTION_RENDERER": "motion",
            "FANSLYMOTION_FPS": "4",
            "FANSLYMOTION_MIN_FREE_MB": "0",
            "FANSLYMOTION_PROGRESS_INTERVAL": "0.1",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process and wait until it answers on the port it chose (no port is picked
        here and bound there later, which another process could take in between)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        offset = len(self.log()) if (self.data_dir / "service.log").exists() else 0
        log = open(self.data_dir / "service.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fanslymotion"], env=self.env, stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = re.search(r"HTTP API on http://[^:]+:(\d+)", self.log()[offset:])
            if found is None:
                assert self.proc.poll() is None, "service exited:\n" + self.log()
                time.sleep(0.05)
                continue
            self.port = int(found.group(1))
            try:
                if self.get("/health")[0] in (200, 503):  # 503: up, not taking work
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.1)
        raise AssertionError("service did not start:\n" + self.log())

    def log(self) -> str:
        return (self.data_dir / "service.log").read_text(errors="replace")

    def run_once(self, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        """Run another service process in the foreground (`env` on top of this one's), for the
        cases where it should refuse to start: its exit code and output."""
        return subprocess.run(
            [sys.executable, "-m", "fanslymotion"],
            env={**self.env, **env},
            capture_output=True,
            timeout=timeout,
            text=True,
        )

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
                kind = response.headers.get_content_type()
                return response.status, json.loads(raw) if kind == "application/json" else raw
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def get(self, path: str) -> tuple[int, Any]:
        return self.call("GET", path)

    def create(self, **params: Any) -> str:
        body = {
            "user_id": 1,
            "duration": 3,
            "resolution": "360p",
            "motion_preset": "pan_l",
            "image_data": base64.b64encode(photo_bytes()).decode(),
            **params,
        }
        status, answer = self.call("POST", "/job/create", body)
        assert status == 201, answer
        return str(answer["job_id"])

    def wait(self, job_id: str, statuses: tuple[str, ...], timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, body = self.get(f"/job/status/{job_id}")
            if body["status"] in statuses:
                return dict(body)
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} never reached {statuses}")

    def stop(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def row(self, job_id: str) -> sqlite3.Row:
        with sqlite3.connect(self.data_dir / "fanslymotion.sqlite3") as db:
            db.row_factory = sqlite3.Row
            row: sqlite3.Row = db.execute(
                "SELECT * FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return row


@pytest.fixture
def process(tmp_path: Path) -> Iterator[Process]:
    proc = Process(tmp_path)
    yield proc
    if proc.proc is not None and proc.proc.poll() is None:
        proc.proc.kill()
        proc.proc.wait()


def wait_rendering(proc: Process, job_id: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        _, body = proc.get(f"/job/status/{job_id}")
        if body["status"] == "processing" and body["progress"] > 5:
            return
        time.sleep(0.05)
    raise AssertionError("the render never got going")


def test_sigkill_mid_render_then_restart_completes_once(process: Process) -> None:
    process.start()
    job_id = process.create(duration=12, resolution="1080p", motion_preset="dolly_in")
    wait_rendering(process, job_id)
    assert process.stop(signal.SIGKILL) == -signal.SIGKILL
    assert process.row(job_id)["status"] == "processing"
    process.start()
    final = process.wait(job_id, ("completed", "failed", "cancelled"))
    assert final["status"] == "completed" and final["attempts"] == 1
    row = process.row(job_id)
    assert row["output_path"] == f"hot/{job_id}.mp4"
    hot = process.data_dir / "hot"
    assert sorted(p.name for p in hot.iterdir()) == [f"{job_id}.mp4"]  # no partial left
    assert "recovered 1 interrupted job" in process.log()
    assert process.stop(signal.SIGTERM) == 0
    assert "Traceback" not in process.log()


@pytest.mark.serial  # exits within 10 s
def test_sigterm_parks_the_running_job_and_exits_zero(process: Process) -> None:
    process.start()
    job_id = process.create(duration=12, resolution="1080p", motion_preset="pan_r")
    wait_rendering(process, job_id)
    started = time.monotonic()
    assert process.stop(signal.SIGTERM) == 0
    assert time.monotonic() - started < 10
    row = process.row(job_id)
    assert row["status"] == "queued" and row["attempts"] == 0
    process.start()
    assert process.wait(job_id, ("completed",))["attempts"] == 0
    assert process.stop(signal.SIGINT) == 0


def test_svd_without_cuda_is_a_clear_startup_error(tmp_path: Path) -> None:
    done = Process(tmp_path).run_once(
        120, FANSLYMOTION_RENDERER="svd", FANSLYMOTION_SVD_MODEL=str(tmp_path / "nothing")
    )
    assert done.returncode == 2
    assert "cannot start" in done.stderr and "Traceback" not in done.stderr


def test_port_in_use_is_a_clear_startup_error(tmp_path: Path) -> None:
    """Another program holds the port: one line, exit code 2, and the queued work is intact."""
    first = Process(tmp_path / "first")
    (tmp_path / "first").mkdir()
    first.start()
    try:
        job_id = first.create()
        first.wait(job_id, ("completed",))
        queued = first.create(duration=12, resolution="1080p")
        first.wait(queued, ("processing",))  # killed mid-render, not before it starts
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            done = first.run_once(FANSLYMOTION_PORT=str(port))
        assert done.returncode == 2, done.stderr
        assert f"cannot start: cannot listen on 127.0.0.1:{port}: Address already in use" in (
            done.stderr
        )
        assert "recovered 1 interrupted job" in done.stderr and "stopped" in done.stderr
        assert "Traceback" not in done.stderr
        # The job it recovered and maybe started is parked again, nothing lost.
        assert first.row(queued)["status"] == "queued"
        assert first.row(job_id)["status"] == "completed"
    finally:
        if first.proc is not None and first.proc.poll() is None:
            first.proc.kill()
            first.proc.wait()


def test_unusable_data_dir_is_a_clear_startup_error(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "data"
    not_a_folder.write_text("a file where the data folder should be")
    done = Process(not_a_folder).run_once()
    assert done.returncode == 2, done.stderr
    assert "cannot start: FileExistsError" in done.stderr and "Traceback" not in done.stderr


def test_a_second_service_on_the_same_data_folder_is_refused(process: Process) -> None:
    """It would re-run the first one's running job as interrupted and delete its partial file."""
    process.start()
    assert process.proc is not None
    job_id = process.create(duration=12, resolution="1080p", motion_preset="dolly_in")
    wait_rendering(process, job_id)
    done = process.run_once(30, FANSLYMOTION_PORT=str(free_port()))
    assert done.returncode == 2, done.stderr
    assert (
        f"cannot start: another FanslyMotion process (pid {process.proc.pid}) is serving the"
        f" data folder {process.data_dir}" in done.stderr
    )
    assert "recovered" not in done.stderr and "Traceback" not in done.stderr
    # The first one never noticed: its job completes once, from its first attempt.
    final = process.wait(job_id, ("completed", "failed", "cancelled"))
    assert final["status"] == "completed" and final["attempts"] == 0  # never restarted
    # SIGKILL leaves no stale lock behind: a restart serves the folder at once.
    assert process.stop(signal.SIGKILL) == -signal.SIGKILL
    process.start()
    assert process.stop(signal.SIGTERM) == 0


def test_corrupt_database_is_a_clear_startup_error_and_is_left_alone(tmp_path: Path) -> None:
    """Not a database: refuse to start (promptly: no thread left behind), touch nothing."""
    garbage = b"this is not an SQLite database, and nobody should overwrite it\n" * 4
    (tmp_path / "fanslymotion.sqlite3").write_bytes(garbage)
    done = Process(tmp_path).run_once(30)
    assert done.returncode == 2, done.stderr
    assert "cannot start: DatabaseError: file is not a database" in done.stderr
    assert "Traceback" not in done.stderr
    assert (tmp_path / "fanslymotion.sqlite3").read_bytes() == garbage


def test_unknown_log_level_is_a_settings_error(tmp_path: Path) -> None:
    done = Process(tmp_path).run_once(30, FANSLYMOTION_LOG_LEVEL="LOUD")
    assert done.returncode == 2
    assert done.stderr == (
        "error: invalid settings: FANSLYMOTION_LOG_LEVEL: Value error, must be DEBUG, INFO,"
        " WARNING, ERROR or CRITICAL\n"
    )


@pytest.mark.serial  # the SIGKILL must land mid-render of a 24-frame clip
def test_crash_with_ten_jobs_loses_nothing_and_serves_no_partial_video(process: Process) -> None:
    """Issue 6: 10 jobs, SIGKILL mid-render, restart: each completes once, never a partial MP4."""
    process.start()
    ids = [
        process.create(user_id=user, duration=6, resolution="720p", motion_preset="pan_r")
        for user in range(1, 11)
    ]
    # Kill while some job (not the first) is in the middle of its render.
    deadline = time.monotonic() + 60
    victim = None
    while victim is None and time.monotonic() < deadline:
        # Meanwhile every download is either "not ready" or a whole video.
        for job_id in ids:
            status, payload = process.get(f"/job/download/{job_id}")
            assert status in (200, 409), status
            if status == 200:
                check_whole_video(process, job_id, payload)
        for job_id in ids[1:]:
            _, body = process.get(f"/job/status/{job_id}")
            # Far enough from its end that it cannot finish before the signal lands.
            if body["status"] == "processing" and 10 < body["progress"] < 60:
                victim = job_id
                break
    assert victim is not None
    assert process.stop(signal.SIGKILL) == -signal.SIGKILL
    assert process.row(victim)["status"] == "processing"
    process.start()
    for job_id in ids:
        assert process.wait(job_id, ("completed", "failed", "cancelled"))["status"] == "completed"
        status, payload = process.get(f"/job/download/{job_id}")
        assert status == 200
        check_whole_video(process, job_id, payload)
    assert process.row(victim)["attempts"] == 1
    log = process.log()
    for job_id in ids:
        assert log.count(f"job {job_id} completed") == 1, job_id
    hot = process.data_dir / "hot"
    assert sorted(p.name for p in hot.iterdir()) == sorted(f"{job_id}.mp4" for job_id in ids)
    assert process.stop(signal.SIGTERM) == 0


def check_whole_video(process: Process, job_id: str, payload: bytes) -> None:
    from fanslymotion import video

    path = process.data_dir / f"download-{job_id}.mp4"
    path.write_bytes(payload)
    info = video.probe(path)
    assert (info.frames, info.width, info.height) == (24, 1280, 720)
    path.unlink()
