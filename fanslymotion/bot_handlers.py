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

from aiogram import F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandStart, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

from . import stats
from .bot_delivery import DOCUMENT_PREFIX
from .bot_history import HISTORY_KEPT, history_view
from .bot_miniapp import on_app
from .bot_photo import (
    incoming_kind,
    on_early_photo,
    on_not_photo,
    on_photo,
    resubmit,
    settings_done,
)
from .bot_screens import (
    is_current,
    retire_conv,
    show,
    show_conv,
    show_menu,
    show_step,
    stale_text,
    take_over,
)
from .bot_story import StoryPick, on_music, on_no_music, on_story, on_story_pick
from .bot_views import (
    OPTION_OF_STEP,
    STATE_OF,
    STEPS,
    Back,
    Flow,
    HistPage,
    JobButton,
    LangButton,
    Nav,
    Pick,
    cancel_list_keyboard,
    decode_choice,
    focus_of_cell,
    job_caption,
    job_params,
    lang_keyboard,
    lower_resolution,
    mb,
    menu_keyboard,
    menu_only_keyboard,
    photo_limit,
    remake_keyboard,
    result_keyboard,
    status_line,
    subject_view,
    summary,
)
from .config import Settings
from .models import FPS_CHOICES
from .queue import JobQueue
from .store import Job
from .store.port import BotStore
from .texts import LANGUAGES, t

if TYPE_CHECKING:
    from .bot_port import BotPort

log = logging.getLogger(__name__)


# -- history --------------------------------------------------------------------------------------


async def history_of(store: BotStore, user_id: int) -> list[tuple[Job, str | None]]:
    """The user's delivered videos, newest first, with the file id kept for each (if any)."""
    return [(job, d.file_id) for job, d in await store.sent_videos(user_id, limit=HISTORY_KEPT)]


async def show_history(
    target: Message | CallbackQuery, state: FSMContext, lang: str, store: BotStore, page: int = 0
) -> None:
    """/history as one message: a page of the list, in the live conversation message."""
    assert target.from_user is not None
    videos = await history_of(store, target.from_user.id)
    if not videos:
        await show_conv(target, state, t(lang, "history_none"), menu_only_keyboard(lang))
        return
    text, markup = history_view(lang, videos, page)
    await show_conv(target, state, text, markup)


async def resend_video(callback: CallbackQuery, lang: str, store: BotStore, job: Job) -> None:
    """Send a delivered video again by its kept file id (no upload), or say it is gone."""
    assert callback.bot is not None and callback.message is not None
    chat_id = callback.message.chat.id
    delivery = await store.get_delivery(job.job_id)
    file_id = (delivery.file_id if delivery is not None else None) or ""
    caption = job_caption(lang, job)
    markup = result_keyboard(lang, job.job_id)
    await callback.answer()
    try:
        if not file_id:
            raise LookupError("no file_id was kept")
        if file_id.startswith(DOCUMENT_PREFIX):
            await callback.bot.send_document(
                chat_id, file_id.removeprefix(DOCUMENT_PREFIX), caption=caption, reply_markup=markup
            )
        else:
            await callback.bot.send_video(
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
        await callback.bot.send_message(
            chat_id, gone, reply_markup=remake_keyboard(lang, job.job_id)
        )


# -- commands --------------------------------------------------------------------------------------


async def on_start(message: Message, state: FSMContext, lang: str) -> None:
    await show_menu(message, state, lang)


async def on_help(message: Message, state: FSMContext, lang: str, settings: Settings) -> None:
    text = t(lang, "help", limit=mb(photo_limit(settings)))
    await show_conv(message, state, text, menu_only_keyboard(lang))


async def on_lang(message: Message, state: FSMContext, lang: str) -> None:
    await show_conv(message, state, t(lang, "lang_prompt"), lang_keyboard(lang))


async def on_cancel(message: Message, state: FSMContext, lang: str, telegram: BotPort) -> None:
    assert message.from_user is not None
    await state.set_state(None)
    # The open menu or step goes with the conversation.
    await retire_conv(message, state)
    await state.update_data(pending=None, reuse=None, photo_of=None)
    active = await telegram.active_jobs(message.from_user.id)
    if not active:
        await show_conv(message, state, t(lang, "cancel_flow"), menu_only_keyboard(lang))
        return
    await show_conv(message, state, t(lang, "cancel_jobs"), cancel_list_keyboard(lang, active))


async def status_view(
    lang: str, user_id: int, telegram: BotPort
) -> tuple[str, InlineKeyboardMarkup]:
    """/status: the user's live jobs, each with its true place or progress, and Cancel buttons;
    finished and cancelled jobs are not in it."""
    active = await telegram.active_jobs(user_id)
    if not active:
        return t(lang, "status_none"), menu_only_keyboard(lang)
    jobs, store = telegram.jobs, telegram.store
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
    return "\n".join(lines), cancel_list_keyboard(lang, active)


async def on_status(message: Message, state: FSMContext, lang: str, telegram: BotPort) -> None:
    assert message.from_user is not None
    text, markup = await status_view(lang, message.from_user.id, telegram)
    await show_conv(message, state, text, markup)


async def on_history(message: Message, state: FSMContext, lang: str, store: BotStore) -> None:
    await show_history(message, state, lang, store)


# -- admin commands --------------------------------------------------------------------------------


async def on_queue(message: Message, lang: str, store: BotStore, jobs: JobQueue) -> None:
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


async def on_stats(message: Message, lang: str, jobs: JobQueue) -> None:
    """Today's figures (UTC): jobs, failures, the queue, median render time per resolution."""
    if jobs.owners is None:  # a job service started without the owners' tables
        await message.answer(t(lang, "stats_unavailable"))
        return
    figures = await stats.figures(jobs.owners, "today")
    medians = figures["median_render_seconds"]
    rate = figures["failure_rate"]
    text = t(
        lang,
        "stats_today",
        jobs=figures["jobs"],
        completed=figures["completed"],
        failed=figures["failed"],
        rate=f"{rate * 100:.0f}%" if rate is not None else "—",
        queued=await jobs.store.count_jobs(status="queued"),
        running=len((await jobs.health()).get("running_jobs") or []),
        medians=" · ".join(f"{res} {m['seconds']:.1f} s" for res, m in medians.items())
        or t(lang, "queue_none"),
        processing=t(lang, "processing_paused" if jobs.paused else "processing_on"),
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
        await callback.answer(stale_text(lang, data))
        return
    await callback.answer()
    settings = telegram.settings
    if callback_data.to == "new":
        # The subject belongs to one photo; the frame rate is kept as a preference; music and
        # an album belong to the conversation they came in (bot_story).
        await state.update_data(reuse=None, photo_of=None, focus=None, music=None, album=None)
        await show_step(callback, state, lang, "duration", settings)
    elif callback_data.to == "last" and data.get("last") and data.get("pending"):
        await state.update_data(**data["last"])
        await settings_done(callback, state, lang, telegram)
    elif callback_data.to == "history":
        await show_history(callback, state, lang, telegram.store)
    elif callback_data.to == "help":
        text = t(lang, "help", limit=mb(photo_limit(settings)))
        await show_conv(callback, state, text, menu_only_keyboard(lang))
    elif callback_data.to == "lang":
        await show_conv(callback, state, t(lang, "lang_prompt"), lang_keyboard(lang))
    else:
        await take_over(callback, telegram)
        await show_menu(callback, state, lang)


async def on_history_page(
    callback: CallbackQuery, callback_data: HistPage, state: FSMContext, lang: str, store: BotStore
) -> None:
    data = await state.get_data()
    if not is_current(callback, data):
        await callback.answer(stale_text(lang, data))
        return
    await callback.answer()
    await show_history(callback, state, lang, store, page=callback_data.page)


async def on_back(
    callback: CallbackQuery,
    callback_data: Back,
    state: FSMContext,
    lang: str,
    settings: Settings,
) -> None:
    data = await state.get_data()
    if not is_current(callback, data):
        await callback.answer(stale_text(lang, data))
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
    owner = OPTION_OF_STEP.get(step, step)
    expected = STATE_OF[owner].state if owner in STATE_OF else None
    # A finished step (a second tap, an old keyboard) can't be reopened.
    if value is None or raw_state != expected or not is_current(callback, data):
        await callback.answer(stale_text(lang, data))
        return
    await callback.answer()
    if step in OPTION_OF_STEP:
        await on_option(callback, state, lang, telegram, step, value)
        return
    await state.update_data({step: int(value) if step == "duration" else value})
    data = await state.get_data()
    if step == "motion" and data.get("reuse"):
        # "Same photo, other motion": the motion was chosen, the rest comes from the job.
        job = await telegram.store.get_job(str(data["reuse"]))
        if job is None or job.user_id != callback.from_user.id:
            await show_menu(callback, state, lang)
            return
        # The motion keyboard becomes its summary, so a second press cannot queue the same
        # video twice.
        shown = summary(lang, data, "photo")
        await resubmit(callback, state, lang, telegram, job, data, shown=shown)
        return
    following = STEPS[STEPS.index(step) + 1]
    if following == "photo":
        await settings_done(callback, state, lang, telegram)
        return
    await show_step(callback, state, lang, following, telegram.settings)


async def on_option(
    callback: CallbackQuery,
    state: FSMContext,
    lang: str,
    telegram: BotPort,
    option: str,
    value: str,
) -> None:
    """An option on a step's message (fps, the subject): set it and show that step again."""
    if option == "subject" and value == "open":
        text, markup = subject_view(lang, await state.get_data())
        await show_conv(callback, state, text, markup)
        return
    if option == "fps":
        await state.update_data(fps=int(value))
    else:
        await state.update_data(focus=None if value == "auto" else focus_of_cell(int(value)))
    await show_step(callback, state, lang, OPTION_OF_STEP[option], telegram.settings)


async def on_lang_pick(
    callback: CallbackQuery,
    callback_data: LangButton,
    state: FSMContext,
    raw_state: str | None,
    telegram: BotPort,
) -> None:
    """A language picked: the chat follows at once; a conversation in the middle of its steps
    goes on where it was, now in that language."""
    assert callback.bot is not None
    code = callback_data.code if callback_data.code in LANGUAGES else "en"
    await telegram.set_language(callback.bot, callback.from_user.id, code)
    log.info("user %s switched the language to %s", callback.from_user.id, code)
    await callback.answer()
    step = next((name for name, st in STATE_OF.items() if st.state == raw_state), None)
    if step is not None:
        await show_step(callback, state, code, step, telegram.settings, note=t(code, "lang_set"))
        return
    text = t(code, "lang_set") + "\n\n" + t(code, "menu")
    await show_conv(callback, state, text, menu_keyboard(code))


# -- job buttons -----------------------------------------------------------------------------------


async def on_job_button(
    callback: CallbackQuery,
    callback_data: JobButton,
    state: FSMContext,
    lang: str,
    telegram: BotPort,
    store: BotStore,
    jobs: JobQueue,
) -> None:
    action = callback_data.action
    job = await store.get_job(callback_data.job_id)
    if job is None or job.user_id != callback.from_user.id:
        await callback.answer(t(lang, "not_yours" if job else "stale_button"))
        return
    if action == "cancel":
        await cancel_job(callback, lang, telegram, job)
    elif action == "send":
        await resend_video(callback, lang, store, job)
    elif action == "lower":
        await lower_job(callback, state, lang, telegram, job)
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


async def cancel_job(callback: CallbackQuery, lang: str, telegram: BotPort, job: Job) -> None:
    """Cancel from the job's own message or from a list (/status, /cancel): a list is redrawn
    without the job, so it never offers Cancel on a job that is over."""
    message = callback.message
    from_list = isinstance(message, Message) and message.message_id != job.progress_message_id
    if job.terminal:
        await callback.answer(t(lang, "already_finished"))
    else:
        await callback.answer(t(lang, "cancelling"))
        cancelled = await telegram.jobs.cancel(job.job_id, user_id=callback.from_user.id)
        log.info("job %s: cancel pressed, now %s", job.job_id, cancelled.status)
    if from_list and isinstance(message, Message) and message.text is not None:
        text, markup = await status_view(lang, callback.from_user.id, telegram)
        await show(callback, text, markup)


def job_settings(job: Job) -> dict[str, Any]:
    """The settings of an earlier job, as the conversation keeps them."""
    return {
        "duration": job.duration,
        "resolution": job.resolution,
        "motion": job.motion_preset,
        "aspect": job.aspect,
        "fps": job.fps if job.fps in FPS_CHOICES else None,
        "focus": job.focus,
    }


async def lower_job(
    callback: CallbackQuery, state: FSMContext, lang: str, telegram: BotPort, job: Job
) -> None:
    """The photo is small for the job's resolution: the job gives way to one at the largest
    resolution that needs no enlarging (one tap; a second finds the job over)."""
    lower = lower_resolution(job)
    if lower is None or job.terminal:
        await callback.answer(t(lang, "already_finished" if job.terminal else "stale_button"))
        return
    await callback.answer()
    await telegram.jobs.cancel(job.job_id, user_id=callback.from_user.id)
    log.info("job %s: the user chose %s instead of %s", job.job_id, lower, job.resolution)
    params = {**job_settings(job), "resolution": lower}
    await resubmit(callback, state, lang, telegram, job, params, ends_flow=False)


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
    params = job_settings(job)
    if action in ("other", "settings"):
        await take_over(callback, telegram)
    if action == "other":
        await callback.answer()
        await state.set_data({**data, **params, "reuse": job.job_id, "pending": None})
        await show_step(callback, state, lang, "motion", telegram.settings)
        return
    if action == "settings":
        await callback.answer()
        await state.set_data(
            {**data, "reuse": None, "pending": None, "photo_of": job.job_id, "focus": job.focus}
        )
        await show_step(callback, state, lang, "duration", telegram.settings)
        return
    # "Another variant" (a new seed) or "try again": while the job the last tap made is still on
    # its way, more taps make nothing; once it is over, a tap makes the next one.
    key = f"{action}:{job.job_id}"
    made_id = (data.get("used") or {}).get(key)
    made = await telegram.store.get_job(str(made_id)) if made_id else None
    if made is not None and not made.terminal:
        await callback.answer(t(lang, "already_queued"))
        return
    await callback.answer()
    queued = await resubmit(callback, state, lang, telegram, job, params, ends_flow=False)
    if queued is not None:
        data = await state.get_data()
        used = dict(list({**(data.get("used") or {}), key: queued.job_id}.items())[-50:])
        await state.update_data(used=used)


async def on_not_a_choice(message: Message, lang: str) -> None:
    """Something typed on a settings step: one short line; the step's buttons are above."""
    await message.answer(t(lang, "use_buttons", kind=t(lang, incoming_kind(message))))


async def on_other(message: Message, state: FSMContext, lang: str) -> None:
    """Something the bot has no use for, outside the steps: a hint, and a menu only if no
    conversation message is live."""
    if (await state.get_data()).get("conv"):
        await message.answer(t(lang, "hint_idle"))
        return
    await show_conv(message, state, t(lang, "unknown"), menu_only_keyboard(lang))


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
    router.message.register(on_lang, Command("language", "lang"))
    router.message.register(on_cancel, Command("cancel"))
    router.message.register(on_status, Command("status"))
    router.message.register(on_history, Command("history"))
    router.message.register(on_app, Command("app"))
    router.message.register(on_queue, Command("queue"), admin)
    router.message.register(on_stats, Command("stats"), admin)
    router.message.register(on_pause, Command("pause"), admin)
    router.message.register(on_resume, Command("resume"), admin)
    router.callback_query.register(on_nav, Nav.filter())
    router.callback_query.register(on_back, Back.filter())
    router.callback_query.register(on_pick, Pick.filter())
    router.callback_query.register(on_lang_pick, LangButton.filter())
    router.callback_query.register(on_history_page, HistPage.filter())
    router.callback_query.register(on_job_button, JobButton.filter())
    settings_states = StateFilter(*STATE_OF.values())
    router.message.register(on_no_music, Command("nomusic"))
    router.message.register(on_story, Command("story"))
    router.callback_query.register(on_story_pick, StoryPick.filter())
    router.message.register(on_music, settings_states, F.audio | F.voice)
    router.message.register(on_photo, StateFilter(Flow.photo), F.photo | F.document)
    router.message.register(on_not_photo, StateFilter(Flow.photo))
    router.message.register(on_early_photo, F.photo | F.document)
    router.message.register(
        on_not_a_choice, StateFilter(Flow.duration, Flow.resolution, Flow.motion, Flow.aspect)
    )
    router.message.register(on_other)
    router.callback_query.register(on_stale)
    return router
