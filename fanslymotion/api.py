"""The HTTP API: the auth middleware, handlers, SSE, and the one route table that feeds the
router, the index at `/` and /openapi.json. Errors become answers in `api_errors`, requests are
read in `api_input`, files served by `api_files`; `create_app` is given the settings and the job
service (`ApiDeps`), nothing more."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from . import (
    __version__,
    api_files,
    api_input,
    api_story,
    api_stream,
    credentials,
    miniapp,
    models,
    openapi,
)
from . import web as web_page
from .api_errors import errors_middleware
from .config import Settings
from .errors import Conflict, InvalidParams, NotFound, Unauthorized
from .metrics import CONTENT_TYPE
from .models import JobRequest
from .openapi import Handler, Route, answer
from .owner import ADMIN, API, TELEGRAM, Caller
from .queue import JobEvent, JobQueue, is_closed
from .store import Job
from .vocabulary import TERMINAL

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiDeps:
    """What the handlers use: the settings, the job service, and the bot's status for /health
    (None without a bot). Only the composition root knows more."""

    settings: Settings
    jobs: JobQueue
    bot_status: Callable[[], dict[str, Any] | None]


SERVICE: web.AppKey[ApiDeps] = web.AppKey("api")


# -- middleware -------------------------------------------------------------------------------


CALLER: web.RequestKey[Caller] = web.RequestKey("caller", Caller)
"""Where the auth middleware leaves who sent the request."""


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Who sends a /job* or /jobs request. `Authorization: tma <initData>` is a Telegram user
    (the Mini App; with BOT_TOKEN set), acting for themselves only. Otherwise, with
    FANSLYMOTION_API_TOKEN set, the bearer token is needed (the admin, acting for any user);
    the video, the poster and the live preview also open with a signed link (a wrong or
    expired one is 403). Without a token every caller is the admin, as on a loopback box."""
    settings = request.app[SERVICE].settings
    request[CALLER] = ADMIN
    if not request.path.startswith("/job"):
        return await handler(request)
    scheme, _, launch_data = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "tma":
        if settings.bot_token is None:
            raise Unauthorized("Telegram sign-in is off on this server (no bot)")
        request[CALLER] = miniapp.caller(
            launch_data.strip(), settings.bot_token.get_secret_value(), settings.miniapp_max_age
        )
        return await handler(request)
    token = settings.api_token
    if token is None:
        return await handler(request)
    if request.match_info.handler in SIGNED and api_files.is_signed(request):
        api_files.check_signature(settings, _job_id(request), request)
        return await handler(request)
    # The operator's token (ADMIN_TOKEN) opens them too.
    if not credentials.matches(credentials.bearer(request.headers), (token, settings.admin_token)):
        raise Unauthorized("a valid bearer token is required")
    return await handler(request)


def is_admin(settings: Settings, request: web.Request) -> bool:
    """Whether the request's bearer token is ADMIN_TOKEN."""
    return credentials.matches(credentials.bearer(request.headers), (settings.admin_token,))


# -- handlers ---------------------------------------------------------------------------------


def _service(request: web.Request) -> ApiDeps:
    return request.app[SERVICE]


def _caller(request: web.Request) -> Caller:
    return request[CALLER]  # the auth middleware sets it on every request


async def _owned(request: web.Request, job_id: str) -> Job:
    """The job, when the caller may see it: another owner's job is 404, as a missing one."""
    job = await _service(request).jobs.get(job_id)
    if not _caller(request).may_see(job):
        raise NotFound("no such job")
    return job


def _json(
    model: BaseModel, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response(text=model.model_dump_json(), status=status, headers=headers)


def _job_id(request: web.Request) -> str:
    raw = request.match_info["job_id"]
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise NotFound("no such job") from None


async def index(request: web.Request) -> web.Response:
    extra, _ = request.app[EXTRA]  # the admin API's routes, listed as OpenAPI lists them
    endpoints = {f"{route.method} {route.path}": route.summary for route in [*ALL_ROUTES, *extra]}
    return _json(models.IndexOut(name="FanslyMotion", version=__version__, endpoints=endpoints))


def _not_taking_work(settings: Settings, body: dict[str, Any]) -> str | None:
    """Why the service cannot take work now, or None."""
    renderer = body.get("renderer") or {}
    if body.get("stopping"):
        return "the service is stopping"
    if body.get("database") == "unreachable":  # cluster mode: PostgreSQL is away
        return "the job database is unreachable"
    if renderer.get("status") == "failed":
        return f"the renderer failed: {renderer.get('reason', '')}".rstrip(": ")
    if body.get("free_disk_mb", float("inf")) < settings.min_free_mb:
        return f"free disk is below FANSLYMOTION_MIN_FREE_MB ({settings.min_free_mb} MB)"
    if body.get("paused"):
        return "processing is paused by an admin"
    waiting = int(body.get("queue_length") or 0)
    if body.get("mode") == "cluster" and waiting and renderer.get("status") == "waiting":
        return f"{waiting} job(s) waiting and no live worker to render them"
    return None


async def health(request: web.Request) -> web.Response:
    """200 while the service can take work, 503 with `ok: false` and the reason otherwise."""
    service = _service(request)
    body = await service.jobs.health()
    bot = service.bot_status()
    body["bot"] = (
        bot if bot is not None else {"enabled": False, "state": "off", "reason": "no bot token"}
    )
    reason = _not_taking_work(service.settings, body)
    body["ok"], body["reason"] = reason is None, reason
    if not _is_admin(request, service.settings):  # a stranger learns no job ids or hosts
        body = {"ok": body["ok"], "reason": reason}
    return web.json_response(body, status=200 if reason is None else 503)


def _is_admin(request: web.Request, settings: Settings) -> bool:
    """Whether the request may see everything: no API_TOKEN is set, or it carries it."""
    token = settings.api_token
    return token is None or credentials.matches(credentials.bearer(request.headers), (token,))


async def metrics(request: web.Request) -> web.Response:
    """Prometheus metrics; with API_TOKEN or METRICS_TOKEN set, one of them is needed."""
    service = _service(request)
    tokens = (service.settings.api_token, service.settings.metrics_token)
    if any(t is not None for t in tokens) and not credentials.matches(
        credentials.bearer(request.headers), tokens
    ):
        raise Unauthorized("a valid bearer token (API_TOKEN or METRICS_TOKEN) is required")
    await service.jobs.refresh_metrics()
    body = service.jobs.metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def openapi_document(
    auth: bool, extra: Sequence[Route] = (), extra_models: Sequence[type[BaseModel]] = ()
) -> dict[str, Any]:
    """What GET /openapi.json answers (`auth`: whether API_TOKEN is set; `extra`: the routes
    the composition root added, such as the admin API's, and their models)."""
    return openapi.document([*ALL_ROUTES, *extra], auth, extra_models)


async def openapi_json(request: web.Request) -> web.Response:
    extra, models_of_extra = request.app[EXTRA]
    auth = _service(request).settings.api_token is not None
    return web.json_response(openapi_document(auth, extra, models_of_extra))


async def create_job(request: web.Request) -> web.Response:
    service = _service(request)
    params, image, story = await api_story.read_create(request, service.settings)
    key = request.headers.get("Idempotency-Key")
    digest = None
    if key is not None:
        if not 0 < len(key) <= 200:
            raise InvalidParams("Idempotency-Key must be 1 to 200 characters")
        loop = asyncio.get_running_loop()
        digest = await loop.run_in_executor(None, api_input.request_digest, params, image)
        if story is not None:
            digest = api_story.digest(digest, story)
    owner = _caller(request).owner  # a Telegram user makes the job as themselves
    telegram: dict[str, Any] = {"source": API}
    if owner is not None:  # the chat with the bot is the user's id: the video is offered there
        telegram = {"source": TELEGRAM, "chat_id": owner.user_id}
    single = JobRequest(
        user_id=params.user_id if owner is None else owner.user_id,
        duration=params.duration,
        resolution=params.resolution,
        motion_preset=params.motion_preset,
        aspect=params.aspect,
        strength=params.strength,
        seed=params.seed,
        steps=params.steps,
        webhook_url=params.webhook_url,
        webhook_events=tuple(params.webhook_events or ()),
        fps=params.fps,
        shot=params.shot(),
        language=_caller(request).language,
        **telegram,
    )
    job, created = await service.jobs.submit(
        single if story is None else api_story.job_request(single, story, service.settings),
        image,
        idempotency_key=key,
        request_digest=digest,
        story_files=None if story is None else story.files,
        exempt=is_admin(service.settings, request),  # the operator's own jobs are not limited
    )
    position, eta = await service.jobs.position_and_eta(job)
    body = models.JobCreated(
        job_id=job.job_id,
        status=job.status,
        queue_position=position,
        eta_seconds=eta,
        estimated_time=eta,
        fps=job.fps,
        framing=job.framing,
        warnings=job.warnings,
    )
    location = f"{service.settings.public_url}/job/status/{job.job_id}"
    return _json(body, 201 if created else 200, {"Location": location} if created else None)


def _links(settings: Settings, job: Job, now: float) -> tuple[str | None, str | None]:
    """(video_url, poster_url): signed when API_TOKEN is set; None while there is no video."""
    fields = api_files.result_fields(settings, job, now)
    return fields["video_url"], fields["poster_url"]


def _status_body(
    service: ApiDeps,
    job: Job,
    position: int | None,
    eta: float | None,
    webhook: dict[str, Any] | None = None,
) -> models.JobStatusOut:
    """The status view of a job; position and ETA come with it (see JobQueue.status_of), the
    live progress from the running render."""
    # The row is validated once; what is added to it is ours and typed, so it goes in as a
    # copy (`model_copy(update=...)`): status polls are the most frequent request.
    extra: dict[str, Any] = {
        "queue_position": position,
        "eta_seconds": eta,
        **api_files.result_fields(service.settings, job, time.time()),
    }
    live = service.jobs.live_progress(job.job_id)
    if live is not None:
        extra.update(
            progress=round(live.percent, 1),
            message=live.message,
            phase=live.phase,
            phase_step=live.step,
            phase_steps=live.steps,
        )
    if webhook is not None:
        extra["webhook"] = models.WebhookState.model_validate(webhook)
    return models.JobStatusOut.model_validate(job).model_copy(update=extra)


async def _full_status(service: ApiDeps, job_id: str) -> models.JobStatusOut:
    """`GET /job/status`'s body: with the webhook's delivery state when the job has one."""
    job, position, eta = await service.jobs.status_of(job_id)
    hook = await service.jobs.webhook_summary(job.job_id) if job.webhook_url else None
    return _status_body(service, job, position, eta, hook)


async def job_status(request: web.Request) -> web.Response:
    job = await _owned(request, _job_id(request))
    return _json(await _full_status(_service(request), job.job_id))


async def job_result(request: web.Request) -> web.Response:
    service = _service(request)
    job = await _owned(request, _job_id(request))
    video_url, poster_url = _links(service.settings, job, time.time())
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
        video=api_files.video_state(job),
        video_url=video_url,
        poster_url=poster_url,
        framing=job.framing,
        warnings=job.warnings,
        story=job.story,
    )
    return _json(body)


async def job_download(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    job = await _owned(request, _job_id(request))
    api_files.check_video(job)
    assert job.output_path is not None
    disposition = f'attachment; filename="fanslymotion-{job.job_id}.mp4"'
    return await api_files.serve_file(
        request, service.settings.data_dir / job.output_path, "video/mp4", disposition
    )


async def job_preview(request: web.Request) -> web.Response:
    """The live preview of a running SVD job: a small MP4 of the frames made so far."""
    service = _service(request)
    job = await _owned(request, _job_id(request))
    path = service.jobs.preview_path(job.job_id)
    try:
        # A few hundred KB at most, read whole: it is replaced (renamed over) after every pass.
        data = await asyncio.get_running_loop().run_in_executor(None, path.read_bytes)
    except FileNotFoundError:
        raise Conflict(f"no preview for this job (it is {job.status})") from None
    return web.Response(body=data, content_type="video/mp4", headers={"Cache-Control": "no-store"})


async def job_poster(request: web.Request) -> web.StreamResponse:
    service = _service(request)
    job = await _owned(request, _job_id(request))
    return await api_files.serve_poster(request, service.settings, job)


async def job_cancel(request: web.Request) -> web.Response:
    service = _service(request)
    job = await service.jobs.cancel((await _owned(request, _job_id(request))).job_id)
    return _json(_status_body(service, job, *await service.jobs.position_and_eta(job)))


async def jobs_list(request: web.Request) -> web.Response:
    service = _service(request)
    query = api_input.jobs_query(request)
    owner = _caller(request).owner  # anyone but the admin lists their own jobs only
    jobs = await service.jobs.list_jobs(
        user_id=query.user_id if owner is None else owner.user_id,
        status=query.status,
        limit=query.limit,
        offset=query.offset,
        source=None if owner is None else owner.source,
    )
    body = models.JobListOut(
        jobs=[models.JobSummary.model_validate(j) for j in jobs],
        limit=query.limit,
        offset=query.offset,
    )
    return _json(body)


async def job_events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events (README, "Live events"): the current state, every change, the place
    in the queue while waiting, and exactly one terminal event, after which the stream ends."""
    service = _service(request)
    job_id = (await _owned(request, _job_id(request))).job_id
    resumed_at = request.headers.get("Last-Event-ID")
    async with service.jobs.subscribe() as events:
        body = await _full_status(service, job_id)  # after subscribing: nothing slips between
        if body.status in TERMINAL and resumed_at == api_stream.event_id(body):
            return web.Response(status=204)  # this client saw the end already: do not reconnect
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        stream = api_stream.Stream(response)
        if resumed_at != api_stream.event_id(body):
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
    service: ApiDeps, job_id: str, stream: api_stream.Stream, events: asyncio.Queue[JobEvent]
) -> None:
    """Relay the job's events until its terminal one (or the service stops)."""
    loop = asyncio.get_running_loop()
    refreshed = loop.time()
    while True:
        try:
            async with asyncio.timeout(api_stream.HEARTBEAT):
                event = await events.get()
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
                await stream.send_preview(
                    body, api_stream.preview_data(service.settings, event.preview)
                )
                continue
            body = _status_body(service, job, *await service.jobs.position_and_eta(job))
            await stream.send(job.status if job.terminal else "status", body)
            if job.terminal:
                return
        elif stream.last.status == "queued" and (
            event.kind == "status" or loop.time() - refreshed >= api_stream.QUEUE_REFRESH
        ):
            # Another job moved: this one's place or ETA may have changed with it.
            refreshed = loop.time()
            mine = await service.jobs.get(job_id)
            body = _status_body(service, mine, *await service.jobs.position_and_eta(mine))
            if api_stream.moved(stream.last, body):
                await stream.send(body.status if mine.terminal else "status", body)
                if mine.terminal:
                    return


_MP4: dict[str, Any] = {"video/mp4": {}}
_JPEG: dict[str, Any] = {"image/jpeg": {}}
_ERROR = answer("ErrorOut", "error")
_SIGNED_QUERY: list[dict[str, Any]] = [
    {
        "name": "expires",
        "in": "query",
        "required": False,
        "description": "a signed link's expiry (Unix seconds); with API_TOKEN set, a signed"
        " link opens without the bearer header",
        "schema": {"type": "integer"},
    },
    {
        "name": "sig",
        "in": "query",
        "required": False,
        "description": "a signed link's HMAC-SHA256 over the job id and the expiry",
        "schema": {"type": "string"},
    },
]


def _file(description: str, content: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {
            "Accept-Ranges": {"schema": {"type": "string"}},
            "ETag": {"schema": {"type": "string"}},
        },
        "content": content,
    }


_FILE_ERRORS = {
    "403": answer("ErrorOut", "a signed link that is wrong or expired"),
    "410": answer("ErrorOut", "the video was deleted after its retention period"),
    "416": {
        "description": "the range starts past the end of the file",
        "headers": {"Content-Range": {"schema": {"type": "string"}}},
        "content": {"application/json": {"schema": openapi.ref("ErrorOut")}},
    },
}

ROUTES: list[Route] = [
    Route("GET", "/", index, "this page", {"200": answer("IndexOut", "ok")}),
    Route(
        "GET",
        "/health",
        health,
        "service health, renderer state, queue length; 503 while it cannot take work (with"
        " API_TOKEN set, only ok and reason without it)",
        {
            "200": answer("HealthOut", "taking work"),
            "503": answer("HealthOut", "not taking work: `reason` says why"),
        },
    ),
    Route(
        "GET",
        "/metrics",
        metrics,
        "Prometheus metrics (with API_TOKEN or METRICS_TOKEN set: the bearer token)",
        {
            "200": {"description": "Prometheus text format", "content": {"text/plain": {}}},
            "401": answer("ErrorOut", "a token is set and was not sent"),
        },
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
        {
            "201": {
                **answer("JobCreated", "created"),
                "headers": {
                    "Location": {
                        "description": "the job's status URL",
                        "schema": {"type": "string"},
                    }
                },
            },
            "200": answer("JobCreated", "a repeat with the same Idempotency-Key and request"),
        },
        parameters=[
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "a repeat with the same key and request returns the first job"
                " (200); the same key with another request is 422 idempotency_key_reused. Keys"
                " are per user_id and live as long as the job's row",
                "schema": {"type": "string", "minLength": 1, "maxLength": 200},
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
        "the MP4 (HTTP Range and If-Range supported; opens with a signed link)",
        {
            "200": _file("the MP4", _MP4),
            "206": _file("a byte range", _MP4),
            **_FILE_ERRORS,
        },
        parameters=_SIGNED_QUERY,
    ),
    Route(
        "GET",
        "/job/{job_id}/poster",
        job_poster,
        "the video's first frame as JPEG (opens with a signed link)",
        {
            "200": _file("the poster", _JPEG),
            "206": _file("a byte range", _JPEG),
            **_FILE_ERRORS,
        },
        parameters=_SIGNED_QUERY,
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


# The page's routes (/camera, /web/config), listed and described with the API's.
PAGE_ROUTES = web_page.routes(_service)
ALL_ROUTES = ROUTES + PAGE_ROUTES

# The routes that also open with a signed link instead of the bearer header.
SIGNED: frozenset[Handler] = frozenset({job_download, job_poster, job_preview})


# Routes added by the composition root (the admin API) and the models they document.
EXTRA: web.AppKey[tuple[Sequence[Route], Sequence[type[BaseModel]]]] = web.AppKey("extra")


def create_app(
    settings: Settings,
    jobs: JobQueue,
    bot_status: Callable[[], dict[str, Any] | None],
    extra: Sequence[Route] = (),
    extra_models: Sequence[type[BaseModel]] = (),
) -> web.Application:
    # JSON carries the photo in base64 (4/3 of its size); leave room for the other fields.
    app = web.Application(
        middlewares=[errors_middleware, auth_middleware],
        client_max_size=api_input.json_body_limit(settings) + 1024 * 1024,
    )
    app[SERVICE] = ApiDeps(settings, jobs, bot_status)
    app[EXTRA] = (tuple(extra), tuple(extra_models))
    for route in [*ROUTES, *extra]:
        app.router.add_route(route.method, route.path, route.handler)
        if route.handler in SIGNED:  # HEAD: the same headers as GET, no body
            app.router.add_route("HEAD", route.path, route.handler)
    web_page.add_routes(app, PAGE_ROUTES, _service)  # `/` for browsers, its files, /camera
    return app
