"""The page as a Telegram Mini App, opened from the chat: the bot's menu button and /app.
Telegram opens Mini Apps over https only, so both need an https PUBLIC_URL."""

from __future__ import annotations

import logging

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError
from aiogram.types import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    MenuButtonWebApp,
    Message,
    WebAppInfo,
)

from .config import Settings
from .texts import t

log = logging.getLogger(__name__)


def app_url(settings: Settings) -> str | None:
    """Where the page is, when Telegram can open it (an https PUBLIC_URL), else None."""
    if not settings.public_url.startswith("https://"):
        return None
    return f"{settings.public_url}/"


async def set_menu_button(bot: Bot, settings: Settings) -> None:
    """The chat's menu button opens the page inside Telegram (when there is an https URL)."""
    url = app_url(settings)
    if url is None:
        return
    button = MenuButtonWebApp(text=t("en", "app_button"), web_app=WebAppInfo(url=url))
    try:
        await bot.set_chat_menu_button(menu_button=button)
    except TelegramAPIError as exc:  # the chat works without it
        log.warning("the Mini App's menu button was not set: %s", exc.message)


async def on_app(message: Message, lang: str, settings: Settings) -> None:
    """/app: a button that opens the page inside Telegram, or why there is none."""
    url = app_url(settings)
    if url is None:
        await message.answer(t(lang, "app_off"))
        return
    button = InlineKeyboardButton(text=t(lang, "app_button"), web_app=WebAppInfo(url=url))
    await message.answer(
        t(lang, "app_open"), reply_markup=InlineKeyboardMarkup(inline_keyboard=[[button]])
    )
