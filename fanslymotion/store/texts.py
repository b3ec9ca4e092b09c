"""One SQL text per query that both stores of record run: the single box's SQLite (`store`)
and a cluster's PostgreSQL (`cluster.store`, `cluster.outbox`). The bot's tables and the
webhook outbox are the same in both schemas but for their names (PostgreSQL's carry the
cluster's `fm_` prefix); `in_dialect` fills those in and turns SQLite's `?` placeholders into
psycopg's `%s`. A value that may be NULL where its type matters is cast explicitly (PostgreSQL
cannot guess the type of a bare NULL parameter)."""

from __future__ import annotations

import re
from typing import Literal

Dialect = Literal["sqlite", "postgres"]

_TABLES = ("jobs", "deliveries", "fsm", "users", "flags", "webhook_outbox")
_NAMES = re.compile(r"\b(" + "|".join(_TABLES) + r")\b")


def in_dialect(text: str, dialect: Dialect) -> str:
    """`text` as `dialect` runs it."""
    if dialect == "sqlite":
        return text
    return _NAMES.sub(r"fm_\1", text).replace("?", "%s")


# -- the bot's tables -----------------------------------------------------------------------

DELIVERIES_DUE = (
    "SELECT * FROM deliveries WHERE status = 'pending' AND next_attempt_at <= ?"
    " ORDER BY created_at LIMIT ?"
)
DELIVERY = "SELECT * FROM deliveries WHERE job_id = ?"
DELIVERY_CLAIM = (
    "UPDATE deliveries SET status = 'sending', attempts = attempts + 1"
    " WHERE job_id = ? AND status = 'pending'"
)
DELIVERY_SENT = (
    "UPDATE deliveries SET status = 'sent', file_id = ?, sent_at = ?"
    " WHERE job_id = ? AND status = 'sending'"
)
DELIVERIES_INTERRUPT = (
    "UPDATE deliveries SET status = 'interrupted' WHERE status = 'sending' RETURNING *"
)
DELIVERY_RETRY = (
    "UPDATE deliveries SET status = 'pending', next_attempt_at = 0"
    " WHERE job_id = ? AND status = 'interrupted'"
)
# (error, retry_at, retry_at, job_id): retried at retry_at, or undeliverable when it is NULL.
DELIVERY_FAILED = (
    "UPDATE deliveries SET last_error = ?,"
    " status = CASE WHEN CAST(? AS DOUBLE PRECISION) IS NULL THEN 'undeliverable'"
    " ELSE 'pending' END,"
    " next_attempt_at = COALESCE(CAST(? AS DOUBLE PRECISION), next_attempt_at)"
    " WHERE job_id = ? AND status IN ('pending', 'sending')"
)
UNDELIVERED = (
    "SELECT d.* FROM deliveries d JOIN jobs j USING (job_id)"
    " WHERE j.user_id = ? AND d.status = 'undeliverable' AND j.output_path IS NOT NULL"
    " ORDER BY d.created_at"
)
REDELIVER = (
    "UPDATE deliveries SET status = 'pending', next_attempt_at = 0, attempts = 0"
    " WHERE job_id = ? AND status = 'undeliverable'"
)
SENT_VIDEOS = (
    "SELECT j.*, d.status AS d_status, d.attempts AS d_attempts,"
    " d.next_attempt_at AS d_next, d.file_id AS d_file_id, d.last_error AS d_error,"
    " d.created_at AS d_created, d.sent_at AS d_sent, d.chat_id AS d_chat"
    " FROM jobs j JOIN deliveries d USING (job_id)"
    " WHERE j.user_id = ? AND d.status = 'sent' ORDER BY d.sent_at DESC LIMIT ?"
)
FSM_GET = "SELECT state, data FROM fsm WHERE key = ?"
FSM_SET_STATE = "INSERT INTO fsm (key, state) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET state = excluded.state"
FSM_SET_DATA = (
    "INSERT INTO fsm (key, data) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET data = excluded.data"
)
LANGUAGE = "SELECT language FROM users WHERE user_id = ?"
SET_LANGUAGE = (
    "INSERT INTO users (user_id, language) VALUES (?, ?)"
    " ON CONFLICT (user_id) DO UPDATE SET language = excluded.language"
)
SET_BLOCKED = (
    "INSERT INTO users (user_id, blocked) VALUES (?, ?)"
    " ON CONFLICT (user_id) DO UPDATE SET blocked = excluded.blocked"
)
UNBLOCK = "UPDATE users SET blocked = 0 WHERE user_id = ? AND blocked = 1"
# (user_id, first_name, last_name, username): the name as Telegram last sent it.
SET_NAME = (
    "INSERT INTO users (user_id, first_name, last_name, username) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (user_id) DO UPDATE SET first_name = excluded.first_name,"
    " last_name = excluded.last_name, username = excluded.username"
)
NAME = "SELECT first_name, last_name, username FROM users WHERE user_id = ?"
FLAG = "SELECT value FROM flags WHERE name = ?"
SET_FLAG = (
    "INSERT INTO flags (name, value) VALUES (?, ?)"
    " ON CONFLICT (name) DO UPDATE SET value = excluded.value"
)

# -- the webhook outbox ---------------------------------------------------------------------

WEBHOOKS_INTERRUPTED = "UPDATE webhook_outbox SET status = 'pending' WHERE status = 'sending'"
# Pending events whose time has come, oldest first; a job's progress event waits while another
# progress event of that job is in flight.
WEBHOOKS_DUE = (
    "SELECT o.msg_id AS o_msg_id, o.event AS o_event, o.attempts AS o_attempts,"
    " o.created AS o_created, o.snapshot AS o_snapshot, j.* FROM webhook_outbox o"
    " JOIN jobs j ON j.job_id = o.job_id"
    " WHERE o.status = 'pending' AND o.next_attempt_at <= ?"
    " AND NOT (o.event = 'progress' AND EXISTS (SELECT 1 FROM webhook_outbox s"
    "  WHERE s.job_id = o.job_id AND s.event = 'progress' AND s.status = 'sending'))"
    " ORDER BY o.created LIMIT ?"
)
WEBHOOK_CLAIM = (
    "UPDATE webhook_outbox SET status = 'sending' WHERE msg_id = ? AND status = 'pending'"
)
WEBHOOK_DELIVERED = (
    "UPDATE webhook_outbox SET status = 'delivered', attempts = attempts + 1,"
    " last_error = NULL, delivered_at = ? WHERE msg_id = ?"
)
# (error, retry_at, retry_at, msg_id): due again at retry_at, or given up when it is NULL.
WEBHOOK_FAILED = (
    "UPDATE webhook_outbox SET attempts = attempts + 1, last_error = ?,"
    " status = CASE WHEN CAST(? AS DOUBLE PRECISION) IS NULL THEN 'failed' ELSE 'pending' END,"
    " next_attempt_at = COALESCE(CAST(? AS DOUBLE PRECISION), next_attempt_at)"
    " WHERE msg_id = ?"
)
WEBHOOKS_PENDING = "SELECT COUNT(*) AS n FROM webhook_outbox WHERE status IN ('pending', 'sending')"
# (job_id, job_id): {delivered, pending, failed, attempts, last_error} of a job's events.
WEBHOOK_SUMMARY = (
    "SELECT COUNT(*) AS events,"
    " COUNT(CASE WHEN status = 'delivered' THEN 1 END) AS delivered,"
    " COUNT(CASE WHEN status IN ('pending', 'sending') THEN 1 END) AS pending,"
    " COUNT(CASE WHEN status = 'failed' THEN 1 END) AS failed,"
    " COALESCE(SUM(attempts), 0) AS attempts,"
    " (SELECT last_error FROM webhook_outbox WHERE job_id = ? AND last_error IS NOT NULL"
    "  ORDER BY created DESC LIMIT 1) AS last_error"
    " FROM webhook_outbox WHERE job_id = ?"
)
