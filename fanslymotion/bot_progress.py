"""Progress messages: the "accepted" message of each Telegram job, edited into a progress bar.

`ProgressTracker` follows the queue's events and keeps, per tracked job, the text the message
should show; one `ChatEditor` per chat sends the newest text at most once per
`BOT_PROGRESS_INTERVAL` and only when it changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramRetryAfter,
)
from aiogram.types import InlineKeyboardMarkup

from .bot_telegram import is_not_modified, user_gone
from .bot_views import progress_view
from .config import Settings
from .queue import JobEvent, JobQueue, is_closed
from .store import TERMINAL, Job, parse_time

log = logging.getLogger(__name__)


@dataclass
class Tracked:
    """One progress message: what it should say, and what Telegram has."""

    job_id: str
    user_id: int
    chat_id: int
    message_id: int
    lang: str
    status: str = "queued"
    text: str = ""
    markup: InlineKeyboardMarkup | None = None
    sent: str = ""
    dead: bool = False  # the message is gone (deleted, or the user blocked the bot)
    failures: int = 0  # edits failed in a row (network, server); too many and we give up

    @property
    def pending(self) -> bool:
        return not self.dead and self.text != self.sent


class ChatEditor:
    """Edits the progress messages of one chat, at most once per interval, only on change."""

    def __init__(self, tracker: ProgressTracker, chat_id: int) -> None:
        self.tracker = tracker
        self.chat_id = chat_id
        self.items: dict[str, Tracked] = {}
        self.wake = asyncio.Event()
        self.next_at = 0.0
        self.task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def poke(self) -> None:
        self.wake.set()
        if not self.running:
            self.task = asyncio.create_task(self.run(), name=f"progress-{self.chat_id}")

    def hold(self, seconds: float) -> None:
        """No edit in this chat for `seconds` (Telegram's flood control asked for it)."""
        self.next_at = time.monotonic() + seconds

    async def run(self) -> None:
        while True:
            for job_id, item in list(self.items.items()):
                if item.dead or (item.status in TERMINAL and not item.pending):
                    del self.items[job_id]
                    self.tracker.forget(job_id)
            pending = [item for item in self.items.values() if item.pending]
            if not pending:
                if not self.items:
                    return
                self.wake.clear()
                await self.wake.wait()
                continue
            delay = self.next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue  # texts may have changed while waiting: take the newest
            item = pending[0]
            await self.tracker.edit(item)
            self.next_at = time.monotonic() + self.tracker.settings.bot_progress_interval


class ProgressTracker:
    """Every tracked progress message, kept in step with the queue's events."""

    edit_attempts = 10  # progress edits failing in a row before a message is given up
    resume_window = 900.0  # at start, jobs that ended this many seconds ago get a final edit

    def __init__(
        self,
        settings: Settings,
        jobs: JobQueue,
        *,
        bot: Callable[[], Bot | None],
        language_of_job: Callable[[Job], Awaitable[str]],
        on_completed: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.jobs = jobs
        self.store = jobs.store
        self._bot = bot
        self._language_of_job = language_of_job
        self._on_completed = on_completed
        self._tracked: dict[str, Tracked] = {}
        self._editors: dict[int, ChatEditor] = {}
        self._accepting: set[str] = set()
        self._untracked: set[str] = set()

    # -- what the rest of the bot uses ---------------------------------------------------------

    @contextlib.contextmanager
    def accepting(self, job_id: str) -> Iterator[None]:
        """While a job's "accepted" message is on its way, its events wait for it."""
        self._accepting.add(job_id)
        try:
            yield
        finally:
            self._accepting.discard(job_id)

    def untracked(self, job_id: str) -> None:
        """The job has no progress message (it could not be sent): never adopt one."""
        self._untracked.add(job_id)

    def forget(self, job_id: str) -> None:
        self._tracked.pop(job_id, None)

    def track(self, tracked: Tracked) -> None:
        self._tracked[tracked.job_id] = tracked
        editor = self._editors.get(tracked.chat_id)
        if editor is None or not editor.running:
            editor = self._editors[tracked.chat_id] = ChatEditor(self, tracked.chat_id)
        editor.items[tracked.job_id] = tracked
        editor.poke()

    def tasks(self) -> list[asyncio.Task[None]]:
        """The editors' tasks, for a clean stop."""
        return [e.task for e in self._editors.values() if e.task is not None]

    def clear(self) -> None:
        self._editors.clear()
        self._tracked.clear()

    def _poke(self, chat_id: int) -> None:
        editor = self._editors.get(chat_id)
        if editor is not None:
            editor.poke()

    async def refresh(
        self, tracked: Tracked, job: Job, *, eta: float | None = None, live: bool = True
    ) -> None:
        """Recompute a progress message from the job's state and let its editor send it."""
        position = await self.store.queue_position(job.job_id) if job.status == "queued" else None
        if eta is None and not job.terminal:
            eta = await self.jobs.eta_seconds(job)
        figures = self.jobs.live_progress(job.job_id) if live else None
        if tracked.status in TERMINAL and not job.terminal:
            return  # a stale read lost the race against the final event: the end is final
        tracked.status = job.status
        tracked.text, tracked.markup = progress_view(
            tracked.lang, job, eta=eta, position=position, live=figures
        )
        self._poke(tracked.chat_id)

    # -- following the queue -------------------------------------------------------------------

    async def run(self) -> None:
        """Follow job events: progress messages and wake-ups of the delivery loop."""
        async with self.jobs.subscribe() as events:
            await self.resume()
            while True:
                event = await events.get()
                if is_closed(event):
                    log.info("job service stopped; progress updates end")
                    return
                try:
                    await self._on_event(event)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("progress update for job %s failed", event.job.job_id)

    async def resume(self) -> None:
        """After a (re)start: pick up the progress messages of unfinished Telegram jobs.

        Jobs that ended shortly before are included: the process may have stopped before their
        final edit went out (if it did, Telegram answers "not modified", which is ignored).
        """
        count = 0
        recent = datetime.now(UTC) - timedelta(seconds=self.resume_window)
        for status in ("processing", "queued", "completed", "failed", "cancelled"):
            for job in await self.store.list_jobs(status=status, limit=1000):
                if job.terminal:
                    ended = parse_time(job.completed_at)
                    if ended is None or ended < recent:
                        continue
                if await self._adopt(job) is not None:
                    count += 1
        if count:
            log.info("resumed %d progress message(s)", count)

    async def _adopt(self, job: Job) -> Tracked | None:
        """Start tracking a job whose progress message id is in the database."""
        if job.source != "telegram" or job.chat_id is None or job.progress_message_id is None:
            return None
        tracked = Tracked(
            job_id=job.job_id,
            user_id=job.user_id,
            chat_id=job.chat_id,
            message_id=job.progress_message_id,
            lang=await self._language_of_job(job),
        )
        self.track(tracked)
        await self.refresh(tracked, job)
        return tracked

    async def _on_event(self, event: JobEvent) -> None:
        job = event.job
        if event.kind == "status":
            if job.status == "completed" and job.source == "telegram":
                self._on_completed()
            # Someone's start or end moves everyone behind them up the queue.
            for other in list(self._tracked.values()):
                if other.job_id != job.job_id and other.status == "queued":
                    fresh = await self.store.get_job(other.job_id)
                    if fresh is not None:
                        await self.refresh(other, fresh)
        if job.source != "telegram" or job.chat_id is None:
            return
        tracked = self._tracked.get(job.job_id)
        if tracked is None:
            if job.job_id in self._accepting or job.job_id in self._untracked or job.terminal:
                return
            stored = await self.store.get_job(job.job_id)
            if stored is None or stored.progress_message_id is None:
                self._untracked.add(job.job_id)
                return
            await self._adopt(stored)
            return
        if event.kind == "progress":
            if tracked.status in TERMINAL:
                return
            tracked.status = job.status
            tracked.text, tracked.markup = progress_view(
                tracked.lang, job, eta=event.eta_seconds, position=None
            )
            self._poke(tracked.chat_id)
        else:
            await self.refresh(tracked, job, eta=event.eta_seconds, live=False)

    # -- talking to Telegram -------------------------------------------------------------------

    async def edit(self, tracked: Tracked) -> None:
        """Send a progress message's newest text. Errors end in the log, never in a crash."""
        bot = self._bot()
        if bot is None:
            return
        text, markup = tracked.text, tracked.markup
        try:
            await bot.edit_message_text(
                text=text,
                chat_id=tracked.chat_id,
                message_id=tracked.message_id,
                reply_markup=markup,
            )
        except TelegramRetryAfter as exc:
            # The middleware already waited what it could; try again after the rest.
            log.warning("progress of job %s: flood control %ss", tracked.job_id, exc.retry_after)
            editor = self._editors.get(tracked.chat_id)
            if editor is not None:
                editor.hold(exc.retry_after)
            return
        except TelegramBadRequest as exc:
            if is_not_modified(exc):
                tracked.sent = text
                return
            if user_gone(exc):
                await self._chat_gone(tracked.chat_id, tracked.user_id, exc)
                return
            # Deleted by the user, or too old to edit: stop following it; the video still comes.
            log.info("progress message of job %s no longer editable: %s", tracked.job_id, exc)
            tracked.dead = True
            return
        except TelegramForbiddenError as exc:
            await self._chat_gone(tracked.chat_id, tracked.user_id, exc)
            return
        except Exception as exc:  # network, server, an answer that is not JSON...
            # `sent` stays as it was: the editor tries again after its interval.
            tracked.failures += 1
            tracked.dead = tracked.failures >= self.edit_attempts
            log.warning(
                "progress of job %s %s: %s: %s",
                tracked.job_id,
                "abandoned" if tracked.dead else "not updated",
                type(exc).__name__,
                exc,
            )
            return
        tracked.sent = text
        tracked.failures = 0

    async def _chat_gone(self, chat_id: int, user_id: int, exc: TelegramAPIError) -> None:
        log.info("chat %s is gone (%s): progress updates stop", chat_id, exc.message)
        for item in self._tracked.values():
            if item.chat_id == chat_id:
                item.dead = True
        with contextlib.suppress(Exception):
            await self.store.set_blocked(user_id, True)
