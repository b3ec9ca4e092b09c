"""The Telegram bot (aiogram 3), running in the service's event loop beside the HTTP API.

Pieces, top to bottom:
- `SQLiteStorage`: aiogram's FSM kept in the job database, so a conversation survives a restart.
- `_RetryAfter`: a session middleware that honours Telegram's 429 `retry_after` for every call.
- keyboards and texts for the conversation (/start -> duration -> resolution -> motion -> aspect
  -> photo), built per language;
- `build_router`: the handlers, created per bot (a router can belong to one dispatcher only);
- `TelegramBot`: the life cycle (connect with backoff, long polling without signal handlers),
  live progress (the "accepted" message edited into a progress bar, at most once per interval
  per chat) and the delivery loop over the SQLite outbox (retried, survives restarts).

Users never see a traceback or a server detail: domain errors show their safe `.message`, anything
else a generic apology, and the real cause goes to the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from aiogram import BaseMiddleware, Bot, Dispatcher, F, Router
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramAPIError,
    TelegramBadRequest,
    TelegramEntityTooLarge,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramNotFound,
    TelegramRetryAfter,
    TelegramUnauthorizedError,
)
from aiogram.filters import Command, CommandStart, StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.fsm.storage.base import BaseStorage, StateType, StorageKey
from aiogram.fsm.storage.memory import SimpleEventIsolation
from aiogram.methods import Response, TelegramMethod
from aiogram.methods.base import TelegramType
from aiogram.types import (
    BotCommand,
    CallbackQuery,
    ErrorEvent,
    FSInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    ReplyParameters,
    TelegramObject,
    Update,
    User,
)
from aiogram.utils.token import TokenValidationError, validate_token

from . import motion, video
from .config import Settings
from .errors import (
    BadRequest,
    FanslyError,
    InsufficientStorage,
    InvalidParams,
    PayloadTooLarge,
    TooManyJobs,
    Unavailable,
    UnsupportedMedia,
)
from .models import TERMINAL, Progress
from .queue import JobEvent, JobQueue, JobRequest, is_closed
from .store import Job, Store, parse_time
from .texts import (
    COMMANDS,
    EN,
    LANGUAGE_NAMES,
    LANGUAGES,
    language_from_code,
    motion_description,
    motion_name,
    t,
)

log = logging.getLogger(__name__)

MB = 1024 * 1024
# Bots may download files up to 20 MB through the Bot API (getFile answers "file is too big").
DOWNLOAD_LIMIT = 20 * MB
# The public Bot API takes uploads up to 50 MB; a local Bot API server takes up to 2000 MB.
PUBLIC_UPLOAD_LIMIT = 50 * MB
LOCAL_UPLOAD_LIMIT = 2000 * MB
PUBLIC_API_HOST = "api.telegram.org"

# File extensions accepted for an image sent as a document without a MIME type.
IMAGE_EXTENSIONS = frozenset(
    {"jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif", "heic", "heif"}
)
# How many photo references the conversation keeps for "again" and "other motion".
PHOTOS_KEPT = 20
# A document file_id is stored with this prefix so /history knows to re-send it as a document.
DOCUMENT_PREFIX = "doc:"


REDACTED = "<bot-token>"
# Loggers that may quote a Bot API URL (aiogram's polling errors, our own warnings).
_REDACTED_LOGGERS = ("aiogram.dispatcher", "aiogram.event", "aiogram.middlewares", __name__)


class _RedactToken(logging.Filter):
    """Replace the bot token in log records: it is part of every Bot API URL."""

    def __init__(self, secret: str) -> None:
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if self.secret in message:
            record.msg, record.args = message.replace(self.secret, REDACTED), None
        return True


# -- FSM storage -------------------------------------------------------------------------------


class SQLiteStorage(BaseStorage):
    """aiogram's FSM storage over the job database (aiogram ships none for SQLite)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @staticmethod
    def key(key: StorageKey) -> str:
        """Every field of the key, so threads, business chats and destinies stay apart."""
        return ":".join(
            str(part)
            for part in (
                key.bot_id,
                key.chat_id,
                key.user_id,
                key.thread_id or 0,
                key.business_connection_id or "",
                key.destiny,
            )
        )

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        value = state.state if isinstance(state, State) else state
        await self._store.fsm_set_state(self.key(key), value)

    async def get_state(self, key: StorageKey) -> str | None:
        state, _ = await self._store.fsm_get(self.key(key))
        return state

    async def set_data(self, key: StorageKey, data: Any) -> None:
        await self._store.fsm_set_data(self.key(key), dict(data))

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        _, data = await self._store.fsm_get(self.key(key))
        return data

    async def close(self) -> None:
        """The store belongs to the service, which closes it."""


# -- Telegram plumbing ---------------------------------------------------------------------------


class _RetryAfter(BaseRequestMiddleware):
    """Honour 429 Too Many Requests: wait `retry_after` and send the same request again."""

    def __init__(self, *, attempts: int = 5, max_wait: float = 60.0) -> None:
        self.attempts = attempts
        self.max_wait = max_wait

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        for attempt in range(1, self.attempts + 1):
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                if attempt == self.attempts or exc.retry_after > self.max_wait:
                    raise
                log.warning(
                    "Telegram flood control on %s: waiting %ss (attempt %d)",
                    method.__api_method__,
                    exc.retry_after,
                    attempt,
                )
                await asyncio.sleep(exc.retry_after)
        raise AssertionError("unreachable")


def _is_not_modified(exc: TelegramBadRequest) -> bool:
    return "message is not modified" in exc.message.lower()


def _user_gone(exc: TelegramAPIError) -> bool:
    """The chat can never receive messages again: blocked, deactivated, or unknown."""
    if isinstance(exc, TelegramForbiddenError):
        return True
    text = exc.message.lower()
    return isinstance(exc, TelegramBadRequest) and (
        "chat not found" in text or "user is deactivated" in text
    )


@contextlib.asynccontextmanager
async def _chat_action(bot: Bot, chat_id: int, action: str) -> AsyncIterator[None]:
    """Show `action` (e.g. upload_video) in the chat until the block ends.

    aiogram's ChatActionSender lets a failing send (a user who blocked the bot) escape from its
    background task; this one logs and stops instead.
    """

    async def send() -> bool:
        try:
            await bot.send_chat_action(chat_id=chat_id, action=action)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # only a hint to the user: never worth failing for
            log.debug("chat action %s in chat %s failed: %s", action, chat_id, exc)
            return False
        return True

    async def repeat() -> None:
        while True:
            await asyncio.sleep(4.0)  # Telegram shows an action for about 5 s
            if not await send():
                return

    # The first one before the work starts, so even a quick upload shows it.
    task = asyncio.create_task(repeat(), name=f"chat-action-{chat_id}") if await send() else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# -- conversation: states, callback data, keyboards, texts ---------------------------------------


class Flow(StatesGroup):
    duration = State()
    resolution = State()
    motion = State()
    aspect = State()
    photo = State()


STEPS: tuple[str, ...] = ("duration", "resolution", "motion", "aspect", "photo")
_STATE_OF: dict[str, State] = {
    "duration": Flow.duration,
    "resolution": Flow.resolution,
    "motion": Flow.motion,
    "aspect": Flow.aspect,
    "photo": Flow.photo,
}


class Nav(CallbackData, prefix="nav"):
    """Menu entries: menu, new, history, help, lang."""

    to: str


class Pick(CallbackData, prefix="pick"):
    """A choice on a step. Values are encoded (no ':' in callback data parts)."""

    step: str
    value: str


class Back(CallbackData, prefix="back"):
    to: str


class JobButton(CallbackData, prefix="job"):
    """cancel | again | other, on one job."""

    action: str
    job_id: str


class LangButton(CallbackData, prefix="lang"):
    code: str


def _choices(step: str) -> tuple[str, ...]:
    if step == "duration":
        return tuple(str(d) for d in motion.DURATIONS)
    if step == "resolution":
        return tuple(motion.RESOLUTIONS)
    if step == "motion":
        return motion.PRESETS
    if step == "aspect":
        return motion.ASPECTS
    return ()


def _encode(value: str) -> str:
    return value.replace(":", "x")


def _decode(step: str, token: str) -> str | None:
    """The real value behind a button's token, or None for a token from an outdated keyboard."""
    for value in _choices(step):
        if _encode(value) == token:
            return value
    return None


def _button(text: str, data: CallbackData) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=data.pack())


def _rows(buttons: list[InlineKeyboardButton], width: int) -> list[list[InlineKeyboardButton]]:
    return [buttons[i : i + width] for i in range(0, len(buttons), width)]


def _label(lang: str, step: str, value: str) -> str:
    if step == "duration":
        return t(lang, "seconds", n=value)
    if step == "motion":
        return motion_name(lang, value)
    if step == "aspect" and value == "auto":
        return t(lang, "aspect_auto")
    return value


def menu_keyboard(lang: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [_button(t(lang, "btn_new"), Nav(to="new"))],
            [
                _button(t(lang, "btn_history"), Nav(to="history")),
                _button(t(lang, "btn_help"), Nav(to="help")),
            ],
            [_button(t(lang, "btn_lang"), Nav(to="lang"))],
        ]
    )


def menu_only_keyboard(lang: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[_button(t(lang, "btn_menu"), Nav(to="menu"))]])


def _back_target(step: str, data: dict[str, Any]) -> str:
    """Where Back leads from `step`: the previous step, or the menu from the first one."""
    if step == "motion" and data.get("reuse"):
        return "menu"  # "same photo, other motion" starts at the motion step
    index = STEPS.index(step)
    return STEPS[index - 1] if index > 0 else "menu"


def step_keyboard(lang: str, step: str, data: dict[str, Any]) -> InlineKeyboardMarkup:
    width = {"duration": 5, "resolution": 4, "motion": 2, "aspect": 5}.get(step, 1)
    current = str(data.get(step, ""))
    buttons = [
        _button(
            ("• " if value == current else "") + _label(lang, step, value),
            Pick(step=step, value=_encode(value)),
        )
        for value in _choices(step)
    ]
    # On the aspect step auto, the default, stands alone on the first row.
    rows = [buttons[:1], *_rows(buttons[1:], width)] if step == "aspect" else _rows(buttons, width)
    rows.append([_button(t(lang, "btn_back"), Back(to=_back_target(step, data)))])
    return InlineKeyboardMarkup(inline_keyboard=rows)


def _summary(lang: str, data: dict[str, Any], upto: str) -> str:
    parts: list[str] = []
    for step in STEPS[: STEPS.index(upto)]:
        value = data.get(step)
        if value is not None:
            parts.append(_label(lang, step, str(value)))
    return t(lang, "summary", parts=" · ".join(parts)) if parts else ""


def photo_limit(settings: Settings) -> int:
    """Bytes of the largest photo the bot takes: the Bot API's download cap or ours, if lower."""
    return min(DOWNLOAD_LIMIT, settings.max_upload_bytes)


def _mb(size: int) -> str:
    return f"{size / MB:.3g}"


def step_text(
    lang: str, step: str, data: dict[str, Any], *, limit: int = DOWNLOAD_LIMIT, again: bool = False
) -> str:
    summary = _summary(lang, data, step)
    if step == "duration":
        return t(lang, "step_duration")
    if step == "motion":
        descriptions = "\n".join(
            f"• {motion_name(lang, p)} — {motion_description(lang, p)}" for p in motion.PRESETS
        )
        return t(lang, "step_motion", summary=summary, descriptions=descriptions)
    if step == "photo":
        key = "step_photo_again" if again else "step_photo"
        return t(lang, key, summary=summary, limit=_mb(limit))
    return t(lang, f"step_{step}", summary=summary)


def _format_eta(lang: str, seconds: float | None) -> str:
    if seconds is None:
        return t(lang, "eta_unknown")
    if seconds < 60:
        # Coarse steps keep the text (and so the edits) from changing on every frame.
        step = 1 if seconds < 10 else 5
        return t(lang, "eta_seconds", s=max(1, int(round(seconds / step) * step)))
    return t(lang, "eta_minutes", m=round(seconds / 60))


def _phase(lang: str, phase: str) -> str:
    key = f"phase_{phase.split()[0].lower()}" if phase else "phase_generic"
    return t(lang, key) if key in _PHASE_KEYS else t(lang, "phase_generic")


_PHASE_KEYS = frozenset(
    {
        "phase_starting",
        "phase_preparing",
        "phase_rendering",
        "phase_encoded",
        "phase_loading",
        "phase_encoding",
    }
)


def _bar(percent: float, cells: int = 12) -> str:
    filled = int(percent / 100 * cells)
    return "▓" * filled + "░" * (cells - filled)


def job_params(lang: str, job: Job) -> str:
    aspect = t(lang, "aspect_auto") if job.aspect == "auto" else job.aspect
    return t(
        lang,
        "params",
        motion=motion_name(lang, job.motion_preset),
        duration=t(lang, "seconds", n=job.duration),
        resolution=job.resolution,
        aspect=aspect,
    )


def job_caption(lang: str, job: Job, width: int | None = None, height: int | None = None) -> str:
    return t(
        lang,
        "caption",
        motion=motion_name(lang, job.motion_preset),
        duration=t(lang, "seconds", n=job.duration),
        resolution=job.resolution,
        width=width or job.width or "?",
        height=height or job.height or "?",
        seed=job.seed,
    )


def cancel_keyboard(lang: str, job_id: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [_button(t(lang, "btn_cancel"), JobButton(action="cancel", job_id=job_id))]
        ]
    )


def result_keyboard(lang: str, job_id: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [_button(t(lang, "btn_again"), JobButton(action="again", job_id=job_id))],
            [_button(t(lang, "btn_other"), JobButton(action="other", job_id=job_id))],
            [_button(t(lang, "btn_menu"), Nav(to="menu"))],
        ]
    )


def progress_view(
    lang: str,
    job: Job,
    *,
    eta: float | None,
    position: int | None,
    live: Progress | None = None,
) -> tuple[str, InlineKeyboardMarkup | None]:
    """The progress message for a job's state: text and keyboard."""
    params = job_params(lang, job)
    if job.status == "completed":
        return t(lang, "progress_done", params=params), None
    if job.status == "cancelled":
        return t(lang, "progress_cancelled", params=params), menu_only_keyboard(lang)
    if job.status == "failed":
        # `error` holds a domain error's safe message ("internal render error" otherwise).
        error = job.error or t(lang, "generic_error")
        return t(lang, "progress_failed", error=error, params=params), menu_only_keyboard(lang)
    keyboard = cancel_keyboard(lang, job.job_id)
    if job.status == "queued":
        if position is None:
            return t(lang, "progress_waiting", eta=_format_eta(lang, eta), params=params), keyboard
        return (
            t(
                lang,
                "progress_queued",
                position=position,
                eta=_format_eta(lang, eta),
                params=params,
            ),
            keyboard,
        )
    percent, phase = job.progress, job.message
    if live is not None:
        percent, phase, eta = live.percent, live.message, live.eta
    text = t(
        lang,
        "progress_running",
        phase=_phase(lang, phase),
        percent=int(percent),
        bar=_bar(percent),
        eta=_format_eta(lang, eta),
        params=params,
    )
    return text, keyboard


def error_text(lang: str, exc: FanslyError, *, active: int, limit: int) -> str:
    """A friendly, translated text for a domain error (its message is safe to quote)."""
    if isinstance(exc, TooManyJobs):
        if active >= limit:
            return t(lang, "cap_user", active=active, limit=limit)
        return t(lang, "cap_queue", seconds=exc.retry_after or 30)
    if isinstance(exc, BadRequest | UnsupportedMedia | PayloadTooLarge | InvalidParams):
        # The settings come from our own buttons, so an input error is about the photo
        # (unreadable, too small, too many pixels...); its code says which, in the user's
        # language. A case without a text of its own falls back to the (English) message.
        why = f"why_{exc.code}"
        detail = t(lang, why, **exc.details) if exc.code and why in EN else exc.message
        return t(lang, "unreadable", detail=detail)
    if isinstance(exc, Unavailable):
        return t(lang, "unavailable")
    if isinstance(exc, InsufficientStorage):
        return t(lang, "storage")
    return t(lang, "generic_error")


# -- progress tracking -----------------------------------------------------------------------------


@dataclass
class _Tracked:
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


class _ChatEditor:
    """Edits the progress messages of one chat, at most once per interval, only on change."""

    def __init__(self, owner: TelegramBot, chat_id: int) -> None:
        self.owner = owner
        self.chat_id = chat_id
        self.items: dict[str, _Tracked] = {}
        self.wake = asyncio.Event()
        self.next_at = 0.0
        self.task: asyncio.Task[None] | None = None

    def poke(self) -> None:
        self.wake.set()
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self.run(), name=f"progress-{self.chat_id}")

    async def run(self) -> None:
        while True:
            for job_id, item in list(self.items.items()):
                if item.dead or (item.status in TERMINAL and not item.pending):
                    del self.items[job_id]
                    self.owner._tracked.pop(job_id, None)
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
            await self.owner._edit(item)
            self.next_at = time.monotonic() + self.owner.settings.bot_progress_interval


# -- the bot ---------------------------------------------------------------------------------------


class TelegramBot:
    """The bot's life cycle, progress messages and deliveries. See the module docstring."""

    polling_timeout = 30  # seconds a getUpdates long poll may wait
    delivery_poll = 3.0  # seconds between outbox scans when nothing wakes the loop
    delivery_backoff = 5.0  # first retry delay of a failed delivery, doubled per attempt
    delivery_max_backoff = 600.0
    delivery_attempts = 12  # after this many failures a delivery is given up
    edit_attempts = 10  # progress edits failing in a row before a message is given up
    resume_window = 900.0  # at start, jobs that ended this many seconds ago get a final edit
    connect_backoff = 2.0  # first delay before reconnecting to the Bot API, doubled per try
    connect_max_backoff = 300.0
    stop_grace = 5.0

    def __init__(self, settings: Settings, jobs: JobQueue) -> None:
        self.settings = settings
        self.jobs = jobs
        self.store: Store = jobs.store
        self.bot: Bot | None = None
        self.dispatcher: Dispatcher | None = None
        self.username: str | None = None
        public = PUBLIC_API_HOST in settings.telegram_api
        self.upload_limit = PUBLIC_UPLOAD_LIMIT if public else LOCAL_UPLOAD_LIMIT
        self._enabled = False
        self._state = "off"
        self._reason = "not started"
        self._stopping = False
        self._runner: asyncio.Task[None] | None = None
        self._progress_task: asyncio.Task[None] | None = None
        self._delivery_task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[Any]] = set()
        self._tracked: dict[str, _Tracked] = {}
        self._editors: dict[int, _ChatEditor] = {}
        self._accepting: set[str] = set()
        self._untracked: set[str] = set()
        self._languages: dict[int, str] = {}
        self._wake_delivery = asyncio.Event()
        self._redact: _RedactToken | None = None

    # -- life cycle ------------------------------------------------------------------------------

    def status(self) -> dict[str, object]:
        return {"enabled": self._enabled, "state": self._state, "reason": self._reason}

    def stop_requested(self) -> bool:
        # A method, not an attribute: stop() flips the flag while _run awaits.
        return self._stopping

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
        self._redact = _RedactToken(secret)
        for name in _REDACTED_LOGGERS:
            logging.getLogger(name).addFilter(self._redact)
        self._set_state("connecting", f"connecting to {self.settings.telegram_api}")
        self.dispatcher = self._build_dispatcher()
        self._runner = asyncio.create_task(self._run(secret), name="telegram-bot")

    async def stop(self) -> None:
        """Stop polling, progress and deliveries; wait briefly for handlers; close the session."""
        self._stopping = True
        if self.dispatcher is not None:
            with contextlib.suppress(RuntimeError, TimeoutError):  # RuntimeError: not polling
                await asyncio.wait_for(self.dispatcher.stop_polling(), self.stop_grace)
        # A delivery in flight may finish: cancelled between its upload and the commit of
        # `sent`, the next process would send the same video again.
        self._wake_delivery.set()
        if self._delivery_task is not None:
            await asyncio.wait({self._delivery_task}, timeout=self.stop_grace)
        tasks = [
            task
            for task in (self._delivery_task, self._progress_task, self._runner)
            if task is not None
        ]
        tasks += [e.task for e in self._editors.values() if e.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._inflight:
            _, late = await asyncio.wait(set(self._inflight), timeout=self.stop_grace)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late, timeout=1.0)
        self._progress_task = self._delivery_task = self._runner = None
        self._editors.clear()
        self._tracked.clear()
        if self.bot is not None:
            await self.bot.session.close()
        if self._enabled:
            self._set_state("off", "stopped")
            log.info("Telegram bot stopped")
        if self._redact is not None:
            for name in _REDACTED_LOGGERS:
                logging.getLogger(name).removeFilter(self._redact)

    def _make_bot(self, token: str) -> Bot:
        api = TelegramAPIServer.from_base(self.settings.telegram_api)
        session = AiohttpSession(api=api)
        session.middleware(_RetryAfter())
        return Bot(token=token, session=session)

    def _build_dispatcher(self) -> Dispatcher:
        # Events of one user are handled one at a time, so quick double presses cannot race
        # on the FSM data.
        dispatcher = Dispatcher(
            storage=SQLiteStorage(self.store), events_isolation=SimpleEventIsolation()
        )
        dispatcher.update.outer_middleware(_Context(self))
        dispatcher.include_router(build_router(self))
        dispatcher.errors.register(self._on_error)
        return dispatcher

    async def _run(self, token: str) -> None:
        """Connect (with backoff) and poll until stopped."""
        delay = self.connect_backoff
        while not self.stop_requested():
            bot = self._make_bot(token)
            try:
                me = await bot.me()
                await bot.delete_webhook(drop_pending_updates=False)
                await self._set_commands(bot)
            except asyncio.CancelledError:
                await bot.session.close()
                raise
            except TelegramUnauthorizedError:
                reason = "Telegram rejected the bot token (401 Unauthorized)"
            except TelegramNetworkError as exc:
                reason = f"the Telegram Bot API is unreachable ({exc.message})"
            except TelegramAPIError as exc:
                reason = f"the Telegram Bot API answered an error ({exc.message})"
            except Exception as exc:  # e.g. a malformed answer: keep the service up, retry
                reason = f"unexpected {type(exc).__name__} while connecting: {exc}"
            else:
                self.bot = bot
                self.username = me.username
                self._set_state("polling", f"polling as @{me.username}")
                log.info("Telegram bot @%s connected; polling for updates", me.username)
                delay = self.connect_backoff
                if self._progress_task is None:  # the first connection starts them, for good
                    self._progress_task = asyncio.create_task(
                        self._watch_jobs(), name="bot-progress"
                    )
                    self._delivery_task = asyncio.create_task(
                        self._delivery_loop(), name="bot-delivery"
                    )
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
                    reason = f"polling stopped: {type(exc).__name__}: {exc}"
                    log.exception("Telegram polling failed")
                else:
                    return  # stop_polling() was called
            if self.stop_requested():
                return
            # aiohttp quotes the whole URL in some errors, and the URL holds the token.
            reason = reason.replace(token, REDACTED)
            self._set_state("retrying", f"{reason}; retrying in {delay:g}s")
            log.warning("Telegram bot not connected: %s; retrying in %gs", reason, delay)
            if self.bot is bot:
                self.bot = None  # progress and deliveries wait for the next connection
            await bot.session.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.connect_max_backoff)

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

    async def set_language(self, user_id: int, lang: str) -> None:
        await self.store.set_language(user_id, lang)
        self._languages[user_id] = lang

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
    ) -> Job | None:
        """Queue a job and send its "accepted" message, which becomes the progress message.

        Returns None when the service refused (the user got a friendly message).
        """
        request = JobRequest(
            user_id=user_id,
            duration=int(params["duration"]),
            resolution=str(params["resolution"]),
            motion_preset=str(params["motion"]),
            aspect=str(params.get("aspect") or "auto"),
            source="telegram",
            chat_id=chat_id,
            message_id=reply_to,
            language=lang,
        )
        try:
            job, _ = await self.jobs.submit(request, image)
        except FanslyError as exc:
            active = len(await self.active_jobs(user_id)) if isinstance(exc, TooManyJobs) else 0
            log.info("job refused for user %s: %s", user_id, exc.message)
            text = error_text(lang, exc, active=active, limit=self.settings.max_active_per_user)
            await bot.send_message(chat_id, text)
            return None
        # No await between submit() and here: the progress watcher cannot see this job's
        # events before it knows that its message is on the way.
        self._accepting.add(job.job_id)
        try:
            position = await self.store.queue_position(job.job_id)
            eta = await self.jobs.eta_seconds(job)
            key = "accepted_queued" if position is not None else "accepted_running"
            text = t(lang, key, position=position, eta=_format_eta(lang, eta))
            markup = cancel_keyboard(lang, job.job_id)
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
                self._untracked.add(job.job_id)
                return job
            tracked = _Tracked(
                job_id=job.job_id,
                user_id=user_id,
                chat_id=chat_id,
                message_id=sent.message_id,
                lang=lang,
                text=text,
                markup=markup,
                sent=text,
            )
            self._track(tracked)
        finally:
            self._accepting.discard(job.job_id)
        await self.store.set_progress_message(job.job_id, sent.message_id)
        # Events may have passed while the message was on its way: catch up from the database.
        fresh = await self.store.get_job(job.job_id)
        if fresh is not None:
            await self._refresh(tracked, fresh)
        data = await state.get_data()
        photos = dict(data.get("photos") or {})
        if photo_ref is not None:
            photos[job.job_id] = photo_ref
        # Keep the newest few (dicts keep insertion order).
        photos = dict(list(photos.items())[-PHOTOS_KEPT:])
        await state.set_data({**data, "photos": photos, "reuse": None})
        await state.set_state(None)
        return job

    async def download(self, bot: Bot, file_id: str) -> bytes:
        buffer = await bot.download(file_id, destination=io.BytesIO(), timeout=120)
        assert isinstance(buffer, io.BytesIO)
        return buffer.getvalue()

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

    # -- progress --------------------------------------------------------------------------------

    def _track(self, tracked: _Tracked) -> None:
        self._tracked[tracked.job_id] = tracked
        editor = self._editors.get(tracked.chat_id)
        if editor is None or editor.task is None or editor.task.done():
            editor = self._editors[tracked.chat_id] = _ChatEditor(self, tracked.chat_id)
        editor.items[tracked.job_id] = tracked
        editor.poke()

    async def _refresh(
        self, tracked: _Tracked, job: Job, *, eta: float | None = None, live: bool = True
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
        editor = self._editors.get(tracked.chat_id)
        if editor is not None:
            editor.poke()

    async def _watch_jobs(self) -> None:
        """Follow job events: progress messages and wake-ups of the delivery loop."""
        async with self.jobs.subscribe() as events:
            await self._resume_tracking()
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

    async def _resume_tracking(self) -> None:
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

    async def _adopt(self, job: Job) -> _Tracked | None:
        """Start tracking a job whose progress message id is in the database."""
        if job.source != "telegram" or job.chat_id is None or job.progress_message_id is None:
            return None
        tracked = _Tracked(
            job_id=job.job_id,
            user_id=job.user_id,
            chat_id=job.chat_id,
            message_id=job.progress_message_id,
            lang=await self.language_of_job(job),
        )
        self._track(tracked)
        await self._refresh(tracked, job)
        return tracked

    async def _on_event(self, event: JobEvent) -> None:
        job = event.job
        if event.kind == "status":
            if job.status == "completed" and job.source == "telegram":
                self._wake_delivery.set()
            # Someone's start or end moves everyone behind them up the queue.
            for other in list(self._tracked.values()):
                if other.job_id != job.job_id and other.status == "queued":
                    fresh = await self.store.get_job(other.job_id)
                    if fresh is not None:
                        await self._refresh(other, fresh)
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
            editor = self._editors.get(tracked.chat_id)
            if editor is not None:
                editor.poke()
        else:
            await self._refresh(tracked, job, eta=event.eta_seconds, live=False)

    async def _edit(self, tracked: _Tracked) -> None:
        """Send a progress message's newest text. Errors end in the log, never in a crash."""
        bot = self.bot
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
                editor.next_at = time.monotonic() + exc.retry_after
            return
        except TelegramBadRequest as exc:
            if _is_not_modified(exc):
                tracked.sent = text
                return
            if _user_gone(exc):
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

    # -- delivery --------------------------------------------------------------------------------

    async def _offer_interrupted(self) -> None:
        """Uploads cut short by a dead process: offer the video instead of maybe sending it twice."""
        bot = self.bot
        if bot is None:
            return
        for delivery in await self.store.interrupt_deliveries():
            job = await self.store.get_job(delivery.job_id)
            if job is None:
                continue
            lang = await self.language_of_job(job)
            keyboard = InlineKeyboardMarkup(
                inline_keyboard=[
                    [_button(t(lang, "btn_resend"), JobButton(action="resend", job_id=job.job_id))]
                ]
            )
            log.info("job %s: delivery was interrupted by a restart; offering it", job.job_id)
            with contextlib.suppress(TelegramAPIError):
                await bot.send_message(
                    delivery.chat_id, t(lang, "delivery_interrupted"), reply_markup=keyboard
                )

    async def _delivery_loop(self) -> None:
        """Send finished videos from the outbox; woken by completions, polling as a fallback."""
        try:
            await self._offer_interrupted()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("could not offer interrupted deliveries")
        while not self.stop_requested():
            self._wake_delivery.clear()
            try:
                for delivery in await self.store.due_deliveries():
                    if self.stop_requested():
                        return
                    await self._deliver(delivery.job_id, delivery.chat_id, delivery.attempts)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery loop error")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_delivery.wait(), self.delivery_poll)

    async def _deliver(self, job_id: str, chat_id: int, attempts: int) -> None:
        bot = self.bot
        job = await self.store.get_job(job_id)
        if bot is None or job is None:
            return
        lang = await self.language_of_job(job)
        path = self.settings.data_dir / job.output_path if job.output_path else None
        if path is None or not await asyncio.to_thread(path.is_file):
            log.error("job %s: video file missing, delivery given up", job_id)
            await self.store.delivery_failed(job_id, "video file missing", retry_at=None)
            with contextlib.suppress(TelegramAPIError):
                await bot.send_message(chat_id, t(lang, "video_missing"))
            return
        if not await self.store.delivery_claim(job_id):
            return  # not pending any more (sent, or claimed by an earlier pass)
        try:
            async with _chat_action(bot, chat_id, "upload_video"):
                file_id = await self._send_video(bot, job, path, chat_id, lang)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # whatever it was, the outbox row records it and retries
            await self._delivery_failed(bot, job, chat_id, attempts, exc, lang)
            return
        if await self.store.delivery_sent(job_id, file_id):
            log.info("job %s delivered to chat %s", job_id, chat_id)

    async def _delivery_failed(
        self,
        bot: Bot,
        job: Job,
        chat_id: int,
        attempts: int,
        exc: Exception,
        lang: str,
    ) -> None:
        reason = (
            exc.message if isinstance(exc, TelegramAPIError) else f"{type(exc).__name__}: {exc}"
        )
        if isinstance(exc, TelegramAPIError) and _user_gone(exc):
            log.info("job %s undeliverable: %s", job.job_id, reason)
            await self.store.delivery_failed(job.job_id, reason, retry_at=None)
            with contextlib.suppress(Exception):
                await self.store.set_blocked(job.user_id, True)
            return
        too_large = isinstance(exc, TelegramEntityTooLarge | _TooLarge)
        if too_large or attempts + 1 >= self.delivery_attempts:
            log.error(
                "job %s undeliverable after %d attempt(s): %s", job.job_id, attempts + 1, reason
            )
            await self.store.delivery_failed(job.job_id, reason, retry_at=None)
            key = "video_too_big" if too_large else "generic_error"
            with contextlib.suppress(TelegramAPIError):
                await bot.send_message(chat_id, t(lang, key))
            return
        if isinstance(exc, TelegramRetryAfter):
            delay = float(exc.retry_after)
        else:
            delay = min(self.delivery_max_backoff, self.delivery_backoff * 2**attempts)
        log.warning("job %s delivery failed (%s); retrying in %.0fs", job.job_id, reason, delay)
        await self.store.delivery_failed(job.job_id, reason, retry_at=time.time() + delay)

    async def _send_video(self, bot: Bot, job: Job, path: Path, chat_id: int, lang: str) -> str:
        """Upload the video, re-encoded smaller when too large; returns the file_id.

        Raises `_TooLarge` when no version fits, TelegramAPIError for anything else.
        """
        size = (await asyncio.to_thread(path.stat)).st_size
        limit = self.upload_limit
        if size <= limit:
            try:
                return await self._upload_video(bot, job, path, chat_id, lang)
            except TelegramEntityTooLarge:
                # The server's limit is below what we assumed (e.g. the public API's 50 MB).
                log.info("job %s: %d bytes refused as too large; re-encoding", job.job_id, size)
                limit = size - 1
        smaller = path.with_name(f".{job.job_id}.telegram.mp4")
        try:
            target, scale = int(limit * 0.9), 1.0
            for _ in range(4):
                try:
                    width, height, new_size = await _reencode(path, smaller, job, target, scale)
                except OSError as exc:
                    log.error("job %s: re-encoding failed: %s", job.job_id, exc)
                    return await self._upload_document(bot, job, path, chat_id, lang)
                if new_size <= limit:
                    log.info(
                        "job %s: re-encoded %d -> %d bytes to fit the upload limit",
                        job.job_id,
                        size,
                        new_size,
                    )
                    try:
                        return await self._upload_video(
                            bot, job, smaller, chat_id, lang, width=width, height=height
                        )
                    except TelegramEntityTooLarge:
                        limit = new_size - 1
                else:
                    scale /= 2  # x264 could not get this low at this size: halve the frame
                target = int(min(target, limit) * 0.7)
            raise _TooLarge(f"no version of the video fits under {limit} bytes")
        finally:
            await asyncio.to_thread(smaller.unlink, missing_ok=True)

    async def _upload_document(
        self, bot: Bot, job: Job, path: Path, chat_id: int, lang: str
    ) -> str:
        """The original as a file: the last resort when re-encoding is impossible."""
        message = await bot.send_document(
            chat_id,
            FSInputFile(path, filename=f"fanslymotion-{job.job_id[:8]}.mp4"),
            caption=job_caption(lang, job),
            reply_markup=result_keyboard(lang, job.job_id),
            request_timeout=600,
        )
        return DOCUMENT_PREFIX + message.document.file_id if message.document is not None else ""

    async def _upload_video(
        self,
        bot: Bot,
        job: Job,
        path: Path,
        chat_id: int,
        lang: str,
        *,
        width: int | None = None,
        height: int | None = None,
    ) -> str:
        width = width or job.width
        height = height or job.height
        message = await bot.send_video(
            chat_id,
            FSInputFile(path, filename=f"fanslymotion-{job.job_id[:8]}.mp4"),
            width=width,
            height=height,
            duration=job.duration,
            supports_streaming=True,
            caption=job_caption(lang, job, width, height),
            reply_markup=result_keyboard(lang, job.job_id),
            reply_parameters=(
                ReplyParameters(message_id=job.message_id, allow_sending_without_reply=True)
                if job.message_id
                else None
            ),
            request_timeout=600,
        )
        if message.video is not None:
            return message.video.file_id
        if message.document is not None:  # Telegram may keep an odd MP4 as a file
            return DOCUMENT_PREFIX + message.document.file_id
        return ""


class _TooLarge(Exception):
    """No version of a video fits the Bot API's upload limit."""


async def _reencode(
    source: Path, target: Path, job: Job, max_bytes: int, scale: float
) -> tuple[int, int, int]:
    """Re-encode `source` to about `max_bytes` (bitrate-capped H.264), scaled by `scale`.

    Returns the new width, height and size in bytes.
    """
    width = max(2, int((job.width or 2) * scale) // 2 * 2)
    height = max(2, int((job.height or 2) * scale) // 2 * 2)
    seconds = max(1, job.duration)
    # 4 % for the MP4 container; never below a bitrate x264 can honour.
    kbps = max(50, int(max_bytes * 8 * 0.96 / seconds / 1000))
    command = [
        video.ffmpeg_exe(),
        "-y",
        "-v",
        "error",
        "-i",
        str(source),
        "-vf",
        f"scale={width}:{height}",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-b:v",
        f"{kbps}k",
        "-maxrate",
        f"{kbps}k",
        "-bufsize",
        f"{kbps}k",
        "-pix_fmt",
        "yuv420p",
        "-movflags",
        "+faststart",
        "-an",
        "-f",
        "mp4",
        str(target),
    ]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode != 0:
        tail = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise OSError(f"ffmpeg exited with {process.returncode}: {tail[0]}")
    return width, height, (await asyncio.to_thread(target.stat)).st_size


# -- update middleware -----------------------------------------------------------------------------


class _Context(BaseMiddleware):
    """Per update: the allow-list, the user's language, and tracking for a clean stop."""

    def __init__(self, owner: TelegramBot) -> None:
        self.owner = owner

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        user = data.get("event_from_user")
        if not isinstance(user, User) or user.is_bot:
            return None
        lang = await self.owner.language(user)
        if not self.owner.is_allowed(user.id):
            log.info("update from user %s refused: not on the allow-list", user.id)
            await self._refuse(event, lang)
            return None
        data["lang"] = lang
        task = asyncio.current_task()
        if task is not None:
            self.owner._inflight.add(task)
        try:
            return await handler(event, data)
        finally:
            if task is not None:
                self.owner._inflight.discard(task)

    @staticmethod
    async def _refuse(event: TelegramObject, lang: str) -> None:
        if not isinstance(event, Update):
            return
        with contextlib.suppress(TelegramAPIError):
            if event.callback_query is not None:
                await event.callback_query.answer(t(lang, "private"), show_alert=True)
            elif event.message is not None and event.message.chat.type == "private":
                await event.message.answer(t(lang, "private"))  # never into a group


# -- handlers --------------------------------------------------------------------------------------


async def _show(
    target: Message | CallbackQuery, text: str, markup: InlineKeyboardMarkup | None
) -> None:
    """Edit the message a button was pressed on (a text message), or send a new one."""
    if isinstance(target, Message):
        await target.answer(text, reply_markup=markup)
        return
    message = target.message
    if isinstance(message, Message) and message.text is not None:
        try:
            await message.edit_text(text, reply_markup=markup)
            return
        except TelegramBadRequest as exc:
            if _is_not_modified(exc):
                return
            log.debug("could not edit message %s: %s", message.message_id, exc.message)
    if message is not None and target.bot is not None:
        await target.bot.send_message(message.chat.id, text, reply_markup=markup)


def build_router(owner: TelegramBot) -> Router:
    """The conversation's handlers, bound to one TelegramBot (routers attach to one dispatcher)."""
    router = Router(name="fanslymotion")
    # A conversation about one user's photos belongs in a private chat; in a group the bot
    # would answer every message it sees.
    router.message.filter(F.chat.type == "private")
    router.callback_query.filter(F.message.chat.type == "private")
    store = owner.store
    settings = owner.settings

    async def show_step(
        target: Message | CallbackQuery,
        state: FSMContext,
        lang: str,
        step: str,
        *,
        again: bool = False,
    ) -> None:
        data = await state.get_data()
        await state.set_state(_STATE_OF[step])
        text = step_text(lang, step, data, limit=photo_limit(settings), again=again)
        await _show(target, text, step_keyboard(lang, step, data))

    async def show_menu(target: Message | CallbackQuery, state: FSMContext, lang: str) -> None:
        await state.set_state(None)
        await _show(target, t(lang, "menu"), menu_keyboard(lang))

    def missing_step(data: dict[str, Any]) -> str | None:
        for step in STEPS[:-1]:
            if data.get(step) is None:
                return step
        return None

    # commands

    @router.message(CommandStart())
    async def on_start(message: Message, state: FSMContext, lang: str) -> None:
        assert message.from_user is not None
        await store.set_blocked(message.from_user.id, False)  # writing to us means unblocked
        await show_menu(message, state, lang)

    @router.message(Command("help"))
    async def on_help(message: Message, lang: str) -> None:
        await message.answer(
            t(lang, "help", limit=_mb(photo_limit(settings))), reply_markup=menu_only_keyboard(lang)
        )

    @router.message(Command("lang"))
    async def on_lang(message: Message, lang: str) -> None:
        await message.answer(t(lang, "lang_prompt"), reply_markup=_lang_keyboard())

    @router.message(Command("cancel"))
    async def on_cancel(message: Message, state: FSMContext, lang: str) -> None:
        assert message.from_user is not None
        await state.set_state(None)
        active = await owner.active_jobs(message.from_user.id)
        if not active:
            await message.answer(t(lang, "cancel_flow"), reply_markup=menu_only_keyboard(lang))
            return
        await message.answer(t(lang, "cancel_jobs"), reply_markup=_cancel_list(lang, active))

    @router.message(Command("status"))
    async def on_status(message: Message, lang: str) -> None:
        assert message.from_user is not None
        active = await owner.active_jobs(message.from_user.id)
        if not active:
            await message.answer(t(lang, "status_none"), reply_markup=menu_only_keyboard(lang))
            return
        lines = [t(lang, "status_header")]
        for n, job in enumerate(active, start=1):
            eta = _format_eta(lang, await owner.jobs.eta_seconds(job))
            params = job_params(lang, job)
            if job.status == "queued":
                position = await store.queue_position(job.job_id) or "?"
                lines.append(
                    t(lang, "status_queued", n=n, params=params, position=position, eta=eta)
                )
            else:
                live = owner.jobs.live_progress(job.job_id)
                percent, phase = (
                    (live.percent, live.message) if live else (job.progress, job.message)
                )
                lines.append(
                    t(
                        lang,
                        "status_running",
                        n=n,
                        params=params,
                        phase=_phase(lang, phase),
                        percent=int(percent),
                        eta=eta,
                    )
                )
        await message.answer("\n".join(lines), reply_markup=_cancel_list(lang, active))

    @router.message(Command("history"))
    async def on_history(message: Message, lang: str) -> None:
        assert message.from_user is not None and message.bot is not None
        await send_history(message.bot, message.chat.id, message.from_user.id, lang)

    async def send_history(bot: Bot, chat_id: int, user_id: int, lang: str) -> None:
        videos = [(job, d) for job, d in await store.sent_videos(user_id, limit=5) if d.file_id]
        if not videos:
            await bot.send_message(
                chat_id, t(lang, "history_none"), reply_markup=menu_only_keyboard(lang)
            )
            return
        await bot.send_message(chat_id, t(lang, "history_header"))
        for job, delivery in reversed(videos):  # oldest first, like the chat itself
            file_id = delivery.file_id or ""
            caption = job_caption(lang, job)
            markup = result_keyboard(lang, job.job_id)
            try:
                if file_id.startswith(DOCUMENT_PREFIX):
                    await bot.send_document(
                        chat_id,
                        file_id.removeprefix(DOCUMENT_PREFIX),
                        caption=caption,
                        reply_markup=markup,
                    )
                else:
                    await bot.send_video(
                        chat_id,
                        file_id,
                        width=job.width,
                        height=job.height,
                        duration=job.duration,
                        supports_streaming=True,
                        caption=caption,
                        reply_markup=markup,
                    )
            except TelegramBadRequest as exc:  # e.g. a file_id Telegram no longer knows
                log.info("history: job %s not re-sent: %s", job.job_id, exc.message)

    # admin commands

    @router.message(Command("queue"), F.from_user.id.in_(set(settings.admins)))
    async def on_queue(message: Message, lang: str) -> None:
        counts = await store.counts_by_status()
        health = await owner.jobs.health()
        renderer = cast(dict[str, Any], health.get("renderer") or {})
        text = t(
            lang,
            "queue_stats",
            queued=health.get("queue_length", 0),
            running=owner.jobs.running_job_id() or t(lang, "queue_none"),
            renderer=renderer.get("name", "?"),
            renderer_status=renderer.get("status", "?"),
            renderer_reason=renderer.get("reason", ""),
            processing=t(lang, "processing_paused" if owner.jobs.paused else "processing_on"),
            **{f"c_{status}": count for status, count in counts.items()},
        )
        await message.answer(text)

    @router.message(Command("pause"), F.from_user.id.in_(set(settings.admins)))
    async def on_pause(message: Message, lang: str) -> None:
        assert message.from_user is not None
        await owner.jobs.pause()
        log.info("processing paused by admin %s", message.from_user.id)
        await message.answer(t(lang, "paused"))

    @router.message(Command("resume"), F.from_user.id.in_(set(settings.admins)))
    async def on_resume(message: Message, lang: str) -> None:
        assert message.from_user is not None
        await owner.jobs.resume()
        log.info("processing resumed by admin %s", message.from_user.id)
        await message.answer(t(lang, "resumed"))

    # menu and steps

    @router.callback_query(Nav.filter())
    async def on_nav(
        callback: CallbackQuery, callback_data: Nav, state: FSMContext, lang: str
    ) -> None:
        await callback.answer()
        if callback_data.to == "new":
            await state.update_data(reuse=None)
            await show_step(callback, state, lang, "duration")
        elif callback_data.to == "history":
            assert callback.bot is not None and callback.message is not None
            await send_history(callback.bot, callback.message.chat.id, callback.from_user.id, lang)
        elif callback_data.to == "help":
            await _show(
                callback,
                t(lang, "help", limit=_mb(photo_limit(settings))),
                menu_only_keyboard(lang),
            )
        elif callback_data.to == "lang":
            await _show(callback, t(lang, "lang_prompt"), _lang_keyboard())
        else:
            await show_menu(callback, state, lang)

    @router.callback_query(Back.filter())
    async def on_back(
        callback: CallbackQuery, callback_data: Back, state: FSMContext, lang: str
    ) -> None:
        await callback.answer()
        if callback_data.to in _STATE_OF:
            await show_step(callback, state, lang, callback_data.to)
        else:
            await state.update_data(reuse=None)
            await show_menu(callback, state, lang)

    @router.callback_query(Pick.filter())
    async def on_pick(
        callback: CallbackQuery, callback_data: Pick, state: FSMContext, lang: str
    ) -> None:
        value = _decode(callback_data.step, callback_data.value)
        if value is None:
            await callback.answer(t(lang, "stale_button"))
            return
        await callback.answer()
        step = callback_data.step
        await state.update_data({step: int(value) if step == "duration" else value})
        data = await state.get_data()
        if step == "motion" and data.get("reuse"):
            await submit_reuse(callback, state, lang, data)
            return
        await show_step(callback, state, lang, STEPS[STEPS.index(step) + 1])

    async def submit_reuse(
        callback: CallbackQuery, state: FSMContext, lang: str, data: dict[str, Any]
    ) -> None:
        """ "Same photo, other motion": the motion was chosen, the rest comes from the job."""
        assert callback.bot is not None and callback.message is not None
        job = await store.get_job(str(data["reuse"]))
        if job is None or job.user_id != callback.from_user.id:
            await show_menu(callback, state, lang)
            return
        # The motion keyboard goes away, so a second press cannot queue the same video twice.
        await resubmit(callback, state, lang, job, data, summary=_summary(lang, data, "photo"))

    async def resubmit(
        callback: CallbackQuery,
        state: FSMContext,
        lang: str,
        job: Job,
        params: dict[str, Any],
        *,
        summary: str | None = None,
    ) -> None:
        """Queue `params` on the photo of an earlier `job` (first showing `summary` in place of
        the buttons, if given); when that photo is gone, ask for it again."""
        assert callback.bot is not None and callback.message is not None
        data = await state.get_data()
        found = await owner.photo_of(callback.bot, job, data)
        if found is None:
            await state.set_data({**data, **params, "reuse": None})
            await show_step(callback, state, lang, "photo", again=True)
            return
        image, ref = found
        if summary is not None:
            await _show(callback, summary, None)
        await owner.submit(
            bot=callback.bot,
            chat_id=callback.message.chat.id,
            user_id=callback.from_user.id,
            lang=lang,
            params=params,
            image=image,
            photo_ref=ref,
            state=state,
        )

    @router.callback_query(LangButton.filter())
    async def on_lang_pick(
        callback: CallbackQuery, callback_data: LangButton, state: FSMContext
    ) -> None:
        code = callback_data.code if callback_data.code in LANGUAGES else "en"
        await owner.set_language(callback.from_user.id, code)
        log.info("user %s switched the language to %s", callback.from_user.id, code)
        await callback.answer()
        await _show(callback, t(code, "lang_set") + "\n\n" + t(code, "menu"), menu_keyboard(code))

    # job buttons

    @router.callback_query(JobButton.filter())
    async def on_job_button(
        callback: CallbackQuery, callback_data: JobButton, state: FSMContext, lang: str
    ) -> None:
        job = await store.get_job(callback_data.job_id)
        if job is None or job.user_id != callback.from_user.id:
            await callback.answer(t(lang, "not_yours" if job else "stale_button"))
            return
        if callback_data.action == "cancel":
            if job.terminal:
                await callback.answer(t(lang, "already_finished"))
                return
            await callback.answer(t(lang, "cancelling"))
            cancelled = await owner.jobs.cancel(job.job_id, user_id=callback.from_user.id)
            log.info("job %s: cancel pressed, now %s", job.job_id, cancelled.status)
            return
        if callback_data.action == "resend":
            if await store.delivery_retry(job.job_id):
                log.info("job %s: the user asked for the interrupted video", job.job_id)
                await callback.answer(t(lang, "resending"))
                owner._wake_delivery.set()
            else:
                await callback.answer(t(lang, "already_sent"))
            return
        await callback.answer()
        data = await state.get_data()
        params = {
            "duration": job.duration,
            "resolution": job.resolution,
            "motion": job.motion_preset,
            "aspect": job.aspect,
        }
        if callback_data.action == "other":
            await state.set_data({**data, **params, "reuse": job.job_id})
            await show_step(callback, state, lang, "motion")
            return
        # "again with a new seed": same photo, same parameters, the seed drawn anew.
        await resubmit(callback, state, lang, job, params)

    # the photo

    @router.message(StateFilter(Flow.photo), F.photo | F.document)
    async def on_photo(message: Message, state: FSMContext, lang: str) -> None:
        assert message.from_user is not None and message.bot is not None
        data = await state.get_data()
        missing = missing_step(data)
        if missing is not None:  # an old conversation without every choice: ask again
            await show_step(message, state, lang, missing)
            return
        limit = photo_limit(settings)
        if message.photo:
            size = message.photo[-1]  # the largest; Telegram lists them small to large
            file_id, file_size = size.file_id, size.file_size
        else:
            document = message.document
            assert document is not None
            if not _looks_like_image(document.mime_type, document.file_name):
                await message.answer(t(lang, "not_image"))
                return
            file_id, file_size = document.file_id, document.file_size
        if file_size is not None and file_size > limit:
            await message.answer(t(lang, "too_big", limit=_mb(limit)))
            return
        try:
            image = await owner.download(message.bot, file_id)
        except TelegramBadRequest as exc:
            if "too big" in exc.message.lower():
                await message.answer(t(lang, "too_big", limit=_mb(limit)))
            else:
                log.warning("photo download failed: %s", exc.message)
                await message.answer(t(lang, "download_failed"))
            return
        except (TelegramNetworkError, TelegramNotFound) as exc:
            log.warning("photo download failed: %s", exc)
            await message.answer(t(lang, "download_failed"))
            return
        await owner.submit(
            bot=message.bot,
            chat_id=message.chat.id,
            user_id=message.from_user.id,
            lang=lang,
            params=data,
            image=image,
            photo_ref=file_id,
            state=state,
            reply_to=message.message_id,
        )

    @router.message(StateFilter(Flow.photo))
    async def on_not_photo(message: Message, lang: str) -> None:
        await message.answer(t(lang, "send_photo_hint"))

    @router.message(F.photo | F.document)
    async def on_early_photo(message: Message, lang: str) -> None:
        await message.answer(
            t(lang, "photo_first"),
            reply_markup=InlineKeyboardMarkup(
                inline_keyboard=[[_button(t(lang, "btn_new"), Nav(to="new"))]]
            ),
        )

    @router.message()
    async def on_other(message: Message, lang: str) -> None:
        await message.answer(t(lang, "unknown"), reply_markup=menu_only_keyboard(lang))

    @router.callback_query()
    async def on_stale(callback: CallbackQuery, lang: str) -> None:
        await callback.answer(t(lang, "stale_button"))

    return router


def _looks_like_image(mime_type: str | None, file_name: str | None) -> bool:
    if mime_type:
        return mime_type.lower().startswith("image/") and "svg" not in mime_type.lower()
    extension = (file_name or "").rsplit(".", 1)[-1].lower()
    return extension in IMAGE_EXTENSIONS


def _lang_keyboard() -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [_button(LANGUAGE_NAMES[code], LangButton(code=code)) for code in LANGUAGES]
        ]
    )


def _cancel_list(lang: str, jobs: list[Job]) -> InlineKeyboardMarkup:
    buttons = [
        _button(t(lang, "btn_cancel_job", n=n), JobButton(action="cancel", job_id=job.job_id))
        for n, job in enumerate(jobs, start=1)
    ]
    return InlineKeyboardMarkup(
        inline_keyboard=[*_rows(buttons, 3), [_button(t(lang, "btn_menu"), Nav(to="menu"))]]
    )
