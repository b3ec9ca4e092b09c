"""Benchmark of cluster mode: dispatch, throughput per worker, the front's status rate, take cost.

One run on this machine measures, each figure side by side with a named baseline of the same run:

* dispatch: to the job's `started_at` (set as the worker takes the job) from the moment the
  front's row was created, and in a cluster from the commit of the job row and its
  procrastinate job (when that commit's NOTIFY reaches a listener); one short job at a time
  on an idle cluster of 2 workers. The POST's answer is no start line: the job often starts
  before it comes back. Baseline: the single box (`python -m fanslymotion` without a
  database), measured the same way;
* throughput: jobs per second for short renders (motion renderer, 3 s at 360p, 4 fps) from
  several users with 1, 2 and 4 workers; baseline: 1 worker (the single box for reference);
* the front's `GET /job/status` rate for a running and a waiting job, measured as bench/api.py
  does (its load client: 64 clients in a process of their own, saturated) while a 12 s 1080p
  render runs; baseline: the single box;
* PostgreSQL's cost of taking the next job with 10,000 queued: procrastinate's fetch,
  `ClusterDB.start` (which re-ranks), `ClusterDB.rerank` alone, `PgStore.create_job` and the
  fair-order query, in a steady state (each job taken is finished and replaced); baseline:
  100 queued. From it, the takes per second one PostgreSQL serves, and so how many workers.

Every part is real: the front and the workers are processes (tests/cluster_stack.py) on a
throwaway PostgreSQL server (tests/pg_server.py), with production timings (heartbeat 5 s,
poll 1 s, progress every 0.5 s). Everything shares this machine's cores.

    python bench/cluster.py                # full run, about 3 minutes on two cores
    python bench/cluster.py --quick        # smoke run (tests/test_bench_cluster.py), < 60 s
    python bench/cluster.py --json out.json --explain plans.txt
    python bench/cluster.py --only takes --postgres postgresql://user@host/db  # another server
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.api import (  # noqa: E402
    LONG_JOB,
    QUICK_PHOTO,
    SHORT_JOB,
    Load,
    LoadClient,
    cpu_model,
    percentile,
    photo_b64,
)
from bench.api import Plan as LoadPlan  # noqa: E402
from bench.cluster_pg import USERS, Databases, explain, take_costs  # noqa: E402
from fanslymotion.store import parse_time  # noqa: E402
from tests.cluster_stack import Cluster, wait_for  # noqa: E402
from tests.test_process import Process  # noqa: E402

# The timings a deployment runs with (tests/cluster_stack.py shortens them for the tests).
PRODUCTION = {
    "FANSLYMOTION_WORKER_TIMEOUT": "30",
    "FANSLYMOTION_WORKER_HEARTBEAT": "5",
    "FANSLYMOTION_WORKER_POLL": "1",
    "FANSLYMOTION_PROGRESS_INTERVAL": "0.5",
    "FANSLYMOTION_RETRY_BACKOFF": "5",
}
LIMITS = {"FANSLYMOTION_MAX_QUEUED": "1000", "FANSLYMOTION_MAX_ACTIVE_PER_USER": "1000"}
TERMINAL = ("completed", "failed", "cancelled")
SETTLE = 0.2  # seconds an idle service is left alone before each dispatch sample
LONG_JOBS = 4  # long renders queued for the status windows: one running, the rest waiting
SLOW_MS = 50.0  # a PostgreSQL operation slower than this (p50) is flagged
CLIP_SECONDS = (30, 60)  # seconds per SVD clip the worker counts are given for
SINGLE = "single box"
LATE_MS = 500.0  # a dispatch this slow waited for a poll: the wake-up was missed


@dataclass(frozen=True)
class Plan:
    dispatch: int  # dispatch samples per setup
    jobs: int  # jobs per throughput run
    users: int  # users they come from
    workers: tuple[int, ...]  # worker counts of the throughput runs (2 must be one)
    window: float  # seconds per status window
    warmup: float  # seconds of load before it, not recorded
    queues: tuple[int, int]  # queued jobs: the baseline, then the measured size
    takes: int  # take cycles per queue size


FULL = Plan(40, 12, 4, (1, 2, 4), 4.0, 0.5, (100, 10_000), 200)
QUICK = Plan(3, 4, 2, (1, 2, 4), 0.3, 0.1, (100, 1_000), 15)


@dataclass
class Run:
    """One throughput run: seconds from the first POST, and from the first start, to the last
    completion."""

    jobs: int
    completed: int
    seconds: float
    render_seconds: float

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds > 0 else 0.0

    @property
    def render_rate(self) -> float:
        return self.completed / self.render_seconds if self.render_seconds > 0 else 0.0


@dataclass
class Results:
    dispatch: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    throughput: dict[str, Run] = field(default_factory=dict)
    status: dict[str, dict[str, Load]] = field(default_factory=dict)
    rendering: dict[str, bool] = field(default_factory=dict)  # status windows had a render
    takes: dict[int, dict[str, list[float]]] = field(default_factory=dict)
    postgres: str = ""


# -- the two kinds of service -----------------------------------------------------------------


def start_single(folder: Path, fps: int) -> Process:
    box = Process(folder, FANSLYMOTION_FPS=str(fps), **PRODUCTION, **LIMITS)
    box.start()
    return box


def stop_single(box: Process) -> None:
    if box.proc is not None and box.proc.poll() is None:
        box.proc.send_signal(signal.SIGTERM)
        try:
            box.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            box.proc.kill()
            box.proc.wait()


def start_cluster(folder: Path, url: str, fps: int, workers: int) -> Cluster:
    cluster = Cluster(folder, url)
    cluster.front.env.update({**PRODUCTION, **LIMITS, "FANSLYMOTION_FPS": str(fps)})
    try:
        cluster.front.start()
        grow(cluster, workers)
    except BaseException:
        cluster.close()
        raise
    return cluster


def grow(cluster: Cluster, count: int) -> None:
    """Workers up to `count`, all idle."""
    for index in range(len(cluster.workers), count):
        cluster.add_worker(f"bench{index}-gpu0", **PRODUCTION)
    cluster.wait_workers(count, timeout=120)


def idle(front: Process) -> bool:
    """Nothing running or queued, and every worker (cluster) idle."""
    body = front.get("/health")[1]
    workers = body.get("workers", [])
    return bool(
        body["running_job"] is None
        and body["queue_length"] == 0
        and all(w["state"] == "idle" for w in workers)
    )


def stamp(value: str | None) -> float:
    moment = parse_time(value)
    assert moment is not None
    return moment.timestamp()


def status(front: Process, job_id: str) -> dict[str, Any]:
    return dict(front.get(f"/job/status/{job_id}")[1])


# -- 1. dispatch ------------------------------------------------------------------------------


class Commits:
    """When each job's first change reached a LISTEN on `fm_jobs`: PostgreSQL delivers a
    notification when its transaction commits, so this is when the enqueue committed."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.first: dict[str, float] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._listen, name="commits", daemon=True)

    def __enter__(self) -> Commits:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("could not LISTEN on fm_jobs")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _listen(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("LISTEN fm_jobs")
            self._ready.set()
            while not self._stop.is_set():
                for note in conn.notifies(timeout=0.2):
                    self.first.setdefault(note.payload, time.time())


def measure_dispatch(
    front: Process, count: int, image: str, cluster: Cluster | None
) -> dict[str, list[float]]:
    """ms to the job's started_at from: its row's created_at on the front ("created"), the POST
    answered ("answered": < 0 when the job started before the answer came back), and in a
    cluster the enqueue's commit ("committed") and procrastinate's `deferred` event to its
    `started` one ("picked", the server's clock). One machine, so one clock."""
    keys = ("created", "committed", "answered", "post", "picked")
    out: dict[str, list[float]] = {key: [] for key in keys}
    with contextlib.ExitStack() as stack:
        commits = stack.enter_context(Commits(cluster.db_url)) if cluster else None
        for index in range(count):
            wait_for(lambda: idle(front), 60, "an idle service")
            time.sleep(SETTLE)
            sent = time.time()
            job_id = front.create(user_id=500 + index, image_data=image, **SHORT_JOB)
            answered = time.time()

            def started(job: str = job_id) -> dict[str, Any] | None:
                body = status(front, job)
                return body if body["started_at"] else None

            body = wait_for(started, 60, "the job to start", every=0.01)
            began = stamp(body["started_at"])
            out["created"].append((began - stamp(body["created_at"])) * 1000)
            out["answered"].append((began - answered) * 1000)
            out["post"].append((answered - sent) * 1000)
            if cluster is not None and commits is not None:
                committed = wait_for(partial(commits.first.get, job_id), 10, "the commit")
                out["committed"].append((began - committed) * 1000)
                out["picked"].append(picked_ms(cluster, job_id))
    return out


def picked_ms(cluster: Cluster, job_id: str) -> float:
    """ms from procrastinate's `deferred` event (the enqueue transaction's start) to its
    `started` event (the worker's fetch)."""
    row = cluster.sql(
        "SELECT extract(epoch FROM s.at - d.at)::float * 1000 AS ms FROM fm_jobs f"
        " JOIN procrastinate_events d ON d.job_id = f.pq_id AND d.type = 'deferred'"
        " JOIN procrastinate_events s ON s.job_id = f.pq_id AND s.type = 'started'"
        " WHERE f.job_id = %s",
        job_id,
    )[0]
    return float(row["ms"])


# -- 2. throughput ----------------------------------------------------------------------------


def measure_throughput(front: Process, plan: Plan, image: str) -> Run:
    """`plan.jobs` short jobs from `plan.users` users posted back to back on an idle service."""
    wait_for(lambda: idle(front), 60, "an idle service")
    time.sleep(SETTLE)
    first = time.time()
    ids = [
        front.create(user_id=1 + i % plan.users, image_data=image, **SHORT_JOB)
        for i in range(plan.jobs)
    ]
    finals = [front.wait(job_id, TERMINAL, timeout=600) for job_id in ids]
    done = [f for f in finals if f["status"] == "completed"]
    if not done:
        raise RuntimeError(f"no job completed: {finals}")
    last = max(stamp(f["completed_at"]) for f in done)
    begun = min(stamp(f["started_at"]) for f in done)
    return Run(plan.jobs, len(done), last - first, last - begun)


# -- 3. status rate ---------------------------------------------------------------------------


def rendering_job(front: Process, needed: float) -> str:
    """The running job if its render has over twice `needed` seconds left, else the next one
    once it starts (a window on the running job must not outlive its render)."""
    before = front.get("/health")[1]["running_job"]
    if before is not None:
        eta = status(front, before).get("eta_seconds")
        if eta is not None and eta > 2 * needed:
            return str(before)

    def started() -> str | None:
        now = front.get("/health")[1]["running_job"]
        return str(now) if now is not None and now != before else None

    return str(wait_for(started, 120, "the next render to start"))


async def measure_status(front: Process, plan: Plan, image: str) -> tuple[dict[str, Load], bool]:
    """Status of a running job and of a waiting one, saturated, while long renders run; and
    whether the same render ran from before to after each window."""
    ids = [front.create(user_id=100 + i, image_data=image, **LONG_JOB) for i in range(LONG_JOBS)]
    base = f"http://127.0.0.1:{front.port}/job/status/"
    load_plan = LoadPlan(window=plan.window, warmup=plan.warmup, submits=0, long_jobs=0)
    loads: dict[str, Load] = {}
    throughout = True
    try:
        async with LoadClient() as client:
            for key in ("running", "waiting"):
                running = rendering_job(front, plan.window + plan.warmup)
                target = running if key == "running" else ids[-1]
                loads[key] = await client.run(base + target, load_plan)
                after = front.get("/health")[1]["running_job"]
                throughout &= after == running and status(front, ids[-1])["status"] == "queued"
    finally:
        for job_id in ids:
            front.call("POST", f"/job/{job_id}/cancel")
    return loads, throughout


# -- the run ----------------------------------------------------------------------------------


def run_services(plan: Plan, image: str, databases: Databases, root: Path) -> Results:
    """Sections 1 to 3: the single box, then one cluster grown from 1 to 4 workers, then the
    status windows on a single box and on a cluster of 1 worker (12 fps long renders)."""
    results = Results()
    box = start_single(root / "single", fps=4)
    try:
        results.dispatch[SINGLE] = measure_dispatch(box, plan.dispatch, image, None)
        results.throughput[SINGLE] = measure_throughput(box, plan, image)
    finally:
        stop_single(box)
    cluster = start_cluster(root / "cluster", databases.new("flow"), 4, plan.workers[0])
    try:
        for count in plan.workers:
            grow(cluster, count)
            if count == 2:
                results.dispatch["cluster, 2 workers"] = measure_dispatch(
                    cluster.front, plan.dispatch, image, cluster
                )
            results.throughput[workers_name(count)] = measure_throughput(cluster.front, plan, image)
    finally:
        cluster.close()
    box = start_single(root / "single-status", fps=12)
    try:
        loads, ok = asyncio.run(measure_status(box, plan, image))
        results.status[SINGLE], results.rendering[SINGLE] = loads, ok
    finally:
        stop_single(box)
    cluster = start_cluster(root / "cluster-status", databases.new("status"), 12, 1)
    try:
        loads, ok = asyncio.run(measure_status(cluster.front, plan, image))
        results.status["cluster, 1 worker"], results.rendering["cluster, 1 worker"] = loads, ok
    finally:
        cluster.close()
    return results


def workers_name(count: int) -> str:
    return f"cluster, {count} worker{'s' if count > 1 else ''}"


# -- report -----------------------------------------------------------------------------------


def ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q):.1f}" if values else "-"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def report_dispatch(results: Results) -> list[str]:
    lines = [
        "| dispatch, to started_at | n | p50 ms | p99 ms | max ms | over 500 ms"
        " | POST round trip p50 ms | start - POST answered p50 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    cluster = "cluster, 2 workers"
    rows = [
        (f"{SINGLE} (baseline): job row created ->", SINGLE, "created"),
        (f"{cluster}: job row created ->", cluster, "created"),
        (f"{cluster}: enqueue committed (its NOTIFY) ->", cluster, "committed"),
        (f"{cluster}: procrastinate deferred -> fetched", cluster, "picked"),
    ]
    for label, setup, key in rows:
        found = results.dispatch.get(setup, {})
        values = found.get(key, [])
        post, answered = (found.get("post", []), found.get("answered", []))
        extra = f"{ms(post, 50)} | {ms(answered, 50)}" if key == "created" else "- | -"
        top = f"{max(values):.1f}" if values else "-"
        late = sum(value > LATE_MS for value in values)
        lines.append(
            f"| {label} | {len(values)} | {ms(values, 50)} | {ms(values, 99)} | {top} | {late}"
            f" | {extra} |"
        )
    single = results.dispatch.get(SINGLE, {}).get("created", [])
    other = results.dispatch.get(cluster, {}).get("created", [])
    if single and other:
        lines.append(
            "\nDispatch ratio cluster/single box (job row created -> started_at): p50 "
            f"{ratio(percentile(other, 50), percentile(single, 50))},"
            f" p99 {ratio(percentile(other, 99), percentile(single, 99))}"
        )
    return lines


def report_throughput(results: Results, cores: int) -> list[str]:
    lines = [
        "| throughput | jobs | seconds | jobs/s | speed-up vs 1 worker"
        " | jobs/s, first start -> last done | note |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    one = results.throughput.get(workers_name(1))
    for name, run in results.throughput.items():
        count = int(name.split()[1]) if name.startswith("cluster") else 0
        note = "reference: one box, one render at a time" if name == SINGLE else ""
        if count == 1:
            note = "baseline"
        if count > cores:
            note = f"{count} workers on {cores} cores: more workers than cores"
        speed = ratio(run.rate, one.rate) if one and name != SINGLE else "-"
        lines.append(
            f"| {name} | {run.completed}/{run.jobs} | {run.seconds:.2f} | {run.rate:.2f}"
            f" | {speed} | {run.render_rate:.2f} | {note} |"
        )
    return lines


def report_status(results: Results) -> list[str]:
    lines = [
        "| status | job | requests/s | p50 ms | p99 ms | errors | render throughout |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for setup, loads in results.status.items():
        label = f"{setup} (baseline)" if setup == SINGLE else setup
        for key, load in loads.items():
            lines.append(
                f"| {label} | {key} | {load.rps:.0f} | {load.p50_ms:.1f} | {load.p99_ms:.1f}"
                f" | {load.errors} | {'yes' if results.rendering[setup] else '**no**'} |"
            )
    single, cluster = results.status.get(SINGLE), results.status.get("cluster, 1 worker")
    if single and cluster:
        parts = [
            f"{key} {ratio(cluster[key].rps, single[key].rps)}" for key in single if key in cluster
        ]
        lines.append("\nStatus rate ratio cluster/single box: " + ", ".join(parts))
    return lines


NAMES = {
    "fetch": "procrastinate_fetch_job_v2",
    "start": "ClusterDB.start (with its rerank)",
    "rerank": "ClusterDB.rerank alone",
    "enqueue": "PgStore.create_job (with its rerank)",
    "fair_order": "ClusterDB.fair_order (all waiting rows)",
}


def report_takes(results: Results, plan: Plan) -> list[str]:
    small, large = plan.queues
    a, b = results.takes.get(small, {}), results.takes.get(large, {})
    lines = [
        f"| take cost | {small:,} queued p50 / p99 ms (baseline) | {large:,} queued p50 / p99 ms"
        f" | p50 {large:,} / {small:,} |",
        "| --- | ---: | ---: | ---: |",
    ]
    for key, label in NAMES.items():
        x, y = a.get(key, []), b.get(key, [])
        flag = " **slow**" if y and percentile(y, 50) > SLOW_MS else ""
        lines.append(
            f"| {label} | {ms(x, 50)} / {ms(x, 99)} | {ms(y, 50)} / {ms(y, 99)}{flag}"
            f" | {ratio(percentile(y, 50), percentile(x, 50)) if x and y else '-'} |"
        )
    for size, times in ((small, a), (large, b)):
        if not times:
            continue
        take = percentile(times["fetch"], 50) + percentile(times["start"], 50)
        # Each job is also enqueued once. The front's upkeep re-ranks on its own only when a
        # retry's backoff ends: one more rerank per retry, not counted here.
        per_job = take + percentile(times["enqueue"], 50)
        takes = 1000 / take
        jobs = 1000 / per_job
        workers = ", ".join(f"{takes * s:,.0f} at {s} s" for s in CLIP_SECONDS)
        whole = ", ".join(f"{jobs * s:,.0f} at {s} s" for s in CLIP_SECONDS)
        lines.append(
            f"\nCapacity at {size:,} queued: a take (fetch + start) costs {take:.1f} ms, so one"
            f" PostgreSQL serves {takes:,.0f} takes/s, i.e. workers per clip length: {workers};"
            f" with each job's enqueue too: {jobs:,.0f} jobs/s, workers: {whole} (a retry"
            " adds one rerank when its backoff ends, not counted)"
        )
    return lines


def report(results: Results, plan: Plan, quick: bool, load_before: float) -> str:
    cores = os.cpu_count() or 1
    lines = [
        f"FanslyMotion cluster bench{' (--quick)' if quick else ''}: {cpu_model()}, {cores}"
        f" cores, Python {platform.python_version()}, PostgreSQL {results.postgres},"
        f" aiohttp {aiohttp.__version__}; load average {load_before:.2f} before the run,"
        f" {os.getloadavg()[0]:.2f} after; front, workers, PostgreSQL and clients share these"
        " cores",
        f"Production timings ({', '.join(f'{k[13:]}={v}' for k, v in PRODUCTION.items())});"
        f" short job: {SHORT_JOB['duration']} s {SHORT_JOB['resolution']} motion at 4 fps;"
        f" status windows: 64 saturated clients, {plan.window:g} s after {plan.warmup:g} s"
        f" warm-up, during a {LONG_JOB['duration']} s {LONG_JOB['resolution']} render at 12 fps",
    ]
    if results.dispatch:
        lines += ["", *report_dispatch(results)]
    if results.throughput:
        lines += [
            "",
            f"{plan.jobs} jobs from {plan.users} users per run, posted back to back; seconds"
            " from the first POST to the last completion",
            "",
            *report_throughput(results, cores),
        ]
    if results.status:
        lines += ["", *report_status(results)]
    if results.takes:
        lines += [
            "",
            f"Steady state: {plan.takes} cycles of fetch, start, finish (untimed), enqueue of a"
            f" replacement, rerank, fair order; {USERS} users",
            "",
            *report_takes(results, plan),
        ]
    return "\n".join(lines)


def to_json(results: Results) -> dict[str, Any]:
    return {
        "dispatch": results.dispatch,
        "throughput": {k: {**asdict(v), "rate": v.rate} for k, v in results.throughput.items()},
        "status": {
            s: {k: {**asdict(v), "rps": v.rps} for k, v in loads.items()}
            for s, loads in results.status.items()
        },
        "rendering": results.rendering,
        "takes": {str(k): v for k, v in results.takes.items()},
        "postgres": results.postgres,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--explain", help="write EXPLAIN ANALYZE of the take's SQL here")
    parser.add_argument("--only", choices=("services", "takes"), help="run one half")
    parser.add_argument(
        "--postgres", help="use this server (a URL of a database there) instead of starting one"
    )
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    if args.explain and args.postgres:
        parser.error("--explain reads the server's log: it needs the bench's own server")
    load_before = os.getloadavg()[0]
    results = Results()
    with Databases(args.postgres) as databases:
        if args.only in (None, "services"):
            with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
                image = photo_b64(*QUICK_PHOTO) if args.quick else photo_b64()
                results = run_services(plan, image, databases, Path(tmp))
        results.postgres = databases.version()
        if args.only in (None, "takes"):
            for size in plan.queues:
                url = databases.new(f"takes{size}")
                results.takes[size] = asyncio.run(take_costs(url, size, plan.takes))
            if args.explain and databases.server is not None:
                plans = asyncio.run(explain(databases.server, url))
                Path(args.explain).write_text(plans)
    print(report(results, plan, args.quick, load_before), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(to_json(results), indent=2))
    rendering = all(results.rendering.values())
    return 0 if rendering else 1  # a status window without a render throughout


if __name__ == "__main__":
    sys.exit(main())
