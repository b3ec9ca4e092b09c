"""The HTTP API: middlewares, request parsing, handlers, SSE, and the one route table that
feeds the router, the index at `/` and /openapi.json. `app.Service` is what it serves."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, ValidationError

from . import __version__, checkpoints, models, openapi
from . import web as web_page
from .config import Settings
from .errors import (
    BadRequest,
    Conflict,
    FanslyError,
    InvalidParams,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMedia,
)
from .metrics import CONTENT_TYPE
from .models import TERMINAL
from .openapi import Handler, Route, answer
from .queue import JobEvent, JobRequest, is_closed
from .store import Job

if TYPE_CHECKING:
    from .app import Service
    from .renderer import Preview

log = logging.getLogger(__name__)

SERVICE: web.AppKey[Service] = web.AppKey("service")


class Gone(FanslyError):
    status = 410


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
    endpoints = {f"{route.method} {route.path}": route.summary for route in ROUTES}
    return _json(models.IndexOut(name="FanslyMotion", version=__version__, endpoints=endpoints))


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
    renderer = service.jobs.renderer
    for kind, value in (renderer.memory_stats() if renderer else {}).items():
        service.metrics.gpu_memory.labels(kind).set(value)
    return web.Response(body=service.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


def openapi_document(auth: bool) -> dict[str, Any]:
    """What GET /openapi.json answers (`auth`: whether API_TOKEN is set)."""
    return openapi.document(ROUTES, auth)


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(openapi_document(_service(request).settings.api_token is not None))


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
            webhook_url=params.webhook_url,
            webhook_events=tuple(params.webhook_events or ()),
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
            form: dict[str, Any] = dict(data)
            if "webhook_events" in form:  # a comma-separated list in a form
                form["webhook_events"] = [e.strip() for e in form["webhook_events"].split(",")]
            params = models.JobParams.model_validate(form)
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
    service: Service,
    job: Job,
    position: int | None,
    eta: float | None,
    webhook: dict[str, Any] | None = None,
) -> models.JobStatusOut:
    """The status view of a job; position and ETA come with it (see JobQueue.status_of), the
    live progress from the running render."""
    live = service.jobs.live_progress(job.job_id)
    if live is not None:
        job = replace(
            job,
            progress=round(live.percent, 1),
            message=live.message,
            phase=live.phase,
            phase_step=live.step,
            phase_steps=live.steps,
        )
    body = models.JobStatusOut.model_validate(job)
    body.queue_position, body.eta_seconds = position, eta
    if webhook is not None:
        body.webhook = models.WebhookState.model_validate(webhook)
    return body


def webhook_body(job: Job, event: str) -> dict[str, Any]:
    """A webhook's body: the status body of the job as it was when `event` happened."""
    del event  # the sender adds it; the body is the state
    return models.JobStatusOut.model_validate(job).model_dump(mode="json")


async def _full_status(service: Service, job_id: str) -> models.JobStatusOut:
    """`GET /job/status`'s body: with the webhook's delivery state when the job has one."""
    job, position, eta = await service.jobs.status_of(job_id)
    hook = await service.store.webhook_summary(job.job_id) if job.webhook_url else None
    return _status_body(service, job, position, eta, hook)


async def job_status(request: web.Request) -> web.Response:
    return _json(await _full_status(_service(request), _job_id(request)))


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
        parameters=models.JobParameters.model_validate(job),
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


async def job_cancel(request: web.Request) -> web.Response:
    service = _service(request)
    job = await service.jobs.cancel(_job_id(request))
    return _json(_status_body(service, job, *await service.jobs.position_and_eta(job)))


async def jobs_list(request: web.Request) -> web.Response:
    service = _service(request)
    try:
        query = models.JobsQuery.model_validate(
            {name: value for name, value in request.query.items() if value != ""}
        )
    except ValidationError as exc:
        raise InvalidParams(_validation_message(exc)) from None
    jobs = await service.store.list_jobs(
        user_id=query.user_id, status=query.status, limit=query.limit, offset=query.offset
    )
    body = models.JobListOut(
        jobs=[models.JobSummary.model_validate(j) for j in jobs],
        limit=query.limit,
        offset=query.offset,
    )
    return _json(body)


HEARTBEAT = 15.0
"""Seconds between comment lines on a quiet stream: proxies and browsers keep it open."""
QUEUE_REFRESH = 1.0
"""Seconds at least between two recomputations of a waiting job's place while another job
renders (its progress moves the ETA)."""


def _event_id(body: models.JobStatusOut) -> str:
    """An id that names the state an event carries: attempt, stage, progress and place. A
    client that reconnects with it gets nothing twice: the current state only if it differs."""
    stage = {"queued": 0, "processing": 1}.get(body.status, 2)
    place = body.queue_position or 0
    phase = f".{body.phase}{body.phase_step}" if body.phase else ""
    return f"{body.attempts}.{stage}.{round(body.progress * 10)}.{place}{phase}"


class _Stream:
    """One SSE response: events with ids, each carrying a status body."""

    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response
        self.last: models.JobStatusOut | None = None

    async def send(self, kind: str, body: models.JobStatusOut) -> None:
        data = json.dumps(body.model_dump(mode="json"), separators=(",", ":"))
        await self.response.write(
            f"id: {_event_id(body)}\nevent: {kind}\ndata: {data}\n\n".encode()
        )
        self.last = body

    async def send_preview(self, body: models.JobStatusOut, preview: dict[str, Any]) -> None:
        """A `preview` event: the status body with the new preview under `preview`."""
        data = json.dumps(
            {**body.model_dump(mode="json"), "preview": preview}, separators=(",", ":")
        )
        event_id = f"{_event_id(body)}.p{preview['passes_done']}"
        await self.response.write(f"id: {event_id}\nevent: preview\ndata: {data}\n\n".encode())
        self.last = body

    async def heartbeat(self) -> None:
        await self.response.write(b": keep-alive\n\n")


async def job_events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events (README, "Live events"): the current state, every change, the place
    in the queue while waiting, and exactly one terminal event, after which the stream ends."""
    service = _service(request)
    job_id = _job_id(request)
    resumed_at = request.headers.get("Last-Event-ID")
    async with service.jobs.subscribe() as events:
        body = await _full_status(service, job_id)  # after subscribing: nothing slips between
        if body.status in TERMINAL and resumed_at == _event_id(body):
            return web.Response(status=204)  # this client saw the end already: do not reconnect
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        stream = _Stream(response)
        if resumed_at != _event_id(body):
            await stream.send("status", body)
        stream.last = body
        if body.status not in TERMINAL:
            await _follow(service, job_id, stream, events)
        else:
            await stream.send(body.status, body)
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response


async def _follow(
    service: Service, job_id: str, stream: _Stream, events: asyncio.Queue[JobEvent]
) -> None:
    """Relay the job's events until its terminal one (or the service stops)."""
    loop = asyncio.get_running_loop()
    refreshed = loop.time()
    while True:
        try:
            event = await asyncio.wait_for(events.get(), HEARTBEAT)
        except TimeoutError:
            await stream.heartbeat()
            continue
        assert stream.last is not None
        if is_closed(event):
            await stream.send("closing", stream.last)
            return
        job = event.job
        if job.job_id == job_id:
            if event.kind == "progress":
                await stream.send("progress", _status_body(service, job, None, event.eta_seconds))
                continue
            if event.preview is not None:
                body = _status_body(service, job, None, event.eta_seconds)
                await stream.send_preview(body, _preview_data(service.settings, event.preview))
                continue
            body = _status_body(service, job, *await service.jobs.position_and_eta(job))
            await stream.send(job.status if job.terminal else "status", body)
            if job.terminal:
                return
        elif stream.last.status == "queued" and (
            event.kind == "status" or loop.time() - refreshed >= QUEUE_REFRESH
        ):
            # Another job moved: this one's place or ETA may have changed with it.
            refreshed = loop.time()
            mine = await service.jobs.get(job_id)
            body = _status_body(service, mine, *await service.jobs.position_and_eta(mine))
            if _moved(stream.last, body):
                await stream.send(body.status if mine.terminal else "status", body)
                if mine.terminal:
                    return


def _moved(before: models.JobStatusOut, now: models.JobStatusOut) -> bool:
    """Whether a waiting job's view changed enough to tell: place, state, or ETA by >= 1 s."""
    if (before.status, before.queue_position) != (now.status, now.queue_position):
        return True
    if (before.eta_seconds is None) != (now.eta_seconds is None):
        return True
    return abs((before.eta_seconds or 0.0) - (now.eta_seconds or 0.0)) >= 1.0


def _preview_data(settings: Settings, preview: Preview) -> dict[str, Any]:
    """What a `preview` event adds to the status body: where the preview is, how far it goes."""
    job_id = preview.path.parent.name
    return {
        "url": f"{settings.public_url.rstrip('/')}/job/{job_id}/preview",
        "frames": preview.frames,
        "passes_done": preview.passes_done,
        "passes": preview.passes,
        "size": preview.size_bytes,
    }


_MP4: dict[str, Any] = {"video/mp4": {}}

ROUTES: list[Route] = [
    Route("GET", "/", index, "this page", {"200": answer("IndexOut", "ok")}),
    Route(
        "GET",
        "/health",
        health,
        "service health, renderer state, queue length",
        {"200": answer("HealthOut", "ok")},
    ),
    Route(
        "GET",
        "/metrics",
        metrics,
        "Prometheus metrics",
        {"200": {"description": "Prometheus text format", "content": {"text/plain": {}}}},
    ),
    Route(
        "GET",
        "/openapi.json",
        openapi_json,
        "the OpenAPI 3.1 description of this API",
        {
            "200": {
                "description": "this document",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }
        },
    ),
    Route(
        "POST",
        "/job/create",
        create_job,
        "queue a job (JSON with base64 image_data, or multipart with an image part)",
        {"201": answer("JobCreated", "created"), "200": answer("JobCreated", "replayed")},
        parameters=[
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "maxLength": 200},
            },
        ],
        body=openapi.create_body,
    ),
    Route(
        "GET",
        "/jobs",
        jobs_list,
        "list jobs, newest first (user_id, status, limit, offset)",
        {"200": answer("JobListOut", "ok")},
        parameters=openapi.query_parameters(models.JobsQuery),
    ),
    Route(
        "GET",
        "/job/status/{job_id}",
        job_status,
        "status, progress and ETA",
        {"200": answer("JobStatusOut", "ok")},
    ),
    Route(
        "GET",
        "/job/result/{job_id}",
        job_result,
        "parameters and video facts of a job",
        {"200": answer("JobResultOut", "ok")},
    ),
    Route(
        "GET",
        "/job/download/{job_id}",
        job_download,
        "the MP4 (HTTP Range supported)",
        {
            "200": {"description": "the MP4", "content": _MP4},
            "206": {"description": "a byte range", "content": _MP4},
            "410": answer("ErrorOut", "error"),
            "416": {"description": "range not satisfiable"},
        },
    ),
    Route(
        "POST",
        "/job/{job_id}/cancel",
        job_cancel,
        "cancel a queued or running job",
        {"200": answer("JobStatusOut", "ok")},
    ),
    Route(
        "GET",
        "/job/{job_id}/events",
        job_events,
        "Server-Sent Events: status and progress until the job ends",
        {"200": {"description": "event stream", "content": {"text/event-stream": {}}}},
    ),
    Route(
        "GET",
        "/job/{job_id}/preview",
        job_preview,
        "a small MP4 of the frames made so far (SVD, while it renders)",
        {"200": {"description": "the preview", "content": _MP4}},
    ),
]


def create_app(service: Service) -> web.Application:
    settings = service.settings
    # JSON carries the photo in base64 (4/3 of its size); leave room for the other fields.
    app = web.Application(
        middlewares=[errors_middleware, auth_middleware],
        client_max_size=settings.max_upload_bytes * 4 // 3 + 1024 * 1024,
    )
    app[SERVICE] = service
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler)
    web_page.add_routes(app, _service)  # the web page: `/` for browsers, its files, /camera
    return app
