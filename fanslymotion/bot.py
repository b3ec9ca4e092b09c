"""The Telegram bot (aiogram 3), running in the service's event loop beside the HTTP API.

The bot lives in a few rooms:
- `bot.py` (here): `TelegramBot`, the life cycle (connect with backoff, long polling without
  signal handlers), the per-update middleware (allow-list, language, a user back after a
  block), submitting a job, downloads;
- `bot_views.py`: states, callback data, keyboards and texts, pure functions;
- `bot_screens.py`: showing the conversation in its one live message;
- `bot_handlers.py`: the handlers, with their dependencies injected by aiogram by name;
- `bot_photo.py`: the photo's handlers (photo first, albums, HEIC, wrong files);
- `bot_progress.py`: the progress messages, within each chat's edit budget;
- `bot_delivery.py`: the delivery outbox over SQLite (parallel across chats, survives restarts);
- `bot_telegram.py`: FSM storage, the request middleware and the error kinds.

Users never see a traceback or a server detail: every error has a text of its own in their
language, and the real cause goes to the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.fsm.context import FSMContext
from aiogram.fsm.storage.memory import SimpleEventIsolation
from aiogram.types import (
    BotCommand,
    BotCommandScopeChat,
    ErrorEvent,
    ReplyParameters,
    User,
)
from aiogram.utils.token import TokenValidationError, validate_token

from .bot_album import Albums
from .bot_context import Context
from .bot_delivery import Outbox
from .bot_files import heic_to_png
from .bot_handlers import build_router
from .bot_miniapp import set_menu_button
from .bot_progress import ProgressTracker, Tracked
from .bot_telegram import (
    REDACTED,
    REDACTED_LOGGERS,
    TRANSIENT,
    Gate,
    RedactToken,
    RetryAfter,
    SessionClosed,
    SQLiteStorage,
    gone_text,
)
from .bot_views import (
    accepted_text,
    error_text,
    live_keyboard,
    missed_keyboard,
    upscale_text,
)
from .camera import make_shot
from .config import Settings
from .errors import FanslyError, TooManyJobs
from .loops import stop_tasks, wait_event
from .models import FPS_CHOICES, JobRequest
from .queue import JobQueue
from .store import Job, UserName
from .store.port import BotStore
from .story import Story
from .story_intake import StoryFiles
from .texts import COMMANDS, LANGUAGES, language_from_code, t, videos

log = logging.getLogger(__name__)

# How many photo references the conversation keeps for "again" and "other motion".
PHOTOS_KEPT = 20


class TelegramBot:
    """The bot's life cycle, its language memory and job submission. See the module docstring."""

    polling_timeout = 30  # seconds a getUpdates long poll may wait
    download_attempts = 4  # tries of a photo download that fails on the network or a 5xx
    download_backoff = 0.5
    connect_backoff = 2.0  # first delay before reconnecting to the Bot API, doubled per try
    connect_max_backoff = 300.0
    stop_grace = 5.0

    def __init__(self, settings: Settings, jobs: JobQueue, store: BotStore) -> None:
        self.settings = settings
        self.jobs = jobs
        self.store = store  # the bot's own tables (languages, conversations, deliveries)
        self.bot: Bot | None = None
        self.dispatcher: Dispatcher | None = None
        self.username: str | None = None
        self._enabled = False
        self._state = "off"
        self._reason = "not started"
        self._stopping = False
        self._halt = asyncio.Event()  # set by stop(): the connect backoff ends at once
        self._runner: asyncio.Task[None] | None = None
        self._progress_task: asyncio.Task[None] | None = None
        self._delivery_task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._gate = Gate()
        self._languages: dict[int, str] = {}
        self.connect_attempts = 0
        self._present: set[int] = set()  # users seen (and unblocked) by this process
        self._names: dict[int, UserName] = {}  # each user's name as this process stored it
        self._albums: dict[int, str] = {}  # chat -> the album whose first photo was taken
        self.albums = Albums()  # the parts of albums arriving now (bot_story)
        self._redact: RedactToken | None = None
        self.outbox = Outbox(
            settings,
            self.store,
            bot=self.current_bot,
            language_of_job=self.language_of_job,
            stopping=self.stop_requested,
            before_send=self._settle,
            blocked=self.mark_blocked,
            chat_blocked=self._chat_blocked,
        )
        self.progress = ProgressTracker(
            settings,
            jobs,
            store,
            bot=self.current_bot,
            language_of_job=self.language_of_job,
            on_completed=self.outbox.wake,
            blocked=self.mark_blocked,
        )

    # -- life cycle ------------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        return {"enabled": self._enabled, "state": self._state, "reason": self._reason}

    def stop_requested(self) -> bool:
        # A method, not an attribute: stop() flips the flag while _run awaits.
        return self._stopping

    def current_bot(self) -> Bot | None:
        """The connected Bot, or None between connections."""
        return self.bot

    def _chat_blocked(self, chat_id: int) -> bool:
        return self.progress.blocked(chat_id)

    async def _settle(self, job: Job, within: float) -> None:
        await self.progress.settle(job, within)

    @contextlib.contextmanager
    def handling(self) -> Iterator[None]:
        """Mark the current task as a running handler, so stop() can wait for it."""
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            yield
        finally:
            if task is not None:
                self._inflight.discard(task)

    def _set_state(self, state: str, reason: str) -> None:
        self._state, self._reason = state, reason

    async def start(self) -> None:
        """Connect in the background; never raises (the HTTP API keeps serving either way)."""
        secret = (
            self.settings.bot_token.get_secret_value().strip() if self.settings.bot_token else ""
        )
        if not secret:
            self._set_state("off", "FANSLYMOTION_BOT_TOKEN is not set")
            log.info("Telegram bot off: FANSLYMOTION_BOT_TOKEN is not set")
            return
        try:
            validate_token(secret)
        except TokenValidationError:
            self._set_state("off", "the bot token is malformed (expected <digits>:<secret>)")
            log.error("Telegram bot off: the bot token is malformed (expected <digits>:<secret>)")
            return
        self._enabled = True
        self._stopping = False
        self._halt.clear()
        self.progress.halt.clear()
        self._redact = RedactToken(secret)
        for name in REDACTED_LOGGERS:
            logging.getLogger(name).addFilter(self._redact)
        self._set_state("connecting", f"connecting to {self.settings.telegram_api}")
        self.dispatcher = self._build_dispatcher()
        self._runner = asyncio.create_task(self._run(secret), name="telegram-bot")

    async def stop(self) -> None:
        """Stop polling, progress and deliveries; wait briefly for handlers; close the session.

        Every loop stops on the flag and its wake-up; what is still running after the grace
        is cancelled, and what does not end even then is logged."""
        self._stopping = True
        self._halt.set()
        self.progress.stop()
        if self.dispatcher is not None:
            with contextlib.suppress(RuntimeError, TimeoutError):  # RuntimeError: not polling
                async with asyncio.timeout(self.stop_grace):
                    await self.dispatcher.stop_polling()
        # A delivery in flight may finish: cancelled between its upload and the commit of
        # `sent`, the next process would send the same video again.
        self.outbox.wake()
        await stop_tasks(
            [
                task
                for task in (self._delivery_task, self._progress_task, self._runner)
                if task is not None
            ]
            + self.progress.tasks()
            + self.outbox.senders(),
            self.stop_grace,
            "bot",
        )
        await self.albums.stop()  # an album still gathering is dropped
        await self._wait_handlers()
        # Handlers that ran meanwhile may have started editors: those stop too.
        self.progress.stop()
        await stop_tasks(self.progress.tasks(), 1.0, "bot")
        self._progress_task = self._delivery_task = self._runner = None
        if self._enabled:
            await self.progress.note_interrupted()
        self.progress.clear()
        if self.bot is not None:
            self._gate.closed = True
            await self.bot.session.close()
        if self._enabled:
            self._set_state("off", "stopped")
            log.info("Telegram bot stopped")
        if self._redact is not None:
            for name in REDACTED_LOGGERS:
                logging.getLogger(name).removeFilter(self._redact)

    async def _wait_handlers(self) -> None:
        """Let running handlers finish (a while), then cancel the rest; also those that began
        while the first ones were awaited (updates polling had already fetched)."""
        deadline = time.monotonic() + self.stop_grace
        left_behind: set[asyncio.Future[Any]] = set()
        while running := self._inflight - left_behind:
            left = max(0.0, deadline - time.monotonic())
            left_behind.update(await stop_tasks(running, left, "bot handlers"))

    def _make_bot(self, token: str) -> Bot:
        api = TelegramAPIServer.from_base(self.settings.telegram_api)
        session = AiohttpSession(api=api)
        self._gate = Gate()
        session.middleware(self._gate)  # first registered = outermost
        session.middleware(RetryAfter())
        return Bot(token=token, session=session)

    def _build_dispatcher(self) -> Dispatcher:
        # Events of one user are handled one at a time, so quick double presses cannot race
        # on the FSM data.
        # The keyword arguments are workflow data: aiogram hands each handler the ones it names.
        dispatcher = Dispatcher(
            storage=SQLiteStorage(self.store),
            events_isolation=SimpleEventIsolation(),
            telegram=self,
            store=self.store,
            jobs=self.jobs,
            settings=self.settings,
        )
        dispatcher.update.outer_middleware(Context(self))
        dispatcher.include_router(build_router(admins=self.settings.admins))
        dispatcher.errors.register(self._on_error)
        return dispatcher

    async def _run(self, token: str) -> None:
        """Connect (with backoff) and poll until stopped."""
        delay = self.connect_backoff
        while not self.stop_requested():
            bot = self._make_bot(token)
            self.connect_attempts += 1
            reason = await self._connect(bot)
            if reason is None:
                delay = self.connect_backoff
                reason = await self._poll(bot)
                if reason is None:
                    return  # stop_polling() was called
            if self.stop_requested():
                if self.bot is not bot:  # stop() closes only the connected bot's session
                    await bot.session.close()
                return
            # aiohttp quotes the whole URL in some errors, and the URL holds the token.
            reason = reason.replace(token, REDACTED)
            self._set_state("retrying", f"{reason}; retrying in {delay:g}s")
            log.warning("Telegram bot not connected: %s; retrying in %gs", reason, delay)
            if self.bot is bot:
                self.bot = None  # progress and deliveries wait for the next connection
            await bot.session.close()
            await wait_event(self._halt, delay)
            delay = min(delay * 2, self.connect_max_backoff)

    async def _connect(self, bot: Bot) -> str | None:
        """Say hello to the Bot API; None once connected, else why not."""
        try:
            me = await bot.me()
            await bot.delete_webhook(drop_pending_updates=False)
            await self._set_commands(bot)
            await set_menu_button(bot, self.settings)
        except asyncio.CancelledError:
            await bot.session.close()
            raise
        except TelegramUnauthorizedError:
            return "Telegram rejected the bot token (401 Unauthorized)"
        except TelegramNetworkError as exc:
            return f"the Telegram Bot API is unreachable ({exc.message})"
        except TelegramAPIError as exc:
            return f"the Telegram Bot API answered an error ({exc.message})"
        except Exception as exc:  # e.g. a malformed answer: keep the service up, retry
            return f"unexpected {type(exc).__name__} while connecting: {exc}"
        self.bot = bot
        self.username = me.username
        self._set_state("polling", f"polling as @{me.username}")
        log.info("Telegram bot @%s connected; polling for updates", me.username)
        if self._progress_task is None:  # the first connection starts them, for good
            self._progress_task = asyncio.create_task(self.progress.run(), name="bot-progress")
            self._delivery_task = asyncio.create_task(self.outbox.run(), name="bot-delivery")
        return None

    async def _poll(self, bot: Bot) -> str | None:
        """Long-poll until stopped (None) or until polling fails (why)."""
        assert self.dispatcher is not None
        try:
            await self.dispatcher.start_polling(
                bot,
                polling_timeout=self.polling_timeout,
                handle_signals=False,  # the service owns SIGINT/SIGTERM
                close_bot_session=False,
                allowed_updates=self.dispatcher.resolve_used_update_types(),
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("Telegram polling failed")
            return f"polling stopped: {type(exc).__name__}: {exc}"
        return None

    async def _set_commands(self, bot: Bot) -> None:
        for lang in LANGUAGES:
            commands = [BotCommand(command=c, description=d) for c, d in COMMANDS[lang]]
            # English is the default list; Russian clients get their own.
            await bot.set_my_commands(commands, language_code=None if lang == "en" else lang)

    # -- shared helpers --------------------------------------------------------------------------

    async def language(self, user: User | None) -> str:
        if user is None:
            return "en"
        cached = self._languages.get(user.id)
        if cached is not None:
            return cached
        lang = await self.store.get_language(user.id) or language_from_code(user.language_code)
        self._languages[user.id] = lang
        return lang

    async def language_of_job(self, job: Job) -> str:
        cached = self._languages.get(job.user_id)
        if cached is not None:
            return cached
        stored = await self.store.get_language(job.user_id)
        return stored or job.language or "en"

    async def set_language(self, bot: Bot, user_id: int, lang: str) -> None:
        """Store the choice; the chat's command menu and its jobs' messages follow it."""
        await self.store.set_language(user_id, lang)
        self._languages[user_id] = lang
        commands = [BotCommand(command=c, description=d) for c, d in COMMANDS[lang]]
        try:  # in a private chat the chat id is the user id
            await bot.set_my_commands(commands, scope=BotCommandScopeChat(chat_id=user_id))
        except TelegramAPIError as exc:  # only the menu's language: never worth failing for
            log.info("commands for chat %s not set: %s", user_id, exc.message)
        await self.progress.refresh_all(user_id=user_id, lang=lang)

    async def mark_blocked(self, user_id: int) -> None:
        """The user blocked us (or is gone): nothing more goes to them until they write."""
        self._present.discard(user_id)
        with contextlib.suppress(Exception):
            await self.store.set_blocked(user_id, True)

    async def remember_name(self, user: User) -> None:
        """Store the user's name as this update carries it (the operator's Users view shows
        it), when this process has not stored that very name yet."""
        name = UserName(user.first_name, user.last_name or None, user.username or None)
        if self._names.get(user.id) == name:
            return
        try:
            await self.store.set_name(user.id, name)
        except Exception as exc:  # only the operator's view of the name: never worth failing for
            log.warning("user %s: name not stored: %s", user.id, exc)
            return
        self._names[user.id] = name

    async def user_wrote(self, user_id: int, lang: str) -> None:
        """An update from the user: if they had blocked us, they are back; offer what they missed.

        Checked once per user and process (and again after a block), not on every update.
        """
        if user_id in self._present:
            return
        self._present.add(user_id)
        if not await self.store.unblock(user_id):
            return
        log.info("user %s is reachable again", user_id)
        await self.progress.user_returned(user_id, chat_id=user_id)
        missed = await self.missed_videos(user_id)
        bot = self.bot
        if missed and bot is not None:
            try:
                await bot.send_message(
                    user_id,
                    t(lang, "missed_videos", videos=videos(lang, len(missed))),
                    reply_markup=missed_keyboard(lang, missed[-1]),
                )
            except TelegramAPIError as exc:  # the update itself is still handled
                log.info("user %s: missed videos not offered: %s", user_id, exc.message)

    async def missed_videos(self, user_id: int) -> list[str]:
        """Jobs whose video was given up because the user could not be reached."""
        return [d.job_id for d in await self.store.undelivered(user_id) if gone_text(d.last_error)]

    async def send_missed(self, user_id: int) -> int:
        """Put the user's missed videos back into the outbox; how many."""
        count = 0
        for job_id in await self.missed_videos(user_id):
            count += await self.store.redeliver(job_id)
        if count:
            self.outbox.wake()
        return count

    def album_part(self, chat_id: int, media_group_id: str | None) -> str:
        """ "first" for an album's first photo, "later" for the rest, "none" outside albums."""
        if not media_group_id:
            return "none"
        if self._albums.get(chat_id) == media_group_id:
            return "later"
        self._albums[chat_id] = media_group_id
        return "first"

    def is_admin(self, user_id: int) -> bool:
        return user_id in self.settings.admins

    def is_allowed(self, user_id: int) -> bool:
        allowed = self.settings.allowed_users
        return not allowed or user_id in allowed or self.is_admin(user_id)

    async def active_jobs(self, user_id: int) -> list[Job]:
        running = await self.store.list_jobs(user_id=user_id, status="processing", limit=50)
        queued = await self.store.list_jobs(user_id=user_id, status="queued", limit=50)
        return running + sorted(queued, key=lambda job: job.created_at)

    async def _on_error(self, event: ErrorEvent) -> None:
        """Last resort: log the real error, tell the user only that something went wrong."""
        exc = event.exception
        update = event.update
        if isinstance(exc, TelegramForbiddenError):
            log.info("update %s: the user blocked the bot (%s)", update.update_id, exc.message)
            return
        if isinstance(exc, SessionClosed):
            log.info("update %s: left unanswered, the bot stopped", update.update_id)
            return
        log.error(
            "update %s failed: %s: %s", update.update_id, type(exc).__name__, exc, exc_info=exc
        )
        with contextlib.suppress(Exception):
            if update.callback_query is not None:
                lang = await self.language(update.callback_query.from_user)
                await update.callback_query.answer(t(lang, "generic_error"), show_alert=True)
            elif update.message is not None:
                lang = await self.language(update.message.from_user)
                await update.message.answer(t(lang, "generic_error"))

    # -- submitting a job ------------------------------------------------------------------------

    async def submit(
        self,
        *,
        bot: Bot,
        chat_id: int,
        user_id: int,
        lang: str,
        params: dict[str, Any],
        image: bytes,
        photo_ref: str | None,
        state: FSMContext,
        reply_to: int | None = None,
        note: str = "",
        ends_flow: bool = True,
        collapse: tuple[int, str] | None = None,
        story: Story | None = None,
        story_files: StoryFiles | None = None,
    ) -> Job | None:
        """Queue a job and send its "accepted" message, which becomes the progress message.

        Returns None when the service refused (the user got a friendly message). With
        `ends_flow` the conversation's steps are over; without (another variant, try again)
        whatever the user is in the middle of stays as it is. `collapse` (message id, text):
        the prompt this job answers, shown as that one line once the job is queued.
        """
        request = JobRequest(
            user_id=user_id,
            duration=int(params["duration"]),
            resolution=str(params["resolution"]),
            motion_preset=str(params["motion"]),
            aspect=str(params.get("aspect") or "auto"),
            fps=int(params["fps"]) if params.get("fps") in FPS_CHOICES else None,
            shot=make_shot(focus=params.get("focus")),
            source="telegram",
            chat_id=chat_id,
            message_id=reply_to,
            language=lang,
        )
        if story is not None:  # several photos or music (bot_story): the story's length
            seconds = story.timeline(request.fps or self.settings.fps).seconds
            request = replace(request, duration=max(1, round(seconds)), story=story)
        try:
            job, _ = await self.jobs.submit(request, image, story_files=story_files)
        except FanslyError as exc:
            active = len(await self.active_jobs(user_id)) if isinstance(exc, TooManyJobs) else 0
            log.info("job refused for user %s: %s", user_id, exc.message)
            text = error_text(lang, exc, active=active, limit=self.settings.max_active_per_user)
            await bot.send_message(chat_id, text)
            return None
        # No await between submit() and here: the progress watcher cannot see this job's
        # events before it knows that its message is on the way.
        with self.progress.accepting(job.job_id):
            if collapse is not None:
                await self._collapse(bot, chat_id, *collapse)
            tracked = await self._send_accepted(bot, job, chat_id, lang, reply_to, note)
        if tracked is not None:
            await self.store.set_progress_message(job.job_id, tracked.message_id)
            # Events may have passed while the message was on its way: catch up from the database.
            fresh = await self.store.get_job(job.job_id)
            if fresh is not None:
                await self.progress.refresh(tracked, fresh)
        data = await state.get_data()
        photos = dict(data.get("photos") or {})
        if photo_ref is not None:
            photos[job.job_id] = photo_ref
        # Keep the newest few (dicts keep insertion order).
        photos = dict(list(photos.items())[-PHOTOS_KEPT:])
        kept = ("duration", "resolution", "motion", "aspect", "fps")
        last = {step: params.get(step) for step in kept}
        # The photo and settings are remembered; the caller tidies the conversation's message.
        update: dict[str, Any] = {"photos": photos, "last": last}
        if collapse is not None:
            update["conv"] = None  # answered: no live prompt until the next one
        if ends_flow:
            update.update(reuse=None, pending=None, photo_of=None, album=None, music=None)
        await state.set_data({**data, **update})
        if ends_flow:
            await state.set_state(None)
        return job

    async def _collapse(self, bot: Bot, chat_id: int, message_id: int, text: str) -> None:
        """An answered prompt becomes its one-line summary, without buttons. An edit like a
        progress edit: under flood control the chat's progress waits too."""
        try:
            await bot.edit_message_text(text=text, chat_id=chat_id, message_id=message_id)
        except TelegramRetryAfter as exc:
            self.progress.spend(chat_id, float(exc.retry_after))
            log.info("prompt %s not collapsed: flood control", message_id)
        except TelegramAPIError as exc:  # deleted, too old: only the tidying is lost
            log.debug("prompt %s not collapsed: %s", message_id, exc.message)

    async def _send_accepted(
        self, bot: Bot, job: Job, chat_id: int, lang: str, reply_to: int | None, note: str
    ) -> Tracked | None:
        """Send the "accepted" message and track it as the job's progress message."""
        fresh, position, eta = await self.jobs.status_of(job.job_id)
        # First in line with the renderer idle: it starts now, so it is not "in the queue".
        at_once = position == 1 and not self.jobs.paused and self.jobs.running_job_id() is None
        text = accepted_text(
            lang, position=None if at_once else position, eta=eta, paused=self.jobs.paused
        )
        text = f"{note}\n{text}" if note else text
        warning = upscale_text(lang, fresh)  # before rendering, with a lower choice below
        text = f"{text}\n{warning}" if warning else text
        markup = live_keyboard(lang, fresh)
        try:
            sent = await bot.send_message(
                chat_id,
                text,
                reply_markup=markup,
                reply_parameters=(
                    ReplyParameters(message_id=reply_to, allow_sending_without_reply=True)
                    if reply_to
                    else None
                ),
            )
        except TelegramAPIError as exc:
            # The job runs anyway and its video is delivered; only live progress is lost.
            log.warning("job %s: could not send the accepted message: %s", job.job_id, exc)
            self.progress.untracked(job.job_id)
            return None
        tracked = Tracked(
            job_id=job.job_id,
            user_id=job.user_id,
            chat_id=chat_id,
            message_id=sent.message_id,
            lang=lang,
            text=text,
            markup=markup,
            sent=text,
            start_told=position is None or at_once,
        )
        self.progress.spend(chat_id)  # a new progress message counts like an edit
        self.progress.track(tracked)
        return tracked

    async def download(self, bot: Bot, file_id: str) -> bytes:
        """A file from Telegram; transient failures (network, 5xx, a proxy's page) are retried
        with backoff, so one bad moment of the Bot API does not lose a user's photo."""
        delay = self.download_backoff
        for attempt in range(1, self.download_attempts + 1):
            try:
                buffer = await bot.download(file_id, destination=io.BytesIO(), timeout=120)
            except TRANSIENT as exc:
                if attempt == self.download_attempts:
                    raise
                log.info("download of %s failed (%s); retrying in %.1fs", file_id, exc, delay)
                await asyncio.sleep(delay)
                delay *= 2
            else:
                assert isinstance(buffer, io.BytesIO)
                return buffer.getvalue()
        raise AssertionError("unreachable")

    async def heic_to_png(self, data: bytes) -> bytes | None:
        """A HEIC/HEIF image as PNG (pillow-heif, loaded on first use), or None if unreadable."""
        limit = self.settings.max_pixels
        return await asyncio.get_running_loop().run_in_executor(None, heic_to_png, data, limit)

    async def photo_of(
        self, bot: Bot, job: Job, data: dict[str, Any]
    ) -> tuple[bytes, str | None] | None:
        """The photo of an earlier job: its input file if still kept, else again from Telegram."""
        found = (data.get("photos") or {}).get(job.job_id)
        ref = str(found) if found else None
        if job.input_path:
            path = self.settings.data_dir / job.input_path
            loop = asyncio.get_running_loop()
            with contextlib.suppress(OSError):
                return await loop.run_in_executor(None, path.read_bytes), ref
        if not ref:
            return None
        try:
            return await self.download(bot, ref), ref
        except (TelegramAPIError, OSError) as exc:
            log.info("job %s: photo no longer downloadable: %s", job.job_id, exc)
            return None
