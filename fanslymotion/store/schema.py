"""The one schema of the database and its migrations: SQL text only.

Version 1 is the schema; later versions append to MIGRATIONS, and `PRAGMA user_version` says
how many of them a database has had.
"""

from __future__ import annotations

# Version 1 of the schema. Later versions append to MIGRATIONS; `PRAGMA user_version` says
# how many of them a database has had.
SCHEMA = """
CREATE TABLE jobs (
    job_id              TEXT PRIMARY KEY,
    user_id             INTEGER NOT NULL,
    source              TEXT NOT NULL CHECK (source IN ('api', 'telegram')),
    chat_id             INTEGER,
    message_id          INTEGER,
    progress_message_id INTEGER,
    language            TEXT,
    duration            INTEGER NOT NULL,
    resolution          TEXT NOT NULL,
    motion_preset       TEXT NOT NULL,
    aspect              TEXT NOT NULL,
    strength            REAL NOT NULL,
    seed                INTEGER NOT NULL,
    steps               INTEGER NOT NULL,
    fps                 INTEGER NOT NULL,
    status              TEXT NOT NULL
                        CHECK (status IN ('queued', 'processing', 'completed', 'failed', 'cancelled')),
    progress            REAL NOT NULL DEFAULT 0,
    message             TEXT NOT NULL DEFAULT '',
    error               TEXT,
    attempts            INTEGER NOT NULL DEFAULT 0,
    renderer            TEXT,
    input_path          TEXT,
    output_path         TEXT,
    width               INTEGER,
    height              INTEGER,
    frames              INTEGER,
    size_bytes          INTEGER,
    render_seconds      REAL,
    idempotency_key     TEXT,
    not_before          REAL NOT NULL DEFAULT 0,
    created_at          TEXT NOT NULL,
    started_at          TEXT,
    completed_at        TEXT,
    updated_at          TEXT NOT NULL,
    archived            INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_status ON jobs (status);
CREATE INDEX jobs_user ON jobs (user_id, created_at);

-- Outbox of videos to send through Telegram, written in the same transaction that completes
-- the job, so a finished video is delivered even if the process dies right after.
-- pending -> sending (committed before the upload) -> sent | pending (retry) | undeliverable.
-- A row still `sending` at start means the process died mid-upload: Telegram may or may not
-- have the video, and it has no idempotency key, so the row becomes `interrupted` and the user
-- is offered a button instead of getting a possible second copy.
CREATE TABLE deliveries (
    job_id          TEXT PRIMARY KEY REFERENCES jobs (job_id),
    chat_id         INTEGER NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sending', 'sent', 'undeliverable', 'interrupted')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    file_id         TEXT,
    last_error      TEXT,
    created_at      TEXT NOT NULL,
    sent_at         TEXT
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);

-- aiogram's FSM: one row per (bot, chat, user, thread...) key.
CREATE TABLE fsm (
    key   TEXT PRIMARY KEY,
    state TEXT,
    data  TEXT NOT NULL DEFAULT '{}'
);

-- Per-user preferences of the bot (language) and whether the user blocked it.
CREATE TABLE users (
    user_id  INTEGER PRIMARY KEY,
    language TEXT,
    blocked  INTEGER NOT NULL DEFAULT 0
);

-- Small process-wide flags that must survive a restart (e.g. processing paused by an admin).
CREATE TABLE flags (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

# Version 2: the progress phase as the renderer reported it (a `Phase` value and its pass),
# so the bot and the page word it in the user's language rather than parsing `message`; and
# how many times the process died while rendering the job (the crash-loop guard's count).
PHASE_COLUMNS = """
ALTER TABLE jobs ADD COLUMN phase TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN phase_step INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN phase_steps INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN interruptions INTEGER NOT NULL DEFAULT 0;
"""

# The changing fields of a job at the moment of an event, kept with the event so a late
# delivery still tells what happened then (the API renders them as the status body).
_SNAPSHOT = """json_object('status', NEW.status, 'progress', NEW.progress, 'message', NEW.message,
    'phase', NEW.phase, 'phase_step', NEW.phase_step, 'phase_steps', NEW.phase_steps,
    'attempts', NEW.attempts, 'error', NEW.error, 'renderer', NEW.renderer,
    'started_at', NEW.started_at, 'completed_at', NEW.completed_at, 'updated_at', NEW.updated_at,
    'width', NEW.width, 'height', NEW.height, 'frames', NEW.frames,
    'size_bytes', NEW.size_bytes, 'output_path', NEW.output_path)"""
_EPOCH = "((julianday('now') - 2440587.5) * 86400.0)"
_EVENT = "CASE NEW.status WHEN 'processing' THEN 'started' ELSE NEW.status END"

# Version 3: webhooks. A job may name a receiver and the events it wants; the triggers write
# each event into the outbox inside the very transaction that changes the job, so no committed
# change can miss its event and no event exists without its change. Progress events coalesce:
# one pending row per job, whose snapshot the next progress overwrites (latest wins).
WEBHOOKS = f"""
ALTER TABLE jobs ADD COLUMN webhook_url TEXT;
ALTER TABLE jobs ADD COLUMN webhook_events TEXT;
CREATE TABLE webhook_outbox (
    msg_id          TEXT PRIMARY KEY,
    job_id          TEXT NOT NULL REFERENCES jobs (job_id),
    event           TEXT NOT NULL
                    CHECK (event IN ('started', 'progress', 'completed', 'failed', 'cancelled')),
    snapshot        TEXT NOT NULL,
    status          TEXT NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'sending', 'delivered', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error      TEXT,
    created         REAL NOT NULL,
    delivered_at    REAL
);
CREATE INDEX webhook_due ON webhook_outbox (status, next_attempt_at);
CREATE INDEX webhook_job ON webhook_outbox (job_id);
CREATE UNIQUE INDEX webhook_one_progress ON webhook_outbox (job_id)
    WHERE event = 'progress' AND status = 'pending';
CREATE TRIGGER webhook_on_status AFTER UPDATE OF status ON jobs
WHEN NEW.webhook_url IS NOT NULL AND NEW.status != OLD.status
    AND NEW.status IN ('processing', 'completed', 'failed', 'cancelled')
    AND EXISTS (SELECT 1 FROM json_each(NEW.webhook_events) WHERE value = {_EVENT})
BEGIN
    INSERT INTO webhook_outbox (msg_id, job_id, event, snapshot, created)
    VALUES ('msg_' || lower(hex(randomblob(16))), NEW.job_id, {_EVENT}, {_SNAPSHOT}, {_EPOCH});
END;
CREATE TRIGGER webhook_on_progress AFTER UPDATE OF progress ON jobs
WHEN NEW.webhook_url IS NOT NULL AND NEW.status = 'processing' AND OLD.status = 'processing'
    AND NEW.progress != OLD.progress
    AND EXISTS (SELECT 1 FROM json_each(NEW.webhook_events) WHERE value = 'progress')
BEGIN
    INSERT INTO webhook_outbox (msg_id, job_id, event, snapshot, created)
    VALUES ('msg_' || lower(hex(randomblob(16))), NEW.job_id, 'progress', {_SNAPSHOT}, {_EPOCH})
    ON CONFLICT (job_id) WHERE event = 'progress' AND status = 'pending'
    DO UPDATE SET snapshot = excluded.snapshot;
END;
"""

# Version 4: what an idempotency key was used for (parameters and photo digest), so that the
# same key with another request is refused instead of answered with the old job.
REQUEST_DIGEST = """
ALTER TABLE jobs ADD COLUMN request_digest TEXT;
"""

# Version 5: how the clip is aimed (camera.Shot as JSON: focus, keyframed camera, loop, the
# subject found in the photo and the warnings it earned); NULL for rows made before.
SHOT = """
ALTER TABLE jobs ADD COLUMN shot TEXT;
"""

# Version 6 (issue 25): a story job's shots, transitions, look, captions, watermark and music
# start (story.Story as JSON); NULL for a single-photo job. Its other photos, its music and its
# logo are files in inputs/<job_id>.story/.
STORY = """
ALTER TABLE jobs ADD COLUMN story TEXT;
"""

# Version 7: the operator's word on an owner (a job's (source, user_id)): a daily limit of
# seconds of video that replaces DAILY_SECONDS_PER_USER, and a block. Apart from `users.blocked`,
# which says that the user blocked our bot. The indexes serve the daily sums and the figures
# (bench/admin_stats.py): each one lets a figure be read in index order, without a sort.
OWNER_LIMITS = """
CREATE TABLE owner_limits (
    source        TEXT NOT NULL CHECK (source IN ('api', 'telegram')),
    user_id       INTEGER NOT NULL,
    daily_seconds INTEGER,
    blocked       INTEGER NOT NULL DEFAULT 0,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (source, user_id)
);
CREATE INDEX jobs_owner_usage ON jobs (source, user_id, created_at, status, duration);
CREATE INDEX jobs_ended ON jobs (status, completed_at, resolution, render_seconds);
CREATE INDEX jobs_render_times ON jobs (status, resolution, render_seconds, completed_at);
CREATE INDEX jobs_started ON jobs (started_at);
CREATE INDEX jobs_waited ON jobs ((julianday(started_at) - julianday(created_at)), started_at);
"""

MIGRATIONS: list[str] = [SCHEMA, PHASE_COLUMNS, WEBHOOKS, REQUEST_DIGEST, SHOT, STORY]
MIGRATIONS.append(OWNER_LIMITS)

# Version 8: a Telegram user's name as Telegram last sent it in an update (first and last name,
# @username without the @), so the operator's Users view names its Telegram owners.
USER_NAMES = """
ALTER TABLE users ADD COLUMN first_name TEXT;
ALTER TABLE users ADD COLUMN last_name TEXT;
ALTER TABLE users ADD COLUMN username TEXT;
"""
MIGRATIONS.append(USER_NAMES)

# Version 9 (issue 24): an idempotency key belongs to its owner, (source, user_id): Telegram user
# 7001 and API user 7001 are two owners and may both use the key "a" for their own jobs.
OWNER_IDEMPOTENCY = """
DROP INDEX jobs_idempotency;
CREATE UNIQUE INDEX jobs_idempotency ON jobs (source, user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
"""
MIGRATIONS.append(OWNER_IDEMPOTENCY)

# Version 10 (issue 24): the input photo's width x height: its decode and shrink take time too, so
# the learned ETA counts its pixels (eta.Kind). NULL for rows made before.
PHOTO_PIXELS = """
ALTER TABLE jobs ADD COLUMN photo_pixels INTEGER;
"""
MIGRATIONS.append(PHOTO_PIXELS)
