"""What the API serves from the data folder: the MP4 (byte ranges, If-Range per RFC 9110), the
poster (the first frame as JPEG, made once), and the signed links that let a browser or a
Telegram client fetch them without the bearer header."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import math
import os
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from multidict import CIMultiDict

from . import datadir
from .config import Settings
from .errors import Conflict, Forbidden, Gone, RangeNotSatisfiable
from .store import Job
from .vocabulary import DONE

# Links are valid for LINK_TTL seconds, rounded up to this step so that a client polling the
# result gets the same URL for a while (its browser cache can keep the video).
_LINK_STEP = 300


def _link_key(settings: Settings) -> bytes:
    assert settings.api_token is not None
    return _derived_key(settings.api_token.get_secret_value())


@functools.lru_cache(maxsize=4)
def _derived_key(token: str) -> bytes:
    # A key of its own, derived from the token: a link never carries anything of the token.
    return hmac.new(token.encode(), b"fanslymotion signed links v1", hashlib.sha256).digest()


def _signature(settings: Settings, job_id: str, expires: int) -> str:
    message = f"{job_id}.{expires}".encode()
    return hmac.new(_link_key(settings), message, hashlib.sha256).hexdigest()


def link(settings: Settings, path: str, job_id: str, now: float | None = None) -> str:
    """`PUBLIC_URL` + `path`, signed (expires, sig) for `job_id` when API_TOKEN is set."""
    url = f"{settings.public_url}{path}"
    if settings.api_token is None:
        return url
    moment = time.time() if now is None else now
    expires = math.ceil((moment + settings.link_ttl) / _LINK_STEP) * _LINK_STEP
    return f"{url}?expires={expires}&sig={_signature(settings, job_id, expires)}"


def video_state(job: Job) -> str:
    """`video` of a status body: pending, ready, deleted (pruned) or none."""
    if job.status == "completed":
        return "ready" if job.output_path is not None else "deleted"
    return "pending" if job.status in ("queued", "processing") else "none"


def result_fields(settings: Settings, job: Job, now: float) -> dict[str, Any]:
    """What a status body says of the result: `video`, and `video_url` and `poster_url`
    (signed when API_TOKEN is set; None while there is no video). A completed job's body
    says so whole: progress 100, phase `done` (as both stores write it; a row of an older
    version may still hold its last report)."""
    fields: dict[str, Any] = {"video": video_state(job), "video_url": None, "poster_url": None}
    if fields["video"] == "ready":
        fields["video_url"] = link(settings, f"/job/download/{job.job_id}", job.job_id, now)
        fields["poster_url"] = link(settings, f"/job/{job.job_id}/poster", job.job_id, now)
    if job.status == "completed":
        fields.update(progress=100.0, message="done", phase=DONE, phase_step=0, phase_steps=0)
    return fields


def is_signed(request: web.Request) -> bool:
    return "sig" in request.query or "expires" in request.query


def check_signature(settings: Settings, job_id: str, request: web.Request) -> None:
    """A signed link's query: a wrong or expired signature is 403, whatever else is sent."""
    raw_expires, given = request.query.get("expires", ""), request.query.get("sig", "")
    try:
        expires = int(raw_expires)
    except ValueError:
        raise Forbidden("this link is not valid", code="link_invalid") from None
    expected = _signature(settings, job_id, expires)
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Forbidden("this link is not valid", code="link_invalid")
    if expires < time.time():
        raise Forbidden("this link has expired: ask for the result again", code="link_expired")


# -- the video ----------------------------------------------------------------------------------


def check_video(job: Job) -> None:
    """409 with a code that says why there is no video yet (or none at all), 410 once pruned."""
    if job.status in ("queued", "processing"):
        raise Conflict(f"the video is not ready: the job is {job.status}", code="not_ready")
    if job.status == "failed":
        raise Conflict("there is no video: the job failed", code="job_failed")
    if job.status == "cancelled":
        raise Conflict("there is no video: the job was cancelled", code="job_cancelled")
    if job.output_path is None:
        raise Gone("the video was deleted after its retention period", code="video_deleted")


@dataclass(frozen=True)
class _Stat:
    size: int
    mtime: float
    etag: str  # aiohttp's FileResponse ETag, quotes included


def _stat(path: Path) -> _Stat | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return _Stat(st.st_size, st.st_mtime, f'"{st.st_mtime_ns:x}-{st.st_size:x}"')


def _if_range_holds(value: str, stat: _Stat) -> bool:
    """RFC 9110 13.1.5: an entity tag must match strongly (a weak one never does); a date must
    be exactly the Last-Modified date. Otherwise the whole file is sent, not the range."""
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == stat.etag
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return False
    # aiohttp writes Last-Modified as the modification time rounded up to the second.
    return moment.tzinfo is not None and int(moment.timestamp()) == math.ceil(stat.mtime)


def _range_of(request: web.Request) -> slice | None:
    """The one byte range asked for, or None for none, a malformed one or several (aiohttp
    serves a single range; RFC 9110 lets a server ignore the others and send the file)."""
    try:
        wanted = request.http_range
    except ValueError:
        return None
    return wanted if wanted.start is not None else None


async def serve_file(
    request: web.Request, path: Path, content_type: str, disposition: str
) -> web.StreamResponse:
    """The file with ranges, If-Range and validators; a JSON 416 for a range past the end."""
    stat = await asyncio.get_running_loop().run_in_executor(None, _stat, path)
    if stat is None:
        raise Gone("the video is no longer stored", code="video_deleted")
    headers = {"Content-Type": content_type, "Content-Disposition": disposition}
    response = web.FileResponse(path, headers=headers)
    if hdrs.RANGE not in request.headers:
        return response
    wanted = _range_of(request)
    if_range = request.headers.get(hdrs.IF_RANGE)
    if wanted is not None and (if_range is None or _if_range_holds(if_range, stat)):
        if (wanted.start < 0 and stat.size == 0) or wanted.start >= stat.size:
            raise RangeNotSatisfiable(
                f"the range starts past the end of the file ({stat.size} bytes)",
                headers={"Content-Range": f"bytes */{stat.size}"},
            )
        if if_range is None:
            return response
    # FileResponse judges If-Range by date only (<=, not exactly equal), so it gets the request
    # without it, and without the Range when that is to be ignored.
    headers_seen = CIMultiDict(request.headers)
    headers_seen.popall(hdrs.IF_RANGE, None)
    if wanted is None or (if_range is not None and not _if_range_holds(if_range, stat)):
        headers_seen.popall(hdrs.RANGE, None)
    response = _FileResponse(path, headers=headers, view=request.clone(headers=headers_seen))
    return response


class _FileResponse(web.FileResponse):
    """A FileResponse that prepares itself against `view`: the request as it should judge it
    (aiohttp calls prepare with the real request once the handler returned)."""

    def __init__(self, path: Path, *, headers: dict[str, str], view: web.BaseRequest) -> None:
        super().__init__(path, headers=headers)
        self._view = view

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        return await super().prepare(self._view)


# -- the poster -------------------------------------------------------------------------------


async def serve_poster(request: web.Request, settings: Settings, job: Job) -> web.StreamResponse:
    """The first frame as JPEG, extracted once (ffmpeg in an executor) and kept in posters/."""
    check_video(job)
    assert job.output_path is not None
    source = settings.data_dir / job.output_path
    poster = datadir.poster_path(settings, job.job_id)
    loop = asyncio.get_running_loop()
    if not await loop.run_in_executor(None, source.is_file):
        raise Gone("the video is no longer stored", code="video_deleted")
    await loop.run_in_executor(None, datadir.make_poster, source, poster)
    disposition = f'inline; filename="fanslymotion-{job.job_id}.jpg"'
    return await serve_file(request, poster, "image/jpeg", disposition)
