"""Progress messages: the "accepted" message of each Telegram job, edited into a progress bar.

`ProgressTracker` follows the queue's events and keeps, per tracked job, the text its message
should show; one `ChatEditor` per chat sends the newest text when the chat's edit budget allows.

The budget: at most one edit (or replacement message) per chat per `BOT_PROGRESS_INTERVAL`, on
every path (events, refreshes, the reconcile, resume after a restart, and after a 429, which
holds the chat for `retry_after` and then sends the newest text). The budget belongs to the chat,
not to an editor task, so nothing that re-creates an editor can spend it twice.

A message that cannot be edited is never edited again: a deleted one (400) is replaced once by a
new message while its job runs; a chat that refused us (403, blocked) gets nothing until its user
writes again. Network and server errors only slow a chat down (backoff), and a periodic reconcile
re-reads every tracked job, so the messages converge to the truth once the Bot API is back.
A message the user moves on with (a "Menu" tap turns a finished job's message into the menu) is
released: its job forgets it in the database, so no restart edits it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiogram import Bot
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramRetryAfter,
)
from aiogram.types import FSInputFile, InlineKeyboardMarkup, InputMediaAnimation

from .bot_telegram import is_not_modified, user_gone
from .bot_views import progress_view
from .config import Settings
from .loops import wait_event
from .queue import JobEvent, JobQueue, is_closed
from .store import TERMINAL, Job, parse_time
from .store.port import BotStore
from .texts import t
from .vocabulary import Progress

log = logging.getLogger(__name__)


def _message_lost(exc: TelegramBadRequest) -> bool:
    """The message itself is gone (deleted) or can't be edited any more."""
    text = exc.message.lower()
    return "not found" in text or "can't be edited" in text


# The flag that carries the jobs a stopping bot saw rendering to the next run.
_INTERRUPTED = "bot_interrupted_jobs"
# The flag of the finished jobs whose final text went out (newest last), so that a start edits
# none of them again; kept short, as only the last `resume_window` matters.
_FINALS = "bot_final_edits"
_FINALS_KEPT = 300


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
    dead: bool = False  # never edited again (deleted, too old, or the chat refused us)
    resumed: bool = False  # back in the queue after a restart (not after a failed attempt)
    failures: int = 0  # edits failed in a row (network, server)
    failing_since: float | None = None
    preview: str | None = None  # the newest live preview (an MP4), to show in place of the text
    preview_version: int = 0
    preview_sent: int = 0
    is_media: bool = False  # the message shows a preview now: its caption carries the text
    media_refused: bool = False  # Telegram would not take a preview here: text it stays
    start_told: bool = False  # the message has said that rendering started
    continued: int | None = None  # after a restart, the pass the renderer continued from

    @property
    def wants_preview(self) -> bool:
        return (
            self.preview is not None
            and self.preview_version != self.preview_sent
            and not self.media_refused
            and not self.final
        )

    @property
    def pending(self) -> bool:
        return not self.dead and (self.text != self.sent or self.wants_preview)

    @property
    def final(self) -> bool:
        return self.status in TERMINAL


class ChatEditor:
    """Sends the pending texts of one chat's progress messages, within the chat's budget."""

    def __init__(self, tracker: ProgressTracker, chat_id: int) -> None:
        self.tracker = tracker
        self.chat_id = chat_id
        self.items: dict[str, Tracked] = {}
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.done()

    def poke(self) -> None:
        self.wake.set()
        # After stop() no new editor starts: it would reopen the bot's closed HTTP session.
        if not self.running and not self.tracker.halt.is_set():
            self.task = asyncio.create_task(self.run(), name=f"progress-{self.chat_id}")

    async def run(self) -> None:
        while not self.tracker.halt.is_set():
            for job_id, item in list(self.items.items()):
                if item.dead or (item.final and not item.pending):
                    del self.items[job_id]
                    self.tracker.forget(item)
            pending = [item for item in self.items.values() if item.pending]
            if not pending:
                if not self.items:
                    return
                self.wake.clear()
                await self.wake.wait()
                continue
            delay = self.tracker.budget_left(self.chat_id)
            if delay > 0:
                await wait_event(self.tracker.halt, delay)
                continue  # texts may have changed while waiting: take the newest
            item = pending[0]
            # The edited one goes to the back, so two jobs in one chat take turns.
            self.items[item.job_id] = self.items.pop(item.job_id)
            self.tracker.spend(self.chat_id)
            await self.tracker.edit(item)
            # Counted again from the answer: Telegram times edits by when they arrive, and a
            # slow request must not bring the next one closer than the interval.
            self.tracker.spend(self.chat_id)


class ProgressTracker:
    """Every tracked progress message, kept in step with the queue. See the module docstring."""

    resume_window = 900.0  # at start, jobs that ended this many seconds ago get a final edit
    resume_spacing = 0.05  # at start, chats get their first edit this far apart
    reconcile_interval = 5.0  # seconds between two re-reads of every tracked job
    failure_backoff = 30.0  # the longest pause of a chat after network or server errors
    give_up_after = 3600.0  # a message failing (network, server) this long is left alone

    def __init__(
        self,
        settings: Settings,
        jobs: JobQueue,
        store: BotStore,
        *,
        bot: Callable[[], Bot | None],
        language_of_job: Callable[[Job], Awaitable[str]],
        on_completed: Callable[[], None],
        blocked: Callable[[int], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self.jobs = jobs
        self.store = store
        self._bot = bot
        self._language_of_job = language_of_job
        self._on_completed = on_completed
        self._blocked_user = blocked
        self._tracked: dict[str, Tracked] = {}
        self._editors: dict[int, ChatEditor] = {}
        self._next_at: dict[int, float] = {}  # chat -> when its budget allows the next edit
        self._accepting: set[str] = set()
        self._untracked: set[str] = set()
        self._dead: set[tuple[int, int]] = set()  # (chat, message) never to be edited again
        self._replaced: set[str] = set()  # jobs whose deleted message was replaced once
        self._blocked: set[int] = set()  # chats that refused us, until their user writes
        self._edited = asyncio.Event()
        self.halt = asyncio.Event()  # set by stop(): the loop and the editors end
        self._events: asyncio.Queue[JobEvent] | None = None  # what run() follows
        self.resumed = asyncio.Event()  # set once the messages of the last run are picked up
        self._interrupted: set[str] = set()  # jobs that were rendering when the last run stopped
        self._finals: dict[str, None] = {}  # jobs whose final text went out (see _FINALS)

    # -- the budget ----------------------------------------------------------------------------

    def budget_left(self, chat_id: int) -> float:
        """Seconds until the chat may get its next edit (0 or less: now)."""
        return self._next_at.get(chat_id, 0.0) - time.monotonic()

    def spend(self, chat_id: int, seconds: float | None = None) -> None:
        """Use the chat's budget for `seconds` (the interval by default) from now."""
        seconds = self.settings.bot_progress_interval if seconds is None else seconds
        until = time.monotonic() + seconds
        self._next_at[chat_id] = max(self._next_at.get(chat_id, 0.0), until)

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

    def blocked(self, chat_id: int) -> bool:
        return chat_id in self._blocked

    def forget(self, item: Tracked) -> None:
        if self._tracked.get(item.job_id) is item:
            del self._tracked[item.job_id]

    def track(self, tracked: Tracked) -> None:
        self._prune()
        self._tracked[tracked.job_id] = tracked
        editor = self._editors.get(tracked.chat_id)
        if editor is None or not editor.running:
            editor = self._editors[tracked.chat_id] = ChatEditor(self, tracked.chat_id)
        editor.items[tracked.job_id] = tracked
        editor.poke()

    async def note_interrupted(self) -> None:
        """At stop: remember which tracked jobs were rendering, so the next run can say so."""
        running = [t.job_id for t in self._tracked.values() if t.status == "processing"]
        with contextlib.suppress(Exception):
            await self.store.set_flag(_INTERRUPTED, " ".join(running))

    def tasks(self) -> list[asyncio.Task[None]]:
        """The editors' tasks, for a clean stop."""
        return [e.task for e in self._editors.values() if e.task is not None]

    def held_chats(self) -> set[int]:
        """Chats with state held here (an editor, or an edit budget still running)."""
        return set(self._editors) | set(self._next_at)

    def _prune(self) -> None:
        """Forget chats with nothing in flight: the per-chat state stays as large as the
        chats with live jobs, not as every chat ever seen."""
        now = time.monotonic()
        for chat, until in list(self._next_at.items()):
            if until <= now:
                del self._next_at[chat]
        for chat, editor in list(self._editors.items()):
            if not editor.running and not editor.items:
                del self._editors[chat]

    def clear(self) -> None:
        self._editors.clear()
        self._tracked.clear()

    def stop(self) -> None:
        """The flag and the wake-ups: `run` and every chat's editor end at their next look."""
        self.halt.set()
        for editor in self._editors.values():
            editor.wake.set()
        if self._events is not None:
            self.jobs.events.end(self._events)

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
        if tracked.final and not job.terminal:
            return  # a stale read lost the race against the final event: the end is final
        self._show(tracked, job, eta=eta, position=position, live=figures)

    def _show(
        self,
        tracked: Tracked,
        job: Job,
        *,
        eta: float | None,
        position: int | None,
        live: Progress | None = None,
    ) -> None:
        tracked.status = job.status
        if job.status == "queued" and job.attempts > 0:
            tracked.resumed = not job.error  # a failed attempt leaves its error; a restart not
        phase, step = (live.phase, live.step) if live is not None else (job.phase, job.phase_step)
        if job.status == "processing" and phase == "resumed" and step:
            tracked.continued = step  # the renderer continues from a checkpoint at this pass
        tracked.text, tracked.markup = progress_view(
            tracked.lang,
            job,
            eta=eta,
            position=position,
            live=live,
            paused=self.jobs.paused,
            tries=self.settings.max_retries + 1,
            resumed=tracked.resumed,
            continued=tracked.continued,
            # Said once, by an edit of this message, then the progress goes on without it.
            starting=job.status == "processing" and not tracked.start_told,
        )
        self._poke(tracked.chat_id)

    async def refresh_all(self, *, user_id: int | None = None, lang: str | None = None) -> None:
        """Re-read every tracked job (of one user, switching to `lang` if given)."""
        for tracked in list(self._tracked.values()):
            if user_id is not None and tracked.user_id != user_id:
                continue
            if lang is not None:
                tracked.lang = lang
            job = await self.store.get_job(tracked.job_id)
            if job is not None:
                await self.refresh(tracked, job)

    async def settle(self, job: Job, within: float) -> None:
        """Bring a finished job's message to its final text before its video goes out.

        Waits for the chat's budget and the edit, at most `within` seconds.
        """
        tracked = self._tracked.get(job.job_id)
        if tracked is None:
            return
        await self.refresh(tracked, job, live=False)
        deadline = time.monotonic() + within
        while tracked.pending and self._tracked.get(job.job_id) is tracked:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._edited.clear()
            await wait_event(self._edited, left)

    async def release(self, chat_id: int, message_id: int) -> None:
        """The user took this message over (it shows a menu or a step now): never edit it."""
        self._dead.add((chat_id, message_id))
        for tracked in self._tracked.values():
            if tracked.chat_id == chat_id and tracked.message_id == message_id:
                tracked.dead = True
        await self.store.release_progress_message(chat_id, message_id)

    def show_preview(self, job_id: str, path: Path) -> None:
        """A new live preview of a running job: its message shows it, the progress as caption,
        at the chat's next edit (so within the budget)."""
        tracked = self._tracked.get(job_id)
        if tracked is None or tracked.final or tracked.media_refused:
            return
        tracked.preview = str(path)
        tracked.preview_version += 1
        self._poke(tracked.chat_id)

    async def user_returned(self, user_id: int, chat_id: int) -> None:
        """The user wrote to us again: their chat is open, their live jobs' messages too."""
        if chat_id not in self._blocked:
            return
        self._blocked.discard(chat_id)
        for status in ("processing", "queued"):
            for job in await self.store.list_jobs(user_id=user_id, status=status, limit=50):
                if job.chat_id == chat_id and job.job_id not in self._tracked:
                    await self._adopt(job)

    # -- following the queue -------------------------------------------------------------------

    async def run(self) -> None:
        """Follow job events; between them, reconcile every `reconcile_interval`."""
        async with self.jobs.subscribe() as events:
            self._events = events
            await self.resume()
            next_reconcile = time.monotonic() + self.reconcile_interval
            while True:
                try:
                    left = max(0.0, next_reconcile - time.monotonic())
                    async with asyncio.timeout(left):
                        event = await events.get()
                except TimeoutError:
                    await self._guarded(self.reconcile(), "reconcile")
                    next_reconcile = time.monotonic() + self.reconcile_interval
                    continue
                if is_closed(event):
                    log.info("job service stopped; progress updates end")
                    return
                await self._guarded(self._on_event(event), f"job {event.job.job_id}")

    @staticmethod
    async def _guarded(work: Awaitable[None], what: str) -> None:
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("progress update for %s failed", what)

    async def resume(self) -> None:
        """After a (re)start: pick up the progress messages of unfinished Telegram jobs.

        Jobs that ended shortly before are included when their final text never went out (their
        message id is cleared once it does). The chats' first edits are spread out.
        """
        count = 0
        recent = datetime.now(UTC) - timedelta(seconds=self.resume_window)
        self._interrupted = set((await self.store.get_flag(_INTERRUPTED) or "").split())
        finals = (await self.store.get_flag(_FINALS) or "").split()
        self._finals = dict.fromkeys([*finals, *self._finals][-_FINALS_KEPT:])
        chats: set[int] = set()
        for status in ("processing", "queued", "completed", "failed", "cancelled"):
            for job in await self.store.list_jobs(status=status, limit=1000):
                if job.terminal:
                    ended = parse_time(job.completed_at)
                    if ended is None or ended < recent or job.job_id in self._finals:
                        continue  # long over, or its final text went out already
                if job.chat_id is not None and job.chat_id not in chats:
                    self.spend(job.chat_id, len(chats) * self.resume_spacing)
                    chats.add(job.chat_id)
                if await self._adopt(job, at_start=True) is not None:
                    count += 1
        if count:
            log.info("resumed %d progress message(s)", count)
        self.resumed.set()

    async def reconcile(self) -> None:
        """Re-read every tracked job, and adopt live jobs whose messages nobody follows."""
        await self.refresh_all()
        for status in ("processing", "queued"):
            for job in await self.store.list_jobs(status=status, limit=1000):
                if job.job_id not in self._tracked:
                    await self._adopt(job)

    async def _adopt(self, job: Job, *, at_start: bool = False) -> Tracked | None:
        """Start tracking a job whose progress message id is in the database."""
        if job.source != "telegram" or job.chat_id is None or job.progress_message_id is None:
            return None
        if (
            job.job_id in self._accepting
            or job.job_id in self._untracked
            or job.chat_id in self._blocked
            or (job.chat_id, job.progress_message_id) in self._dead
        ):
            return None
        tracked = Tracked(
            job_id=job.job_id,
            user_id=job.user_id,
            chat_id=job.chat_id,
            message_id=job.progress_message_id,
            # A finished job's message stays in the language it was written in; a live one
            # follows the user's choice (as /language does while it runs).
            lang=(job.terminal and job.language) or await self._language_of_job(job),
            # A running job's message said it started (in this run or the last).
            start_told=job.status != "queued",
            # A live job that was rendering when the last run stopped, or one found at start
            # with an attempt behind it, was cut off by the restart. The first may be adopted
            # by its event rather than at start: the restarted dispatcher can pick it up while
            # `resume` lists the jobs, between its queued and its processing look.
            resumed=not job.terminal
            and (job.job_id in self._interrupted or (at_start and job.attempts > 0)),
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
            if job.terminal or job.job_id in self._accepting or job.job_id in self._untracked:
                return
            stored = await self.store.get_job(job.job_id)
            if stored is not None:
                await self._adopt(stored)
            return
        if event.preview is not None:  # SVD's live preview after a pass
            self.show_preview(job.job_id, event.preview.path)
        if event.kind == "progress":
            if not tracked.final:
                self._show(tracked, job, eta=event.eta_seconds, position=None)
        else:
            await self.refresh(tracked, job, eta=event.eta_seconds, live=False)

    # -- talking to Telegram -------------------------------------------------------------------

    async def edit(self, tracked: Tracked) -> None:
        """Send a progress message's newest text (or preview). Errors end in the log, never in a
        crash."""
        bot = self._bot()
        if bot is None:
            return
        text = tracked.text
        media = tracked.wants_preview
        try:
            await self._send(bot, tracked, text, media=media)
        except TelegramRetryAfter as exc:
            log.warning("progress of job %s: flood control %ss", tracked.job_id, exc.retry_after)
            self.spend(tracked.chat_id, float(exc.retry_after))
        except TelegramBadRequest as exc:
            if is_not_modified(exc):
                await self._sent(tracked, text)
            elif user_gone(exc):
                await self._chat_gone(tracked.chat_id, tracked.user_id, exc)
            elif media and not _message_lost(exc):
                # Telegram would not show the preview here: the text goes on as it was.
                log.info("job %s: preview refused (%s); text only", tracked.job_id, exc.message)
                tracked.media_refused = True
            else:
                await self._lost(bot, tracked, exc)
        except TelegramForbiddenError as exc:
            await self._chat_gone(tracked.chat_id, tracked.user_id, exc)
        except Exception as exc:  # network, server, an answer that is not JSON...
            self._failed(tracked, exc)
        else:
            await self._sent(tracked, text)
        finally:
            self._edited.set()

    @staticmethod
    async def _send(bot: Bot, tracked: Tracked, text: str, *, media: bool) -> None:
        """The one call for this edit: the preview with the text as its caption, the caption of
        a message that shows a preview, or the text."""
        chat_id, message_id, markup = tracked.chat_id, tracked.message_id, tracked.markup
        if media and tracked.preview is not None:
            # Taken even if this call fails: the next pass brings a newer preview anyway.
            tracked.preview_sent = tracked.preview_version
            animation = InputMediaAnimation(
                media=FSInputFile(tracked.preview, filename="preview.mp4"), caption=text
            )
            await bot.edit_message_media(
                media=animation, chat_id=chat_id, message_id=message_id, reply_markup=markup
            )
            tracked.is_media = True
        elif tracked.is_media:
            await bot.edit_message_caption(
                caption=text, chat_id=chat_id, message_id=message_id, reply_markup=markup
            )
        else:
            await bot.edit_message_text(
                text=text, chat_id=chat_id, message_id=message_id, reply_markup=markup
            )

    async def _sent(self, tracked: Tracked, text: str) -> None:
        tracked.sent = text
        tracked.failures, tracked.failing_since = 0, None
        if tracked.status == "processing" and text.startswith(self._started_line(tracked.lang)):
            tracked.start_told = True
        if tracked.final and text == tracked.text and tracked.job_id not in self._finals:
            self._finals[tracked.job_id] = None
            while len(self._finals) > _FINALS_KEPT:
                del self._finals[next(iter(self._finals))]
            with contextlib.suppress(Exception):  # only a needless edit at the next start
                await self.store.set_flag(_FINALS, " ".join(self._finals))

    @staticmethod
    def _started_line(lang: str) -> str:
        return t(lang, "progress_started").split("\n", 1)[0]

    def _failed(self, tracked: Tracked, exc: Exception) -> None:
        """A network or server error: slow the chat down; keep the text for later."""
        now = time.monotonic()
        tracked.failures += 1
        tracked.failing_since = tracked.failing_since or now
        tracked.dead = now - tracked.failing_since > self.give_up_after
        pause = min(self.failure_backoff, self.settings.bot_progress_interval * 2**tracked.failures)
        self.spend(tracked.chat_id, pause)
        log.warning(
            "progress of job %s %s: %s: %s",
            tracked.job_id,
            "abandoned" if tracked.dead else f"not updated (next try in {pause:.0f}s)",
            type(exc).__name__,
            exc,
        )

    async def _lost(self, bot: Bot, tracked: Tracked, exc: TelegramBadRequest) -> None:
        """The message is gone (deleted) or can't be edited: never again; replace it once."""
        tracked.dead = True
        self._dead.add((tracked.chat_id, tracked.message_id))
        log.info("progress message of job %s no longer editable: %s", tracked.job_id, exc.message)
        if tracked.final or tracked.job_id in self._replaced:
            return
        self._replaced.add(tracked.job_id)
        try:
            sent = await bot.send_message(
                tracked.chat_id, tracked.text, reply_markup=tracked.markup
            )
        except TelegramForbiddenError as gone:
            await self._chat_gone(tracked.chat_id, tracked.user_id, gone)
            return
        except Exception as error:  # the video still comes; only live progress is lost
            log.info("job %s: progress message not replaced: %s", tracked.job_id, error)
            return
        await self.store.set_progress_message(tracked.job_id, sent.message_id)
        replacement = Tracked(
            job_id=tracked.job_id,
            user_id=tracked.user_id,
            chat_id=tracked.chat_id,
            message_id=sent.message_id,
            lang=tracked.lang,
            status=tracked.status,
            text=tracked.text,
            markup=tracked.markup,
            sent=tracked.text,
        )
        self.track(replacement)

    async def _chat_gone(self, chat_id: int, user_id: int, exc: TelegramAPIError) -> None:
        log.info("chat %s is gone (%s): progress updates stop", chat_id, exc.message)
        self._blocked.add(chat_id)
        for item in self._tracked.values():
            if item.chat_id == chat_id:
                item.dead = True
        await self._blocked_user(user_id)
