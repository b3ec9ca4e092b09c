"""Showing the conversation: one live message per chat, edited step by step.

The live message's id is `conv` in the FSM data. Whenever another message takes its place (a
new menu, a list, a prompt sent anew), the old one loses its buttons, so a chat never holds two
working prompts; a prompt that was answered is collapsed into its summary ("Your choice: ...").
Shared by the handlers (`bot_handlers.py`) and the photo's handlers (`bot_photo.py`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
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


def chat_of(target: Message | CallbackQuery) -> int | None:
    if isinstance(target, Message):
        return target.chat.id
    return target.message.chat.id if target.message is not None else None


async def retire(bot: Bot | None, chat_id: int | None, message_id: object, text: str = "") -> None:
    """A conversation message that is no longer live: its buttons go (and, given `text`, its
    text becomes that one line). Failures only cost the tidying, never the conversation."""
    if bot is None or chat_id is None or not isinstance(message_id, int):
        return
    try:
        if text:
            await bot.edit_message_text(text=text, chat_id=chat_id, message_id=message_id)
        else:
            await bot.edit_message_reply_markup(chat_id=chat_id, message_id=message_id)
    except TelegramAPIError as exc:  # deleted, too old, not modified...
        log.debug("conversation message %s not retired: %s", message_id, exc.message)


async def retire_conv(target: Message | CallbackQuery, state: FSMContext, text: str = "") -> None:
    """The live conversation message is done (answered, cancelled): none is live now."""
    data = await state.get_data()
    await state.update_data(conv=None)
    await retire(target.bot, chat_of(target), data.get("conv"), text)


async def show_conv(
    target: Message | CallbackQuery,
    state: FSMContext,
    text: str,
    markup: InlineKeyboardMarkup | None,
) -> None:
    """Show a view of the conversation; its message becomes the one live conversation message,
    and the one before it (if another) loses its buttons."""
    old = (await state.get_data()).get("conv")
    new = await show(target, text, markup)
    await state.update_data(conv=new)
    if old != new:
        await retire(target.bot, chat_of(target), old)


def stale_text(lang: str, data: dict[str, Any]) -> str:
    """The answer to a tap on a dead prompt: where the live one is, or how to start."""
    return t(lang, "stale_menu" if data.get("conv") else "stale_none")


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
