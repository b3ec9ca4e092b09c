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

# Version 3: PostgreSQL as the cluster's one store of record. A job row carries what the front
# wrote in its own SQLite before (the request's chat, photo, idempotency key, webhook), and the
# bot's tables and the webhook outbox live beside it, so a job's change, its Telegram delivery
# and its webhook events commit in one transaction, whoever writes it (front or worker).
FRONT = """
ALTER TABLE fm_jobs ADD COLUMN source text;
ALTER TABLE fm_jobs ADD COLUMN chat_id bigint;
ALTER TABLE fm_jobs ADD COLUMN message_id bigint;
ALTER TABLE fm_jobs ADD COLUMN progress_message_id bigint;
ALTER TABLE fm_jobs ADD COLUMN language text;
ALTER TABLE fm_jobs ADD COLUMN input_path text;
ALTER TABLE fm_jobs ADD COLUMN idempotency_key text;
ALTER TABLE fm_jobs ADD COLUMN request_digest text;
ALTER TABLE fm_jobs ADD COLUMN webhook_url text;
ALTER TABLE fm_jobs ADD COLUMN webhook_events text;
ALTER TABLE fm_jobs ADD COLUMN archived integer NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX fm_jobs_idempotency ON fm_jobs (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX fm_jobs_user_seq ON fm_jobs (user_id, seq);

-- The outbox of videos to send through Telegram (store.schema's `deliveries`).
CREATE TABLE fm_deliveries (
    job_id          text PRIMARY KEY REFERENCES fm_jobs (job_id),
    chat_id         bigint NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sending', 'sent', 'undeliverable', 'interrupted')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at double precision NOT NULL DEFAULT 0,
    file_id         text,
    last_error      text,
    created_at      text NOT NULL,
    sent_at         text
);
CREATE INDEX fm_deliveries_due ON fm_deliveries (status, next_attempt_at);

-- A completed Telegram job is queued for delivery by the very transaction that completes it.
CREATE FUNCTION fm_deliver() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO fm_deliveries (job_id, chat_id, created_at)
    VALUES (NEW.job_id, NEW.chat_id, fm_now()) ON CONFLICT (job_id) DO NOTHING;
    RETURN NULL;
END;
$$;
CREATE TRIGGER fm_jobs_deliver AFTER UPDATE OF status ON fm_jobs FOR EACH ROW
    WHEN (NEW.status = 'completed' AND OLD.status <> 'completed'
          AND NEW.source = 'telegram' AND NEW.chat_id IS NOT NULL)
    EXECUTE FUNCTION fm_deliver();

-- aiogram's FSM, the bot's users (store.schema's `fsm` and `users`); flags are `fm_flags`.
CREATE TABLE fm_fsm (
    key   text PRIMARY KEY,
    state text,
    data  text NOT NULL DEFAULT '{}'
);
CREATE TABLE fm_users (
    user_id  bigint PRIMARY KEY,
    language text,
    blocked  integer NOT NULL DEFAULT 0
);

-- The webhook outbox (store.schema's WEBHOOKS): the trigger writes each event in the
-- transaction of the change; progress events coalesce into one pending row per job.
CREATE TABLE fm_webhook_outbox (
    msg_id          text PRIMARY KEY,
    job_id          text NOT NULL REFERENCES fm_jobs (job_id),
    event           text NOT NULL
                    CHECK (event IN ('started', 'progress', 'completed', 'failed', 'cancelled')),
    snapshot        text NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at double precision NOT NULL DEFAULT 0,
    last_error      text,
    created         double precision NOT NULL,
    delivered_at    double precision
);
CREATE INDEX fm_webhook_due ON fm_webhook_outbox (status, next_attempt_at);
CREATE INDEX fm_webhook_job ON fm_webhook_outbox (job_id);
CREATE UNIQUE INDEX fm_webhook_one_progress ON fm_webhook_outbox (job_id)
    WHERE event = 'progress' AND status = 'pending';

CREATE FUNCTION fm_webhook_event() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kind text;
    snap text := json_build_object('status', NEW.status, 'progress', NEW.progress,
        'message', NEW.message, 'phase', NEW.phase, 'phase_step', NEW.phase_step,
        'phase_steps', NEW.phase_steps, 'attempts', NEW.attempts, 'error', NEW.error,
        'renderer', NEW.renderer, 'started_at', NEW.started_at,
        'completed_at', NEW.completed_at, 'updated_at', NEW.updated_at, 'width', NEW.width,
        'height', NEW.height, 'frames', NEW.frames, 'size_bytes', NEW.size_bytes,
        'output_path', NEW.output_path)::text;
    msg text := 'msg_' || replace(gen_random_uuid()::text, '-', '');
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status THEN
        kind := CASE NEW.status WHEN 'processing' THEN 'started' ELSE NEW.status END;
        IF kind IN ('started', 'completed', 'failed', 'cancelled')
                AND NEW.webhook_events::jsonb ? kind THEN
            INSERT INTO fm_webhook_outbox (msg_id, job_id, event, snapshot, created)
            VALUES (msg, NEW.job_id, kind, snap, extract(epoch FROM clock_timestamp()));
        END IF;
    ELSIF NEW.status = 'processing' AND NEW.progress <> OLD.progress
            AND NEW.webhook_events::jsonb ? 'progress' THEN
        INSERT INTO fm_webhook_outbox (msg_id, job_id, event, snapshot, created)
        VALUES (msg, NEW.job_id, 'progress', snap, extract(epoch FROM clock_timestamp()))
        ON CONFLICT (job_id) WHERE event = 'progress' AND status = 'pending'
        DO UPDATE SET snapshot = excluded.snapshot;
    END IF;
    RETURN NULL;
END;
$$;
CREATE TRIGGER fm_jobs_webhook AFTER UPDATE OF status, progress ON fm_jobs FOR EACH ROW
    WHEN (NEW.webhook_url IS NOT NULL) EXECUTE FUNCTION fm_webhook_event();
"""

# Version 4: a story's shots, transitions and music (story.Story as JSON; NULL for one photo).
STORY = """
ALTER TABLE fm_jobs ADD COLUMN story text;
"""

# Version 5: what code each worker runs (package version and commit), so the front shows a
# worker of another version than its own.
WORKER_VERSION = """
ALTER TABLE fm_workers ADD COLUMN version text NOT NULL DEFAULT '';
"""

MIGRATIONS: list[str] = [SCHEMA, SHOT, FRONT, STORY]
MIGRATIONS.append(WORKER_VERSION)

# Version 6: the operator's word on an owner (store.schema's OWNER_LIMITS): a daily limit that
# replaces DAILY_SECONDS_PER_USER, and a block; the indexes serve the daily sums and figures.
OWNER_LIMITS = """
CREATE TABLE fm_owner_limits (
    source        text NOT NULL CHECK (source IN ('api', 'telegram')),
    user_id       bigint NOT NULL,
    daily_seconds integer,
    blocked       integer NOT NULL DEFAULT 0,
    updated_at    text NOT NULL,
    PRIMARY KEY (source, user_id)
);
CREATE INDEX fm_jobs_owner_usage ON fm_jobs (source, user_id, created_at, status, duration);
CREATE INDEX fm_jobs_ended ON fm_jobs (status, completed_at, resolution, render_seconds);
CREATE INDEX fm_jobs_started_at ON fm_jobs (started_at);
"""
MIGRATIONS.append(OWNER_LIMITS)

# Version 7: the queue wait, stored. A cast of text to a timestamp is not immutable, so no index
# could hold a wait and every figure parsed two timestamps per row; `fm_epoch` reads the rows'
# one fixed format (iso_utc, fm_now) with immutable functions only, `waited` keeps each job's
# wait (seconds from made to last start) as its row is written, and `fm_jobs_waited` holds them
# in order, so a percentile is the row at its rank, as SQLite's `jobs_waited` serves it. A text
# of another shape gives NULL rather than an error, which would refuse the job's write.
WAITED = """
CREATE FUNCTION fm_epoch(t text) RETURNS double precision
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN t ~ '^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(\\.\\d+)?Z$' THEN
        extract(epoch FROM make_timestamp(substr(t, 1, 4)::int, substr(t, 6, 2)::int,
            substr(t, 9, 2)::int, substr(t, 12, 2)::int, substr(t, 15, 2)::int,
            rtrim(substr(t, 18), 'Z')::double precision))::double precision
    END
$$;
ALTER TABLE fm_jobs ADD COLUMN waited double precision
    GENERATED ALWAYS AS (fm_epoch(started_at) - fm_epoch(created_at)) STORED;
CREATE INDEX fm_jobs_waited ON fm_jobs (waited, started_at);
"""
MIGRATIONS.append(WAITED)

# Version 8: a Telegram user's name as Telegram last sent it (store.schema's USER_NAMES).
USER_NAMES = """
ALTER TABLE fm_users ADD COLUMN first_name text;
ALTER TABLE fm_users ADD COLUMN last_name text;
ALTER TABLE fm_users ADD COLUMN username text;
"""
MIGRATIONS.append(USER_NAMES)

# Version 9 (issue 24): an idempotency key belongs to its owner, (source, user_id), as in
# store.schema's OWNER_IDEMPOTENCY.
OWNER_IDEMPOTENCY = """
DROP INDEX fm_jobs_idempotency;
CREATE UNIQUE INDEX fm_jobs_idempotency ON fm_jobs (source, user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
"""
MIGRATIONS.append(OWNER_IDEMPOTENCY)

# Version 10 (issue 24): the input photo's width x height, for the ETA (store.schema's
# PHOTO_PIXELS).
PHOTO_PIXELS = """
ALTER TABLE fm_jobs ADD COLUMN photo_pixels bigint;
"""
MIGRATIONS.append(PHOTO_PIXELS)
