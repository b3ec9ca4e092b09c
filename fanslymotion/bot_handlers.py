"""The conversation's handlers, at module level.

aiogram injects what each handler names: the update's pieces (`message`, `callback`,
`callback_data`, `state`), `lang` from the bot's update middleware, and the dispatcher's workflow
data set by `TelegramBot`: `telegram` (the bot, seen through `bot_port.BotPort`), `store`, `jobs` and `settings`.
`build_router()` only registers them (a router belongs to one dispatcher, so one per bot).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, cast

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandStart, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from .bot_delivery import DOCUMENT_PREFIX
from .bot_photo import (
    incoming_kind,
    on_early_photo,
    on_not_photo,
    on_photo,
    resubmit,
    settings_done,
)
from .bot_screens import is_current, show_conv, show_menu, show_step, take_over
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
    job_params,
    lang_keyboard,
    mb,
    menu_keyboard,
    menu_only_keyboard,
    photo_limit,
    result_keyboard,
    status_line,
    summary,
)
from .config import Settings
from .queue import JobQueue
from .store import Job, Store
from .texts import LANGUAGES, t

if TYPE_CHECKING:
    from .bot_port import BotPort

log = logging.getLogger(__name__)


# -- history --------------------------------------------------------------------------------------


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


# -- commands --------------------------------------------------------------------------------------


async def on_start(message: Message, state: FSMContext, lang: str) -> None:
    await show_menu(message, state, lang)


async def on_help(message: Message, lang: str, settings: Settings) -> None:
    await message.answer(
        t(lang, "help", limit=mb(photo_limit(settings))), reply_markup=menu_only_keyboard(lang)
    )


async def on_lang(message: Message, lang: str) -> None:
    await message.answer(t(lang, "lang_prompt"), reply_markup=lang_keyboard(lang))


async def on_cancel(message: Message, state: FSMContext, lang: str, telegram: BotPort) -> None:
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
    message: Message, lang: str, telegram: BotPort, store: Store, jobs: JobQueue
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


async def on_pause(message: Message, lang: str, jobs: JobQueue, telegram: BotPort) -> None:
    assert message.from_user is not None
    await jobs.pause()
    log.info("processing paused by admin %s", message.from_user.id)
    await message.answer(t(lang, "paused"))
    await telegram.progress.refresh_all()  # every waiting job says so, without an ETA


async def on_resume(message: Message, lang: str, jobs: JobQueue, telegram: BotPort) -> None:
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
    telegram: BotPort,
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
    telegram: BotPort,
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
    callback: CallbackQuery, callback_data: LangButton, state: FSMContext, telegram: BotPort
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
    telegram: BotPort,
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
    telegram: BotPort,
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


async def on_not_a_choice(
    message: Message, state: FSMContext, raw_state: str | None, lang: str, settings: Settings
) -> None:
    """Something typed on a settings step: say what it was and show the step again."""
    step = next((name for name, st in STATE_OF.items() if st.state == raw_state), "duration")
    note = t(lang, "use_buttons", kind=t(lang, incoming_kind(message)))
    await show_step(message, state, lang, step, settings, note=note)


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
    router.message.register(
        on_not_a_choice, StateFilter(Flow.duration, Flow.resolution, Flow.motion, Flow.aspect)
    )
    router.message.register(on_other)
    router.callback_query.register(on_stale)
    return router
