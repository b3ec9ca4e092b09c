"""The conversation's handlers, at module level.

aiogram injects what each handler names: the update's pieces (`message`, `callback`,
`callback_data`, `state`), `lang` from the bot's update middleware, and the dispatcher's workflow
data set by `TelegramBot`: `telegram` (the TelegramBot), `store`, `jobs` and `settings`.
`build_router()` only registers them (a router belongs to one dispatcher, so one per bot).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest, TelegramNotFound
from aiogram.filters import Command, CommandStart, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from .bot_delivery import DOCUMENT_PREFIX
from .bot_telegram import TRANSIENT, is_not_modified
from .bot_views import (
    STATE_OF,
    STEPS,
    Back,
    Flow,
    JobButton,
    LangButton,
    Nav,
    Pick,
    cancel_list_keyboard,
    decode_choice,
    document_kind,
    is_heic,
    job_caption,
    job_params,
    lang_keyboard,
    looks_like_image,
    mb,
    menu_keyboard,
    menu_only_keyboard,
    missing_step,
    photo_first_keyboard,
    photo_limit,
    result_keyboard,
    status_line,
    step_keyboard,
    step_text,
    summary,
)
from .config import Settings
from .queue import JobQueue
from .store import Job, Store
from .texts import LANGUAGES, t

if TYPE_CHECKING:
    from .bot import TelegramBot

log = logging.getLogger(__name__)

# A download that failed for good (after the bot's own retries), or a file Telegram lost.
DOWNLOAD_FAILURES: tuple[type[Exception], ...] = (*TRANSIENT, TelegramNotFound)


# -- showing things --------------------------------------------------------------------------------


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


async def take_over(callback: CallbackQuery, telegram: TelegramBot) -> None:
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


async def send_history(bot: Bot, store: Store, chat_id: int, user_id: int, lang: str) -> None:
    videos = await store.sent_videos(user_id, limit=5)
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
            if not file_id:
                raise LookupError("no file_id was kept")
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
        except (TelegramBadRequest, LookupError) as exc:  # e.g. a file_id Telegram forgot
            log.info("history: job %s not re-sent: %s", job.job_id, exc)
            gone = t(lang, "history_gone", params=job_params(lang, job))
            await bot.send_message(chat_id, gone)


async def resubmit(
    callback: CallbackQuery,
    state: FSMContext,
    lang: str,
    telegram: TelegramBot,
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
    callback: CallbackQuery, state: FSMContext, lang: str, telegram: TelegramBot
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


# -- the photo -------------------------------------------------------------------------------------


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
    telegram: TelegramBot,
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


# -- commands --------------------------------------------------------------------------------------


async def on_start(message: Message, state: FSMContext, lang: str) -> None:
    await show_menu(message, state, lang)


async def on_help(message: Message, lang: str, settings: Settings) -> None:
    await message.answer(
        t(lang, "help", limit=mb(photo_limit(settings))), reply_markup=menu_only_keyboard(lang)
    )


async def on_lang(message: Message, lang: str) -> None:
    await message.answer(t(lang, "lang_prompt"), reply_markup=lang_keyboard(lang))


async def on_cancel(message: Message, state: FSMContext, lang: str, telegram: TelegramBot) -> None:
    assert message.from_user is not None
    await state.set_state(None)
    # Every open menu and step is retired with the conversation.
    await state.update_data(conv=None, pending=None, reuse=None, photo_of=None)
    active = await telegram.active_jobs(message.from_user.id)
    if not active:
        await message.answer(t(lang, "cancel_flow"), reply_markup=menu_only_keyboard(lang))
        return
    await message.answer(t(lang, "cancel_jobs"), reply_markup=cancel_list_keyboard(lang, active))


async def on_status(
    message: Message, lang: str, telegram: TelegramBot, store: Store, jobs: JobQueue
) -> None:
    assert message.from_user is not None
    active = await telegram.active_jobs(message.from_user.id)
    if not active:
        await message.answer(t(lang, "status_none"), reply_markup=menu_only_keyboard(lang))
        return
    lines = [t(lang, "status_header")]
    for n, job in enumerate(active, start=1):
        queued = job.status == "queued"
        lines.append(
            status_line(
                lang,
                n,
                job,
                position=await store.queue_position(job.job_id) if queued else None,
                eta=None if jobs.paused else await jobs.eta_seconds(job),
                live=None if queued else jobs.live_progress(job.job_id),
                paused=jobs.paused,
            )
        )
    await message.answer("\n".join(lines), reply_markup=cancel_list_keyboard(lang, active))


async def on_history(message: Message, lang: str, store: Store) -> None:
    assert message.from_user is not None and message.bot is not None
    await send_history(message.bot, store, message.chat.id, message.from_user.id, lang)


# -- admin commands --------------------------------------------------------------------------------


async def on_queue(message: Message, lang: str, store: Store, jobs: JobQueue) -> None:
    counts = await store.counts_by_status()
    health = await jobs.health()
    renderer = cast(dict[str, Any], health.get("renderer") or {})
    text = t(
        lang,
        "queue_stats",
        queued=health.get("queue_length", 0),
        running=jobs.running_job_id() or t(lang, "queue_none"),
        renderer=renderer.get("name", "?"),
        renderer_status=renderer.get("status", "?"),
        renderer_reason=renderer.get("reason", ""),
        processing=t(lang, "processing_paused" if jobs.paused else "processing_on"),
        **{f"c_{status}": count for status, count in counts.items()},
    )
    await message.answer(text)


async def on_pause(message: Message, lang: str, jobs: JobQueue, telegram: TelegramBot) -> None:
    assert message.from_user is not None
    await jobs.pause()
    log.info("processing paused by admin %s", message.from_user.id)
    await message.answer(t(lang, "paused"))
    await telegram.progress.refresh_all()  # every waiting job says so, without an ETA


async def on_resume(message: Message, lang: str, jobs: JobQueue, telegram: TelegramBot) -> None:
    assert message.from_user is not None
    await jobs.resume()
    log.info("processing resumed by admin %s", message.from_user.id)
    await message.answer(t(lang, "resumed"))
    await telegram.progress.refresh_all()


# -- menu and steps --------------------------------------------------------------------------------


async def on_nav(
    callback: CallbackQuery,
    callback_data: Nav,
    state: FSMContext,
    lang: str,
    telegram: TelegramBot,
) -> None:
    data = await state.get_data()
    # "Menu" works from anywhere (a video, a finished job); the menu's own entries only on the
    # live conversation message.
    if callback_data.to != "menu" and not is_current(callback, data):
        await callback.answer(t(lang, "stale_menu"))
        return
    await callback.answer()
    settings = telegram.settings
    if callback_data.to == "new":
        await state.update_data(reuse=None, photo_of=None)
        await show_step(callback, state, lang, "duration", settings)
    elif callback_data.to == "last" and data.get("last") and data.get("pending"):
        await state.update_data(**data["last"])
        await settings_done(callback, state, lang, telegram)
    elif callback_data.to == "history":
        assert callback.bot is not None and callback.message is not None
        chat_id = callback.message.chat.id
        await send_history(callback.bot, telegram.store, chat_id, callback.from_user.id, lang)
    elif callback_data.to == "help":
        text = t(lang, "help", limit=mb(photo_limit(settings)))
        await show_conv(callback, state, text, menu_only_keyboard(lang))
    elif callback_data.to == "lang":
        await show_conv(callback, state, t(lang, "lang_prompt"), lang_keyboard(lang))
    else:
        await take_over(callback, telegram)
        await show_menu(callback, state, lang)


async def on_back(
    callback: CallbackQuery,
    callback_data: Back,
    state: FSMContext,
    lang: str,
    settings: Settings,
) -> None:
    if not is_current(callback, await state.get_data()):
        await callback.answer(t(lang, "stale_menu"))
        return
    await callback.answer()
    if callback_data.to in STATE_OF:
        await show_step(callback, state, lang, callback_data.to, settings)
    else:
        await state.update_data(reuse=None, photo_of=None)
        await show_menu(callback, state, lang)


async def on_pick(
    callback: CallbackQuery,
    callback_data: Pick,
    state: FSMContext,
    raw_state: str | None,
    lang: str,
    telegram: TelegramBot,
) -> None:
    step = callback_data.step
    value = decode_choice(step, callback_data.value)
    data = await state.get_data()
    expected = STATE_OF[step].state if step in STATE_OF else None
    # A finished step (a second tap, an old keyboard) can't be reopened.
    if value is None or raw_state != expected or not is_current(callback, data):
        await callback.answer(t(lang, "stale_menu"))
        return
    await callback.answer()
    await state.update_data({step: int(value) if step == "duration" else value})
    data = await state.get_data()
    if step == "motion" and data.get("reuse"):
        # "Same photo, other motion": the motion was chosen, the rest comes from the job.
        job = await telegram.store.get_job(str(data["reuse"]))
        if job is None or job.user_id != callback.from_user.id:
            await show_menu(callback, state, lang)
            return
        # The motion keyboard goes away, so a second press cannot queue the same video twice.
        shown = summary(lang, data, "photo")
        await resubmit(callback, state, lang, telegram, job, data, shown=shown)
        return
    following = STEPS[STEPS.index(step) + 1]
    if following == "photo":
        await settings_done(callback, state, lang, telegram)
        return
    await show_step(callback, state, lang, following, telegram.settings)


async def on_lang_pick(
    callback: CallbackQuery, callback_data: LangButton, state: FSMContext, telegram: TelegramBot
) -> None:
    assert callback.bot is not None
    code = callback_data.code if callback_data.code in LANGUAGES else "en"
    await telegram.set_language(callback.bot, callback.from_user.id, code)
    log.info("user %s switched the language to %s", callback.from_user.id, code)
    await callback.answer()
    await state.set_state(None)
    text = t(code, "lang_set") + "\n\n" + t(code, "menu")
    await show_conv(callback, state, text, menu_keyboard(code))


# -- job buttons -----------------------------------------------------------------------------------


async def on_job_button(
    callback: CallbackQuery,
    callback_data: JobButton,
    state: FSMContext,
    lang: str,
    telegram: TelegramBot,
    store: Store,
    jobs: JobQueue,
) -> None:
    action = callback_data.action
    job = await store.get_job(callback_data.job_id)
    if job is None or job.user_id != callback.from_user.id:
        await callback.answer(t(lang, "not_yours" if job else "stale_button"))
        return
    if action == "cancel":
        if job.terminal:
            await callback.answer(t(lang, "already_finished"))
            return
        await callback.answer(t(lang, "cancelling"))
        cancelled = await jobs.cancel(job.job_id, user_id=callback.from_user.id)
        log.info("job %s: cancel pressed, now %s", job.job_id, cancelled.status)
    elif action == "resend":
        if await store.delivery_retry(job.job_id):
            log.info("job %s: the user asked for the interrupted video", job.job_id)
            await callback.answer(t(lang, "resending"))
            telegram.outbox.wake()
        else:
            await callback.answer(t(lang, "already_sent"))
    elif action == "missed":
        sent = await telegram.send_missed(callback.from_user.id)
        await callback.answer(t(lang, "resending" if sent else "already_sent"))
    else:
        await reuse_job(callback, action, state, lang, telegram, job)


async def reuse_job(
    callback: CallbackQuery,
    action: str,
    state: FSMContext,
    lang: str,
    telegram: TelegramBot,
    job: Job,
) -> None:
    """again / retry: the same settings now; other / settings: choose some, same photo."""
    data = await state.get_data()
    params = {
        "duration": job.duration,
        "resolution": job.resolution,
        "motion": job.motion_preset,
        "aspect": job.aspect,
    }
    if action in ("other", "settings"):
        await take_over(callback, telegram)
    if action == "other":
        await callback.answer()
        await state.set_data({**data, **params, "reuse": job.job_id, "pending": None})
        await show_step(callback, state, lang, "motion", telegram.settings)
        return
    if action == "settings":
        await callback.answer()
        await state.set_data({**data, "reuse": None, "pending": None, "photo_of": job.job_id})
        await show_step(callback, state, lang, "duration", telegram.settings)
        return
    # "another variant" (a new seed) or "try again": one job per button, however many taps.
    key = f"{action}:{job.job_id}"
    if key in (data.get("used") or {}):
        await callback.answer(t(lang, "already_queued"))
        return
    await callback.answer()
    made = await resubmit(callback, state, lang, telegram, job, params)
    if made is not None:
        data = await state.get_data()
        used = dict(list({**(data.get("used") or {}), key: made.job_id}.items())[-50:])
        await state.update_data(used=used)


async def on_photo(
    message: Message, state: FSMContext, lang: str, telegram: TelegramBot, settings: Settings
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
    telegram: TelegramBot,
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


async def on_other(message: Message, lang: str) -> None:
    await message.answer(t(lang, "unknown"), reply_markup=menu_only_keyboard(lang))


async def on_stale(callback: CallbackQuery, lang: str) -> None:
    await callback.answer(t(lang, "stale_button"))


def build_router(*, admins: Collection[int]) -> Router:
    """Register the handlers on a new router, in the order aiogram tries them."""
    router = Router(name="fanslymotion")
    # A conversation about one user's photos belongs in a private chat; in a group the bot
    # would answer every message it sees.
    router.message.filter(F.chat.type == "private")
    router.callback_query.filter(F.message.chat.type == "private")
    admin = F.from_user.id.in_(set(admins))
    router.message.register(on_start, CommandStart())
    router.message.register(on_help, Command("help"))
    router.message.register(on_lang, Command("lang"))
    router.message.register(on_cancel, Command("cancel"))
    router.message.register(on_status, Command("status"))
    router.message.register(on_history, Command("history"))
    router.message.register(on_queue, Command("queue"), admin)
    router.message.register(on_pause, Command("pause"), admin)
    router.message.register(on_resume, Command("resume"), admin)
    router.callback_query.register(on_nav, Nav.filter())
    router.callback_query.register(on_back, Back.filter())
    router.callback_query.register(on_pick, Pick.filter())
    router.callback_query.register(on_lang_pick, LangButton.filter())
    router.callback_query.register(on_job_button, JobButton.filter())
    router.message.register(on_photo, StateFilter(Flow.photo), F.photo | F.document)
    router.message.register(on_not_photo, StateFilter(Flow.photo))
    router.message.register(on_early_photo, F.photo | F.document)
    router.message.register(on_other)
    router.callback_query.register(on_stale)
    return router
