"""The composition root: `Service` wires the data folder, store, queue, HTTP API and bot of one
process; `serve` runs it until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import os
import signal
import sqlite3
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import admin, admin_models, datadir, story_render
from .api import create_app
from .backends import select_renderer
from .config import Settings, model_problem, unknown_variables
from .dispatcher import LocalExecutor
from .errors import FanslyError, Unavailable
from .metrics import Metrics
from .queue import JobQueue
from .renderer import RenderWorker
from .store import Store
from .store.port import BotStore, JobStore, Outbox
from .webhook import WebhookSender, status_body

if TYPE_CHECKING:
    from .cluster.front import ClusterExecutor

log = logging.getLogger(__name__)

REQUEST_LINE = 64 * 1024
"""Bytes a request line may have (GET /camera's query)."""


class Service:
    """Everything one process runs: store, queue (with its GPU thread), HTTP API and bot."""

    def __init__(
        self,
        settings: Settings,
        store: JobStore,
        jobs: JobQueue,
        metrics: Metrics,
        lock: datadir.DataFolderLock | None = None,
    ) -> None:
        self.settings = settings
        self.store = store  # the jobs' store of record: SQLite, or a cluster's PostgreSQL
        self.local: Store | None = None  # this process's SQLite, where it has one
        self.outbox: Outbox | None = None
        self.jobs = jobs
        self.metrics = metrics
        self.bot: Any = None
        self.webhooks: WebhookSender | None = None
        self._lock = lock
        self._runner: web.AppRunner | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._stopped = False
        self.port: int | None = None
        self.cluster: ClusterExecutor | None = None  # the cluster's executor (its routes)

    @classmethod
    async def start(cls, settings: Settings, *, http: bool = True) -> Service:
        """Lock the data folder, open the database, pick and start the renderer, serve HTTP,
        start the bot if configured. A failure on the way undoes what was done: a job the
        queue had already picked up is parked again, the database and the lock are released."""
        loop = asyncio.get_running_loop()
        # A model setting that cannot work is refused now, not when the first job fails.
        problem = await loop.run_in_executor(None, model_problem, settings)
        if problem is not None and not settings.cluster:  # a cluster's front loads no model
            raise Unavailable(problem)
        if settings.cluster and settings.worker_token is None:
            raise Unavailable("cluster mode needs FANSLYMOTION_WORKER_TOKEN (shared with workers)")
        async with contextlib.AsyncExitStack() as undo:
            await loop.run_in_executor(
                None, functools.partial(settings.data_dir.mkdir, parents=True, exist_ok=True)
            )
            lock = await loop.run_in_executor(
                None, datadir.DataFolderLock.acquire, settings.data_dir
            )
            undo.callback(lock.release)
            local: Store | None = None
            if not settings.cluster:  # a cluster's front keeps everything in PostgreSQL
                local = await Store.open(settings.db_path)
                undo.push_async_callback(local.close)
            await loop.run_in_executor(None, datadir.clean_leftovers, settings)
            metrics = Metrics()
            jobs, cluster, stores = await job_service(settings, local, metrics)
            bot_store, outbox = stores
            undo.push_async_callback(jobs.stop)
            # Raises Unavailable for RENDERER=svd without CUDA or weights.
            await jobs.start()
            if settings.renderer == "svd" and not settings.cluster:
                # Asked for SVD explicitly: a model that does not load is a start-up error, not
                # a silent fall-back, so wait for the load before serving.
                try:
                    await jobs.wait_ready()
                except Unavailable as exc:
                    raise Unavailable(f"the SVD renderer failed to load: {exc.message}") from exc
            service = cls(settings, jobs.store, jobs, metrics, lock)
            service.cluster = cluster
            service.local = local
            service.outbox = outbox
            undo.pop_all()  # from here on, service.stop() undoes it all
            undo.push_async_callback(service.stop)
            if settings.webhook_secret is not None:
                body_of = functools.partial(status_body, settings)
                service.webhooks = WebhookSender(settings, outbox, body_of, metrics)
                await service.webhooks.start()
            service._housekeeping = asyncio.create_task(
                datadir.run_housekeeping(settings, jobs.store), name="housekeeping"
            )
            if http:
                await service._serve_http()
            if settings.bot_token is not None:
                from .bot import TelegramBot

                service.bot = TelegramBot(settings, jobs, bot_store)
                await service.bot.start()
            else:
                log.info("Telegram bot off: FANSLYMOTION_BOT_TOKEN is not set")
            undo.pop_all()
        return service

    async def _serve_http(self) -> None:
        app = create_app(
            self.settings,
            self.jobs,
            self._bot_status,
            admin.routes(),
            admin_models.DOCUMENTED,
        )
        admin.install(app, self.settings, self.jobs)
        if self.settings.cluster:
            from .cluster import routes

            executor = self.cluster
            assert executor is not None
            routes.add_routes(app, lambda request: executor)
        # GET /camera carries a camera path as JSON in its query (4000 characters, up to 12
        # bytes each once percent-encoded): the request line may pass aiohttp's 8 KB default.
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, max_line_size=REQUEST_LINE
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        try:
            await site.start()
        except OSError as exc:
            where = f"{self.settings.host}:{self.settings.port}"
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise Unavailable(f"cannot listen on {where}: {reason}") from exc
        addresses = self._runner.addresses  # (host, port, ...) of each listening socket
        self.port = int(addresses[0][1]) if addresses else self.settings.port
        log.info(
            "HTTP API on http://%s:%s (the web page at /), renderer %s; ways in: %s",
            self.settings.host,
            self.port,
            self.jobs.renderer_name,
            "; ".join(ways_in(self.settings)),
        )
        if not _is_loopback(self.settings.host) and self.settings.api_token is None:
            log.warning(
                "SECURITY: bound to %s, reachable from other machines, and FANSLYMOTION_API_TOKEN"
                " is not set: anyone who can reach this port can submit and read jobs",
                self.settings.host,
            )

    def _bot_status(self) -> dict[str, Any] | None:
        """The bot's state for /health; None without a bot."""
        return self.bot.status() if self.bot is not None else None

    async def stop(self) -> None:
        """Stop taking jobs, park the running one back in the queue, close everything."""
        if self._stopped:
            return
        self._stopped = True
        log.info("stopping")
        if self.bot is not None:
            await self.bot.stop()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        await self.jobs.stop()
        if self.webhooks is not None:
            await self.webhooks.stop()
        if self._runner is not None:
            await self._runner.cleanup()
        if self.local is not None:
            await self.local.close()
        if self._lock is not None:
            self._lock.release()
        log.info("stopped")


async def job_service(
    settings: Settings, local: Store | None, metrics: Metrics
) -> tuple[JobQueue, ClusterExecutor | None, tuple[BotStore, Outbox]]:
    """The job service with the single box's executor (its GPU thread), or, with
    DATABASE_URL, the cluster's (PostgreSQL and the workers); and the bot's store and the
    webhook outbox, beside the jobs in the same store of record."""
    if not settings.cluster:
        assert local is not None
        worker = RenderWorker(
            settings, functools.partial(select_renderer, settings), stories=story_render.render
        )
        executor = LocalExecutor(settings, local, worker)
        return JobQueue(settings, local, executor, metrics=metrics), None, (local, local)
    import psycopg
    import psycopg_pool

    from .cluster.db import ClusterDB
    from .cluster.follow import Follower
    from .cluster.front import ClusterExecutor
    from .cluster.outbox import PgOutbox
    from .cluster.owners import PgOwners
    from .cluster.store import PgStore
    from .cluster.upgrade import move_front_sqlite

    assert settings.database_url is not None
    try:
        db = await ClusterDB.open(settings.database_url.get_secret_value())
    except (psycopg.Error, psycopg_pool.PoolTimeout, OSError) as exc:
        raise Unavailable(f"cannot reach PostgreSQL at FANSLYMOTION_DATABASE_URL: {exc}") from exc
    await db.migrate()  # the front's queries need the schema before the service starts
    await move_front_sqlite(settings.db_path, db)  # a front of the previous version
    store = PgStore(db)  # the one store of record: the front keeps no copy
    cluster = ClusterExecutor(settings, store, db, Follower(db))
    queue = JobQueue(settings, store, cluster, metrics=metrics, owners=PgOwners(db))
    return queue, cluster, (store, PgOutbox(db))


def ways_in(settings: Settings) -> list[str]:
    """Who may use the API and the page, in words for the start-up line."""
    ways = []
    if settings.api_token is None:
        ways.append("anyone who reaches the port (no API_TOKEN)")
    else:
        ways.append("the API token (API_TOKEN)")
    if settings.bot_token is not None:
        ways.append("Telegram users through the bot")
    if settings.metrics_token is not None:
        ways.append("/metrics with METRICS_TOKEN")
    if settings.admin_token is not None:
        ways.append("the operator's room with ADMIN_TOKEN")
    if settings.cluster:
        ways.append("workers with WORKER_TOKEN")
    return ways


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def serve(settings: Settings) -> int:
    """Run until SIGINT or SIGTERM; returns the process exit code."""
    loop = asyncio.get_running_loop()
    for warning in unknown_variables(os.environ):
        log.warning("%s", warning)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        service = await Service.start(settings)
    except FanslyError as exc:
        log.error("cannot start: %s", exc.message)
        return 2
    except (OSError, sqlite3.Error) as exc:  # the data folder or the database is unusable
        log.error("cannot start: %s: %s", type(exc).__name__, exc)
        return 2
    await stop.wait()
    await service.stop()
    return 0
