"""Showing the conversation: one live message per chat, edited step by step.

Shared by the handlers (`bot_handlers.py`) and the photo's handlers (`bot_photo.py`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiogram.exceptions import TelegramBadRequest
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from .bot_telegram import is_not_modified
from .bot_views import STATE_OF, menu_keyboard, photo_limit, step_keyboard, step_text
from .config import Settings
from .texts import t

if TYPE_CHECKING:
    from .bot_port import BotPort

log = logging.getLogger(__name__)


async def show(
    target: Message | CallbackQuery, text: str, markup: InlineKeyboardMarkup | None
) -> int | None:
    """Edit the message a button was pressed on (a text message), or send a new one.

    Returns the id of the message that shows it now."""
    if isinstance(target, Message):
        return (await target.answer(text, reply_markup=markup)).message_id
    message = target.message
    if isinstance(message, Message) and message.text is not None:
        try:
            await message.edit_text(text, reply_markup=markup)
            return message.message_id
        except TelegramBadRequest as exc:
            if is_not_modified(exc):
                return message.message_id
            log.debug("could not edit message %s: %s", message.message_id, exc.message)
    if message is not None and target.bot is not None:
        sent = await target.bot.send_message(message.chat.id, text, reply_markup=markup)
        return sent.message_id
    return None


async def show_conv(
    target: Message | CallbackQuery,
    state: FSMContext,
    text: str,
    markup: InlineKeyboardMarkup | None,
) -> None:
    """Show a view of the conversation; its message becomes the one live conversation message
    (every other message's menu and step buttons are outdated from now on)."""
    await state.update_data(conv=await show(target, text, markup))


async def take_over(callback: CallbackQuery, telegram: BotPort) -> None:
    """The pressed message becomes a menu or a step: if it was a finished job's progress
    message, it is released, so that no restart edits it back to the job's state."""
    message = callback.message
    if isinstance(message, Message) and message.text is not None:
        await telegram.progress.release(message.chat.id, message.message_id)


def is_current(callback: CallbackQuery, data: dict[str, Any]) -> bool:
    """Whether a menu or step button was pressed on the live conversation message."""
    if "conv" not in data:
        return True  # a conversation from before conversations were tracked
    message = callback.message
    return message is not None and message.message_id == data["conv"]


async def show_step(
    target: Message | CallbackQuery,
    state: FSMContext,
    lang: str,
    step: str,
    settings: Settings,
    *,
    again: bool = False,
    note: str = "",
) -> None:
    data = await state.get_data()
    await state.set_state(STATE_OF[step])
    text = step_text(lang, step, data, limit=photo_limit(settings), again=again)
    await show_conv(
        target, state, f"{note}\n\n{text}" if note else text, step_keyboard(lang, step, data)
    )


async def show_menu(target: Message | CallbackQuery, state: FSMContext, lang: str) -> None:
    await state.set_state(None)
    await show_conv(target, state, t(lang, "menu"), menu_keyboard(lang))
