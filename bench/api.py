"""Benchmark of the HTTP API: /job/status under load while a render runs, loop lag, dispatch.

One run measures, side by side on this machine:

* `GET /job/status/{id}` requests per second and p50/p99 latency with 64 concurrent clients
  (aiohttp, connector limit 64, in a separate client process) while a 12 s 1080p render runs,
  against a bare aiohttp handler that answers a similar JSON body on the same route, measured
  by the same client in the same conditions (same process and loop as the service, the same
  render running);
* the event loop's lag during the render: a 10 ms periodic task inside the service process
  records how late it wakes up (`loop.time()` drift), with no HTTP load and under the status
  load;
* submit -> render start on an idle service: from just before `POST /job/create` (a 1920x1080
  JPEG, about 1 MB in base64) to the job's `started_at` in the database.

Two setups: `in-process` runs `Service.start` inside this script (the only way to sample the
loop's lag from inside); `process` runs `python -m fanslymotion` as a subprocess, with the
bare handler in a subprocess of its own, and measures everything from outside (loop lag n/a).
Targets (issue 3): status >= 60 % of the bare handler's rate, status p99 <= 20 ms, loop lag
p99 <= 10 ms, submit -> start <= 50 ms.

    python bench/api.py            # full run, about two minutes on two cores
    python bench/api.py --quick    # smoke run for CI: short windows, < 45 s, same tables
    python bench/api.py --only process --json results.json
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import json
import logging
import os
import platform
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from aiohttp import web
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fanslymotion.app import Service  # noqa: E402
from fanslymotion.config import Settings  # noqa: E402
from fanslymotion.store import parse_time  # noqa: E402

CONCURRENCY = 64
LAG_PERIOD = 0.010
PACED_RATE = 5.0  # requests per second per client in the paced windows (64 x 5 = 320/s)
TARGETS = {"ratio": 0.60, "p99_ms": 20.0, "lag_p99_ms": 10.0, "start_ms": 50.0}
LONG_JOB = {"duration": 12, "resolution": "1080p", "motion_preset": "dolly_in"}
SHORT_JOB = {"duration": 3, "resolution": "360p", "motion_preset": "micro"}


@dataclass(frozen=True)
class Plan:
    window: float  # seconds of load per measurement
    warmup: float  # seconds of load before it, not recorded
    submits: int  # submit -> start samples
    long_jobs: int  # long renders kept queued behind the running one, topped up before windows


FULL = Plan(window=10.0, warmup=1.0, submits=20, long_jobs=3)
# Smoke run: every window still answers (a 0.3 s window of 64 saturated clients is hundreds of
# requests); its numbers are not read.
QUICK = Plan(window=0.3, warmup=0.1, submits=3, long_jobs=2)
QUICK_PHOTO = (640, 360)  # the smoke run's upload: quicker to post and to decode than 1080p
# Two renders back to back leave a gap of a few ms (commit, dispatch); more than this between
# them, or no render at all, and the window did not run "while a render runs".
MAX_RENDER_GAP = 0.5


# -- statistics -------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


@dataclass
class Load:
    """One load window, as the client process reports it."""

    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    total: int = 0  # requests including the warm-up
    cpu_us: float | None = None  # in-process: server CPU per request, background subtracted
    rendering: bool = True  # a render ran through the whole window (from the database)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Section:
    setup: str
    loads: dict[str, Load] = field(default_factory=dict)
    lag_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    start_ms: list[float] = field(default_factory=list)
    post_ms: list[float] = field(default_factory=list)
    upload_ms: float | None = None
    render_running: bool = True


# -- the load client (a separate process) -----------------------------------------------------


async def run_load(
    session: aiohttp.ClientSession, url: str, seconds: float, warmup: float, rate: float | None
) -> dict[str, Any]:
    """CONCURRENCY workers GET `url`: back to back (rate None) or each at `rate` per second.

    Latencies of requests sent after the warm-up count; the rate is the number of those
    requests over the time from the end of the warm-up to the last answer.
    """
    latencies: list[float] = []
    errors = 0
    total = 0
    begin = time.perf_counter()
    measure_from = begin + warmup
    end = measure_from + seconds
    last = measure_from

    async def worker(index: int) -> None:
        nonlocal errors, last, total
        interval = 1.0 / rate if rate else 0.0
        slot = begin + interval * index / CONCURRENCY  # spread the paced clients out
        while True:
            if interval:
                await asyncio.sleep(max(0.0, slot - time.perf_counter()))
                slot = max(slot + interval, time.perf_counter())  # late: no catch-up burst
            sent = time.perf_counter()
            if sent >= end:
                return
            async with session.get(url) as response:
                await response.read()
                ok = response.status == 200
            done = time.perf_counter()
            total += 1
            if sent >= measure_from:
                latencies.append(done - sent)
                errors += not ok
                last = max(last, done)

    await asyncio.gather(*(worker(i) for i in range(CONCURRENCY)))
    return {
        "requests": len(latencies),
        "errors": errors,
        "seconds": last - measure_from,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "total": total,
    }


async def client_main() -> None:
    """The client process: one JSON command per stdin line, one JSON result per stdout line."""
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            command = json.loads(line)
            result = await run_load(session, **command)
            print(json.dumps(result), flush=True)


class LoadClient:
    """The parent's handle on the client process, so that it shares no loop or GIL with us."""

    def __init__(self) -> None:
        self._child: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> LoadClient:
        self._child = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--client",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._child is not None and self._child.stdin is not None
        self._child.stdin.close()
        await self._child.wait()

    async def run(self, url: str, plan: Plan, rate: float | None = None) -> Load:
        child = self._child
        assert child is not None and child.stdin is not None and child.stdout is not None
        command = {"url": url, "seconds": plan.window, "warmup": plan.warmup, "rate": rate}
        child.stdin.write((json.dumps(command) + "\n").encode())
        await child.stdin.drain()
        line = await child.stdout.readline()
        if not line:
            raise RuntimeError("the load client died")
        return Load(**json.loads(line))


# -- the bare handler -------------------------------------------------------------------------

BARE_BODY = {
    "job_id": "00000000-0000-4000-8000-000000000000",
    "status": "processing",
    "progress": 42.5,
    "message": "rendering",
    "queue_position": None,
    "eta_seconds": 11.2,
    "created_at": "2024-06-01T12:00:00.000000Z",
    "started_at": "2024-06-01T12:00:00.120000Z",
    "completed_at": None,
    "attempts": 0,
    "error": None,
    "renderer": "motion",
}


async def bare_status(request: web.Request) -> web.Response:
    return web.json_response({**BARE_BODY, "job_id": request.match_info["job_id"]})


def bare_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/job/status/{job_id}", bare_status)
    return app


# -- helpers ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def photo_b64(width: int = 1920, height: int = 1080) -> str:
    """A photo-like JPEG: gradients and noise (compresses like a real photo)."""
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            128 + 100 * np.sin(x / 37.0),
            128 + 90 * np.cos(y / 29.0),
            128 + 80 * np.sin((x + y) / 53.0),
        ],
        axis=-1,
    )
    pixels = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return base64.b64encode(out.getvalue()).decode()


def big_photo_b64() -> str:
    """A 3200x2400 noise JPEG: about 7.5 MB, 10 MB of base64 (the upload cap is 20 MB)."""
    pixels = np.random.default_rng(2).integers(0, 256, (2400, 3200, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=92)
    return base64.b64encode(out.getvalue()).decode()


def job_body(image: str, user_id: int, job: dict[str, Any]) -> dict[str, Any]:
    return {"user_id": user_id, "image_data": image, **job}


async def poll(check: Callable[[], Awaitable[bool]], limit: float, what: str) -> None:
    deadline = time.monotonic() + limit
    while not await check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)


class Api:
    """A tiny client for the orchestration (not the load)."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self.session.request(method, self.base + path, json=body) as response:
            answer = await response.json()
            if response.status >= 400:
                raise RuntimeError(f"{method} {path}: {response.status} {answer}")
            return answer

    async def create(self, body: dict[str, Any]) -> str:
        return str((await self.call("POST", "/job/create", body))["job_id"])

    async def status(self, job_id: str) -> dict[str, Any]:
        return dict(await self.call("GET", f"/job/status/{job_id}"))

    async def running_job(self) -> str | None:
        health = await self.call("GET", "/health")
        return health["running_job"]  # type: ignore[no-any-return]


async def completed_job(api: Api, image: str) -> str:
    """A short job, rendered to the end: the target of the completed-job window."""
    job_id = await api.create(job_body(image, 99, SHORT_JOB))

    async def done() -> bool:
        return bool((await api.status(job_id))["status"] == "completed")

    await poll(done, 60, "a short job to complete")
    return job_id


async def start_renders(api: Api, image: str, count: int) -> list[str]:
    """Queue `count` + 1 long renders; return once the first one is really rendering."""
    ids = [await api.create(job_body(image, 100 + i, LONG_JOB)) for i in range(count + 1)]

    async def rendering() -> bool:
        body = await api.status(ids[0])
        return bool(body["status"] == "processing" and body["progress"] > 1)

    await poll(rendering, 60, "the first render to start")
    return ids


async def top_up(api: Api, image: str, ids: list[str], count: int) -> None:
    """Keep `count` long renders queued behind the running one, so renders run back to back."""
    queued = [i for i in ids if (await api.status(i))["status"] == "queued"]
    for _ in range(count - len(queued)):
        ids.append(await api.create(job_body(image, 100 + len(ids), LONG_JOB)))


async def rendering_job(api: Api, needed: float) -> str:
    """The running job if its render has well over `needed` seconds left, else the next one
    once it starts: a window on the running job must not outlive its render."""
    before = await api.running_job()
    if before is not None:
        eta = (await api.status(before)).get("eta_seconds")
        if eta is not None and eta > 2 * needed:
            return before
    state: dict[str, str | None] = {"job": None}

    async def started() -> bool:
        state["job"] = await api.running_job()
        return state["job"] is not None and state["job"] != before

    await poll(started, 120, "the next render to start")
    assert state["job"] is not None
    return state["job"]


def render_covered(database: Path, begin: float, end: float) -> bool:
    """Whether renders ran through [begin, end] (Unix seconds) with no gap over
    MAX_RENDER_GAP: the union of started_at..completed_at (or now) of the jobs, from SQLite."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT started_at, completed_at FROM jobs WHERE started_at IS NOT NULL"
            " ORDER BY started_at"
        ).fetchall()
    reach = begin
    for started, ended in rows:
        start = parse_time(started)
        assert start is not None
        stop = parse_time(ended)
        finish = stop.timestamp() if stop is not None else time.time()
        if start.timestamp() > reach + MAX_RENDER_GAP:
            if start.timestamp() > end:
                break
            return False
        reach = max(reach, finish)
    return reach >= end


async def measure_submits(
    api: Api, image: str, count: int, started_at: Callable[[str], Awaitable[str | None]]
) -> tuple[list[float], list[float]]:
    """Submit -> start on an idle service: before the POST to `started_at` in the database."""
    start_ms: list[float] = []
    post_ms: list[float] = []
    for i in range(count):

        async def idle() -> bool:
            return await api.running_job() is None

        await poll(idle, 60, "an idle service")
        await asyncio.sleep(0.2)
        before = time.time()
        job_id = await api.create(job_body(image, 500 + i, SHORT_JOB))
        answered = time.time()
        deadline = time.monotonic() + 30
        while (stamp := await started_at(job_id)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError("the job never started")
            await asyncio.sleep(0.002)
        moment = parse_time(stamp)
        assert moment is not None
        start_ms.append((moment.timestamp() - before) * 1000)
        post_ms.append((answered - before) * 1000)
        await api.call("POST", f"/job/{job_id}/cancel")
    return start_ms, post_ms


def service_cpu_seconds() -> float:
    """CPU seconds of this process's threads, the GPU thread excepted (Linux /proc)."""
    gpu = {t.native_id for t in threading.enumerate() if t.name == "gpu"}
    ticks = 0
    for task in Path("/proc/self/task").iterdir():
        if int(task.name) in gpu:
            continue
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


class LagSampler:
    """A 10 ms periodic task on the loop; how late each wake-up is, in ms."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LAG_PERIOD)
            self.samples.append((loop.time() - before - LAG_PERIOD) * 1000)

    def start(self) -> None:
        self.samples = []
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> dict[str, float]:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return {
            "p50": percentile(self.samples, 50),
            "p99": percentile(self.samples, 99),
            "max": max(self.samples, default=float("nan")),
            "samples": float(len(self.samples)),
        }


async def lag_probe(seconds: float) -> dict[str, float]:
    """Loop lag of an idle process (`--lag-probe`) sampled over `seconds`."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--lag-probe", str(seconds), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await child.communicate()
    return dict(json.loads(out))


async def probe_main(seconds: float) -> dict[str, float]:
    sampler = LagSampler()
    sampler.start()
    await asyncio.sleep(seconds)
    return await sampler.stop()


# -- the two setups ---------------------------------------------------------------------------


@dataclass
class Target:
    """What the load windows poll, and how they keep a render going."""

    api: Api
    bare_base: str
    image: str
    ids: list[str]
    completed: str
    database: Path


async def measure_loads(
    section: Section,
    client: LoadClient,
    plan: Plan,
    target: Target,
    sampler: LagSampler | None,
    background: float = 0.0,
) -> None:
    """Every load window in turn, each while renders run back to back (checked afterwards in
    the database): the job rendering now, the 2nd queued one, a completed one, the bare one."""
    windows: list[tuple[str, float | None]] = [
        ("bare", None),
        ("status", None),
        ("status_queued", None),
        ("status_completed", None),
        ("bare_paced", PACED_RATE),
        ("status_paced", PACED_RATE),
    ]
    api = target.api
    for name, rate in windows:
        await top_up(api, target.image, target.ids, plan.long_jobs)
        if name in ("status", "status_paced"):
            job = await rendering_job(api, plan.window + plan.warmup)
        elif name == "status_queued":
            queued = [i for i in target.ids if (await api.status(i))["status"] == "queued"]
            job = queued[min(1, len(queued) - 1)]
        else:
            job = target.completed
        url = f"{target.bare_base if name.startswith('bare') else api.base}/job/status/{job}"
        if sampler is not None:
            sampler.start()
        cpu, began, wall = service_cpu_seconds(), time.perf_counter(), time.time()
        load = await client.run(url, plan, rate)
        if sampler is not None:  # in-process: this process is the server
            # The server's own work for the requests: the CPU of every thread but the GPU
            # thread, less what they spend meanwhile without load (progress, the sampler).
            spent = service_cpu_seconds() - cpu - background * (time.perf_counter() - began)
            load.cpu_us = max(spent, 0.0) / max(load.total, 1) * 1e6
            section.lag_ms[f"render+{name}"] = await sampler.stop()
        loop = asyncio.get_running_loop()
        load.rendering = await loop.run_in_executor(
            None, render_covered, target.database, wall, time.time()
        )
        section.loads[name] = load
        section.render_running &= load.rendering


async def in_process(plan: Plan, image: str) -> Section:
    section = Section("in-process")
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        settings = Settings(
            _env_file=None,
            data_dir=Path(tmp),
            port=0,
            renderer="motion",
            min_free_mb=0,
            max_queued=1000,
            max_active_per_user=1000,
            log_level="WARNING",
        )
        service = await Service.start(settings)
        await service.jobs.wait_ready()
        bare = web.AppRunner(bare_app(), access_log=None)
        await bare.setup()
        bare_site = web.TCPSite(bare, "127.0.0.1", 0)
        await bare_site.start()
        bare_port = int(bare.addresses[0][1])
        sampler = LagSampler()
        try:
            async with aiohttp.ClientSession() as session, LoadClient() as client:
                api = Api(session, f"http://127.0.0.1:{service.port}")

                async def started_at(job_id: str) -> str | None:
                    job = await service.store.get_job(job_id)
                    return job.started_at if job is not None else None

                sampler.start()
                await asyncio.sleep(min(plan.window, 2.0))
                section.lag_ms["idle"] = await sampler.stop()
                section.start_ms, section.post_ms = await measure_submits(
                    api, image, plan.submits, started_at
                )
                completed = await completed_job(api, image)
                ids = await start_renders(api, image, plan.long_jobs)
                sampler.start()
                cpu, began = service_cpu_seconds(), time.perf_counter()
                # The same sampler in an idle process of its own meanwhile: what the machine
                # (other processes, the scheduler) adds, as opposed to the service.
                section.lag_ms["control"] = await lag_probe(plan.window)
                background = (service_cpu_seconds() - cpu) / (time.perf_counter() - began)
                section.lag_ms["render"] = await sampler.stop()
                target = Target(
                    api, f"http://127.0.0.1:{bare_port}", image, ids, completed, settings.db_path
                )
                await measure_loads(section, client, plan, target, sampler, background)
                # One big upload while the render runs: how long does the loop stall?
                big = big_photo_b64()
                sampler.start()
                before = time.perf_counter()
                ids.append(await api.create(job_body(big, 900, SHORT_JOB)))
                section.upload_ms = (time.perf_counter() - before) * 1000
                await asyncio.sleep(0.05)
                section.lag_ms["render+upload"] = await sampler.stop()
                for job_id in ids:
                    await api.call("POST", f"/job/{job_id}/cancel")
        finally:
            await bare.cleanup()
            await service.stop()
    return section


def sqlite_started_at(database: Path) -> Callable[[str], Awaitable[str | None]]:
    async def read(job_id: str) -> str | None:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            row = db.execute("SELECT started_at FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return str(row[0]) if row and row[0] else None

    return read


async def wait_http(url: str, child: subprocess.Popen[bytes], limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up")
            await asyncio.sleep(0.1)


def spawn(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop_children(children: list[subprocess.Popen[bytes]]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


async def full_process(plan: Plan, image: str) -> Section:
    section = Section("process")
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        port, bare_port = free_port(), free_port()
        env = {
            **os.environ,
            "FANSLYMOTION_DATA_DIR": tmp,
            "FANSLYMOTION_PORT": str(port),
            "FANSLYMOTION_HOST": "127.0.0.1",
            "FANSLYMOTION_RENDERER": "motion",
            "FANSLYMOTION_MIN_FREE_MB": "0",
            "FANSLYMOTION_MAX_QUEUED": "1000",
            "FANSLYMOTION_MAX_ACTIVE_PER_USER": "1000",
            "FANSLYMOTION_LOG_LEVEL": "WARNING",
        }
        for secret in ("FANSLYMOTION_API_TOKEN", "FANSLYMOTION_BOT_TOKEN"):
            env.pop(secret, None)
        server = spawn([sys.executable, "-m", "fanslymotion"], env, Path(tmp) / "service.log")
        bare = spawn(
            [sys.executable, __file__, "--bare-server", str(bare_port)], env, Path(tmp) / "bare.log"
        )
        try:
            base = f"http://127.0.0.1:{port}"
            await wait_http(f"{base}/health", server)
            await wait_http(f"http://127.0.0.1:{bare_port}/job/status/x", bare)
            async with aiohttp.ClientSession() as session, LoadClient() as client:
                api = Api(session, base)

                database = Path(tmp) / "fanslymotion.sqlite3"
                section.start_ms, section.post_ms = await measure_submits(
                    api, image, plan.submits, sqlite_started_at(database)
                )
                completed = await completed_job(api, image)
                ids = await start_renders(api, image, plan.long_jobs)
                bare_base = f"http://127.0.0.1:{bare_port}"
                target = Target(api, bare_base, image, ids, completed, database)
                await measure_loads(section, client, plan, target, None)
                for job_id in ids:
                    await api.call("POST", f"/job/{job_id}/cancel")
        finally:
            stop_children([bare, server])
        if server.returncode != 0:
            log = (Path(tmp) / "service.log").read_text(errors="replace")
            raise RuntimeError(f"the service exited with {server.returncode}:\n{log[-2000:]}")
    return section


# -- report -----------------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


LOAD_NAMES = {
    "bare": "bare aiohttp handler, saturated",
    "status": "/job/status (running job), saturated",
    "status_queued": "/job/status (queued job, 2nd), saturated",
    "status_completed": "/job/status (completed job), saturated",
    "bare_paced": f"bare aiohttp handler, paced {PACED_RATE:g}/s per client",
    "status_paced": f"/job/status (running job), paced {PACED_RATE:g}/s per client",
}


def report(sections: list[Section], plan: Plan, quick: bool, load_before: float) -> str:
    lines = [
        f"FanslyMotion HTTP API bench{' (--quick)' if quick else ''}: {cpu_model()},"
        f" {os.cpu_count()} cores, Python {platform.python_version()},"
        f" aiohttp {aiohttp.__version__}; load average {load_before:.2f} before the run,"
        f" {os.getloadavg()[0]:.2f} after",
        f"{CONCURRENCY} concurrent clients (aiohttp, connector limit {CONCURRENCY}, own process),"
        f" {plan.window:g} s per window after {plan.warmup:g} s warm-up, while a"
        f" {LONG_JOB['duration']} s {LONG_JOB['resolution']} render runs (motion renderer,"
        " 12 fps); saturated: each client sends its next request as soon as it has an answer;"
        f" paced: each client sends {PACED_RATE:g} requests per second",
        "",
        "| setup | load | requests/s | p50 ms | p99 ms | errors | % of bare | server CPU/request"
        " | render throughout |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for section in sections:
        for key, load in section.loads.items():
            bare = section.loads.get("bare_paced" if key.endswith("_paced") else "bare")
            share = f"{100 * load.rps / bare.rps:.0f} %" if bare and bare.rps else "-"
            cpu = f"{load.cpu_us:.0f} µs" if load.cpu_us is not None else "n/a"
            rendering = "yes" if load.rendering else "**no**"
            lines.append(
                f"| {section.setup} | {LOAD_NAMES[key]} | {load.rps:.0f} | {load.p50_ms:.1f}"
                f" | {load.p99_ms:.1f} | {load.errors} | {share} | {cpu} | {rendering} |"
            )
    lines += ["", "| target | " + " | ".join(s.setup for s in sections) + " | met |"]
    lines.append("| --- |" + " ---: |" * len(sections) + " --- |")

    def row(label: str, cells: list[tuple[str, bool | None]]) -> None:
        verdicts = [ok for _, ok in cells if ok is not None]
        met = yes(all(verdicts)) if verdicts else "-"
        lines.append(f"| {label} | " + " | ".join(text for text, _ in cells) + f" | {met} |")

    def ratio(s: Section) -> tuple[str, bool | None]:
        """The slowest of the running, queued and completed job's rates, against bare."""
        kinds = [k for k in ("status", "status_queued", "status_completed") if k in s.loads]
        if not s.loads.get("bare") or not s.loads["bare"].rps or not kinds:
            return "-", None
        shares = {k: s.loads[k].rps / s.loads["bare"].rps for k in kinds}
        worst = min(shares.values())
        text = " / ".join(f"{100 * v:.0f} %" for v in shares.values())
        return f"{text} (worst {100 * worst:.0f} %)", worst >= TARGETS["ratio"]

    def p99(s: Section, key: str, judge: bool) -> tuple[str, bool | None]:
        if key not in s.loads:
            return "-", None
        value = s.loads[key].p99_ms
        return f"{value:.1f} ms", (value <= TARGETS["p99_ms"]) if judge else None

    def lag(s: Section, key: str, judge: bool) -> tuple[str, bool | None]:
        if key not in s.lag_ms:
            return "n/a", None
        value = s.lag_ms[key]["p99"]
        return f"{value:.1f} ms", (value <= TARGETS["lag_p99_ms"]) if judge else None

    def start(s: Section) -> tuple[str, bool | None]:
        if not s.start_ms:
            return "-", None
        median = percentile(s.start_ms, 50)
        return (
            f"{median:.1f} ms (max {max(s.start_ms):.1f}, n={len(s.start_ms)})",
            median <= TARGETS["start_ms"],
        )

    def info(values: list[float]) -> tuple[str, None]:
        return (f"{percentile(values, 50):.1f} ms" if values else "-"), None

    row("status rate >= 60 % of bare (saturated)", [ratio(s) for s in sections])
    row(
        f"status p99 <= 20 ms (paced, {CONCURRENCY} x {PACED_RATE:g}/s)",
        [p99(s, "status_paced", True) for s in sections],
    )
    row(
        "status p99 saturated (info: bound by 64 / rate)",
        [p99(s, "status", False) for s in sections],
    )
    row("loop lag p99 <= 10 ms during a render", [lag(s, "render", True) for s in sections])
    row(
        "loop lag p99, render + paced status (info)",
        [lag(s, "render+status_paced", False) for s in sections],
    )
    row(
        "loop lag p99, render + saturated status (info)",
        [lag(s, "render+status", False) for s in sections],
    )
    row(
        "loop lag p99 of an idle process meanwhile (info: the machine's share)",
        [lag(s, "control", False) for s in sections],
    )
    row("loop lag p99, idle service (info)", [lag(s, "idle", False) for s in sections])

    def upload(s: Section) -> tuple[str, None]:
        if "render+upload" not in s.lag_ms or s.upload_ms is None:
            return "n/a", None
        worst = s.lag_ms["render+upload"]["max"]
        return f"{worst:.0f} ms (upload took {s.upload_ms:.0f} ms)", None

    row("loop lag max, render + one 7.5 MB JSON upload (info)", [upload(s) for s in sections])
    row("submit -> start <= 50 ms (median)", [start(s) for s in sections])
    row("POST /job/create answered (info, median)", [info(s.post_ms) for s in sections])
    if not all(s.render_running for s in sections):
        lines += ["", "FAILED: a window ran while no render was running (see the last column)"]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> list[Section]:
    plan = QUICK if args.quick else FULL
    image = photo_b64(*QUICK_PHOTO) if args.quick else photo_b64()
    sections = []
    if args.only in (None, "in-process"):
        sections.append(await in_process(plan, image))
    if args.only in (None, "process"):
        sections.append(await full_process(plan, image))
    return sections


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short windows (CI smoke run)")
    parser.add_argument("--only", choices=("in-process", "process"), help="run one setup")
    parser.add_argument("--json", help="also write the results to this file")
    # internal modes: the load client and the bare server, each in its own process
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bare-server", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--lag-probe", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.lag_probe:
        print(json.dumps(asyncio.run(probe_main(args.lag_probe))))
        return 0
    if args.client:
        asyncio.run(client_main())
        return 0
    if args.bare_server:
        web.run_app(
            bare_app(), host="127.0.0.1", port=args.bare_server, print=None, access_log=None
        )
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    load_before = os.getloadavg()[0]
    sections = asyncio.run(main_async(args))
    print(report(sections, QUICK if args.quick else FULL, args.quick, load_before), flush=True)
    if args.json:
        results = [
            {**asdict(s), "loads": {k: {**asdict(v), "rps": v.rps} for k, v in s.loads.items()}}
            for s in sections
        ]
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0 if all(s.render_running for s in sections) else 1  # a window without a render


if __name__ == "__main__":
    sys.exit(main())
