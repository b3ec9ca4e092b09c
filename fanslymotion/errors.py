"""Domain errors. Each carries the HTTP status the API answers with; one middleware maps them."""

from __future__ import annotations

from collections.abc import Mapping


class FanslyError(Exception):
    """Base of every error a user may see. The message is safe to show: no paths, no internals.

    `code` names the case when the type alone does not (e.g. "photo_too_small"), and `details`
    hold its numbers, so the bot can say it in the user's language."""

    status: int = 500

    def __init__(
        self,
        message: str,
        *,
        retry_after: int | None = None,
        code: str = "",
        details: Mapping[str, object] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after
        self.code = code
        self.details = dict(details or {})
        self.headers = dict(headers or {})  # extra HTTP headers of the answer


class BadRequest(FanslyError):
    """Unreadable input: an image that does not decode, broken base64, malformed JSON."""

    status = 400


class NotFound(FanslyError):
    status = 404


class Conflict(FanslyError):
    """The job is not in a state that allows this (e.g. downloading an unfinished video)."""

    status = 409


class PayloadTooLarge(FanslyError):
    """Upload over the byte limit, or an image over the pixel cap (decompression bomb)."""

    status = 413


class UnsupportedMedia(FanslyError):
    """Not an image format we read, or a wrong Content-Type."""

    status = 415


class InvalidParams(FanslyError):
    """Well-formed request whose values are out of range (duration, resolution, too small a photo...)."""

    status = 422


class TooManyJobs(FanslyError):
    """Queue full or per-user cap reached; `retry_after` says when to try again."""

    status = 429


class Unavailable(FanslyError):
    """The service is stopping or paused for new work."""

    status = 503


class InsufficientStorage(FanslyError):
    """Free disk under the configured threshold."""

    status = 507


class NotAvailable(FanslyError):
    """A feature this deployment does not have (e.g. the operator's figures on a front whose
    one store is PostgreSQL)."""

    status = 501


class Unauthorized(FanslyError):
    status = 401


class Forbidden(FanslyError):
    """A signed link that is wrong or expired."""

    status = 403


class Gone(FanslyError):
    """The video was deleted after its retention period."""

    status = 410


class RangeNotSatisfiable(FanslyError):
    status = 416


class RenderError(FanslyError):
    """A render failed. `retryable` tells the queue whether another attempt may succeed."""

    status = 500

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class GPUOutOfMemory(RenderError):
    """Every memory-saving fallback failed; the message suggests a smaller job. Not retried."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class Cancelled(Exception):
    """Raised inside a render when the job's cancel flag is set. Not an error the user made."""

    def __init__(self, reason: str = "cancelled") -> None:
        super().__init__(reason)
        self.reason = reason
