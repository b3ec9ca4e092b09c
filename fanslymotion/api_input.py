"""Reading requests: the two forms of /job/create (JSON with a base64 photo, or multipart), the
/jobs query, and the request digest behind idempotency keys. Every cap is checked while the
bytes arrive, and CPU-heavy steps (json.loads, base64, hashing) run in an executor."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from pydantic import BaseModel, ValidationError

from . import models
from .config import Settings
from .errors import BadRequest, InvalidParams, PayloadTooLarge, UnsupportedMedia

# Base64 with a line break every 76 characters (what `base64` and most encoders write) is
# 78/76 of the plain text; leave that much room before refusing a body as too large.
_WRAPPED = 78 / 76


WHOLE_NUMBERS = ("duration", "fps")
"""Fields whose choices are whole numbers: `3.0` is refused as `"3"` is (pydantic's Literal
would take 3.0 as 3, while strict JSON types refuse a float for every other int field)."""
MAX_PARTS = 64
"""Parts a multipart body may have: one per field and the photo, with room to spare."""
FORM_ALLOWANCE = 256 * 1024
"""Bytes a multipart body may have beyond the photo's cap: every field, part headers, boundaries."""


def _not_a_number(value: object) -> str | None:
    """ "NaN" or "Infinity" when a value is one (a float, or the text of one), else None."""
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity"
    return None


def validation_message(exc: ValidationError, empty: str = "body") -> str:
    """pydantic's errors in one line, field by field (NaN and Infinity named as such)."""
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or empty
        odd = _not_a_number(error.get("input"))
        message = f"{odd} is not a number here" if odd is not None else error["msg"]
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def refuse_decimals(data: dict[str, Any]) -> None:
    """422 for a whole-number field written with a decimal point (3.0)."""
    for name in WHOLE_NUMBERS:
        value = data.get(name)
        odd = _not_a_number(value) if isinstance(value, float) else None
        if odd is not None:
            raise InvalidParams(f"{name}: {odd} is not a number here")
        if isinstance(value, float):
            raise InvalidParams(f"{name}: a whole number is expected (3, not 3.0)")


def parse_json(raw: bytes) -> Any:
    """A JSON body (400 when it is none). NaN and Infinity, which Python's json takes, are
    left for the fields to refuse by name (see validation_message)."""
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("the body is not valid JSON") from None
    except RecursionError:  # thousands of nested brackets
        raise BadRequest("the JSON body is nested too deeply") from None


JOB_FIELDS = frozenset(models.JobParams.model_fields)


def _too_large(settings: Settings) -> PayloadTooLarge:
    return PayloadTooLarge(f"the photo is larger than {settings.max_upload_mb:g} MB")


def json_body_limit(settings: Settings) -> int:
    """The most bytes a JSON body may have: the photo's cap in wrapped base64, and 64 KB."""
    return int(settings.max_upload_bytes * 4 / 3 * _WRAPPED) + 64 * 1024


async def read_create(request: web.Request, settings: Settings) -> tuple[models.JobParams, bytes]:
    """Parse either form of /job/create; the photo's bytes are capped while they are read."""
    content_type = request.content_type
    if content_type == "application/json":
        return await _read_json(request, settings)
    if content_type == "multipart/form-data":
        try:
            fields, image = await _read_form(request, settings, JOB_FIELDS)
        except (ValueError, HttpProcessingError):  # no boundary, broken part headers...
            raise BadRequest("the multipart body could not be read") from None
        if image is None:
            raise InvalidParams("image: a file part named 'image' is required")
        try:
            data = form_values(fields)
            if "webhook_events" in data:  # a comma-separated list in a form
                data["webhook_events"] = [e.strip() for e in data["webhook_events"].split(",")]
            params = models.JobParams.model_validate(data)
        except ValidationError as exc:
            raise InvalidParams(validation_message(exc)) from None
        return params, image
    raise UnsupportedMedia("send application/json (image_data in base64) or multipart/form-data")


def form_values(fields: dict[str, str]) -> dict[str, Any]:
    """A form's text fields as a model wants them: empty ones left out; pydantic converts "7"
    to an int but not "3" to Literal[3]; focus and camera are objects, sent as JSON text."""
    data: dict[str, Any] = {k: v for k, v in fields.items() if v != ""}
    for name in ("duration", "fps"):
        if data.get(name, "").isdigit():
            data[name] = int(data[name])
    for name in ("focus", "camera"):
        if name in data:
            data[name] = _json_field(name, data[name])
    return data


async def read_form(
    request: web.Request, settings: Settings, known: frozenset[str]
) -> tuple[dict[str, str], bytes | None]:
    """A multipart body's text fields (those named in `known`) and its `image` part (None
    when it has none)."""
    try:
        return await _read_form(request, settings, known)
    except (ValueError, HttpProcessingError):
        raise BadRequest("the multipart body could not be read") from None


async def read_json_photo(
    request: web.Request, settings: Settings
) -> tuple[dict[str, Any], bytes | None]:
    """A JSON object body, its `image_data` decoded (and left out of the fields) when given."""
    raw = await _read_capped(request.content.read, json_body_limit(settings), _too_large(settings))
    loop = asyncio.get_running_loop()
    data = await loop.run_in_executor(None, parse_json, raw)
    if not isinstance(data, dict):
        raise InvalidParams("the body must be a JSON object")
    refuse_decimals(data)
    text = data.pop("image_data", None)
    if text is None:
        return data, None
    if not isinstance(text, str):
        raise InvalidParams("image_data: the photo in base64")
    try:
        image = await loop.run_in_executor(
            None, decode_base64, text, 1 << 20, settings.max_upload_bytes
        )
    except TooLarge:
        raise _too_large(settings) from None
    except (binascii.Error, ValueError):
        raise BadRequest("image_data is not valid base64") from None
    return data, image


def _json_field(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise InvalidParams(f"{name}: a form field holding a JSON object") from None


async def _read_json(request: web.Request, settings: Settings) -> tuple[models.JobParams, bytes]:
    raw = await _read_capped(request.content.read, json_body_limit(settings), _too_large(settings))
    loop = asyncio.get_running_loop()
    data = await loop.run_in_executor(None, parse_json, raw)
    if not isinstance(data, dict):
        raise InvalidParams("the body must be a JSON object")
    refuse_decimals(data)
    return await create_from_json(data, settings)


async def create_from_json(
    data: dict[str, Any], settings: Settings
) -> tuple[models.JobParams, bytes]:
    """The single-photo JSON form's object checked, its photo decoded."""
    loop = asyncio.get_running_loop()
    try:
        # Strict: JSON has types, so `true` is no user id and "3" no duration.
        body = models.JobCreateJSON.model_validate(data, strict=True)
    except ValidationError as exc:
        raise InvalidParams(validation_message(exc)) from None
    try:
        image = await loop.run_in_executor(
            None, decode_base64, body.image_data, 1 << 20, settings.max_upload_bytes
        )
    except TooLarge:
        raise _too_large(settings) from None
    except (binascii.Error, ValueError):
        raise BadRequest("image_data is not valid base64") from None
    if len(image) > settings.max_upload_bytes:
        raise _too_large(settings)
    return models.JobParams.model_validate(body.model_dump(exclude={"image_data"})), image


class TooLarge(Exception):
    """The base64 text holds more bytes than the limit (found before decoding it all)."""


def decode_base64(text: str, chunk: int = 1 << 20, limit: int | None = None) -> bytes:
    """Strict base64, with a data: URL prefix and whitespace (line breaks) allowed, decoded in
    1 MiB slices: binascii and str.split hold the GIL for a whole call, and one call on a 20 MB
    photo would stall the event loop for over 100 ms even from an executor. Over `limit` bytes
    it raises TooLarge as soon as the text says so."""
    text = text.strip()
    if text.startswith("data:") and "," in text[:200]:
        text = text.split(",", 1)[1]
    chunk = max(4, chunk - chunk % 4)
    decoded: list[bytes] = []
    carry = ""  # characters of an incomplete quantum, left over by the previous slice
    seen = 0  # base64 characters so far, whitespace left out
    for start in range(0, len(text), chunk):
        piece = text[start : start + chunk]
        if any(space in piece for space in " \t\r\n"):
            piece = "".join(piece.split())
        seen += len(piece)
        if limit is not None and (seen - 3) * 3 // 4 > limit:  # padding makes up to 2 less
            raise TooLarge
        piece = carry + piece
        whole = len(piece) - len(piece) % 4
        decoded.append(base64.b64decode(piece[:whole], validate=True))
        carry = piece[whole:]
    if carry:
        raise ValueError("base64 text ends in an incomplete quantum")
    return b"".join(decoded)


def form_limit(settings: Settings) -> int:
    """The most bytes a multipart body may have: the photo's cap and FORM_ALLOWANCE."""
    return settings.max_upload_bytes + FORM_ALLOWANCE


def _form_too_large(settings: Settings) -> PayloadTooLarge:
    limit = form_limit(settings) / (1024 * 1024)
    return PayloadTooLarge(
        f"the form is larger than {limit:.2f} MB (the photo's {settings.max_upload_mb:g} MB"
        " and the fields)"
    )


def unknown_part(name: str, known: frozenset[str]) -> InvalidParams:
    if name in ("photo", "file", "image_data", "picture"):
        return InvalidParams(f"unknown part {name!r}: the photo goes in a part named 'image'")
    return InvalidParams(
        f"unknown part {name!r}: expected 'image' or one of {', '.join(sorted(known))}"
    )


async def _read_form(
    request: web.Request, settings: Settings, known: frozenset[str]
) -> tuple[dict[str, str], bytes | None]:
    """The text fields and the `image` part of a multipart body; the whole body is capped
    (read no further than the cap), and a part that is neither is refused, named."""
    if request.content_length is not None and request.content_length > form_limit(settings):
        raise _form_too_large(settings)
    fields: dict[str, str] = {}
    image: bytes | None = None
    reader = await request.multipart()
    field_too_large = PayloadTooLarge("a form field is at most 4 KB")
    parts = 0
    while (part := await reader.next()) is not None:
        parts += 1
        if parts > MAX_PARTS or request.content.total_bytes > form_limit(settings):
            raise _form_too_large(settings)
        if not isinstance(part, BodyPartReader):
            raise BadRequest("nested multipart bodies are not supported")
        if part.name == "image":
            image = await _read_capped(
                part.read_chunk, settings.max_upload_bytes, _too_large(settings)
            )
        elif part.name in known:
            try:
                value = await _read_capped(part.read_chunk, 4096, field_too_large)
            except PayloadTooLarge:
                raise InvalidParams(f"{part.name}: a form field is at most 4 KB") from None
            fields[part.name] = value.decode("utf-8", "replace")
        else:
            raise unknown_part(part.name or "", known)
    return fields, image


async def _read_capped(
    read: Callable[[int], Awaitable[bytes]], limit: int, error: PayloadTooLarge
) -> bytes:
    """Read a body or part in chunks, raising `error` as soon as it passes `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await read(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise error
        chunks.append(chunk)
    return b"".join(chunks)


def jobs_query(request: web.Request) -> models.JobsQuery:
    try:
        return models.JobsQuery.model_validate(
            {name: value for name, value in request.query.items() if value != ""}
        )
    except ValidationError as exc:
        raise InvalidParams(validation_message(exc)) from None


def request_digest(params: BaseModel, image: bytes) -> str:
    """What an idempotency key is bound to: the parameters as asked (a seed left out stays left
    out) and the photo's SHA-256. Runs in an executor (hashing 20 MB takes tens of ms)."""
    asked = params.model_dump(mode="json", exclude={"user_id"})
    text = json.dumps(asked, sort_keys=True, separators=(",", ":"))
    photo = hashlib.sha256(image).hexdigest()
    return hashlib.sha256(f"{text}\n{photo}".encode()).hexdigest()
