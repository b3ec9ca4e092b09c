"""Stories in the bot: an album (a media group of 2-10 photos) becomes one story job with one
set of choices, its photos' captions as the shots' captions; an audio file, music or a voice
message sent during the settings becomes the music of the next video (/nomusic removes it).

An album's parts are gathered by `bot_album.Albums`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiogram.exceptions import TelegramBadRequest
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from . import music
from .bot_views import Flow, button, mb, rows_of
from .errors import FanslyError
from .story import LOOKS, MAX_STORY_SECONDS, TRANSITIONS, Story, parse_story
from .story_intake import StoryFiles
from .texts import t

if TYPE_CHECKING:
    from .bot_port import BotPort

log = logging.getLogger(__name__)

STORY_TRANSITION = {"kind": "crossfade", "seconds": 0.6}


def story_of(params: dict[str, Any], captions: list[str], *, fps: int) -> Story:
    """The story the bot's choices make of `len(captions)` photos: each shot the chosen length
    (shortened so that the whole fits `MAX_STORY_SECONDS`), the chosen motion, crossfades."""
    n = len(captions)
    seconds = min(12, max(2, int(params["duration"])))
    overlap = float(STORY_TRANSITION["seconds"]) * (n - 1)  # type: ignore[arg-type]
    seconds = min(seconds, int((MAX_STORY_SECONDS + overlap) // n))
    shots = [
        {"duration": seconds, "motion_preset": str(params["motion"]), "caption": caption[:120]}
        for caption in captions
    ]
    kind = str(params.get("story_transition") or STORY_TRANSITION["kind"])
    transition = {**STORY_TRANSITION, "kind": kind} if kind != "cut" else "cut"
    look = str(params.get("story_look") or "natural")
    body = {"shots": shots, "transition": transition, "look": look}
    return parse_story(body, images=n)


class StoryPick(CallbackData, prefix="story"):
    """A story choice from /story: `kind` is transition or look."""

    kind: str
    value: str


def story_keyboard(lang: str, data: dict[str, Any]) -> InlineKeyboardMarkup:
    """The transitions and the looks, the current ones marked with •."""
    chosen = {
        "transition": data.get("story_transition") or "crossfade",
        "look": data.get("story_look") or "natural",
    }

    def buttons(kind: str, values: tuple[str, ...]) -> list[Any]:
        return [
            button(
                ("• " if value == chosen[kind] else "") + t(lang, f"story_{kind}_{value}"),
                StoryPick(kind=kind, value=value),
            )
            for value in values
        ]

    rows = rows_of(buttons("transition", TRANSITIONS), 2) + rows_of(buttons("look", LOOKS), 3)
    return InlineKeyboardMarkup(inline_keyboard=rows)


async def on_story(message: Message, state: FSMContext, lang: str) -> None:
    """/story: the transition and the look of the next album's story."""
    data = await state.get_data()
    await message.answer(t(lang, "story_choose"), reply_markup=story_keyboard(lang, data))


async def on_story_pick(
    callback: CallbackQuery, callback_data: StoryPick, state: FSMContext, lang: str
) -> None:
    allowed = {"transition": TRANSITIONS, "look": LOOKS}.get(callback_data.kind, ())
    if callback_data.value not in allowed:
        await callback.answer()
        return
    await state.update_data({f"story_{callback_data.kind}": callback_data.value})
    await callback.answer(t(lang, f"story_{callback_data.kind}_{callback_data.value}"))
    if isinstance(callback.message, Message):
        data = await state.get_data()
        await callback.message.edit_reply_markup(reply_markup=story_keyboard(lang, data))


def music_of(message: Message) -> dict[str, Any] | None:
    """The music in a message (an audio file or a voice message), as kept in the FSM data."""
    if message.audio is not None:
        audio = message.audio
        name = audio.title or audio.file_name or ""
        return {"file_id": audio.file_id, "size": audio.file_size, "name": name}
    if message.voice is not None:
        return {"file_id": message.voice.file_id, "size": message.voice.file_size, "name": ""}
    return None


async def on_music(message: Message, state: FSMContext, lang: str, raw_state: str | None) -> None:
    """Music during the settings: kept for the next video. On a step that waits for a button
    the one line also says so, as for anything else typed there."""
    found = music_of(message)
    assert found is not None
    kind = "kind_voice" if message.voice is not None else "kind_audio"
    lines = [] if raw_state == Flow.photo.state else [t(lang, "use_buttons", kind=t(lang, kind))]
    if found["size"] is not None and found["size"] > music.MAX_AUDIO_BYTES:
        lines.append(t(lang, "music_too_big", limit=mb(music.MAX_AUDIO_BYTES)))
    else:
        await state.update_data(music=found)
        lines.append(t(lang, "music_kept"))
    await message.answer("\n".join(lines))


async def on_no_music(message: Message, state: FSMContext, lang: str) -> None:
    await state.update_data(music=None)
    await message.answer(t(lang, "music_removed"))


async def _checked_music(
    message: Message, lang: str, telegram: BotPort, kept: dict[str, Any], seconds: float
) -> bytes | None:
    """The kept music downloaded and checked (readable, not silent); None after a refusal."""
    assert message.bot is not None
    try:
        data = await telegram.download(message.bot, str(kept["file_id"]))
    except TelegramBadRequest as exc:
        log.warning("music download failed: %s", exc.message)
        await message.answer(t(lang, "music_refused", why=t(lang, "why_generic")))
        return None
    with tempfile.NamedTemporaryFile(prefix="fanslymotion-music-") as tmp:
        tmp.write(data)
        tmp.flush()
        check = functools.partial(music.check, Path(tmp.name), 0.0, seconds)
        try:
            await asyncio.get_running_loop().run_in_executor(None, check)
        except FanslyError as exc:
            key = f"music_{exc.code}" if exc.code.startswith("audio_") else "why_generic"
            await message.answer(t(lang, "music_refused", why=t(lang, key)))
            return None
    return data


async def take_story(
    message: Message,
    state: FSMContext,
    lang: str,
    telegram: BotPort,
    params: dict[str, Any],
    images: list[bytes],
    captions: list[str],
    *,
    photo_ref: str,
    reply_to: int,
    user_id: int,
    collapse: tuple[int, str] | None = None,
) -> bool:
    """Queue the photos (with the kept music, downloaded and checked) as one story. Whether
    queued."""
    assert message.bot is not None
    fps = int(params["fps"]) if params.get("fps") else telegram.settings.fps
    story = story_of(params, captions, fps=fps)
    audio = b""
    kept = params.get("music")
    if kept:
        seconds = story.timeline(fps).seconds
        checked = await _checked_music(message, lang, telegram, kept, seconds)
        if checked is None:
            return False
        audio = checked
    note = t(lang, "story_note", n=len(images), seconds=f"{story.timeline(fps).seconds:g}")
    if audio:
        note += "\n" + t(lang, "story_music")
    job = await telegram.submit(
        bot=message.bot,
        chat_id=message.chat.id,
        user_id=user_id,
        lang=lang,
        params=params,
        image=images[0],
        photo_ref=photo_ref,
        state=state,
        reply_to=reply_to,
        note=note,
        collapse=collapse,
        story=story,
        story_files=StoryFiles(tuple(images[1:]), audio),
    )
    return job is not None
