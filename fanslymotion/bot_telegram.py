"""Telegram plumbing under the bot: FSM storage in SQLite, the 429 middleware, error kinds.

Nothing here knows the conversation; `bot.py` and its rooms build on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiogram import Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import (
    ClientDecodeError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)
from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, StateType, StorageKey
from aiogram.methods import (
    EditMessageCaption,
    EditMessageMedia,
    EditMessageText,
    Response,
    SendDocument,
    SendVideo,
    TelegramMethod,
)
from aiogram.methods.base import TelegramType
from aiogram.types import InputFile

from .store.port import BotStore

log = logging.getLogger(__name__)

REDACTED = "<bot-token>"
# Loggers that may quote a Bot API URL (aiogram's polling errors, our own warnings).
REDACTED_LOGGERS = (
    "aiogram.dispatcher",
    "aiogram.event",
    "aiogram.middlewares",
    "fanslymotion.bot",
    "fanslymotion.bot_telegram",
    "fanslymotion.bot_handlers",
    "fanslymotion.bot_progress",
    "fanslymotion.bot_delivery",
)


class RedactToken(logging.Filter):
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

    def __init__(self, store: BotStore) -> None:
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


# Failures that say nothing about the request itself: the network, a 5xx, a proxy's HTML page.
TRANSIENT: tuple[type[Exception], ...] = (
    TelegramNetworkError,
    TelegramServerError,
    ClientDecodeError,
    aiohttp.ClientError,
    TimeoutError,
)
# Small replies worth sending again after a transient failure (a lost answer may mean a copy).
_RESENT_AFTER_ERRORS = frozenset(
    {"sendMessage", "answerCallbackQuery", "setMyCommands", "deleteMessage"}
)


def _owner_retries(method: TelegramMethod[Any]) -> bool:
    """Calls whose caller schedules its own retry: progress edits (with the newest text, within
    the chat's budget) and uploads (the outbox, per chat, without holding an upload slot)."""
    if isinstance(method, EditMessageText | EditMessageCaption | EditMessageMedia):
        return True
    if isinstance(method, SendVideo):
        return isinstance(method.video, InputFile)
    if isinstance(method, SendDocument):
        return isinstance(method.document, InputFile)
    return False


class SessionClosed(TelegramNetworkError):
    """A call made after the bot stopped: refused, so no new connection outlives the stop."""


class Gate(BaseRequestMiddleware):
    """The outermost request middleware: once closed, every call fails at once. A handler
    still finishing after stop() would otherwise open a new HTTP session nobody closes."""

    def __init__(self) -> None:
        self.closed = False

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        if self.closed:
            raise SessionClosed(method, "the bot has stopped")
        return await make_request(bot, method)


class RetryAfter(BaseRequestMiddleware):
    """Honour 429 Too Many Requests (wait `retry_after`, send the same request again), and send
    small replies again after a transient failure, with backoff; both bounded."""

    def __init__(
        self,
        *,
        attempts: int = 5,
        max_wait: float = 60.0,
        error_attempts: int = 4,
        error_backoff: float = 0.5,
    ) -> None:
        self.attempts = attempts
        self.max_wait = max_wait
        self.error_attempts = error_attempts
        self.error_backoff = error_backoff

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[TelegramType],
        bot: Bot,
        method: TelegramMethod[TelegramType],
    ) -> Response[TelegramType]:
        name = method.__api_method__
        delay = self.error_backoff
        attempt = 0
        while True:
            attempt += 1
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                if (
                    _owner_retries(method)
                    or attempt >= self.attempts
                    or exc.retry_after > self.max_wait
                ):
                    raise
                log.warning(
                    "Telegram flood control on %s: waiting %ss (attempt %d)",
                    name,
                    exc.retry_after,
                    attempt,
                )
                await asyncio.sleep(exc.retry_after)
            except TRANSIENT as exc:
                if name not in _RESENT_AFTER_ERRORS or attempt >= self.error_attempts:
                    raise
                log.warning(
                    "%s failed (%s: %s); sending it again in %.1fs",
                    name,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
                delay *= 2


def is_not_modified(exc: TelegramBadRequest) -> bool:
    return "message is not modified" in exc.message.lower()


def user_gone(exc: TelegramAPIError) -> bool:
    """The chat can never receive messages again: blocked, deactivated, or unknown."""
    if isinstance(exc, TelegramForbiddenError):
        return True
    return isinstance(exc, TelegramBadRequest) and gone_text(exc.message)


def gone_text(text: str | None) -> bool:
    """Whether an error text (e.g. a delivery's last error) says the user can't be reached."""
    lowered = (text or "").lower()
    return any(
        phrase in lowered
        for phrase in ("blocked by the user", "chat not found", "user is deactivated", "forbidden")
    )


@contextlib.asynccontextmanager
async def chat_action(bot: Bot, chat_id: int, action: str) -> AsyncIterator[None]:
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
