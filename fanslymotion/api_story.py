"""The story form of POST /job/create: several photos, optional music and logo, and a `story`.

Multipart: repeated `image` parts (shot i uses the i-th), an optional `audio` part, an
optional `logo` part (a small PNG) and a `story` field holding the story as JSON text, beside
the usual fields. JSON: `story` as an object whose `shots[i].image_data` are the photos in
base64, with `audio_data` and `logo_data` beside `story`. Every part is capped as it arrives,
and the whole request by MAX_STORY_MB (413 names the limit); a request without a story is the
single-photo form, read exactly as before (api_input).
"""

from __future__ import annotations

import asyncio
import binascii
import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import ValidationError

from . import api_input, models, music, overlay
from .config import Settings
from .errors import BadRequest, InvalidParams, PayloadTooLarge
from .models import JobRequest
from .story import Story, parse_story
from .story_intake import StoryFiles

FORM_FIELDS = api_input.JOB_FIELDS | {"story"}
"""The text fields a form may have beside its file parts (image, audio, logo)."""
STORY_FIELD_BYTES = 64 * 1024
"""The `story` JSON text of a form: ten shots with captions and keyframed cameras fit."""


@dataclass(frozen=True)
class StoryCreate:
    """A story request read and checked: its parameters, first photo, story and other files."""

    params: models.JobParams
    image: bytes
    story: Story
    files: StoryFiles
    digest_text: str


def whole_cap(settings: Settings) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request is larger than MAX_STORY_MB ({settings.max_story_mb:g} MB) in all",
        code="request_too_large",
    )


async def read_create(
    request: web.Request, settings: Settings
) -> tuple[models.JobParams, bytes, StoryCreate | None]:
    """Either form of /job/create, a story or a single photo."""
    if request.content_type == "multipart/form-data":
        try:
            fields, parts = await _read_parts(request, settings)
        except (ValueError, HttpProcessingError):
            raise BadRequest("the multipart body could not be read") from None
        return _from_form(settings, fields, parts)
    if request.content_type == "application/json":
        return await _from_json(request, settings)
    return (*(await api_input.read_create(request, settings)), None)


async def _read_parts(
    request: web.Request, settings: Settings
) -> tuple[dict[str, str], dict[str, list[bytes]]]:
    """Text fields, and the file parts by name (image, audio, logo), each capped."""
    caps = {
        "image": (
            settings.max_upload_bytes,
            f"the photo is larger than {settings.max_upload_mb:g} MB",
        ),
        "audio": (
            music.MAX_AUDIO_BYTES,
            f"the audio is larger than {music.MAX_AUDIO_BYTES // 10**6} MB",
        ),
        "logo": (
            overlay.MAX_LOGO_BYTES,
            f"the logo is larger than {overlay.MAX_LOGO_BYTES // 1000} kB",
        ),
    }
    fields: dict[str, str] = {}
    parts: dict[str, list[bytes]] = {}
    budget = settings.max_story_bytes
    # The whole body is capped, fields included (issue 24): said up front, or as it comes.
    whole = settings.max_story_bytes + api_input.FORM_ALLOWANCE
    if request.content_length is not None and request.content_length > whole:
        raise whole_cap(settings)
    reader = await request.multipart()
    count = 0
    while (part := await reader.next()) is not None:
        count += 1
        if count > api_input.MAX_PARTS or request.content.total_bytes > whole:
            raise whole_cap(settings)
        if not isinstance(part, BodyPartReader):
            raise BadRequest("nested multipart bodies are not supported")
        name = part.name or ""
        if name and name not in caps and name not in FORM_FIELDS:
            raise api_input.unknown_part(name, FORM_FIELDS)
        if name in caps:
            limit, words = caps[name]
            data = await _capped(part, min(limit, budget), limit, words, settings)
            parts.setdefault(name, []).append(data)
        elif name:
            limit = STORY_FIELD_BYTES if name == "story" else 4096
            try:
                data = await _capped(part, limit, limit, "", settings)
            except PayloadTooLarge:
                raise InvalidParams(f"{name}: a form field is at most {limit // 1024} KB") from None
            fields[name] = data.decode("utf-8", "replace")
        else:
            continue
        budget -= len(data)
    return fields, parts


async def _capped(
    part: BodyPartReader, limit: int, own: int, words: str, settings: Settings
) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await part.read_chunk(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(words) if size > own else whole_cap(settings)
        chunks.append(chunk)
    return b"".join(chunks)


def _from_form(
    settings: Settings, fields: dict[str, str], parts: dict[str, list[bytes]]
) -> tuple[models.JobParams, bytes, StoryCreate | None]:
    images = parts.get("image", [])
    if not images:
        raise InvalidParams("image: a file part named 'image' is required")
    text = fields.pop("story", None)
    if text is None:
        if len(images) > 1 or "audio" in parts or "logo" in parts:
            raise InvalidParams("story: several photos, audio or a logo need a 'story' field")
        return _single_params(fields), images[0], None
    try:
        body = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise InvalidParams("story: a form field holding a JSON object") from None
    data = api_input.form_values(fields)
    if "webhook_events" in data:
        data["webhook_events"] = [e.strip() for e in data["webhook_events"].split(",")]
    audio = (parts.get("audio") or [b""])[-1]
    logo = (parts.get("logo") or [b""])[-1]
    return _story(settings, data, body, images, audio, logo)


def _single_params(fields: dict[str, str]) -> models.JobParams:
    data = api_input.form_values(fields)
    if "webhook_events" in data:
        data["webhook_events"] = [e.strip() for e in data["webhook_events"].split(",")]
    try:
        return models.JobParams.model_validate(data)
    except ValidationError as exc:
        raise InvalidParams(api_input.validation_message(exc)) from None


async def _from_json(
    request: web.Request, settings: Settings
) -> tuple[models.JobParams, bytes, StoryCreate | None]:
    raw = await _read_json_body(request, settings)
    loop = asyncio.get_running_loop()
    data = await loop.run_in_executor(None, api_input.parse_json, raw)
    if not isinstance(data, dict):
        raise InvalidParams("the body must be a JSON object")
    api_input.refuse_decimals(data)  # 3.0 is no duration, NaN is named (issue 24)
    if "story" not in data:
        if len(raw) > api_input.json_body_limit(settings):  # a single photo's cap, as before
            raise PayloadTooLarge(f"the photo is larger than {settings.max_upload_mb:g} MB")
        return (*(await api_input.create_from_json(data, settings)), None)
    body = data.pop("story")
    if not isinstance(body, dict) or not isinstance(body.get("shots"), list):
        raise InvalidParams("story must be an object with a list of shots")
    images = []
    for i, shot in enumerate(body["shots"]):
        text = shot.pop("image_data", None) if isinstance(shot, dict) else None
        images.append(await _base64(text, f"shots[{i}].image_data", settings.max_upload_bytes))
    audio = await _base64(data.pop("audio_data", None), "audio_data", music.MAX_AUDIO_BYTES, True)
    logo = await _base64(data.pop("logo_data", None), "logo_data", overlay.MAX_LOGO_BYTES, True)
    return _story(settings, data, body, images, audio, logo)


async def _read_json_body(request: web.Request, settings: Settings) -> bytes:
    limit = max(settings.max_story_bytes * 4 // 3 + 64 * 1024, api_input.json_body_limit(settings))
    chunks: list[bytes] = []
    size = 0
    while chunk := await request.content.read(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise whole_cap(settings)
        chunks.append(chunk)
    return b"".join(chunks)


async def _base64(text: Any, where: str, limit: int, optional: bool = False) -> bytes:
    if text is None and optional:
        return b""
    if not isinstance(text, str) or not text:
        raise InvalidParams(f"{where}: the file in base64")
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(None, api_input.decode_base64, text, 1 << 20, limit)
    except api_input.TooLarge:
        raise PayloadTooLarge(f"{where}: larger than {limit / 2**20:g} MB") from None
    except (binascii.Error, ValueError):
        raise BadRequest(f"{where} is not valid base64") from None


def _story(
    settings: Settings,
    data: dict[str, Any],
    body: Any,
    images: list[bytes],
    audio: bytes,
    logo: bytes,
) -> tuple[models.JobParams, bytes, StoryCreate]:
    """The story checked against its photos, and the job's parameters: the top level's fields,
    with shot 0's motion and the story's length standing for a single photo's."""
    if sum(map(len, images)) + len(audio) + len(logo) > settings.max_story_bytes:
        raise whole_cap(settings)
    story = parse_story(body, logo=logo, images=len(images))
    data = {k: v for k, v in data.items() if k not in ("duration", "motion_preset")}
    try:
        params = models.JobParams.model_validate(
            {**data, "duration": 3, "motion_preset": story.shots[0].motion}
        )
    except ValidationError as exc:
        raise InvalidParams(api_input.validation_message(exc)) from None
    digest = hashlib.sha256()
    digest.update(story.to_json().encode())
    for blob in (*images, audio, logo):
        digest.update(hashlib.sha256(blob).digest())
    files = StoryFiles(tuple(images[1:]), audio, logo)
    return params, images[0], StoryCreate(params, images[0], story, files, digest.hexdigest())


def digest(base: str, story: StoryCreate) -> str:
    """An idempotency key's digest for a story: the parameters', the story's and every file's."""
    return hashlib.sha256(f"{base}\n{story.digest_text}".encode()).hexdigest()


def job_request(single: JobRequest, story: StoryCreate, settings: Settings) -> JobRequest:
    """The request of a story job: shot 0's motion and aim, the story's whole length."""
    fps = single.fps or settings.fps
    first = story.story.shots[0]
    seconds = story.story.timeline(fps).seconds
    return replace(
        single,
        duration=max(1, round(seconds)),
        motion_preset=first.motion,
        strength=first.strength,
        shot=first.aim,
        story=story.story,
    )
