"""What the job service (`queue.JobQueue`) and the webhook sender ask of the store of record,
whichever the dialect: SQLite on one box (`store.Store`), PostgreSQL in a cluster
(`cluster.store.PgStore`, `cluster.outbox.PgOutbox`).

Every transition is one guarded `UPDATE ... RETURNING` committed before it returns: None when
the guard held (the job had moved on). The rows are `rows.Job` in both dialects.
"""

from __future__ import annotations

from typing import Any, Protocol

from ..vocabulary import Progress
from .rows import Delivery, Job, NewJob, OutboxRow, OwnerRule, UserName


class OwnerStore(Protocol):
    """The operator's tables and figures (issue 26): owners' rules, what they ordered, recent
    jobs, a window's figures. `store.owners.OwnerTables` on one box, `cluster.owners.PgOwners`
    on a cluster's front."""

    async def owner_rule(self, source: str, user_id: int) -> OwnerRule: ...

    async def set_owner_rule(self, source: str, user_id: int, rule: OwnerRule) -> None: ...

    async def ordered_seconds(self, source: str, user_id: int, since: str) -> int: ...

    async def owners(self, day: str, month: str, limit: int = 500) -> list[dict[str, Any]]: ...

    async def recent_jobs(
        self,
        *,
        status: str | None,
        source: str | None,
        user_id: int | None,
        limit: int,
        offset: int,
    ) -> list[Job]: ...

    async def window_counts(self, since: str) -> dict[str, int]: ...

    async def renders_per_bucket(self, since: str, width: int) -> dict[str, int]: ...

    async def render_medians(self, since: str) -> dict[str, tuple[float, int]]: ...

    async def wait_percentiles(self, since: str) -> dict[str, float | None]: ...


class JobStore(Protocol):
    """The jobs of one deployment: submit, reads, the fair order, transitions."""

    async def create_job(
        self, new: NewJob, *, max_queued: int, max_active_per_user: int
    ) -> tuple[Job, bool]:
        """Insert a queued job unless the caps forbid it (`TooManyJobs`); (job, created)."""

    async def check_caps(
        self, source: str, user_id: int, *, max_queued: int, max_active_per_user: int
    ) -> None:
        """The caps without a transaction: a cheap early refusal. The per-user cap counts the
        owner's jobs: (source, user_id), so a Telegram user and an API user never share it."""

    async def get_job(self, job_id: str) -> Job | None: ...

    async def job_by_idempotency_key(self, source: str, user_id: int, key: str) -> Job | None:
        """The owner's (source, user_id) job made with this key, if any."""

    async def list_jobs(
        self,
        *,
        user_id: int | None = None,
        status: str | None = None,
        limit: int = 20,
        offset: int = 0,
        source: str | None = None,
    ) -> list[Job]:
        """The newest jobs first (of one owner: user_id and source)."""

    async def count_jobs(self, *, user_id: int | None = None, status: str | None = None) -> int: ...

    async def counts_by_status(self) -> dict[str, int]: ...

    async def queue(self, now: float) -> tuple[list[Job], Job | None]:
        """The queued jobs in the fair order (and None)."""

    async def retry_failed(self, job_id: str) -> Job | None:
        """failed -> queued: an operator's retry, a new attempt (issue 26)."""

    async def queued_ahead(self, job_id: str) -> list[Job]:
        """The queued jobs served before `job_id`, in the fair order."""

    async def job_and_queue_ahead(self, job_id: str) -> tuple[Job | None, list[Job]]:
        """A job and, when it is queued, the queued jobs served before it: one query."""

    async def render_times(
        self, limit: int = 2000
    ) -> list[tuple[tuple[str, str, int, int], float]]:
        """((renderer, resolution, frames, steps), seconds) of the latest renders, oldest first."""

    async def render_work(
        self, limit: int = 2000
    ) -> list[tuple[tuple[str, str, int, int, int], float]]:
        """`render_times` with the photo's pixels (0 where unknown) after the steps."""

    async def start_job(self, job_id: str, renderer: str) -> Job | None:
        """queued -> processing."""

    async def set_progress(self, job_id: str, progress: Progress) -> None: ...

    async def complete_job(
        self,
        job_id: str,
        *,
        output_path: str,
        width: int,
        height: int,
        frames: int,
        size_bytes: int,
        render_seconds: float,
    ) -> Job | None:
        """processing -> completed, a Telegram job's delivery queued in the same transaction."""

    async def fail_job(self, job_id: str, error: str) -> Job | None:
        """queued|processing -> failed."""

    async def cancel_job(self, job_id: str, *, running: bool) -> Job | None:
        """queued -> cancelled, or processing -> cancelled once the render stopped."""

    async def requeue_job(
        self, job_id: str, *, count_attempt: bool, not_before: float = 0.0, error: str | None = None
    ) -> Job | None:
        """processing -> queued (a retry, a stop), without the phase of the ended attempt."""

    async def finished_before(self, cutoff: str) -> list[Job]:
        """Ended jobs that ended before `cutoff` (the rows' time format), oldest first."""

    async def set_paths(
        self, job_id: str, *, input_path: str | None, output_path: str | None, archived: bool
    ) -> None:
        """Storage housekeeping moved or removed files of a finished job."""

    async def webhook_summary(self, job_id: str) -> dict[str, Any] | None:
        """How the job's webhook deliveries went; None without any."""


class Outbox(Protocol):
    """The webhook outbox: events the store's triggers wrote with the changes that caused them."""

    async def webhooks_interrupted(self) -> int:
        """At start: deliveries the last process left in flight are due again."""

    async def webhooks_due(self, now: float, limit: int) -> list[OutboxRow]: ...

    async def webhook_claim(self, msg_id: str) -> bool:
        """pending -> sending, committed before the request goes out."""

    async def webhook_delivered(self, msg_id: str) -> None: ...

    async def webhook_failed(self, msg_id: str, error: str, *, retry_at: float | None) -> None:
        """One more failed attempt: due again at `retry_at`, or given up (None)."""

    async def webhooks_pending(self) -> int: ...


class BotStore(JobStore, Protocol):
    """What the Telegram bot keeps beside the jobs: the delivery outbox of videos (written by
    the transaction that completes a job), aiogram's FSM, its users and process-wide flags."""

    async def queue_position(self, job_id: str) -> int | None: ...

    async def set_progress_message(self, job_id: str, message_id: int) -> None: ...

    async def release_progress_message(self, chat_id: int, message_id: int) -> None: ...

    async def due_deliveries(self, now: float | None = None, limit: int = 20) -> list[Delivery]: ...

    async def get_delivery(self, job_id: str) -> Delivery | None: ...

    async def delivery_claim(self, job_id: str) -> bool: ...

    async def delivery_sent(self, job_id: str, file_id: str | None) -> bool: ...

    async def interrupt_deliveries(self) -> list[Delivery]: ...

    async def delivery_retry(self, job_id: str) -> bool: ...

    async def delivery_failed(self, job_id: str, error: str, *, retry_at: float | None) -> None: ...

    async def undelivered(self, user_id: int) -> list[Delivery]: ...

    async def redeliver(self, job_id: str) -> bool: ...

    async def sent_videos(self, user_id: int, limit: int = 10) -> list[tuple[Job, Delivery]]: ...

    async def fsm_get(self, key: str) -> tuple[str | None, dict[str, Any]]: ...

    async def fsm_set_state(self, key: str, state: str | None) -> None: ...

    async def fsm_set_data(self, key: str, data: dict[str, Any]) -> None: ...

    async def get_language(self, user_id: int) -> str | None: ...

    async def set_language(self, user_id: int, language: str) -> None: ...

    async def set_blocked(self, user_id: int, blocked: bool) -> None: ...

    async def unblock(self, user_id: int) -> bool: ...

    async def set_name(self, user_id: int, name: UserName) -> None:
        """Remember the user's name as Telegram sent it in their latest update."""

    async def get_name(self, user_id: int) -> UserName | None: ...

    async def get_flag(self, name: str) -> str | None: ...

    async def set_flag(self, name: str, value: str) -> None: ...
