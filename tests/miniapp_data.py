"""Telegram Mini App launch data for tests, signed as Telegram signs it (with a test bot's
token), or forged or stale on purpose."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

from fanslymotion import miniapp


def launch_data(
    bot_token: str, user_id: int, *, age: float = 0.0, language: str = "en", forged: bool = False
) -> str:
    user = {"id": user_id, "first_name": f"User {user_id}", "language_code": language}
    fields = {
        "query_id": f"AAH{user_id}",
        "user": json.dumps(user, separators=(",", ":")),
        "auth_date": str(int(time.time() - age)),
    }
    digest = miniapp.sign(fields, bot_token)
    if forged:  # another user put in after signing
        fields["user"] = fields["user"].replace(str(user_id), str(user_id + 1))
    return urlencode({**fields, "hash": digest})


def tma(bot_token: str, user_id: int, **kwargs: object) -> dict[str, str]:
    return {"Authorization": f"tma {launch_data(bot_token, user_id, **kwargs)}"}  # type: ignore[arg-type]
