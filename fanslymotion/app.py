"""The HTTP API (aiohttp) and the service that runs it beside the queue and the bot."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import hmac
import ipaddress
import json
import logging
import os
import signal
import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, ValidationError

from . import __version__, checkpoints, models, storage
from .config import Settings
from .errors import (
    BadRequest,
    Conflict,
    FanslyError,
    InvalidParams,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    Unavailable,
    UnsupportedMedia,
)
from .metrics import CONTENT_TYPE, Metrics
from .queue import JobQueue, JobRequest, is_closed
from .renderer import select_renderer
from .store import Job, Store

log = logging.getLogger(__name__)

SERVICE: web.AppKey[Service] = web.AppKey("service")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Gone(FanslyError):
    status = 410


class Service:
    """Everything one process runs: store, queue (with its GPU thread), HTTP API and bot."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        jobs: JobQueue,
        metrics: Metrics,
        lock: storage.DataFolderLock | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.jobs = jobs
        self.metrics = metrics
        self.bot: Any = None
        self._lock = lock
        self._runner: web.AppRunner | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._stopped = False
        self.port: int | None = None

    @classmethod
    async def start(cls, settings: Settings, *, http: bool = True) -> Service:
        """Lock the data folder, open the database, pick and start the renderer, serve HTTP,
        start the bot if configured. A failure on the way undoes what was done: a job the
        queue had already picked up is parked again, the database and the lock are released."""
        loop = asyncio.get_running_loop()
        async with contextlib.AsyncExitStack() as undo:
            await loop.run_in_executor(
                None, functools.partial(settings.data_dir.mkdir, parents=True, exist_ok=True)
            )
            lock = await loop.run_in_executor(
                None, storage.DataFolderLock.acquire, settings.data_dir
            )
            undo.callback(lock.release)
            # Raises Unavailable for RENDERER=svd without CUDA or weights.
            renderer = select_renderer(settings)
            log.info("renderer: %s (%s)", renderer.name, renderer.state.reason)
            store = await Store.open(settings.db_path)
            undo.push_async_callback(store.close)
            await loop.run_in_executor(None, storage.clean_leftovers, settings)
            metrics = Metrics()
            jobs = JobQueue(settings, store, renderer, metrics=metrics)
            await jobs.start()
            undo.push_async_callback(jobs.stop)
            if settings.renderer == "svd":
                # Asked for SVD explicitly: a model that does not load is a start-up error, not
                # a silent fall-back, so wait for the load before serving.
                await jobs.wait_ready()
                state = jobs.renderer.state
                if state.status == "failed":
                    raise Unavailable(f"the SVD renderer failed to load: {state.reason}")
            service = cls(settings, store, jobs, metrics, lock)
            undo.pop_all()  # from here on, service.stop() undoes it all
            undo.push_async_callback(service.stop)
            service._housekeeping = asyncio.create_task(
                storage.run_housekeeping(settings, store), name="housekeeping"
            )
            if http:
                await service._serve_http()
            if settings.bot_token is not None:
                from .bot import TelegramBot

                service.bot = TelegramBot(settings, jobs)
                await service.bot.start()
            else:
                log.info("Telegram bot off: FANSLYMOTION_BOT_TOKEN is not set")
            undo.pop_all()
        return service

    async def _serve_http(self) -> None:
        app = create_app(self)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        try:
            await site.start()
        except OSError as exc:
            where = f"{self.settings.host}:{self.settings.port}"
            reason = os.strerror(exc.errno) if exc.errno else str(exc)
            raise Unavailable(f"cannot listen on {where}: {reason}") from exc
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.settings.port
        log.info("HTTP API on http://%s:%s", self.settings.host, self.port)
        if not _is_loopback(self.settings.host) and self.settings.api_token is None:
            log.warning(
                "SECURITY: bound to %s, reachable from other machines, and FANSLYMOTION_API_TOKEN"
                " is not set: anyone who can reach this port can submit and read jobs",
                self.settings.host,
            )

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
        if self._runner is not None:
            await self._runner.cleanup()
        await self.store.close()
        if self._lock is not None:
            self._lock.release()
        log.info("stopped")


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- middleware -------------------------------------------------------------------------------


def error_body(status: int, message: str, code: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"ok": False, "error": message, "status": status}
    if code:
        body["code"] = code
    return body


def json_error(
    status: int, message: str, headers: dict[str, str] | None = None, *, code: str = ""
) -> web.Response:
    return web.json_response(error_body(status, message, code), status=status, headers=headers)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place where domain errors become HTTP answers. Never a traceback."""
    try:
        return await handler(request)
    except FanslyError as exc:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else None
        return json_error(exc.status, exc.message, headers, code=exc.code)
    except web.HTTPRequestEntityTooLarge:
        return json_error(413, "the request is too large")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(
            exc.status,
            exc.reason or "error",
            {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None,
        )
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as exc:
        log.error(
            "unhandled %s on %s %s: %s", type(exc).__name__, request.method, request.path, exc
        )
        log.debug("traceback", exc_info=exc)
        return json_error(500, "internal error")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """With FANSLYMOTION_API_TOKEN set, every /job* and /jobs route needs the bearer token."""
    token = request.app[SERVICE].settings.api_token
    if token is not None and request.path.startswith("/job"):
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {token.get_secret_value()}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Unauthorized("a valid bearer token is required")
    return await handler(request)


# -- handlers ---------------------------------------------------------------------------------


def _service(request: web.Request) -> Service:
    return request.app[SERVICE]


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(text=model.model_dump_json(), status=status)


def _job_id(request: web.Request) -> str:
    raw = request.match_info["job_id"]
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise NotFound("no such job") from None


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


async def index(request: web.Request) -> web.Response:
    return _json(
        models.IndexOut(name="FanslyMotion", version=__version__, endpoints=models.ENDPOINTS)
    )


async def health(request: web.Request) -> web.Response:
    service = _service(request)
    body = await service.jobs.health()
    body["bot"] = (
        service.bot.status()
        if service.bot is not None
        else {"enabled": False, "state": "off", "reason": "no bot token"}
    )
    return web.json_response(body)


async def metrics(request: web.Request) -> web.Response:
    service = _service(request)
    for status, count in (await service.store.counts_by_status()).items():
        service.metrics.jobs.labels(status).set(count)
    service.metrics.queue_length.set(await service.store.count_jobs(status="queued"))
    for kind, value in service.jobs.renderer.memory_stats().items():
        service.metrics.gpu_memory.labels(kind).set(value)
    return web.Response(body=service.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(models.openapi(_service(request).settings.api_token is not None))


async def create_job(request: web.Request) -> web.Response:
    service = _service(request)
    params, image = await _read_create(request, service.settings)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not 0 < len(key) <= 200:
        raise InvalidParams("Idempotency-Key must be 1 to 200 characters")
    job, created = await service.jobs.submit(
        JobRequest(
            user_id=params.user_id,
            duration=params.duration,
            resolution=params.resolution,
            motion_preset=params.motion_preset,
            aspect=params.aspect,
            strength=params.strength,
            seed=params.seed,
            steps=params.steps,
            source="api",
        ),
        image,
        idempotency_key=key,
    )
    position, eta = await service.jobs.position_and_eta(job)
    body = models.JobCreated(
        job_id=job.job_id,
        status=job.status,
        queue_position=position,
        estimated_time=eta,
    )
    return _json(body, 201 if created else 200)


async def _read_create(request: web.Request, settings: Settings) -> tuple[models.JobParams, bytes]:
    """Parse either form of /job/create; the photo's bytes are capped while they are read."""
    limit = settings.max_upload_bytes
    content_type = request.content_type
    if content_type == "application/json":
        raw = await _read_capped(request.content.read, limit * 4 // 3 + 64 * 1024)
        loop = asyncio.get_running_loop()
        try:
            data = await loop.run_in_executor(None, json.loads, raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadRequest("the body is not valid JSON") from None
        except RecursionError:  # thousands of nested brackets
            raise BadRequest("the JSON body is nested too deeply") from None
        if not isinstance(data, dict):
            raise InvalidParams("the body must be a JSON object")
        try:
            body = models.JobCreateJSON.model_validate(data)
        except ValidationError as exc:
            raise InvalidParams(_validation_message(exc)) from None
        encoded = body.image_data.strip()
        if encoded.startswith("data:") and "," in encoded:  # tolerate a data: URL
            encoded = encoded.split(",", 1)[1]
        if len(encoded) > limit * 4 // 3 + 4:
            raise PayloadTooLarge(f"the photo is larger than {settings.max_upload_mb:g} MB")
        try:
            image = await loop.run_in_executor(None, decode_base64, encoded)
        except (binascii.Error, ValueError):
            raise BadRequest("image_data is not valid base64") from None
        return models.JobParams.model_validate(body.model_dump(exclude={"image_data"})), image
    if content_type == "multipart/form-data":
        try:
            fields, image_part = await _read_form(request, limit)
        except (ValueError, HttpProcessingError):  # no boundary, broken part headers...
            raise BadRequest("the multipart body could not be read") from None
        if image_part is None:
            raise InvalidParams("image: a file part named 'image' is required")
        try:
            # Form fields are text; pydantic converts "7" to an int but not "3" to Literal[3].
            data = {k: v for k, v in fields.items() if v != ""}
            if data.get("duration", "").isdigit():
                data["duration"] = int(data["duration"])
            params = models.JobParams.model_validate(data)
        except ValidationError as exc:
            raise InvalidParams(_validation_message(exc)) from None
        return params, image_part
    raise UnsupportedMedia("send application/json (image_data in base64) or multipart/form-data")


def decode_base64(text: str, chunk: int = 1 << 20) -> bytes:
    """Strict base64 in 1 MiB slices: binascii holds the GIL for a whole call, and one call on a
    20 MB photo would stall the event loop for over 100 ms even from an executor."""
    chunk -= chunk % 4
    return b"".join(
        base64.b64decode(text[start : start + chunk], validate=True)
        for start in range(0, len(text), chunk)
    )


async def _read_form(request: web.Request, limit: int) -> tuple[dict[str, str], bytes | None]:
    """The text fields and the `image` part of a multipart body."""
    fields: dict[str, str] = {}
    image: bytes | None = None
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            raise BadRequest("nested multipart bodies are not supported")
        if part.name == "image":
            image = await _read_capped(part.read_chunk, limit)
        elif part.name:
            try:
                value = await _read_capped(part.read_chunk, 4096)
            except PayloadTooLarge:
                raise InvalidParams(f"{part.name}: a form field is at most 4 KB") from None
            fields[part.name] = value.decode("utf-8", "replace")
    return fields, image


async def _read_capped(read: Callable[[int], Awaitable[bytes]], limit: int) -> bytes:
    """Read a body or part in chunks, refusing as soon as it passes `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await read(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the upload is larger than {limit / 1024 / 1024:.0f} MB")
        chunks.append(chunk)
    return b"".join(chunks)


def _status_body(
    service: Service, job: Job, position: int | None, eta: float | None
) -> models.JobStatusOut:
    """The status view of a job; position and ETA come with it (see JobQueue.status_of)."""
    progress, message = job.progress, job.message
    live = service.jobs.live_progress(job.job_id)
    if live is not None:
        progress, message = round(live[0], 1), live[1]
    return models.JobStatusOut(
        job_id=job.job_id,
        status=job.status,
        progress=progress,
        message=message,
        queue_position=position,
        eta_seconds=eta,
        created_at=job.created_at,
        started_at=job.started_at,
        completed_at=job.completed_at,
        attempts=job.attempts,
        error=job.error,
        renderer=job.renderer,
    )


async def job_status(request: web.Request) -> web.Response:
    service = _service(request)
    job, position, eta = await service.jobs.status_of(_job_id(request))
    return _json(_status_body(service, job, position, eta))


def _video_url(settings: Settings, job: Job) -> str | None:
    if job.status != "completed" or job.output_path is None:
        return None
    return f"{settings.public_url.rstrip('/')}/job/download/{job.job_id}"


async def job_result(request: web.Request) -> web.Response:
    service = _service(request)
    job = await service.jobs.get(_job_id(request))
    body = models.JobResultOut(
        job_id=job.job_id,
        status=job.status,
        parameters=models.JobParameters(
            duration=job.duration,
            resolution=job.resolution,
            motion_preset=job.motion_preset,
            aspect=job.aspect,
            strength=job.strength,
            steps=job.steps,
        ),
        seed=job.seed,
        frames=job.frames,
        fps=job.fps,
        width=job.width,
        height=job.height,
        duration=round(job.frames / job.fps, 3) if job.frames else None,
        size=job.size_bytes,
        renderer=job.renderer,
        render_seconds=round(job.render_seconds, 3) if job.render_seconds is not None else None,
        video_url=_video_url(service.settings, job),
    )
    return _json(body)


async def job_download(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    job = await service.jobs.get(_job_id(request))
    if job.status != "completed":
        raise Conflict(f"the video is not ready: the job is {job.status}")
    if job.output_path is None:
        raise Gone("the video was deleted after its retention period")
    path: Path = service.settings.data_dir / job.output_path
    exists = await asyncio.get_running_loop().run_in_executor(None, path.is_file)
    if not exists:
        raise Gone("the video is no longer stored")
    # FileResponse streams from an executor and answers Range requests itself.
    return web.FileResponse(
        path,
        headers={
            "Content-Type": "video/mp4",
            "Content-Disposition": f'attachment; filename="fanslymotion-{job.job_id}.mp4"',
        },
    )


async def job_preview(request: web.Request) -> web.Response:
    """The live preview of a running SVD job: a small MP4 of the frames made so far."""
    service = _service(request)
    job = await service.jobs.get(_job_id(request))
    path = checkpoints.work_dir(service.settings.data_dir, job.job_id) / checkpoints.PREVIEW
    try:
        # A few hundred KB at most, read whole: it is replaced (renamed over) after every pass.
        data = await asyncio.get_running_loop().run_in_executor(None, path.read_bytes)
    except FileNotFoundError:
        raise Conflict(f"no preview for this job (it is {job.status})") from None
    return web.Response(body=data, content_type="video/mp4", headers={"Cache-Control": "no-store"})


def _preview_url(settings: Settings, job_id: str) -> str:
    return f"{settings.public_url.rstrip('/')}/job/{job_id}/preview"


async def job_cancel(request: web.Request) -> web.Response:
    service = _service(request)
    job = await service.jobs.cancel(_job_id(request))
    return _json(_status_body(service, job, *await service.jobs.position_and_eta(job)))


async def jobs_list(request: web.Request) -> web.Response:
    service = _service(request)
    query = request.query

    def number(name: str, default: int | None, low: int, high: int) -> int | None:
        raw = query.get(name)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise InvalidParams(f"{name} must be an integer") from None
        if not low <= value <= high:
            raise InvalidParams(f"{name} must be between {low} and {high}")
        return value

    status = query.get("status") or None
    if status is not None and status not in (
        "queued",
        "processing",
        "completed",
        "failed",
        "cancelled",
    ):
        raise InvalidParams("status must be queued, processing, completed, failed or cancelled")
    limit = number("limit", 20, 1, 100) or 20
    offset = number("offset", 0, 0, 2**31) or 0
    user_id = number("user_id", None, 0, 2**53)
    jobs = await service.store.list_jobs(user_id=user_id, status=status, limit=limit, offset=offset)
    body = models.JobListOut(
        jobs=[
            models.JobSummary(
                job_id=j.job_id,
                user_id=j.user_id,
                status=j.status,
                progress=j.progress,
                duration=j.duration,
                resolution=j.resolution,
                motion_preset=j.motion_preset,
                created_at=j.created_at,
                completed_at=j.completed_at,
            )
            for j in jobs
        ],
        limit=limit,
        offset=offset,
    )
    return _json(body)


async def job_events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: the current state, then every change, closing at the terminal state."""
    service = _service(request)
    job_id = _job_id(request)
    async with service.jobs.subscribe() as events:
        job = await service.jobs.get(job_id)  # after subscribing: no change can slip between
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)

        async def send(kind: str, data: dict[str, Any]) -> None:
            await response.write(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())

        first = _status_body(service, job, *await service.jobs.position_and_eta(job))
        await send("status", first.model_dump())
        while not job.terminal:
            try:
                event = await asyncio.wait_for(events.get(), 15.0)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if is_closed(event):
                await send("closing", {"reason": "the service is stopping"})
                break
            if event.job.job_id != job_id:
                continue
            job = event.job
            data = {
                "job_id": job.job_id,
                "status": job.status,
                "progress": job.progress,
                "message": job.message,
                "eta_seconds": event.eta_seconds,
            }
            if event.kind == "status" and job.terminal:
                data["error"] = job.error
                await send(job.status, data)
            elif event.preview is not None:
                data["url"] = _preview_url(service.settings, job_id)
                data["frames"] = event.preview.frames
                data["passes_done"] = event.preview.passes_done
                data["passes"] = event.preview.passes
                data["size"] = event.preview.size_bytes
                await send("preview", data)
            else:
                await send(event.kind, data)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response


def create_app(service: Service) -> web.Application:
    settings = service.settings
    # JSON carries the photo in base64 (4/3 of its size); leave room for the other fields.
    app = web.Application(
        middlewares=[errors_middleware, auth_middleware],
        client_max_size=settings.max_upload_bytes * 4 // 3 + 1024 * 1024,
    )
    app[SERVICE] = service
    app.router.add_get("/", index)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_post("/job/create", create_job)
    app.router.add_get("/jobs", jobs_list)
    app.router.add_get("/job/status/{job_id}", job_status)
    app.router.add_get("/job/result/{job_id}", job_result)
    app.router.add_get("/job/download/{job_id}", job_download)
    app.router.add_post("/job/{job_id}/cancel", job_cancel)
    app.router.add_get("/job/{job_id}/events", job_events)
    app.router.add_get("/job/{job_id}/preview", job_preview)
    return app


async def serve(settings: Settings) -> int:
    """Run until SIGINT or SIGTERM; returns the process exit code."""
    loop = asyncio.get_running_loop()
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
