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

from .bot_files import document_kind, is_heic, looks_like_image
from .bot_screens import show, show_conv, show_step
from .bot_story import take_story
from .bot_telegram import TRANSIENT
from .bot_views import (
    STATE_OF,
    error_text,
    mb,
    menu_only_keyboard,
    missing_step,
    photo_first_keyboard,
    photo_limit,
    step_text,
    summary,
)
from .config import Settings
from .errors import InvalidParams, PayloadTooLarge
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
    ends_flow: bool = True,
) -> Job | None:
    """Queue `params` on the photo of an earlier `job` (first showing `shown` in place of the
    buttons, if given, which ends the conversation's prompt); when that photo is gone, ask for
    it again. `ends_flow=False` (another variant, try again) leaves the conversation alone."""
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
        await state.update_data(conv=None)  # answered: no live prompt until the next one
    return await telegram.submit(
        bot=callback.bot,
        chat_id=callback.message.chat.id,
        user_id=callback.from_user.id,
        lang=lang,
        params=params,
        image=image,
        photo_ref=ref,
        state=state,
        ends_flow=ends_flow,
    )


async def settings_done(
    callback: CallbackQuery, state: FSMContext, lang: str, telegram: BotPort
) -> None:
    """Every setting is chosen: queue the photo the bot already has, or ask for one."""
    data = await state.get_data()
    pending = data.get("pending")
    if pending:
        await show(callback, summary(lang, data, "photo"), None)
        await state.update_data(conv=None)  # the prompt is answered: it shows the summary
        message = callback.message
        assert isinstance(message, Message)
        photo = Incoming(**pending)
        user_id = callback.from_user.id
        if not await take_photo(message, state, lang, telegram, data, photo, user_id=user_id):
            # Refused after all (e.g. damaged): the settings stay; only a photo is asked for.
            await state.update_data(pending=None)
            await show_step(message, state, lang, "photo", telegram.settings)
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
    width: int | None = None  # known for a compressed photo, not for a file
    height: int | None = None


def incoming(message: Message) -> Incoming | str:
    """The photo in a message, or the text key naming what came instead."""
    if message.photo:
        size = message.photo[-1]  # the largest; Telegram lists them small to large
        return Incoming(
            size.file_id, size.file_size, False, message.message_id, size.width, size.height
        )
    document = message.document
    if document is not None:
        if not looks_like_image(document.mime_type, document.file_name):
            return document_kind(document.mime_type, document.file_name)
        heic = is_heic(document.mime_type, document.file_name)
        return Incoming(document.file_id, document.file_size, heic, message.message_id)
    if message.video or message.animation or message.video_note:
        return "kind_video"
    if message.voice:
        return "kind_voice"
    if message.audio:
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
    collapse: tuple[int, str] | None = None,
) -> bool:
    """Download the photo and queue it with `params`; refusals are explained. Whether queued."""
    assert message.bot is not None
    album = params.get("album")
    if album or params.get("music"):  # several photos, or music: a story
        photos = [(Incoming(**p["photo"]), str(p["caption"])) for p in album or ()]
        photos = photos or [(photo, "")]
        images = []
        for each, _ in photos:
            fetched = await fetch_photo(message, lang, telegram, each)
            if fetched is None:
                return False
            images.append(fetched)
        return await take_story(
            message,
            state,
            lang,
            telegram,
            params,
            images,
            [caption for _, caption in photos],
            photo_ref=photos[0][0].file_id,
            reply_to=photos[0][0].message_id,
            user_id=user_id,
            collapse=collapse,
        )
    image = await fetch_photo(message, lang, telegram, photo)
    if image is None:
        return False
    job = await telegram.submit(
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
        collapse=collapse,
    )
    return job is not None


async def fetch_photo(
    message: Message, lang: str, telegram: BotPort, photo: Incoming
) -> bytes | None:
    """The photo's bytes (HEIC converted), or None once the refusal is explained."""
    assert message.bot is not None
    limit = photo_limit(telegram.settings)
    refusal = precheck(lang, photo, telegram.settings)
    if refusal is not None:
        await message.answer(refusal)
        return None
    try:
        image = await telegram.download(message.bot, photo.file_id)
    except TelegramBadRequest as exc:
        key = "too_big" if "too big" in exc.message.lower() else "download_failed"
        log.warning("photo download failed: %s", exc.message)
        await message.answer(t(lang, key, limit=mb(limit)))
        return None
    except DOWNLOAD_FAILURES as exc:
        log.warning("photo download failed for good: %s", exc)
        await message.answer(t(lang, "download_failed"))
        return None
    if photo.heic:
        converted = await telegram.heic_to_png(image)
        if converted is None:
            await message.answer(t(lang, "heic_refused"))
            return None
        image = converted
    return image


def album_photos(parts: list[Message]) -> list[dict[str, Any]]:
    """An album's photos as the FSM keeps them: each photo and its caption; what is not an
    image is left out."""
    photos = []
    for part in parts:
        found = incoming(part)
        if not isinstance(found, str):
            photos.append({"photo": dataclasses.asdict(found), "caption": part.caption or ""})
    return photos


def album_gate(message: Message, telegram: BotPort) -> str:
    """`album_part`, with a later part handed to its album: "first", "later" or "none"."""
    part = telegram.album_part(message.chat.id, message.media_group_id)
    if part == "later":
        telegram.albums.add(message)
    return part


def precheck(lang: str, photo: Incoming, settings: Settings) -> str | None:
    """Why a photo can't be used, judged from the update alone (no download), or None.

    A compressed photo carries its size in pixels; any file carries its size in bytes (the Bot
    API lets bots download 20 MB at most).
    """
    limit = photo_limit(settings)
    if photo.file_size is not None and photo.file_size > limit:
        return t(lang, "too_big", limit=mb(limit))
    width, height = photo.width, photo.height
    if not width or not height:
        return None
    if min(width, height) < settings.min_side:
        details = {"min_side": settings.min_side, "width": width, "height": height}
        small = InvalidParams("too small", code="photo_too_small", details=details)
        return error_text(lang, small, active=0, limit=0)
    if width * height > settings.max_pixels:
        megapixels = {"megapixels": f"{settings.max_pixels / 1e6:g}"}
        large = PayloadTooLarge("too many pixels", code="photo_too_many_pixels", details=megapixels)
        return error_text(lang, large, active=0, limit=0)
    return None


async def on_photo(
    message: Message, state: FSMContext, lang: str, telegram: BotPort, settings: Settings
) -> None:
    """The photo step: take the photo, or an album's photos as a story, or say what came
    instead."""
    part = album_gate(message, telegram)
    if part == "later":
        return  # one answer per album
    data = await state.get_data()
    missing = missing_step(data)
    if missing is not None:  # an old conversation without every choice: ask again
        await show_step(message, state, lang, missing, settings)
        return
    photo = incoming(message)
    if isinstance(photo, str):  # one line; the step's prompt above stays live
        await message.answer(t(lang, "not_image", kind=t(lang, photo)))
        return
    assert message.from_user is not None
    user_id = message.from_user.id
    # Once queued, the step's prompt keeps only what was chosen.
    conv = data.get("conv")
    collapse = (conv, summary(lang, data, "photo")) if isinstance(conv, int) else None
    if part != "first":
        await take_photo(
            message, state, lang, telegram, data, photo, user_id=user_id, collapse=collapse
        )
        return

    async def whole_album(parts: list[Message]) -> None:
        """Several photos make a story; an album of one image is that photo."""
        with telegram.handling():
            album = album_photos(parts)
            params = {**data, "album": album} if len(album) > 1 else data
            note = "" if len(album) > 1 else t(lang, "album_first")
            await take_photo(
                message,
                state,
                lang,
                telegram,
                params,
                photo,
                user_id=user_id,
                note=note,
                collapse=collapse,
            )

    telegram.albums.add(message, whole_album)


async def on_not_photo(message: Message, lang: str) -> None:
    """Not a photo on the photo step: one short line; the step's prompt above stays live."""
    await message.answer(t(lang, "wrong_input", kind=t(lang, incoming_kind(message))))


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
    """A photo before the photo step: kept, and the settings asked for (never the photo again).

    A photo that can't be used is refused at once, before any setting; the conversation stays
    where it was, so a good photo sent next simply continues it.
    """
    part = album_gate(message, telegram)
    if part == "later":
        return  # one answer per album
    current = next((step for step, st in STATE_OF.items() if st.state == raw_state), None)
    photo = incoming(message)
    refusal = (
        t(lang, "not_image", kind=t(lang, photo))
        if isinstance(photo, str)
        else precheck(lang, photo, settings)
    )
    if refusal is not None:
        if current is not None:  # mid-conversation: one line, the live step stays
            await message.answer(refusal)
        else:
            await show_conv(message, state, refusal, menu_only_keyboard(lang))
        return
    assert not isinstance(photo, str)
    if part != "first":
        await keep_photo(message, state, lang, photo, current, [])
        return

    async def whole_album(parts: list[Message]) -> None:
        with telegram.handling():
            await keep_photo(message, state, lang, photo, current, album_photos(parts))

    telegram.albums.add(message, whole_album)


async def keep_photo(
    message: Message,
    state: FSMContext,
    lang: str,
    photo: Incoming,
    current: str | None,
    album: list[dict[str, Any]],
) -> None:
    """A photo (or an album) sent before the photo step: kept; the settings are asked for."""
    notes = [t(lang, "album_story", n=len(album))] if len(album) > 1 else []
    if len(album) == 1:
        notes = [t(lang, "album_first")]
    await state.update_data(
        pending=dataclasses.asdict(photo),
        reuse=None,
        photo_of=None,
        album=album if len(album) > 1 else None,
    )
    if current is not None and current != "photo":
        # Mid-conversation: the step above stays live; after it the photo goes straight on.
        notes.append(t(lang, "photo_kept"))
        await message.answer("\n".join(notes))
        return
    notes.append(t(lang, "photo_first"))
    await state.update_data(focus=None)  # a new conversation: the subject is this photo's
    data = await state.get_data()
    await state.set_state(STATE_OF["duration"])
    text = "\n".join(notes) + "\n\n" + step_text(lang, "duration", data)
    await show_conv(message, state, text, photo_first_keyboard(lang, data))
