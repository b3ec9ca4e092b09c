"""The bot's outer update middleware: who may write, in which language, and tracking each
update from its first step so a stop can wait for it."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from aiogram import BaseMiddleware
from aiogram.exceptions import TelegramAPIError
from aiogram.types import TelegramObject, Update, User

from .texts import t

log = logging.getLogger(__name__)


class Gatekeeper(Protocol):
    """What the middleware asks of the running bot."""

    def handling(self) -> AbstractContextManager[None]: ...

    async def language(self, user: User | None) -> str: ...

    def is_allowed(self, user_id: int) -> bool: ...

    async def remember_name(self, user: User) -> None: ...

    async def user_wrote(self, user_id: int, lang: str) -> None: ...


class Context(BaseMiddleware):
    """Per update: the allow-list, the user's language, and tracking for a clean stop."""

    def __init__(self, owner: Gatekeeper) -> None:
        self.owner = owner

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        # Tracked from its first step: an update that is still reading the user's language
        # when stop() looks must be waited for too, or it would call Telegram after the close.
        with self.owner.handling():
            user = data.get("event_from_user")
            if not isinstance(user, User) or user.is_bot:
                return None
            lang = await self.owner.language(user)
            if not self.owner.is_allowed(user.id):
                log.info("update from user %s refused: not on the allow-list", user.id)
                await self._refuse(event, lang)
                return None
            data["lang"] = lang
            await self.owner.remember_name(user)
            await self.owner.user_wrote(user.id, lang)
            return await handler(event, data)

    @staticmethod
    async def _refuse(event: TelegramObject, lang: str) -> None:
        if not isinstance(event, Update):
            return
        with contextlib.suppress(TelegramAPIError):
            if event.callback_query is not None:
                await event.callback_query.answer(t(lang, "private"), show_alert=True)
            elif event.message is not None and event.message.chat.type == "private":
                await event.message.answer(t(lang, "private"))  # never into a group
