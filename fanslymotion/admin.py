"""The admin API (`/admin/*`, README "Operating"): what runs and waits, recent jobs, owners and
their limits, the figures, pause and resume, an operator's retry. Every route needs
`Authorization: Bearer <ADMIN_TOKEN>`; without ADMIN_TOKEN set the operator's room is off (403).
`routes()` is the route table the composition root hands to the API's application."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from . import __version__, admin_models, api_files, stats, versions
from . import web as web_page
from .admin_models import AdminJob, Owner, OwnerRuleIn
from .api import is_admin
from .config import Settings
from .errors import Forbidden, InvalidParams, NotAvailable, NotFound, Unauthorized
from .limits import day_start
from .openapi import Handler, Route, answer
from .queue import JobQueue, is_closed
from .store import Job, OwnerRule, iso_utc, parse_time
from .store.port import OwnerStore
from .store.schema import MIGRATIONS
from .vocabulary import JobStatus

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdminDeps:
    """The settings and the job service (its store holds the owners' rules)."""

    settings: Settings
    jobs: JobQueue


ADMIN: web.AppKey[AdminDeps] = web.AppKey("admin")
HEARTBEAT = 15.0
LIVE_EVERY = 1.0  # seconds at least between two live overviews


def guarded(handler: Handler) -> Handler:
    """`handler` behind the admin token: 403 while ADMIN_TOKEN is unset, 401 without it."""

    async def check(request: web.Request) -> web.StreamResponse:
        settings = request.app[ADMIN].settings
        if settings.admin_token is None:
            raise Forbidden("the admin API is off: set FANSLYMOTION_ADMIN_TOKEN", code="admin_off")
        if not is_admin(settings, request):
            raise Unauthorized("the admin token is required")
        return await handler(request)

    return check


def _deps(request: web.Request) -> AdminDeps:
    return request.app[ADMIN]


def owner_tables(deps: AdminDeps) -> OwnerStore:
    """The operator's tables; 501 for a job service started without them."""
    if deps.jobs.owners is None:
        raise NotAvailable(
            "this job service was started without the owners' tables", code="no_owner_tables"
        )
    return deps.jobs.owners


def _json(model: BaseModel) -> web.Response:
    return web.json_response(text=model.model_dump_json())


def owner_of(source: str, user_id: int) -> Owner:
    return Owner(source=source, user_id=user_id, id=f"{source}:{user_id}")


def parse_owner(raw: str) -> tuple[str, int]:
    """`telegram:123` or `api:5` -> (source, user_id); 404 for anything else."""
    source, _, number = raw.partition(":")
    if source not in ("api", "telegram"):
        raise NotFound("no such user: an owner is source:user_id (api:5, telegram:123)")
    try:
        return source, int(number)
    except ValueError:
        raise NotFound("no such user: an owner is source:user_id (api:5, telegram:123)") from None


def job_view(settings: Settings, job: Job, now: float, **extra: Any) -> AdminJob:
    video_url = None
    if job.status == JobStatus.COMPLETED and job.output_path is not None:
        video_url = api_files.link(settings, f"/job/download/{job.job_id}", job.job_id, now)
    created = parse_time(job.created_at)
    age = round(now - created.timestamp(), 1) if created is not None else None
    return AdminJob(
        job_id=job.job_id,
        status=job.status,
        owner=owner_of(job.source, job.user_id),
        duration=job.duration,
        resolution=job.resolution,
        motion_preset=job.motion_preset,
        aspect=job.aspect,
        fps=job.fps,
        seed=job.seed,
        steps=job.steps,
        attempts=job.attempts,
        renderer=job.renderer,
        render_seconds=None if job.render_seconds is None else round(job.render_seconds, 2),
        error=job.error,
        progress=round(job.progress, 1),
        phase=job.phase,
        phase_step=job.phase_step,
        phase_steps=job.phase_steps,
        created_at=job.created_at,
        started_at=job.started_at,
        completed_at=job.completed_at,
        age_seconds=age,
        video_url=video_url,
        **extra,
    )


# -- views ------------------------------------------------------------------------------------


async def _running(deps: AdminDeps, ids: list[str], now: float) -> list[AdminJob]:
    """The running jobs with their live progress, ETA and live preview (where there is one)."""
    jobs = deps.jobs
    running = []
    for job_id in ids:
        job = jobs.running_job(job_id)
        if job is None:
            continue
        live = jobs.live_progress(job_id)
        if live is not None:
            job = job.with_progress(live)
        _, eta = await jobs.position_and_eta(job)
        loop = asyncio.get_running_loop()
        preview = jobs.preview_path(job_id)
        has_preview = await loop.run_in_executor(None, preview.is_file)
        url = api_files.link(deps.settings, f"/job/{job_id}/preview", job_id, now)
        running.append(
            job_view(
                deps.settings, job, now, eta_seconds=eta, preview_url=url if has_preview else None
            )
        )
    return running


async def overview_body(deps: AdminDeps) -> admin_models.Overview:
    settings = deps.settings
    health = await deps.jobs.health()
    now = time.time()
    loop = asyncio.get_running_loop()
    commit = await loop.run_in_executor(None, versions.commit)
    label = versions.label(__version__, commit)
    workers = [
        {**worker, "version_differs": bool(worker.get("version")) and worker["version"] != label}
        for worker in health.get("workers") or []
    ]
    return admin_models.Overview(
        mode="cluster" if health.get("mode") == "cluster" else "single",
        versions=admin_models.Versions(
            service=__version__,
            commit=commit,
            label=label,
            schema_version=len(MIGRATIONS),
            cluster_schema=health.get("cluster_schema"),
        ),
        renderer=dict(health.get("renderer") or {}),
        paused=bool(health.get("paused")),
        stopping=bool(health.get("stopping")),
        free_disk_mb=float(health.get("free_disk_mb") or 0.0),
        min_free_mb=settings.min_free_mb,
        disk_low=float(health.get("free_disk_mb") or 0.0) < settings.min_free_mb,
        queue_length=int(health.get("queue_length") or 0),
        running=await _running(deps, list(health.get("running_jobs") or []), now),
        workers=workers,
        daily_seconds_per_user=settings.daily_seconds_per_user,
        database=health.get("database"),
    )


async def overview(request: web.Request) -> web.Response:
    return _json(await overview_body(_deps(request)))


async def queue_view(request: web.Request) -> web.Response:
    deps = _deps(request)
    now = time.time()
    waiting, _ = await deps.jobs.store.queue(now)
    views = []
    for index, job in enumerate(waiting):
        position, eta = await deps.jobs.position_and_eta(job, waiting[:index])
        views.append(job_view(deps.settings, job, now, queue_position=position, eta_seconds=eta))
    return _json(admin_models.QueueOut(paused=deps.jobs.paused, jobs=views))


def _int_query(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParams(f"{name} must be a whole number") from None
    if not low <= value <= high:
        raise InvalidParams(f"{name} must be between {low} and {high}")
    return value


async def jobs_view(request: web.Request) -> web.Response:
    """The newest jobs first; `status`, `user` (source:user_id), `limit`, `offset`."""
    deps = _deps(request)
    status = request.query.get("status") or None
    if status is not None and status not in set(JobStatus):
        raise InvalidParams(f"status must be one of {', '.join(JobStatus)}")
    source, user_id = (
        parse_owner(request.query["user"]) if request.query.get("user") else (None, None)
    )
    limit = _int_query(request, "limit", 50, 1, 500)
    offset = _int_query(request, "offset", 0, 0, 10**9)
    if deps.jobs.owners is not None:
        rows = await deps.jobs.owners.recent_jobs(
            status=status, source=source, user_id=user_id, limit=limit, offset=offset
        )
    else:  # no owners' tables: the job store's own list (its user filter has no source)
        listed = await deps.jobs.store.list_jobs(
            user_id=user_id, status=status, limit=limit, offset=offset
        )
        rows = [job for job in listed if source is None or job.source == source]
    now = time.time()
    views = [job_view(deps.settings, job, now) for job in rows]
    return _json(admin_models.JobsOut(jobs=views, limit=limit, offset=offset))


def _job_id(request: web.Request) -> str:
    import uuid

    try:
        return str(uuid.UUID(request.match_info["job_id"]))
    except ValueError:
        raise NotFound("no such job") from None


async def retry_job(request: web.Request) -> web.Response:
    deps = _deps(request)
    job = await deps.jobs.retry(_job_id(request))
    log.info("job %s retried by an admin (from %s)", job.job_id, request.remote)
    position, eta = await deps.jobs.position_and_eta(job)
    view = job_view(deps.settings, job, time.time(), queue_position=position, eta_seconds=eta)
    return _json(view)


async def cancel_job(request: web.Request) -> web.Response:
    deps = _deps(request)
    job = await deps.jobs.cancel(_job_id(request))
    log.info("job %s cancelled by an admin (from %s)", job.job_id, request.remote)
    return _json(job_view(deps.settings, job, time.time()))


async def pause(request: web.Request) -> web.Response:
    deps = _deps(request)
    await deps.jobs.pause()
    log.info("processing paused by an admin through the API (from %s)", request.remote)
    return _json(admin_models.PausedOut(paused=True))


async def resume(request: web.Request) -> web.Response:
    deps = _deps(request)
    await deps.jobs.resume()
    log.info("processing resumed by an admin through the API (from %s)", request.remote)
    return _json(admin_models.PausedOut(paused=False))


def _owner_out(settings: Settings, row: dict[str, Any]) -> admin_models.OwnerOut:
    own = row["daily_seconds"]
    return admin_models.OwnerOut(
        owner=owner_of(row["source"], int(row["user_id"])),
        jobs_today=int(row["jobs_today"]),
        seconds_today=int(row["seconds_today"]),
        jobs_30d=int(row["jobs_30d"]),
        seconds_30d=int(row["seconds_30d"]),
        failed_30d=int(row["failed_30d"]),
        last_seen=row["last_seen"],
        blocked=bool(row["blocked"]),
        daily_seconds=own,
        daily_limit=own if own is not None else settings.daily_seconds_per_user,
        name=" ".join(part for part in (row.get("first_name"), row.get("last_name")) if part)
        or None,
        username=row.get("username") or None,
    )


async def _owners(deps: AdminDeps) -> list[dict[str, Any]]:
    today = day_start(datetime.now(UTC))
    month = today - timedelta(days=29)
    return await owner_tables(deps).owners(iso_utc(today), iso_utc(month))


async def users_view(request: web.Request) -> web.Response:
    deps = _deps(request)
    rows = await _owners(deps)
    return _json(
        admin_models.UsersOut(
            users=[_owner_out(deps.settings, row) for row in rows],
            daily_seconds_per_user=deps.settings.daily_seconds_per_user,
        )
    )


async def put_user(request: web.Request) -> web.Response:
    """Set an owner's block and daily limit; the fields not given stay as they were."""
    deps = _deps(request)
    source, user_id = parse_owner(request.match_info["owner"])
    try:
        body = OwnerRuleIn.model_validate_json(await request.read())
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidParams(f"{where}: {first['msg']}") from None
    store = owner_tables(deps)
    before = await store.owner_rule(source, user_id)
    given = body.model_fields_set
    rule = OwnerRule(
        daily_seconds=body.daily_seconds if "daily_seconds" in given else before.daily_seconds,
        blocked=bool(body.blocked)
        if "blocked" in given and body.blocked is not None
        else before.blocked,
    )
    await store.set_owner_rule(source, user_id, rule)
    log.info(
        "owner %s:%s set by an admin: blocked=%s daily_seconds=%s (from %s)",
        source,
        user_id,
        rule.blocked,
        rule.daily_seconds,
        request.remote,
    )
    rows = [
        row for row in await _owners(deps) if (row["source"], row["user_id"]) == (source, user_id)
    ]
    return _json(_owner_out(deps.settings, rows[0]))


async def stats_view(request: web.Request) -> web.Response:
    window = request.query.get("window", "24h")
    if window not in stats.WINDOWS:
        raise InvalidParams(f"window must be one of {', '.join(stats.WINDOWS)}")
    body = await stats.figures(owner_tables(_deps(request)), window)
    return _json(admin_models.StatsOut.model_validate(body))


async def live(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: the overview now and after every change (at most once a second
    while jobs make progress), until the client goes or the service stops."""
    deps = _deps(request)
    async with deps.jobs.subscribe() as events:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        await _send(response, await overview_body(deps))
        loop = asyncio.get_running_loop()
        sent = loop.time()
        while True:
            try:
                async with asyncio.timeout(HEARTBEAT):
                    event = await events.get()
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if is_closed(event):
                break
            if event.kind != "status" and loop.time() - sent < LIVE_EVERY:
                continue
            await _send(response, await overview_body(deps))
            sent = loop.time()
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response


async def _send(response: web.StreamResponse, body: admin_models.Overview) -> None:
    data = json.dumps(body.model_dump(mode="json"), separators=(",", ":"))
    await response.write(f"event: overview\ndata: {data}\n\n".encode())


# -- the route table --------------------------------------------------------------------------

_OWNER = {
    "name": "owner",
    "in": "path",
    "required": True,
    "description": "source:user_id, such as telegram:123 or api:5",
    "schema": {"type": "string", "pattern": "^(api|telegram):-?[0-9]+$"},
}
_CONFLICT = {"409": answer("ErrorOut", "not failed, or its photo is no longer kept")}


def _rule_body(schemas: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OwnerRuleIn"}}},
    }


# The admin API's routes, as the route table describes them (`routes()` guards each).
_TABLE: list[Route] = [
    Route(
        "GET",
        "/admin/overview",
        overview,
        "admin: what runs now, versions, workers",
        {"200": answer("Overview", "ok")},
    ),
    Route(
        "GET",
        "/admin/live",
        live,
        "admin: the overview live (Server-Sent Events)",
        {
            "200": {
                "description": "event stream of `overview` events",
                "content": {"text/event-stream": {}},
            }
        },
    ),
    Route(
        "GET",
        "/admin/queue",
        queue_view,
        "admin: waiting jobs in dispatch order with positions and ETAs",
        {"200": answer("QueueOut", "ok")},
    ),
    Route(
        "GET",
        "/admin/jobs",
        jobs_view,
        "admin: recent jobs (status, user, limit, offset)",
        {"200": answer("JobsOut", "ok")},
        parameters=[
            {
                "name": "status",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "enum": list(JobStatus)},
            },
            {
                "name": "user",
                "in": "query",
                "required": False,
                "schema": {"type": "string"},
                "description": "source:user_id",
            },
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
            },
            {
                "name": "offset",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 0, "default": 0},
            },
        ],
    ),
    Route(
        "POST",
        "/admin/jobs/{job_id}/retry",
        retry_job,
        "admin: a failed job again, as a new attempt (same seed, same photo)",
        {"200": answer("AdminJob", "queued again"), **_CONFLICT},
    ),
    Route(
        "POST",
        "/admin/jobs/{job_id}/cancel",
        cancel_job,
        "admin: cancel any job",
        {"200": answer("AdminJob", "ok")},
    ),
    Route(
        "POST",
        "/admin/pause",
        pause,
        "admin: pause processing (running jobs finish)",
        {"200": answer("PausedOut", "paused")},
    ),
    Route(
        "POST",
        "/admin/resume",
        resume,
        "admin: resume processing",
        {"200": answer("PausedOut", "resumed")},
    ),
    Route(
        "GET",
        "/admin/users",
        users_view,
        "admin: owners with jobs and seconds today and in 30 days, blocks and limits",
        {"200": answer("UsersOut", "ok")},
    ),
    Route(
        "PUT",
        "/admin/users/{owner}",
        put_user,
        "admin: block or unblock an owner, set its daily limit",
        {"200": answer("OwnerOut", "ok")},
        parameters=[_OWNER],
        body=_rule_body,
    ),
    Route(
        "GET",
        "/admin/stats",
        stats_view,
        "admin: renders per hour or day, median render time, queue wait, failure rate",
        {"200": answer("StatsOut", "ok")},
        parameters=[
            {
                "name": "window",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "enum": list(stats.WINDOWS), "default": "24h"},
            }
        ],
    ),
]


def routes() -> list[Route]:
    """The admin API's routes (each behind the admin token)."""
    return [
        Route(r.method, r.path, guarded(r.handler), r.summary, r.responses, r.parameters, r.body)
        for r in _TABLE
    ]


async def page(request: web.Request) -> web.StreamResponse:
    """`GET /admin`: the operator's page. It holds no data: it asks for the token, then reads
    the admin API."""
    policy = web_page.content_policy(_deps(request).settings.public_url)
    return web.FileResponse(
        web_page.STATIC_DIR / "admin.html",
        headers={
            "Content-Type": "text/html; charset=utf-8",
            "Cache-Control": "no-cache",
            "Content-Security-Policy": policy,
            "X-Robots-Tag": "noindex",
        },
    )


def install(app: web.Application, settings: Settings, jobs: JobQueue) -> None:
    """Give the admin routes (in the app's route table, see `api.create_app`) what they use,
    and serve the operator's page at /admin."""
    app[ADMIN] = AdminDeps(settings, jobs)
    app.router.add_get("/admin", page)
