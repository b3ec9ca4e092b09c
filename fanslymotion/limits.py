"""Usage limits: seconds of video an owner (a job's source and user id) may order per UTC day
(DAILY_SECONDS_PER_USER, or the operator's number for that owner) and the operator's blocks.

Checked by the job service at create, so every way in (API, page, bot) meets the same rule."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta

from .config import Settings
from .errors import Forbidden, TooManyJobs
from .store import OwnerRule, iso_utc
from .store.port import OwnerStore

log = logging.getLogger(__name__)


def day_start(now: datetime) -> datetime:
    """The UTC midnight that began `now`'s day."""
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


class Limits:
    """The rule of each owner and the check at create."""

    def __init__(self, settings: Settings, store: OwnerStore) -> None:
        self.settings = settings
        self.store = store

    async def rule(self, source: str, user_id: int) -> OwnerRule:
        return await self.store.owner_rule(source, user_id)

    def daily_of(self, rule: OwnerRule) -> int | None:
        """The owner's daily seconds: the operator's number, else the service's (None: none)."""
        return (
            rule.daily_seconds
            if rule.daily_seconds is not None
            else (self.settings.daily_seconds_per_user)
        )

    async def check(
        self, source: str, user_id: int, seconds: int, now: datetime | None = None
    ) -> None:
        """Refuse a job of `seconds` for a blocked owner (403 `user_blocked`) or one over the
        daily limit (429 `daily_limit`, with when it resets)."""
        rule = await self.rule(source, user_id)
        if rule.blocked:
            raise Forbidden(
                "this account may not order videos; ask the operator",
                code="user_blocked",
            )
        daily = self.daily_of(rule)
        if daily is None:
            return
        moment = now or datetime.now(UTC)
        start = day_start(moment)
        used = await self.store.ordered_seconds(source, user_id, iso_utc(start))
        if used + seconds <= daily:
            return
        resets = start + timedelta(days=1)
        wait = max(1, math.ceil((resets - moment).total_seconds()))
        raise TooManyJobs(
            f"the daily limit of {daily} s of video is reached ({used} s ordered today);"
            f" it resets at {iso_utc(resets)[:16]}Z UTC",
            retry_after=wait,
            code="daily_limit",
            details={
                "limit": daily,
                "used": used,
                "asked": seconds,
                "resets_at": iso_utc(resets),
            },
            headers={"X-RateLimit-Reset": str(int(resets.timestamp()))},
        )
