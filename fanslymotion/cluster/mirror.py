"""How a front with its own SQLite follows the shared rows (`CLUSTER_STORE=sqlite`, the old
way, going away): each change a worker makes is copied into the front's row, with the events a
local change would have had, and a reconciler copies every active job again now and then.
`follow.Follower` is the way without a second copy."""

from __future__ import annotations

import asyncio
import logging

import psycopg

from ..executor import Reports
from ..store import Job, Store
from ..store.jobs import MIRRORED
from ..vocabulary import TERMINAL, JobStatus
from .db import ClusterDB, Row
from .follow import note_of, progress_of

log = logging.getLogger(__name__)


class Mirror:
    """Copies the shared rows into the front's SQLite rows and reports what changed."""

    prunes_rows = True  # the front keeps its own rows: ended shared ones go after a while

    def __init__(self, store: Store, db: ClusterDB) -> None:
        self.store = store
        self.db = db
        self._reports: Reports | None = None
        self._applying = asyncio.Lock()

    async def start(self, reports: Reports) -> None:
        self._reports = reports
        await self.catch_up()

    @property
    def reports(self) -> Reports:
        assert self._reports is not None, "start() first"
        return self._reports

    async def enqueued(self, job: Job) -> None:
        try:
            await self.db.enqueue(job)
        except (psycopg.Error, OSError) as exc:
            # The row is committed here: the reconciler enqueues it once PostgreSQL is back.
            log.warning("job %s not enqueued yet (%s); will retry", job.job_id, exc)

    async def upkeep(self) -> None:
        """Every ten seconds: the reconciler."""
        await self.catch_up()

    async def catch_up(self) -> None:
        """Every job active here: enqueued there if it is missing, else its state copied."""
        active = [
            job
            for status in (JobStatus.QUEUED, JobStatus.PROCESSING)
            for job in await self.store.list_jobs(status=status, limit=100_000)
        ]
        if not active:
            return
        rows = {row["job_id"]: row for row in await self.db.jobs([j.job_id for j in active])}
        for job in active:
            row = rows.get(job.job_id)
            if row is None:
                if await self.db.enqueue(job):
                    log.info("job %s enqueued (it was not in PostgreSQL yet)", job.job_id)
            else:
                await self.apply(row)

    async def apply(self, row: Row) -> Job | None:
        """Bring our row of a job to the shared row's state, with the events a local change
        would have had. Returns our row after it. One at a time: an upload and a NOTIFY may
        bring the same change."""
        async with self._applying:
            return await self._apply(row)

    async def _apply(self, row: Row) -> Job | None:
        job_id = str(row["job_id"])
        local = await self.store.get_job(job_id)
        if local is None or local.status in TERMINAL:
            return local  # an ended job never changes again (cancel ends it there first)
        state = {name: row[name] for name in MIRRORED}
        same_attempt = local.attempts == row["attempts"]
        if local.status == row["status"] == JobStatus.PROCESSING and same_attempt:
            self.reports.progress(local, progress_of(row), updated_at=str(row["updated_at"]))
            return local
        if local.status == row["status"] and same_attempt and local.not_before == row["not_before"]:
            return local
        if local.status == row["status"] == JobStatus.PROCESSING:
            # Re-run elsewhere in between: show the requeue this front did not see.
            between = {**state, "status": JobStatus.QUEUED, "started_at": None}
            if (back := await self.store.mirror_job(job_id, between)) is not None:
                self.reports.settled(back, "its worker went silent")
        changed = await self.store.mirror_job(job_id, state)
        if changed is None:
            return None
        if changed.status == JobStatus.PROCESSING:
            self.reports.started(changed, f"on worker {row['worker']}, renderer={row['renderer']}")
        else:
            self.reports.settled(changed, note_of(changed, row))
        return changed
