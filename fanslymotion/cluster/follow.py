"""How the front hears what happens to its jobs, PostgreSQL being their one store of record:
every change of a shared row is NOTIFYed (`fm_jobs`), the front
reads the row and reports the change to the job service (a start, progress, a requeue, an
end), so SSE, the bot's progress and the service's log follow PostgreSQL. Nothing is copied:
the service reads and writes the same rows (`store.PgStore`). The front remembers only what it
last reported of each active job, to tell a change from a repeat."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from ..executor import Reports
from ..store import Job
from ..store.rows import job_from
from ..vocabulary import JobStatus, Phase, Progress
from .db import ClusterDB, Row

log = logging.getLogger(__name__)

_Seen = tuple[str, int, float]  # status, attempts, not_before as last reported


def progress_of(row: Row) -> Progress:
    """The live progress a worker wrote in its row."""
    phase = row["phase"]
    return Progress(
        float(row["progress"]),
        Phase(phase) if phase in Phase._value2member_map_ else Phase.STARTING,
        step=int(row["phase_step"]),
        steps=int(row["phase_steps"]),
    )


def note_of(job: Job, row: Row) -> str:
    """The log's note of a job's change that a worker or the sweeper made."""
    worker = row.get("worker") or "a worker"
    if job.status == JobStatus.COMPLETED:
        return f"on {worker}, {job.render_seconds or 0:.1f}s {job.width}x{job.height}"
    if job.status == JobStatus.QUEUED:
        return f"{job.error or job.message}; retry" if job.error else job.message
    return job.error or job.message


def _seen(job: Job) -> _Seen:
    return (job.status, job.attempts, job.not_before)


class Follower:
    """Reports the changes of the shared rows to the job service."""

    def __init__(self, db: ClusterDB) -> None:
        self.db = db
        self._reports: Reports | None = None
        self._seen: dict[str, _Seen] = {}
        self._applying = asyncio.Lock()

    @property
    def reports(self) -> Reports:
        assert self._reports is not None, "start() first"
        return self._reports

    async def start(self, reports: Reports) -> None:
        """Take the active jobs as they are: running ones go on reporting progress."""
        self._reports = reports
        for row in await self.db.active():
            job = job_from(row)
            self._seen[job.job_id] = _seen(job)
            if job.status == JobStatus.PROCESSING:
                reports.progress(job, progress_of(row), updated_at=str(row["updated_at"]))

    async def enqueued(self, job: Job) -> None:
        """A job the service made (its procrastinate job committed with it)."""
        async with self._applying:
            self._seen.setdefault(job.job_id, _seen(job))

    async def catch_up(self) -> None:
        """After a lost connection: report what changed meanwhile (NOTIFYs were missed)."""
        rows = {str(row["job_id"]): row for row in await self.db.active()}
        gone = [job_id for job_id in self._seen if job_id not in rows]
        if gone:
            rows.update({str(row["job_id"]): row for row in await self.db.jobs(gone)})
        for row in rows.values():
            await self.apply(row)

    async def apply(self, row: Row) -> Job:
        """Report the change of `row` since it was last reported (none for a repeat); the
        row as a `Job`. One at a time: an upload and a NOTIFY may bring the same change."""
        async with self._applying:
            job = job_from(row)
            self._report(job, row, self._seen.get(job.job_id))
            return job

    def _report(self, job: Job, row: Row, seen: _Seen | None) -> None:
        if job.terminal:
            if self._seen.pop(job.job_id, None) is not None:
                self.reports.settled(job, note_of(job, row))
            return  # an end never reported twice, nor one this front did not follow
        self._seen[job.job_id] = _seen(job)
        if job.status == JobStatus.QUEUED:
            if seen is not None and seen != _seen(job):
                self.reports.settled(job, note_of(job, row))
            return
        if seen is not None and seen[:2] == (JobStatus.PROCESSING, job.attempts):
            self.reports.progress(job, progress_of(row), updated_at=str(row["updated_at"]))
            return
        if seen is not None and seen[0] == JobStatus.PROCESSING:
            # Re-run elsewhere in between: show the requeue this front did not see.
            between = replace(
                job, status=JobStatus.QUEUED, started_at=None, progress=0.0, phase="", phase_step=0
            )
            self.reports.settled(between, "its worker went silent")
        self.reports.started(job, f"on worker {row['worker']}, renderer={row['renderer']}")
