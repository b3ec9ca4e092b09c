"""The photo's handlers: the photo step, a photo sent first, albums, HEIC, wrong files, and
queueing a job on a photo the bot already has (again, other settings)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiogram.exceptions import TelegramBadRequest, TelegramNotFound
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from .bot_screens import show, show_conv, show_step
from .bot_telegram import TRANSIENT
from .bot_views import (
    STATE_OF,
    document_kind,
    is_heic,
    looks_like_image,
    mb,
    menu_only_keyboard,
    missing_step,
    photo_first_keyboard,
    photo_limit,
    step_text,
    summary,
)
from .config import Settings
from .store import Job
from .texts import t

if TYPE_CHECKING:
    from .bot_port import BotPort

log = logging.getLogger(__name__)

# A download that failed for good (after the bot's own retries), or a file Telegram lost.
DOWNLOAD_FAILURES: tuple[type[Exception], ...] = (*TRANSIENT, TelegramNotFound)


async def resubmit(
    callback: CallbackQuery,
    state: FSMContext,
    lang: str,
    telegram: BotPort,
    job: Job,
    params: dict[str, Any],
    *,
    shown: str | None = None,
) -> Job | None:
    """Queue `params` on the photo of an earlier `job` (first showing `shown` in place of the
    buttons, if given); when that photo is gone, ask for it again."""
    assert callback.bot is not None and callback.message is not None
    data = await state.get_data()
    found = await telegram.photo_of(callback.bot, job, data)
    if found is None:
        await state.set_data({**data, **params, "reuse": None, "photo_of": None})
        await show_step(callback, state, lang, "photo", telegram.settings, again=True)
        return None
    image, ref = found
    if shown is not None:
        await show(callback, shown, None)
    return await telegram.submit(
        bot=callback.bot,
        chat_id=callback.message.chat.id,
        user_id=callback.from_user.id,
        lang=lang,
        params=params,
        image=image,
        photo_ref=ref,
        state=state,
    )


async def settings_done(
    callback: CallbackQuery, state: FSMContext, lang: str, telegram: BotPort
) -> None:
    """Every setting is chosen: queue the photo the bot already has, or ask for one."""
    data = await state.get_data()
    pending = data.get("pending")
    if pending:
        await show(callback, summary(lang, data, "photo"), None)
        message = callback.message
        assert isinstance(message, Message)
        photo = Incoming(**pending)
        user_id = callback.from_user.id
        await take_photo(message, state, lang, telegram, data, photo, user_id=user_id)
        return
    source = data.get("photo_of")
    job = await telegram.store.get_job(str(source)) if source else None
    if job is not None and job.user_id == callback.from_user.id:
        await resubmit(
            callback, state, lang, telegram, job, data, shown=summary(lang, data, "photo")
        )
        return
    await show_step(callback, state, lang, "photo", telegram.settings)


@dataclass(frozen=True)
class Incoming:
    """A photo the user sent: enough to download it later (kept in the FSM data as a dict)."""

    file_id: str
    file_size: int | None
    heic: bool
    message_id: int


def incoming(message: Message) -> Incoming | str:
    """The photo in a message, or the text key naming what came instead."""
    if message.photo:
        size = message.photo[-1]  # the largest; Telegram lists them small to large
        return Incoming(size.file_id, size.file_size, False, message.message_id)
    document = message.document
    if document is not None:
        if not looks_like_image(document.mime_type, document.file_name):
            return document_kind(document.mime_type, document.file_name)
        heic = is_heic(document.mime_type, document.file_name)
        return Incoming(document.file_id, document.file_size, heic, message.message_id)
    if message.video or message.animation or message.video_note:
        return "kind_video"
    if message.audio or message.voice:
        return "kind_audio"
    if message.sticker:
        return "kind_sticker"
    return "kind_message" if message.text else "kind_file"


async def take_photo(
    message: Message,
    state: FSMContext,
    lang: str,
    telegram: BotPort,
    params: dict[str, Any],
    photo: Incoming,
    *,
    user_id: int,
    note: str = "",
) -> None:
    """Download the photo and queue it with `params`; refusals are explained."""
    assert message.bot is not None
    limit = photo_limit(telegram.settings)
    if photo.file_size is not None and photo.file_size > limit:
        await message.answer(t(lang, "too_big", limit=mb(limit)))
        return
    try:
        image = await telegram.download(message.bot, photo.file_id)
    except TelegramBadRequest as exc:
        key = "too_big" if "too big" in exc.message.lower() else "download_failed"
        log.warning("photo download failed: %s", exc.message)
        await message.answer(t(lang, key, limit=mb(limit)))
        return
    except DOWNLOAD_FAILURES as exc:
        log.warning("photo download failed for good: %s", exc)
        await message.answer(t(lang, "download_failed"))
        return
    if photo.heic:
        converted = await telegram.heic_to_png(image)
        if converted is None:
            await message.answer(t(lang, "heic_refused"))
            return
        image = converted
    await telegram.submit(
        bot=message.bot,
        chat_id=message.chat.id,
        user_id=user_id,
        lang=lang,
        params=params,
        image=image,
        photo_ref=photo.file_id,
        state=state,
        reply_to=photo.message_id,
        note=note,
    )


async def on_photo(
    message: Message, state: FSMContext, lang: str, telegram: BotPort, settings: Settings
) -> None:
    """The photo step: take the photo (the first of an album), or say what came instead."""
    part = telegram.album_part(message.chat.id, message.media_group_id)
    if part == "later":
        return  # one answer per album
    data = await state.get_data()
    missing = missing_step(data)
    if missing is not None:  # an old conversation without every choice: ask again
        await show_step(message, state, lang, missing, settings)
        return
    photo = incoming(message)
    if isinstance(photo, str):
        note = t(lang, "not_image", kind=t(lang, photo))
        await show_step(message, state, lang, "photo", settings, note=note)
        return
    assert message.from_user is not None
    note = t(lang, "album_first") if part == "first" else ""
    user_id = message.from_user.id
    await take_photo(message, state, lang, telegram, data, photo, user_id=user_id, note=note)


async def on_not_photo(message: Message, state: FSMContext, lang: str, settings: Settings) -> None:
    note = t(lang, "wrong_input", kind=t(lang, incoming_kind(message)))
    await show_step(message, state, lang, "photo", settings, note=note)


def incoming_kind(message: Message) -> str:
    found = incoming(message)
    return found if isinstance(found, str) else "kind_file"


async def on_early_photo(
    message: Message,
    state: FSMContext,
    raw_state: str | None,
    lang: str,
    telegram: BotPort,
    settings: Settings,
) -> None:
    """A photo before the photo step: kept, and the settings asked for (never the photo again)."""
    part = telegram.album_part(message.chat.id, message.media_group_id)
    if part == "later":
        return  # one answer per album
    photo = incoming(message)
    if isinstance(photo, str):
        text = t(lang, "not_image", kind=t(lang, photo))
        await message.answer(text, reply_markup=menu_only_keyboard(lang))
        return
    notes = [t(lang, "album_first")] if part == "first" else []
    await state.update_data(pending=dataclasses.asdict(photo), reuse=None, photo_of=None)
    current = next((step for step, st in STATE_OF.items() if st.state == raw_state), None)
    if current is not None and current != "photo":
        # Mid-conversation: keep going where the user was, now with the photo.
        notes.append(t(lang, "photo_kept"))
        await show_step(message, state, lang, current, settings, note="\n".join(notes))
        return
    notes.append(t(lang, "photo_first"))
    data = await state.get_data()
    await state.set_state(STATE_OF["duration"])
    text = "\n".join(notes) + "\n\n" + step_text(lang, "duration", data)
    await show_conv(message, state, text, photo_first_keyboard(lang, data))
