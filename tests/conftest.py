"""Shared fixtures: settings on a temporary data dir, the real service on 127.0.0.1, test photos."""

from __future__ import annotations

import os

# One thread for torch and BLAS: on two shared cores more threads only swing the timings.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import asyncio
import io
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import numpy as np
import pytest
from PIL import Image

from fanslymotion.app import Service
from fanslymotion.config import Settings

if TYPE_CHECKING:
    from .bot_stack import Stack
    from .fake_telegram import FakeTelegram
    from .pg_server import PostgresServer


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings that ignore the developer's .env and environment defaults that would leak in."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "port": 0,
        "renderer": "motion",
        "fps": 4,
        "retry_backoff": 0.05,
        "min_free_mb": 0,
        "progress_interval": 0.1,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def photo_bytes(width: int = 320, height: int = 240, fmt: str = "JPEG", seed: int = 0) -> bytes:
    """A textured photo: smooth gradients plus noise, so motion and compression are realistic."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            128 + 100 * np.sin(x / 17.0) * np.cos(y / 23.0),
            128 + 90 * np.sin((x + y) / 31.0),
            128 + 80 * np.cos(x / 11.0 - y / 29.0),
        ],
        axis=-1,
    )
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


class Client:
    """A small HTTP client bound to one running service."""

    def __init__(self, session: aiohttp.ClientSession, base: str, service: Service) -> None:
        self.session = session
        self.base = base
        self.service = service

    async def request(
        self, method: str, path: str, **kwargs: Any
    ) -> tuple[int, Any, aiohttp.ClientResponse]:
        async with self.session.request(method, self.base + path, **kwargs) as response:
            raw = await response.read()
            body: Any = raw
            if response.content_type == "application/json":
                body = await response.json()
            return response.status, body, response

    async def create(self, image: bytes | None = None, **params: Any) -> tuple[int, Any]:
        import base64

        payload = {
            "user_id": 1,
            "duration": 3,
            "resolution": "360p",
            "motion_preset": "pan_l",
            **params,
        }
        if "image_data" not in payload:
            payload["image_data"] = base64.b64encode(
                image if image is not None else photo_bytes()
            ).decode()
        status, body, _ = await self.request("POST", "/job/create", json=payload)
        return status, body

    async def wait(
        self,
        job_id: str,
        statuses: tuple[str, ...] = ("completed", "failed", "cancelled"),
        limit: float = 60.0,
    ) -> dict[str, Any]:
        """Poll the status route until the job reaches one of `statuses`, for `limit` s at most."""
        deadline = asyncio.get_running_loop().time() + limit
        while True:
            status, body, _ = await self.request("GET", f"/job/status/{job_id}")
            assert status == 200, body
            if body["status"] in statuses:
                return dict(body)
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"job {job_id} stuck in {body}")
            await asyncio.sleep(0.05)


ServiceFactory = Callable[..., Awaitable[Client]]


@pytest.fixture
async def start_service(tmp_path: Path) -> AsyncIterator[ServiceFactory]:
    """Start the real service (store, queue, GPU thread, HTTP on 127.0.0.1); stopped at teardown."""
    running: list[tuple[Service, aiohttp.ClientSession]] = []

    async def start(**overrides: Any) -> Client:
        settings = make_settings(overrides.pop("data_dir", tmp_path / "data"), **overrides)
        service = await Service.start(settings)
        session = aiohttp.ClientSession()
        running.append((service, session))
        return Client(session, f"http://127.0.0.1:{service.port}", service)

    yield start
    for service, session in reversed(running):
        await session.close()
        await service.stop()


@pytest.fixture(params=["box", "cluster"])
def start_deployed(start_service: ServiceFactory, request: pytest.FixtureRequest) -> ServiceFactory:
    """`start_service` for both deployments: one box, and a cluster: a front whose store of
    record is a new database on the session's PostgreSQL (a copy of a migrated template) and
    one worker inside the test's process (`cluster_stack.WorkerTask`) that renders its jobs.
    A later start (a restart) stops the earlier front's worker first."""
    if request.param == "box":
        return start_service

    from .cluster_stack import TOKEN, WorkerTask

    url = request.getfixturevalue("pg_deployed_url")
    workers: list[WorkerTask] = request.getfixturevalue("_worker_tasks")

    async def start(**overrides: Any) -> Client:
        for worker in workers:
            await worker.stop()
        client = await start_service(database_url=url, worker_token=TOKEN, **overrides)
        # The worker shares the front's settings: a test's change of one reaches both.
        client.service.settings.front_url = client.base
        worker = WorkerTask(client.service.settings)
        workers.append(worker)
        await worker.start()
        # Until the front counts the worker live, as a cluster in service would (its ETAs
        # count the live workers).
        executor = client.service.cluster
        assert executor is not None
        async with asyncio.timeout(30):
            while True:
                if (await executor.health())["renderer"]["status"] == "ready":
                    break
                await asyncio.sleep(0.05)
        return client

    return start


@pytest.fixture
async def _worker_tasks() -> AsyncIterator[list[Any]]:
    """The in-process workers of `start_deployed`, stopped before their front."""
    workers: list[Any] = []
    yield workers
    for worker in workers:
        await worker.stop()


@pytest.fixture(scope="session")
def tiny_svd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random-weight SVD pipeline's folder (tests/svd_tiny.py), written once per session."""
    from .svd_tiny import build_tiny_svd

    return build_tiny_svd(tmp_path_factory.mktemp("tiny-svd"))


@pytest.fixture
async def client(start_service: ServiceFactory) -> Client:
    return await start_service()


PHOTO_ERROR_CODES = {
    "photo_empty",
    "photo_unreadable",
    "photo_damaged",
    "photo_unsupported",
    "photo_too_many_pixels",
    "photo_too_small",
}
# The other codes of the API's error bodies (see models.ErrorOut).
ERROR_CODES = PHOTO_ERROR_CODES | {
    "idempotency_key_reused",
    "not_ready",
    "job_failed",
    "job_cancelled",
    "video_deleted",
    "link_invalid",
    "link_expired",
}
# A story's refusals (issue 25).
ERROR_CODES |= {
    "audio_unreadable",
    "audio_too_large",
    "audio_too_long",
    "audio_silent",
    "audio_start",
    "story_too_long",
    "request_too_large",
    "stories_unavailable",
}


def assert_error_body(body: object, status: int) -> None:
    """The API's error shape: ok false, the message, the status, and a known code if any."""
    assert isinstance(body, dict), body
    assert body["ok"] is False and body["status"] == status and isinstance(body["error"], str)
    assert set(body) <= {"ok", "error", "status", "code"}, body
    if "code" in body:
        assert body["code"] in ERROR_CODES, body


# The bot's tests: a fake Bot API on 127.0.0.1 and the real bot stack polling it.


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    from .bot_stack import TOKEN
    from .fake_telegram import FakeTelegram

    fake = FakeTelegram(TOKEN)
    await fake.start()
    yield fake
    await fake.close()


@pytest.fixture
async def stack(tg: FakeTelegram, tmp_path: Path) -> AsyncIterator[Stack]:
    from .bot_stack import Stack

    stack = Stack(tg, tmp_path / "data")
    yield stack
    await stack.stop_all()


# The cluster tests: one real PostgreSQL server for the session (tests/pg_server.py).


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server on 127.0.0.1, started once and stopped at session end.

    Without the server binaries the tests that need it are skipped, except under CI (CI set
    to anything but "", "0" or "false"), where that is a failure: CI never skips them silently.
    """
    from .pg_server import PostgresServer

    reason = PostgresServer.available()
    if reason is not None:
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"CI must run the PostgreSQL tests: {reason}", pytrace=False)
        pytest.skip(reason)
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


_databases = itertools.count(1)


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    """The URL of a new, empty database on the session's server (t1, t2, ...)."""
    return postgres.new_database(f"t{next(_databases)}")


@pytest.fixture(scope="session")
def pg_template(postgres: PostgresServer) -> str:
    """The name of a database with the cluster's schema (procrastinate's and ours), migrated
    once per session: `pg_deployed_url` copies it."""
    import threading

    from fanslymotion.cluster.db import ClusterDB

    name = "fm_template"
    url = postgres.new_database(name)

    async def migrate() -> None:
        db = await ClusterDB.open(url, max_size=1)
        try:
            await db.migrate()
        finally:
            await db.close()

    # A loop of its own, in a thread: a test's loop may be running already.
    failed: list[BaseException] = []
    thread = threading.Thread(target=lambda: _run_into(migrate, failed))
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return name


def _run_into(main: Callable[[], Awaitable[None]], failed: list[BaseException]) -> None:
    try:
        asyncio.run(main())  # type: ignore[arg-type]
    except BaseException as exc:  # handed to the thread that waits
        failed.append(exc)


@pytest.fixture
def pg_deployed_url(postgres: PostgresServer, pg_template: str) -> str:
    """A new database (d1, d2, ...) with the cluster's schema, copied from the template."""
    return postgres.new_database(f"d{next(_databases)}", template=pg_template)
