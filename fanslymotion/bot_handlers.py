"""The conversation's handlers, at module level.

aiogram injects what each handler names: the update's pieces (`message`, `callback`,
`callback_data`, `state`), `lang` from the bot's update middleware, and the dispatcher's workflow
data set by `TelegramBot`: `telegram` (the TelegramBot), `store`, `jobs` and `settings`.
`build_router()` only registers them (a router belongs to one dispatcher, so one per bot).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, cast

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest, TelegramNetworkError, TelegramNotFound
from aiogram.filters import Command, CommandStart, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from .bot_delivery import DOCUMENT_PREFIX
from .bot_telegram import is_not_modified
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
    job_caption,
    lang_keyboard,
    looks_like_image,
    mb,
    menu_keyboard,
    menu_only_keyboard,
    missing_step,
    new_video_keyboard,
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


# -- showing things --------------------------------------------------------------------------------


async def show(
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
            if is_not_modified(exc):
                return
            log.debug("could not edit message %s: %s", message.message_id, exc.message)
    if message is not None and target.bot is not None:
        await target.bot.send_message(message.chat.id, text, reply_markup=markup)


async def show_step(
    target: Message | CallbackQuery,
    state: FSMContext,
    lang: str,
    step: str,
    settings: Settings,
    *,
    again: bool = False,
) -> None:
    data = await state.get_data()
    await state.set_state(STATE_OF[step])
    text = step_text(lang, step, data, limit=photo_limit(settings), again=again)
    await show(target, text, step_keyboard(lang, step, data))


async def show_menu(target: Message | CallbackQuery, state: FSMContext, lang: str) -> None:
    await state.set_state(None)
    await show(target, t(lang, "menu"), menu_keyboard(lang))


async def send_history(bot: Bot, store: Store, chat_id: int, user_id: int, lang: str) -> None:
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


async def resubmit(
    callback: CallbackQuery,
    state: FSMContext,
    lang: str,
    telegram: TelegramBot,
    job: Job,
    params: dict[str, Any],
    *,
    shown: str | None = None,
) -> None:
    """Queue `params` on the photo of an earlier `job` (first showing `shown` in place of the
    buttons, if given); when that photo is gone, ask for it again."""
    assert callback.bot is not None and callback.message is not None
    data = await state.get_data()
    found = await telegram.photo_of(callback.bot, job, data)
    if found is None:
        await state.set_data({**data, **params, "reuse": None})
        await show_step(callback, state, lang, "photo", telegram.settings, again=True)
        return
    image, ref = found
    if shown is not None:
        await show(callback, shown, None)
    await telegram.submit(
        bot=callback.bot,
        chat_id=callback.message.chat.id,
        user_id=callback.from_user.id,
        lang=lang,
        params=params,
        image=image,
        photo_ref=ref,
        state=state,
    )


# -- commands --------------------------------------------------------------------------------------


async def on_start(message: Message, state: FSMContext, lang: str, store: Store) -> None:
    assert message.from_user is not None
    await store.set_blocked(message.from_user.id, False)  # writing to us means unblocked
    await show_menu(message, state, lang)


async def on_help(message: Message, lang: str, settings: Settings) -> None:
    await message.answer(
        t(lang, "help", limit=mb(photo_limit(settings))), reply_markup=menu_only_keyboard(lang)
    )


async def on_lang(message: Message, lang: str) -> None:
    await message.answer(t(lang, "lang_prompt"), reply_markup=lang_keyboard())


async def on_cancel(message: Message, state: FSMContext, lang: str, telegram: TelegramBot) -> None:
    assert message.from_user is not None
    await state.set_state(None)
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
                eta=await jobs.eta_seconds(job),
                live=None if queued else jobs.live_progress(job.job_id),
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


async def on_pause(message: Message, lang: str, jobs: JobQueue) -> None:
    assert message.from_user is not None
    await jobs.pause()
    log.info("processing paused by admin %s", message.from_user.id)
    await message.answer(t(lang, "paused"))


async def on_resume(message: Message, lang: str, jobs: JobQueue) -> None:
    assert message.from_user is not None
    await jobs.resume()
    log.info("processing resumed by admin %s", message.from_user.id)
    await message.answer(t(lang, "resumed"))


# -- menu and steps --------------------------------------------------------------------------------


async def on_nav(
    callback: CallbackQuery,
    callback_data: Nav,
    state: FSMContext,
    lang: str,
    store: Store,
    settings: Settings,
) -> None:
    await callback.answer()
    if callback_data.to == "new":
        await state.update_data(reuse=None)
        await show_step(callback, state, lang, "duration", settings)
    elif callback_data.to == "history":
        assert callback.bot is not None and callback.message is not None
        chat_id = callback.message.chat.id
        await send_history(callback.bot, store, chat_id, callback.from_user.id, lang)
    elif callback_data.to == "help":
        text = t(lang, "help", limit=mb(photo_limit(settings)))
        await show(callback, text, menu_only_keyboard(lang))
    elif callback_data.to == "lang":
        await show(callback, t(lang, "lang_prompt"), lang_keyboard())
    else:
        await show_menu(callback, state, lang)


async def on_back(
    callback: CallbackQuery,
    callback_data: Back,
    state: FSMContext,
    lang: str,
    settings: Settings,
) -> None:
    await callback.answer()
    if callback_data.to in STATE_OF:
        await show_step(callback, state, lang, callback_data.to, settings)
    else:
        await state.update_data(reuse=None)
        await show_menu(callback, state, lang)


async def on_pick(
    callback: CallbackQuery,
    callback_data: Pick,
    state: FSMContext,
    lang: str,
    telegram: TelegramBot,
) -> None:
    value = decode_choice(callback_data.step, callback_data.value)
    if value is None:
        await callback.answer(t(lang, "stale_button"))
        return
    await callback.answer()
    step = callback_data.step
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
    await show_step(callback, state, lang, STEPS[STEPS.index(step) + 1], telegram.settings)


async def on_lang_pick(
    callback: CallbackQuery, callback_data: LangButton, telegram: TelegramBot
) -> None:
    code = callback_data.code if callback_data.code in LANGUAGES else "en"
    await telegram.set_language(callback.from_user.id, code)
    log.info("user %s switched the language to %s", callback.from_user.id, code)
    await callback.answer()
    await show(callback, t(code, "lang_set") + "\n\n" + t(code, "menu"), menu_keyboard(code))


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
    job = await store.get_job(callback_data.job_id)
    if job is None or job.user_id != callback.from_user.id:
        await callback.answer(t(lang, "not_yours" if job else "stale_button"))
        return
    if callback_data.action == "cancel":
        if job.terminal:
            await callback.answer(t(lang, "already_finished"))
            return
        await callback.answer(t(lang, "cancelling"))
        cancelled = await jobs.cancel(job.job_id, user_id=callback.from_user.id)
        log.info("job %s: cancel pressed, now %s", job.job_id, cancelled.status)
        return
    if callback_data.action == "resend":
        if await store.delivery_retry(job.job_id):
            log.info("job %s: the user asked for the interrupted video", job.job_id)
            await callback.answer(t(lang, "resending"))
            telegram.outbox.wake()
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
        await show_step(callback, state, lang, "motion", telegram.settings)
        return
    # "again with a new seed": same photo, same parameters, the seed drawn anew.
    await resubmit(callback, state, lang, telegram, job, params)


# -- the photo -------------------------------------------------------------------------------------


async def on_photo(
    message: Message, state: FSMContext, lang: str, telegram: TelegramBot, settings: Settings
) -> None:
    assert message.from_user is not None and message.bot is not None
    data = await state.get_data()
    missing = missing_step(data)
    if missing is not None:  # an old conversation without every choice: ask again
        await show_step(message, state, lang, missing, settings)
        return
    limit = photo_limit(settings)
    if message.photo:
        size = message.photo[-1]  # the largest; Telegram lists them small to large
        file_id, file_size = size.file_id, size.file_size
    else:
        document = message.document
        assert document is not None
        if not looks_like_image(document.mime_type, document.file_name):
            await message.answer(t(lang, "not_image"))
            return
        file_id, file_size = document.file_id, document.file_size
    if file_size is not None and file_size > limit:
        await message.answer(t(lang, "too_big", limit=mb(limit)))
        return
    try:
        image = await telegram.download(message.bot, file_id)
    except TelegramBadRequest as exc:
        if "too big" in exc.message.lower():
            await message.answer(t(lang, "too_big", limit=mb(limit)))
        else:
            log.warning("photo download failed: %s", exc.message)
            await message.answer(t(lang, "download_failed"))
        return
    except (TelegramNetworkError, TelegramNotFound) as exc:
        log.warning("photo download failed: %s", exc)
        await message.answer(t(lang, "download_failed"))
        return
    await telegram.submit(
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


async def on_not_photo(message: Message, lang: str) -> None:
    await message.answer(t(lang, "send_photo_hint"))


async def on_early_photo(message: Message, lang: str) -> None:
    await message.answer(t(lang, "photo_first"), reply_markup=new_video_keyboard(lang))


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
