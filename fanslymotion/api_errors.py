"""The one place where errors become HTTP answers: domain errors with their status, code and
headers, aiohttp's own refusals, and anything unexpected as a logged 500, never a traceback.
Every error body has the same shape: `{"ok": false, "error", "status", "code"?}`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from .errors import FanslyError, Unauthorized
from .openapi import Handler

log = logging.getLogger(__name__)


def error_body(status: int, message: str, code: str = "") -> dict[str, Any]:
    body: dict[str, Any] = {"ok": False, "error": message, "status": status}
    if code:
        body["code"] = code
    return body


def json_error(
    status: int, message: str, headers: dict[str, str] | None = None, *, code: str = ""
) -> web.Response:
    return web.json_response(error_body(status, message, code), status=status, headers=headers)


def _domain_error(exc: FanslyError) -> web.Response:
    headers = dict(exc.headers)
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = 'Bearer realm="fanslymotion"'
    return json_error(exc.status, exc.message, headers or None, code=exc.code)


async def _answer_and_close(request: web.Request, response: web.Response) -> web.Response:
    """Send a refusal of a body that was not read to its end, then close the connection:
    aiohttp would otherwise go on reading (and dropping) the rest for up to ten seconds."""
    response.force_close()  # Connection: close
    await response.prepare(request)
    await response.write_eof()
    request.protocol.force_close()  # the answer is written out before the socket closes
    return response


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The one place where domain errors become HTTP answers. Never a traceback."""
    try:
        return await handler(request)
    except FanslyError as exc:
        if exc.status == 413 and not request.content.is_eof():
            return await _answer_and_close(request, _domain_error(exc))
        return _domain_error(exc)
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
    except HttpProcessingError as exc:  # a body aiohttp could not parse (chunked encoding...)
        return json_error(400, f"the request could not be read: {exc.message or 'bad request'}")
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception as exc:
        log.error(
            "unhandled %s on %s %s: %s", type(exc).__name__, request.method, request.path, exc
        )
        log.debug("traceback", exc_info=exc)
        return json_error(500, "internal error")
