"""The PostgreSQL schema of cluster mode: SQL text only.

Procrastinate owns its own tables (`procrastinate_*`, created from its package). Ours hold
what the front and the workers share: the job rows (the render side of the front's SQLite
rows), the workers and their heartbeats, and cluster-wide flags. Each version appends to
MIGRATIONS; `fm_schema` says how many a database has had.
"""

from __future__ import annotations

# Timestamps are text in the front's one format (ISO 8601 UTC with microseconds and a Z), made
# by the server's clock so that every box agrees on the order of starts.
SCHEMA = """
CREATE FUNCTION fm_now() RETURNS text LANGUAGE sql STABLE AS $$
    SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

CREATE TABLE fm_jobs (
    job_id          text PRIMARY KEY,
    seq             bigserial UNIQUE,
    user_id         bigint NOT NULL,
    duration        integer NOT NULL,
    resolution      text NOT NULL,
    motion_preset   text NOT NULL,
    aspect          text NOT NULL,
    strength        double precision NOT NULL,
    seed            bigint NOT NULL,
    steps           integer NOT NULL,
    fps             integer NOT NULL,
    status          text NOT NULL
                    CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'cancelled')),
    attempts        integer NOT NULL DEFAULT 0,
    interruptions   integer NOT NULL DEFAULT 0,
    not_before      double precision NOT NULL DEFAULT 0,
    pq_id           bigint,
    worker          text,
    renderer        text,
    progress        double precision NOT NULL DEFAULT 0,
    message         text NOT NULL DEFAULT 'queued',
    phase           text NOT NULL DEFAULT '',
    phase_step      integer NOT NULL DEFAULT 0,
    phase_steps     integer NOT NULL DEFAULT 0,
    error           text,
    output_path     text,
    width           integer,
    height          integer,
    frames          integer,
    size_bytes      bigint,
    render_seconds  double precision,
    created_at      text NOT NULL,
    started_at      text,
    completed_at    text,
    updated_at      text NOT NULL
);
CREATE INDEX fm_jobs_queued ON fm_jobs (user_id, seq) WHERE status = 'queued';
CREATE INDEX fm_jobs_active ON fm_jobs (status) WHERE status IN ('queued', 'processing');
CREATE INDEX fm_jobs_user_started ON fm_jobs (user_id, started_at);
CREATE INDEX fm_jobs_pq ON fm_jobs (pq_id);

-- One row per worker name: what it runs and when it last said so.
CREATE TABLE fm_workers (
    name            text PRIMARY KEY,
    host            text NOT NULL,
    pid             integer NOT NULL,
    renderer        text NOT NULL,
    renderer_state  jsonb NOT NULL DEFAULT '{}',
    state           text NOT NULL,
    job_id          text,
    jobs_done       integer NOT NULL DEFAULT 0,
    started_at      text NOT NULL,
    last_heartbeat  timestamptz NOT NULL DEFAULT now()
);

-- Cluster-wide flags that must survive a restart of any process (pause).
CREATE TABLE fm_flags (
    name  text PRIMARY KEY,
    value text NOT NULL
);
"""

# Version 2: how the clip is aimed (camera.Shot as JSON, the front's `shot` column), so a worker
# renders the framing, keyframes and loop the front resolved.
SHOT = """
ALTER TABLE fm_jobs ADD COLUMN shot text;
"""

# Version 3: what code each worker runs (package version and commit), so the front shows a
# worker of another version than its own.
WORKER_VERSION = """
ALTER TABLE fm_workers ADD COLUMN version text NOT NULL DEFAULT '';
"""

MIGRATIONS: list[str] = [SCHEMA, SHOT]
MIGRATIONS.append(WORKER_VERSION)
