"""The operator's tables and figures in PostgreSQL, for a cluster's front (`store.port.OwnerStore`,
as `store.owners.OwnerTables` is on one box): owners' rules (`fm_owner_limits`), what owners
ordered, recent jobs, and the figures of a window, in plain SQL over `fm_jobs`."""

from __future__ import annotations

from typing import Any

from ..store.rows import Job, OwnerRule, job_from, utcnow
from .db import ClusterDB

_COUNTED = "status NOT IN ('failed', 'cancelled')"


class PgOwners:
    """Queries of `fm_owner_limits` and the operator's views of `fm_jobs`."""

    def __init__(self, db: ClusterDB) -> None:
        self.db = db

    async def owner_rule(self, source: str, user_id: int) -> OwnerRule:
        row = await self.db.one(
            "SELECT daily_seconds, blocked FROM fm_owner_limits WHERE source = %s AND user_id = %s",
            (source, user_id),
        )
        if row is None:
            return OwnerRule()
        seconds = row["daily_seconds"]
        return OwnerRule(None if seconds is None else int(seconds), bool(row["blocked"]))

    async def set_owner_rule(self, source: str, user_id: int, rule: OwnerRule) -> None:
        await self.db.run(
            "INSERT INTO fm_owner_limits (source, user_id, daily_seconds, blocked, updated_at)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (source, user_id) DO UPDATE SET"
            " daily_seconds = excluded.daily_seconds, blocked = excluded.blocked,"
            " updated_at = excluded.updated_at",
            (source, user_id, rule.daily_seconds, int(rule.blocked), utcnow()),
        )

    async def ordered_seconds(self, source: str, user_id: int, since: str) -> int:
        row = await self.db.one(
            "SELECT COALESCE(SUM(duration), 0) AS s FROM fm_jobs"
            f" WHERE source = %s AND user_id = %s AND created_at >= %s AND {_COUNTED}",
            (source, user_id, since),
        )
        return int(row["s"]) if row else 0

    async def owners(self, day: str, month: str, limit: int = 500) -> list[dict[str, Any]]:
        """As `OwnerTables.owners`: per owner seen since `month` or with a rule."""
        rows = await self.db.rows(
            "WITH seen AS (SELECT source, user_id,"
            " COUNT(*) FILTER (WHERE created_at >= %(day)s) AS jobs_today,"
            f" COALESCE(SUM(duration) FILTER (WHERE created_at >= %(day)s AND {_COUNTED}), 0)"
            " AS seconds_today, COUNT(*) AS jobs_30d,"
            f" COALESCE(SUM(duration) FILTER (WHERE {_COUNTED}), 0) AS seconds_30d,"
            " COUNT(*) FILTER (WHERE status = 'failed') AS failed_30d,"
            " MAX(created_at) AS last_seen"
            " FROM fm_jobs WHERE created_at >= %(month)s AND source IS NOT NULL"
            " GROUP BY source, user_id),"
            " keys AS (SELECT source, user_id FROM seen"
            " UNION SELECT source, user_id FROM fm_owner_limits)"
            " SELECT k.source, k.user_id, COALESCE(s.jobs_today, 0) AS jobs_today,"
            " COALESCE(s.seconds_today, 0) AS seconds_today, COALESCE(s.jobs_30d, 0) AS jobs_30d,"
            " COALESCE(s.seconds_30d, 0) AS seconds_30d, COALESCE(s.failed_30d, 0) AS failed_30d,"
            " COALESCE(s.last_seen, (SELECT MAX(created_at) FROM fm_jobs j"
            "  WHERE j.source = k.source AND j.user_id = k.user_id)) AS last_seen,"
            " l.daily_seconds, COALESCE(l.blocked, 0) AS blocked,"
            " u.first_name, u.last_name, u.username"
            " FROM keys k LEFT JOIN seen s ON s.source = k.source AND s.user_id = k.user_id"
            " LEFT JOIN fm_owner_limits l ON l.source = k.source AND l.user_id = k.user_id"
            " LEFT JOIN fm_users u ON k.source = 'telegram' AND u.user_id = k.user_id"
            " ORDER BY 8 DESC NULLS LAST, k.source, k.user_id LIMIT %(limit)s",
            {"day": day, "month": month, "limit": limit},
        )
        return [{**row, "blocked": bool(row["blocked"])} for row in rows]

    async def recent_jobs(
        self,
        *,
        status: str | None,
        source: str | None,
        user_id: int | None,
        limit: int,
        offset: int,
    ) -> list[Job]:
        rows = await self.db.rows(
            "SELECT * FROM fm_jobs WHERE (%(status)s::text IS NULL OR status = %(status)s)"
            " AND (%(source)s::text IS NULL OR source = %(source)s)"
            " AND (%(user)s::bigint IS NULL OR user_id = %(user)s)"
            " ORDER BY seq DESC LIMIT %(limit)s OFFSET %(offset)s",
            {
                "status": status,
                "source": source,
                "user": user_id,
                "limit": limit,
                "offset": offset,
            },
        )
        return [job_from(row) for row in rows]

    async def window_counts(self, since: str) -> dict[str, int]:
        row = await self.db.one(
            "SELECT COUNT(*) FILTER (WHERE created_at >= %(since)s) AS created,"
            " COUNT(*) FILTER (WHERE created_at >= %(since)s AND status = 'completed')"
            " AS completed,"
            " COUNT(*) FILTER (WHERE created_at >= %(since)s AND status = 'failed') AS failed,"
            " COUNT(*) FILTER (WHERE created_at >= %(since)s AND status = 'cancelled')"
            " AS cancelled,"
            " COUNT(*) FILTER (WHERE completed_at >= %(since)s AND status = 'completed')"
            " AS ended_completed,"
            " COUNT(*) FILTER (WHERE completed_at >= %(since)s AND status = 'failed')"
            " AS ended_failed"
            " FROM fm_jobs WHERE created_at >= %(since)s OR completed_at >= %(since)s",
            {"since": since},
        )
        return {key: int(value or 0) for key, value in (row or {}).items()}

    async def renders_per_bucket(self, since: str, width: int) -> dict[str, int]:
        rows = await self.db.rows(
            "SELECT substr(completed_at, 1, %(width)s) AS bucket, COUNT(*) AS n FROM fm_jobs"
            " WHERE status = 'completed' AND completed_at >= %(since)s GROUP BY bucket",
            {"since": since, "width": width},
        )
        return {str(r["bucket"]): int(r["n"]) for r in rows}

    async def render_medians(self, since: str) -> dict[str, tuple[float, int]]:
        rows = await self.db.rows(
            "SELECT resolution,"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY render_seconds) AS median,"
            " COUNT(*) AS n FROM fm_jobs WHERE status = 'completed'"
            " AND completed_at >= %s AND render_seconds IS NOT NULL GROUP BY resolution",
            (since,),
        )
        return {str(r["resolution"]): (float(r["median"]), int(r["n"])) for r in rows}

    async def wait_percentiles(self, since: str) -> dict[str, float | None]:
        """p50 and p95 of the queue wait (made to last start, seconds) of the jobs started since
        `since`, nearest rank as on one box: the row at its rank in `fm_jobs_waited`."""
        row = await self.db.one(
            "SELECT COUNT(*) AS n FROM fm_jobs WHERE started_at >= %s", (since,)
        )
        total = int(row["n"]) if row else 0
        found: dict[str, float | None] = {"p50": None, "p95": None}
        for name, share in (("p50", 0.5), ("p95", 0.95)):
            if total == 0:
                break
            at = await self.db.one(
                "SELECT waited FROM fm_jobs WHERE started_at >= %s ORDER BY waited"
                " LIMIT 1 OFFSET %s",
                (since, int((total - 1) * share)),
            )
            found[name] = round(float(at["waited"]), 2) if at and at["waited"] is not None else None
        return {**found, "started": total}
