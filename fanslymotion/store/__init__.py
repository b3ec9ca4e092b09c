"""The job store: SQLite through aiosqlite. All of the service's SQL lives in this package:
the schema and migrations (`schema`), the rows (`rows`), the connection (`base`), and the
queries of the jobs (`jobs`), the bot's tables (`telegram`), the webhook outbox (`outbox`) and the
operator's tables and figures (`owners`).

Every state change is one short transaction, guarded in SQL (`UPDATE ... WHERE status = ...
RETURNING *`) and committed before the caller reports it. One connection serves the process;
writes are serialised with a lock so a check-then-insert (caps, idempotency) is atomic.
"""

from __future__ import annotations

from ..vocabulary import ACTIVE, TERMINAL, JobStatus
from .jobs import Jobs
from .outbox import WebhookOutbox
from .owners import OwnerTables
from .rows import (
    Delivery,
    Job,
    NewJob,
    OutboxRow,
    OwnerRule,
    UserName,
    check_same_request,
    iso_utc,
    parse_time,
    utcnow,
)
from .telegram import BotTables

__all__ = [
    "ACTIVE",
    "TERMINAL",
    "Delivery",
    "Job",
    "JobStatus",
    "NewJob",
    "OutboxRow",
    "OwnerRule",
    "Store",
    "UserName",
    "check_same_request",
    "iso_utc",
    "parse_time",
    "utcnow",
]


class Store(Jobs, BotTables, WebhookOutbox, OwnerTables):
    """Async access to the database. Create with `await Store.open(path)`.

    The service is the only writer of its database (the data folder's lock sees to that), so
    the store keeps a write-through copy of the rows it has read or written, and the queue in
    dispatch order until the next write that can reorder it: status polls, the most frequent
    request, are answered from memory. Every write to `jobs` refreshes the copy from its
    `RETURNING` row (or patches it: progress); any other write to `jobs` drops it.
    """
