"""One SQL text per job transition that both stores of record run: the single box's SQLite
(`store.jobs`, `store.owners`) and a cluster's PostgreSQL (`cluster.store`, `cluster.db`).

Written in SQLite's words and turned into PostgreSQL's by `texts.in_dialect` (the `fm_` table
prefix, `%s` placeholders). The clock is `fm_now()` in both: PostgreSQL's is a function of the
cluster's schema, SQLite's is registered on the store's connection (`store.base`); both give
the ISO UTC text that `rows.utcnow` gives. What stays apart is said where it is done: the
cluster keeps procrastinate's job in step and forgets the worker of a row that leaves it."""

from __future__ import annotations

# (renderer, job_id): queued -> processing.
START = (
    "UPDATE jobs SET status = 'processing', started_at = fm_now(), updated_at = fm_now(),"
    " renderer = ?, progress = 0, message = 'starting', phase = 'starting', phase_step = 0,"
    " phase_steps = 0, error = NULL WHERE job_id = ? AND status = 'queued' RETURNING *"
)
# (percent, message, phase, step, steps, job_id): the running attempt's progress.
PROGRESS = (
    "UPDATE jobs SET progress = ?, message = ?, phase = ?, phase_step = ?, phase_steps = ?,"
    " updated_at = fm_now() WHERE job_id = ? AND status = 'processing' RETURNING updated_at"
)
# (output_path, width, height, frames, size_bytes, render_seconds, job_id): processing ->
# completed. The row says the end whole, as a terminal event does: progress 100, phase `done`
# (`vocabulary.DONE`), no pass; the cluster checks its worker's fence first (`cluster.db`).
COMPLETE = (
    "UPDATE jobs SET status = 'completed', progress = 100, message = 'done', phase = 'done',"
    " phase_step = 0, phase_steps = 0, output_path = ?, width = ?, height = ?, frames = ?,"
    " size_bytes = ?, render_seconds = ?, error = NULL, completed_at = fm_now(),"
    " updated_at = fm_now() WHERE job_id = ? AND status = 'processing' RETURNING *"
)
# (error, job_id): queued|processing -> failed.
FAIL = (
    "UPDATE jobs SET status = 'failed', error = ?, message = 'failed',"
    " completed_at = fm_now(), updated_at = fm_now()"
    " WHERE job_id = ? AND status IN ('queued', 'processing') RETURNING *"
)
# (job_id, 'queued' or 'processing'): -> cancelled.
CANCEL = (
    "UPDATE jobs SET status = 'cancelled', message = 'cancelled',"
    " completed_at = fm_now(), updated_at = fm_now() WHERE job_id = ? AND status = ? RETURNING *"
)
# (message, error, 1 when the attempt counts else 0, not_before, job_id): processing -> queued,
# without the ended attempt's phase.
REQUEUE = (
    "UPDATE jobs SET status = 'queued', progress = 0, message = ?, error = ?,"
    " phase = '', phase_step = 0, phase_steps = 0, attempts = attempts + ?, not_before = ?,"
    " started_at = NULL, updated_at = fm_now()"
    " WHERE job_id = ? AND status = 'processing' RETURNING *"
)
# (job_id): failed -> queued, an operator's retry as a new attempt.
RETRY = (
    "UPDATE jobs SET status = 'queued', progress = 0, message = 'queued', error = NULL,"
    " phase = '', phase_step = 0, phase_steps = 0, attempts = attempts + 1,"
    " not_before = 0, started_at = NULL, completed_at = NULL, updated_at = fm_now()"
    " WHERE job_id = ? AND status = 'failed' RETURNING *"
)
# (error, job_id): the crash-loop guard gives up on a job whose attempt was interrupted once
# too often (`retry.after_interruption`); the interruption still counts.
INTERRUPTED_FAILED = (
    "UPDATE jobs SET status = 'failed', message = 'failed', error = ?,"
    " completed_at = fm_now(), updated_at = fm_now(), attempts = attempts + 1,"
    " interruptions = interruptions + 1 WHERE job_id = ? RETURNING *"
)
# (message, job_id): an interrupted attempt (a crash, a silent worker) goes back to the queue,
# counted, without its phase; the crash-loop guard reads `interruptions` next time.
INTERRUPTED_REQUEUE = (
    "UPDATE jobs SET status = 'queued', progress = 0, message = ?, phase = '', phase_step = 0,"
    " phase_steps = 0, attempts = attempts + 1, interruptions = interruptions + 1,"
    " not_before = 0, started_at = NULL, updated_at = fm_now() WHERE job_id = ? RETURNING *"
)

# -- the bot's and the storage's bookkeeping on a job row --------------------------------------

# (message_id, job_id)
SET_PROGRESS_MESSAGE = "UPDATE jobs SET progress_message_id = ? WHERE job_id = ? RETURNING *"
# (chat_id, message_id): the message is no longer a job's progress message.
RELEASE_PROGRESS_MESSAGE = (
    "UPDATE jobs SET progress_message_id = NULL WHERE chat_id = ? AND progress_message_id = ?"
)
# (input_path, output_path, 0 or 1, job_id)
SET_PATHS = (
    "UPDATE jobs SET input_path = ?, output_path = ?, archived = ? WHERE job_id = ? RETURNING *"
)
