"""The fair dispatch order (README, "Dispatch order") as one SQL text for SQLite and PostgreSQL.

The text is a list of common table expressions ending in `fair (job_id, rank)`: rank 1 is
served first. Callers put `WITH` before it and their own query after. `:now` (epoch seconds)
is when retry backoffs are judged. The thin layer below fills in the two real differences, the
jobs table and its arrival order (SQLite's rowid, PostgreSQL's `seq`), and the placeholders.
"""

from __future__ import annotations

from typing import Literal

Dialect = Literal["sqlite", "postgres"]

# Jobs that can run now first, round robin between users (a user's k-th waiting job is in round
# k), users in a round by the time of their turn (their last start or, if later, their oldest
# waiting job), oldest first within a user; jobs in a retry backoff after them, by its end.
_TEXT = """
queued AS (
    SELECT job_id, user_id, created_at, not_before, {seq} AS seq
    FROM {jobs} WHERE status = 'queued'),
turns AS MATERIALIZED (
    SELECT u.user_id, CASE WHEN u.last > u.first THEN u.last ELSE u.first END AS turn
    FROM (SELECT w.user_id, MIN(w.created_at) AS first, COALESCE(
            (SELECT MAX(s.started_at) FROM {jobs} s WHERE s.user_id = w.user_id), '') AS last
          FROM queued w GROUP BY w.user_id) u),
ordered AS (
    SELECT q.job_id, q.seq, q.not_before > :now AS backoff,
        CASE WHEN q.not_before > :now THEN q.not_before ELSE 0 END AS wait_until,
        ROW_NUMBER() OVER (PARTITION BY q.user_id, q.not_before > :now ORDER BY q.seq) AS round,
        t.turn
    FROM queued q JOIN turns t ON t.user_id = q.user_id),
fair AS (
    SELECT job_id, ROW_NUMBER() OVER (ORDER BY backoff, wait_until, round, turn, seq) AS rank
    FROM ordered)
"""

_TABLES = {"sqlite": ("jobs", "rowid"), "postgres": ("fm_jobs", "seq")}


def fair_ctes(dialect: Dialect) -> str:
    """The order's CTEs (ending in `fair`) in `dialect`; its one parameter, `now`, is `?1` in
    SQLite (the caller's first parameter) and `%(now)s` in PostgreSQL."""
    jobs, seq = _TABLES[dialect]
    text = _TEXT.format(jobs=jobs, seq=seq)
    return text.replace(":now", "?1" if dialect == "sqlite" else "%(now)s")
