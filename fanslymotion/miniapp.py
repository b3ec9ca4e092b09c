"""The page as a Telegram Mini App: the launch data (`initData`) Telegram hands the page,
checked as Telegram's Web Apps rules say. The key is HMAC-SHA256 of the bot token under the
constant "WebAppData"; the `hash` field is the hex HMAC-SHA256, under that key, of every other
field as `key=value` lines sorted by key; `auth_date` must be recent (MINIAPP_MAX_AGE)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import parse_qsl

from .errors import Unauthorized
from .owner import TELEGRAM, Caller, Owner


def secret_key(bot_token: str) -> bytes:
    return hmac.new(b"WebAppData", bot_token.encode(), hashlib.sha256).digest()


def _check_string(fields: dict[str, str]) -> bytes:
    return "\n".join(f"{key}={fields[key]}" for key in sorted(fields)).encode()


def sign(fields: dict[str, str], bot_token: str) -> str:
    """The `hash` Telegram would add to these fields (for tests and tools)."""
    return hmac.new(secret_key(bot_token), _check_string(fields), hashlib.sha256).hexdigest()


def caller(init_data: str, bot_token: str, max_age: float, now: float | None = None) -> Caller:
    """The Telegram user who opened the page, from launch data; 401 when it is forged,
    stale or names no user."""
    try:
        pairs = parse_qsl(init_data, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise Unauthorized("the Telegram launch data cannot be read", code="tma_invalid") from None
    fields = dict(pairs)
    given = fields.pop("hash", "")
    if len(fields) != len(pairs) - 1 or not given:
        raise Unauthorized("the Telegram launch data is not signed", code="tma_invalid")
    expected = sign(fields, bot_token)
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized("the Telegram launch data is not valid", code="tma_invalid")
    try:
        signed_at = int(fields.get("auth_date", ""))
        user = json.loads(fields.get("user", ""))
        user_id = int(user["id"])
    except (ValueError, TypeError, KeyError):
        raise Unauthorized("the Telegram launch data names no user", code="tma_invalid") from None
    moment = time.time() if now is None else now
    if moment - signed_at > max_age:
        raise Unauthorized(
            "the Telegram launch data has expired: open the app again from the chat",
            code="tma_expired",
        )
    language = user.get("language_code") if isinstance(user.get("language_code"), str) else None
    return Caller(Owner(TELEGRAM, user_id), language)
