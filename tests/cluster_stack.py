"""A whole cluster as real processes on one machine: a front (`python -m fanslymotion`) on the
test's PostgreSQL, and worker processes (`python -m fanslymotion worker`), each with its own
data folder as if on its own box."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import dict_row

from fanslymotion.cluster.db import ClusterDB
from fanslymotion.cluster.worker import Worker
from fanslymotion.config import Settings

from .test_process import Process, free_port

TOKEN = "worker-secret-for-tests"

# Fast failure detection for tests: a silent worker is given up after 4 s.
CLUSTER_ENV = {
    "FANSLYMOTION_WORKER_TOKEN": TOKEN,
    "FANSLYMOTION_WORKER_TIMEOUT": "4",
    "FANSLYMOTION_WORKER_HEARTBEAT": "1",
    "FANSLYMOTION_WORKER_POLL": "0.5",
    "FANSLYMOTION_MAX_QUEUED": "100",
    "FANSLYMOTION_MAX_ACTIVE_PER_USER": "50",
    "FANSLYMOTION_RETRY_BACKOFF": "0.2",
    "FANSLYMOTION_RENDERER": "motion",
    "FANSLYMOTION_FPS": "4",
}


class Front(Process):
    """The front on a fixed port (workers need its URL before it runs)."""

    def __init__(self, data_dir: Path, db_url: str, port: int, **env: str) -> None:
        super().__init__(
            data_dir,
            FANSLYMOTION_DATABASE_URL=db_url,
            FANSLYMOTION_PORT=str(port),
            **CLUSTER_ENV,
            **env,
        )


class WorkerProcess:
    """One `python -m fanslymotion worker` with its own data folder and log."""

    def __init__(self, folder: Path, name: str, db_url: str, front_url: str, **env: str) -> None:
        self.folder = folder
        self.name = name
        self.env = {
            **os.environ,
            **CLUSTER_ENV,
            "FANSLYMOTION_DATA_DIR": str(folder),
            "FANSLYMOTION_DATABASE_URL": db_url,
            "FANSLYMOTION_FRONT_URL": front_url,
            "FANSLYMOTION_PROGRESS_INTERVAL": "0.1",
            "FANSLYMOTION_MIN_FREE_MB": "0",
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.folder / f"{self.name}.log"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fanslymotion", "worker", "--name", self.name],
            env=self.env,
            stdout=log,
            stderr=log,
        )
        log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a stopped process cannot die otherwise
            self.proc.kill()
            self.proc.wait(timeout=30)


class Cluster:
    """A front and its workers on one database; everything is killed at the end."""

    def __init__(self, root: Path, db_url: str) -> None:
        self.root = root
        self.db_url = db_url
        self.port = free_port()
        self.front = Front(root / "front", db_url, self.port)
        self.workers: dict[str, WorkerProcess] = {}

    @property
    def front_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_worker(self, name: str, **env: str) -> WorkerProcess:
        worker = WorkerProcess(self.root / name, name, self.db_url, self.front_url, **env)
        self.workers[name] = worker
        worker.start()
        return worker

    def wait_workers(self, count: int, state: str = "idle", timeout: float = 60) -> list[Any]:
        """The /health workers list once `count` of them are in `state`."""

        def ready() -> list[Any] | None:
            workers = list(self.health().get("workers", []))
            return workers if sum(w["state"] == state for w in workers) >= count else None

        return list(wait_for(ready, timeout, f"{count} workers {state}"))

    def health(self) -> dict[str, Any]:
        return dict(self.front.get("/health")[1])

    def sql(self, query: str, *params: Any) -> list[dict[str, Any]]:
        with psycopg.connect(self.db_url, autocommit=True, row_factory=dict_row) as conn:
            return list(conn.execute(query, params).fetchall())

    def shared(self, job_id: str) -> dict[str, Any]:
        rows = self.sql("SELECT * FROM fm_jobs WHERE job_id = %s", job_id)
        assert rows, f"job {job_id} is not in PostgreSQL"
        return rows[0]

    def worker_of(self, job_id: str) -> WorkerProcess:
        name = self.shared(job_id)["worker"]
        return self.workers[str(name)]

    def logs(self) -> str:
        parts = [f"--- front\n{self.front.log()}"] if self.front.data_dir.exists() else []
        parts += [f"--- {name}\n{worker.log()}" for name, worker in self.workers.items()]
        return "\n".join(parts)

    def close(self) -> None:
        for worker in self.workers.values():
            worker.kill()
        proc = self.front.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def wait_for(check: Callable[[], Any], timeout: float, what: str, every: float = 0.05) -> Any:
    """The first truthy value of `check()` within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def transitions(log: str, job_id: str) -> list[str]:
    """The statuses a job went through, from the front's one line per transition."""
    return re.findall(rf"job {job_id} (\w+) attempt=", log)


def cluster_of(root: Path, db_url: str) -> Iterator[Cluster]:
    cluster = Cluster(root, db_url)
    try:
        yield cluster
    finally:
        cluster.close()


class WorkerTask:
    """A cluster worker inside the test's own process and loop: `cluster.worker.Worker`, with
    procrastinate's worker, as an asyncio task on the front's settings (its folder is
    workers/<name> of the front's data folder, as on a box of its own). A cluster that renders,
    for the price of a task rather than a process that imports everything."""

    def __init__(self, settings: Settings, name: str = "w1") -> None:
        self.settings = settings
        self.name = name
        self.db: ClusterDB | None = None
        self.worker: Worker | None = None
        self.task: asyncio.Task[int] | None = None

    async def start(self) -> None:
        folder = self.settings.data_dir / "workers" / self.name
        for sub in ("hot", "inputs"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        assert self.settings.database_url is not None
        self.db = await ClusterDB.open(self.settings.database_url.get_secret_value(), max_size=4)
        self.worker = Worker(self.settings, self.name, self.db)
        self.task = asyncio.create_task(self.worker.run(signals=False), name=self.name)

    async def stop(self) -> None:
        """As SIGTERM: a running job goes back to the queue uncounted; then the pool closes."""
        if self.worker is not None and self.task is not None:
            self.worker.stop("shutdown")
            async with asyncio.timeout(30):
                assert await self.task == 0
        if self.db is not None:
            await self.db.close()
        self.task, self.worker, self.db = None, None, None
