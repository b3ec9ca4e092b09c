"""The operator's tables and figures: owners' limits and blocks (`owner_limits`), what owners
ordered, the admin's retry of a failed job, and the figures of a window (plain SQL)."""

from __future__ import annotations

from typing import Any

from . import job_texts
from .base import Base
from .rows import Job, OwnerRule, utcnow

# What counts against an owner's daily seconds: everything ordered but what failed (not the
# user's doing) or was cancelled (given back).
_COUNTED = "status NOT IN ('failed', 'cancelled')"
# A job's wait in the queue in days, exactly as `jobs_waited` indexes it (so ORDER BY reads it).
_WAIT = "(julianday(started_at) - julianday(created_at))"


class OwnerTables(Base):
    """Queries of `owner_limits` and the operator's views of `jobs`."""

    async def owner_rule(self, source: str, user_id: int) -> OwnerRule:
        row = await self._fetchone(
            "SELECT daily_seconds, blocked FROM owner_limits WHERE source = ? AND user_id = ?",
            (source, user_id),
        )
        if row is None:
            return OwnerRule()
        return OwnerRule(None if row[0] is None else int(row[0]), bool(row[1]))

    async def set_owner_rule(self, source: str, user_id: int, rule: OwnerRule) -> None:
        await self._update(
            "INSERT INTO owner_limits (source, user_id, daily_seconds, blocked, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (source, user_id) DO UPDATE SET"
            " daily_seconds = excluded.daily_seconds, blocked = excluded.blocked,"
            " updated_at = excluded.updated_at",
            (source, user_id, rule.daily_seconds, int(rule.blocked), utcnow()),
        )

    async def ordered_seconds(self, source: str, user_id: int, since: str) -> int:
        """Seconds of video the owner ordered since `since` (failed and cancelled jobs aside)."""
        row = await self._fetchone(
            "SELECT COALESCE(SUM(duration), 0) FROM jobs"
            f" WHERE source = ? AND user_id = ? AND created_at >= ? AND {_COUNTED}",
            (source, user_id, since),
        )
        return int(row[0]) if row else 0

    async def owners(self, day: str, month: str, limit: int = 500) -> list[dict[str, Any]]:
        """Per owner seen since `month` or with a rule: jobs and seconds since `day` and since
        `month`, failures since `month`, last seen, the rule, a Telegram user's name where the
        bot knows it. Most recently seen first."""
        rows = await self._fetchall(
            "WITH seen AS (SELECT source, user_id,"
            " SUM(created_at >= ?1) AS jobs_today,"
            f" SUM(CASE WHEN created_at >= ?1 AND {_COUNTED} THEN duration ELSE 0 END)"
            " AS seconds_today,"
            " COUNT(*) AS jobs_30d,"
            f" SUM(CASE WHEN {_COUNTED} THEN duration ELSE 0 END) AS seconds_30d,"
            " SUM(status = 'failed') AS failed_30d, MAX(created_at) AS last_seen"
            " FROM jobs WHERE created_at >= ?2 GROUP BY source, user_id),"
            " owners AS (SELECT source, user_id FROM seen"
            " UNION SELECT source, user_id FROM owner_limits)"
            " SELECT o.source, o.user_id, COALESCE(s.jobs_today, 0), COALESCE(s.seconds_today, 0),"
            " COALESCE(s.jobs_30d, 0), COALESCE(s.seconds_30d, 0), COALESCE(s.failed_30d, 0),"
            " COALESCE(s.last_seen, (SELECT MAX(created_at) FROM jobs j"
            "  WHERE j.source = o.source AND j.user_id = o.user_id)),"
            " l.daily_seconds, COALESCE(l.blocked, 0), u.first_name, u.last_name, u.username"
            " FROM owners o LEFT JOIN seen s ON s.source = o.source AND s.user_id = o.user_id"
            " LEFT JOIN owner_limits l ON l.source = o.source AND l.user_id = o.user_id"
            " LEFT JOIN users u ON o.source = 'telegram' AND u.user_id = o.user_id"
            " ORDER BY 8 DESC, o.source, o.user_id LIMIT ?3",
            (day, month, limit),
        )
        keys = (
            "source",
            "user_id",
            "jobs_today",
            "seconds_today",
            "jobs_30d",
            "seconds_30d",
            "failed_30d",
            "last_seen",
            "daily_seconds",
            "blocked",
            "first_name",
            "last_name",
            "username",
        )
        owners = [dict(zip(keys, tuple(row), strict=True)) for row in rows]
        for owner in owners:
            owner["blocked"] = bool(owner["blocked"])
        return owners

    async def recent_jobs(
        self,
        *,
        status: str | None,
        source: str | None,
        user_id: int | None,
        limit: int,
        offset: int,
    ) -> list[Job]:
        """The newest jobs first, filtered by status and owner when asked."""
        rows = await self._fetchall(
            "SELECT * FROM jobs WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR source = ?2)"
            " AND (?3 IS NULL OR user_id = ?3) ORDER BY rowid DESC LIMIT ?4 OFFSET ?5",
            (status, source, user_id, limit, offset),
        )
        return [job for row in rows if (job := self._job(row)) is not None]

    async def retry_failed(self, job_id: str) -> Job | None:
        """failed -> queued: a new attempt of the same job (same seed, same photo), asked by an
        operator. None when the job is not failed."""
        return await self._transition(job_texts.RETRY, (job_id,))

    async def window_counts(self, since: str) -> dict[str, int]:
        """Jobs made since `since` by status, and how many ended since then by ending."""
        row = await self._fetchone(
            "SELECT COUNT(*), SUM(status = 'completed'), SUM(status = 'failed'),"
            " SUM(status = 'cancelled'),"
            " (SELECT COUNT(*) FROM jobs WHERE completed_at >= ?1 AND status = 'completed'),"
            " (SELECT COUNT(*) FROM jobs WHERE completed_at >= ?1 AND status = 'failed')"
            " FROM jobs WHERE created_at >= ?1",
            (since,),
        )
        keys = ("created", "completed", "failed", "cancelled", "ended_completed", "ended_failed")
        return {key: int(value or 0) for key, value in zip(keys, tuple(row or ()), strict=False)}

    async def renders_per_bucket(self, since: str, width: int) -> dict[str, int]:
        """Completed renders since `since` per bucket: the first `width` characters of the
        completion time (13: the hour, 10: the day)."""
        rows = await self._fetchall(
            "SELECT substr(completed_at, 1, ?2) AS bucket, COUNT(*) FROM jobs"
            " WHERE status = 'completed' AND completed_at >= ?1 GROUP BY bucket",
            (since, width),
        )
        return {str(r[0]): int(r[1]) for r in rows}

    async def render_medians(self, since: str) -> dict[str, tuple[float, int]]:
        """Per resolution, the median render time of the renders completed since `since` and
        how many there were: the count, then the middle row(s) in `jobs_render_times` order."""
        counts = await self._fetchall(
            "SELECT resolution, COUNT(*) FROM jobs WHERE status = 'completed'"
            " AND completed_at >= ? AND render_seconds IS NOT NULL GROUP BY resolution",
            (since,),
        )
        medians: dict[str, tuple[float, int]] = {}
        for resolution, total in ((str(r[0]), int(r[1])) for r in counts):
            middle = await self._fetchall(
                "SELECT render_seconds FROM jobs WHERE status = 'completed' AND resolution = ?"
                " AND render_seconds IS NOT NULL AND completed_at >= ?"
                " ORDER BY render_seconds LIMIT ? OFFSET ?",
                (resolution, since, 2 - total % 2, (total - 1) // 2),
            )
            values = [float(r[0]) for r in middle]
            medians[resolution] = (sum(values) / len(values), total)
        return medians

    async def wait_percentiles(self, since: str) -> dict[str, float | None]:
        """Queue wait (made to last start, seconds) of the jobs started since `since`: p50 and
        p95 (nearest rank), read in `jobs_waited` order."""
        row = await self._fetchone("SELECT COUNT(*) FROM jobs WHERE started_at >= ?", (since,))
        total = int(row[0]) if row else 0
        found: dict[str, float | None] = {"p50": None, "p95": None}
        for name, share in (("p50", 0.5), ("p95", 0.95)):
            if total == 0:
                break
            at = await self._fetchone(
                # `+started_at`: the filter must not pick jobs_started, which would need a sort.
                f"SELECT {_WAIT} FROM jobs WHERE +started_at >= ? ORDER BY {_WAIT}"
                " LIMIT 1 OFFSET ?",
                (since, int((total - 1) * share)),
            )
            found[name] = round(float(at[0]) * 86400.0, 2) if at and at[0] is not None else None
        return {**found, "started": total}
