"""The conversation's views: states, callback data, keyboards and texts.

Pure functions of the language and the data they are given (a job row, the FSM data, figures):
no Telegram calls, no database, so they are unit-tested without a server.
"""

from __future__ import annotations

import json
from typing import Any

from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from . import motion
from .config import Settings
from .errors import (
    BadRequest,
    FanslyError,
    Forbidden,
    InsufficientStorage,
    InvalidParams,
    PayloadTooLarge,
    TooManyJobs,
    Unavailable,
    UnsupportedMedia,
)
from .models import FPS_CHOICES
from .store import Job
from .texts import (
    EN,
    LANGUAGE_NAMES,
    LANGUAGES,
    motion_description,
    motion_name,
    t,
    videos,
)
from .vocabulary import Progress

MB = 1024 * 1024
# Bots may download files up to 20 MB through the Bot API (getFile answers "file is too big").
DOWNLOAD_LIMIT = 20 * MB


class Flow(StatesGroup):
    duration = State()
    resolution = State()
    motion = State()
    aspect = State()
    photo = State()


STEPS: tuple[str, ...] = ("duration", "resolution", "motion", "aspect", "photo")
STATE_OF: dict[str, State] = {
    "duration": Flow.duration,
    "resolution": Flow.resolution,
    "motion": Flow.motion,
    "aspect": Flow.aspect,
    "photo": Flow.photo,
}


class Nav(CallbackData, prefix="nav"):
    """Menu entries: menu, new, history, help, lang."""

    to: str


class Pick(CallbackData, prefix="pick"):
    """A choice on a step. Values are encoded (no ':' in callback data parts)."""

    step: str
    value: str


class Back(CallbackData, prefix="back"):
    to: str


class JobButton(CallbackData, prefix="job"):
    """cancel | again | other, on one job."""

    action: str
    job_id: str


class LangButton(CallbackData, prefix="lang"):
    code: str


class HistPage(CallbackData, prefix="hist"):
    """A page of /history (0: the newest videos)."""

    page: int


def choices(step: str) -> tuple[str, ...]:
    if step == "duration":
        return tuple(str(d) for d in motion.DURATIONS)
    if step == "resolution":
        return tuple(motion.RESOLUTIONS)
    if step == "motion":
        return motion.PRESETS
    if step == "aspect":
        return motion.ASPECTS
    if step == "fps":
        return tuple(str(f) for f in FPS_CHOICES)
    if step == "subject":
        return ("open", "auto", *(str(cell) for cell in range(9)))
    return ()


# Options shown on a step's own message: the frame rate on the resolution step, the subject
# (a 3x3 grid) on the frame-shape step. Choosing one shows that step again.
OPTION_OF_STEP = {"fps": "resolution", "subject": "aspect"}
_GRID_ARROWS = ("↖️", "⬆️", "↗️", "⬅️", "⏺", "➡️", "↙️", "⬇️", "↘️")


def focus_of_cell(cell: int) -> dict[str, float]:
    """The centre of a cell of the 3x3 grid (0 top left, 8 bottom right), as a job's focus."""
    return {"x": round((cell % 3 * 2 + 1) / 6, 4), "y": round((cell // 3 * 2 + 1) / 6, 4)}


def cell_of_focus(focus: dict[str, float] | None) -> int | None:
    if not focus:
        return None
    column = min(2, max(0, int(float(focus["x"]) * 3)))
    row = min(2, max(0, int(float(focus["y"]) * 3)))
    return row * 3 + column


def subject_label(lang: str, focus: dict[str, float] | None) -> str:
    cell = cell_of_focus(focus)
    return t(lang, "subject_auto") if cell is None else t(lang, f"subject_{cell}")


def subject_view(lang: str, data: dict[str, Any]) -> tuple[str, InlineKeyboardMarkup]:
    """ "Where is the subject?": a 3x3 grid over the photo, Auto (faces) by default."""
    current = cell_of_focus(data.get("focus"))
    cells = [
        button(
            ("• " if cell == current else "") + _GRID_ARROWS[cell],
            Pick(step="subject", value=str(cell)),
        )
        for cell in range(9)
    ]
    auto = ("• " if current is None else "") + t(lang, "subject_auto")
    rows = [
        *rows_of(cells, 3),
        [button(auto, Pick(step="subject", value="auto"))],
        [button(t(lang, "btn_back"), Back(to="aspect"))],
    ]
    text = t(lang, "step_subject", summary=summary(lang, data, "photo"))
    return text, InlineKeyboardMarkup(inline_keyboard=rows)


def encode_choice(value: str) -> str:
    return value.replace(":", "x")


def decode_choice(step: str, token: str) -> str | None:
    """The real value behind a button's token, or None for a token from an outdated keyboard."""
    for value in choices(step):
        if encode_choice(value) == token:
            return value
    return None


def button(text: str, data: CallbackData) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=data.pack())


def rows_of(buttons: list[InlineKeyboardButton], width: int) -> list[list[InlineKeyboardButton]]:
    return [buttons[i : i + width] for i in range(0, len(buttons), width)]


def choice_label(lang: str, step: str, value: str) -> str:
    if step == "duration":
        return t(lang, "seconds", n=value)
    if step == "motion":
        return motion_name(lang, value)
    if step == "aspect" and value == "auto":
        return t(lang, "aspect_auto")
    return value


def menu_keyboard(lang: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [button(t(lang, "btn_new"), Nav(to="new"))],
            [
                button(t(lang, "btn_history"), Nav(to="history")),
                button(t(lang, "btn_help"), Nav(to="help")),
            ],
            [button(t(lang, "btn_lang"), Nav(to="lang"))],
        ]
    )


def menu_only_keyboard(lang: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[button(t(lang, "btn_menu"), Nav(to="menu"))]])


def back_target(step: str, data: dict[str, Any]) -> str:
    """Where Back leads from `step`: the previous step, or the menu from the first one."""
    if step == "motion" and data.get("reuse"):
        return "menu"  # "same photo, other motion" starts at the motion step
    index = STEPS.index(step)
    return STEPS[index - 1] if index > 0 else "menu"


def step_keyboard(lang: str, step: str, data: dict[str, Any]) -> InlineKeyboardMarkup:
    width = {"duration": 5, "resolution": 4, "motion": 2, "aspect": 5}.get(step, 1)
    current = str(data.get(step, ""))
    buttons = [
        button(
            ("• " if value == current else "") + choice_label(lang, step, value),
            Pick(step=step, value=encode_choice(value)),
        )
        for value in choices(step)
    ]
    # On the aspect step auto, the default, stands alone on the first row.
    rows = (
        [buttons[:1], *rows_of(buttons[1:], width)] if step == "aspect" else rows_of(buttons, width)
    )
    if step == "resolution":
        fps = str(data.get("fps", ""))
        rows.append(
            [
                button(
                    ("• " if value == fps else "") + t(lang, "fps", fps=value),
                    Pick(step="fps", value=value),
                )
                for value in choices("fps")
            ]
        )
    if step == "aspect" and not data.get("reuse"):
        where = t(lang, "btn_subject", where=subject_label(lang, data.get("focus")))
        rows.append([button(where, Pick(step="subject", value="open"))])
    rows.append([button(t(lang, "btn_back"), Back(to=back_target(step, data)))])
    return InlineKeyboardMarkup(inline_keyboard=rows)


def summary(lang: str, data: dict[str, Any], upto: str) -> str:
    parts: list[str] = []
    for step in STEPS[: STEPS.index(upto)]:
        value = data.get(step)
        if value is not None:
            parts.append(choice_label(lang, step, str(value)))
        if step == "resolution" and data.get("fps") and value is not None:
            parts.append(t(lang, "fps", fps=data["fps"]))
    return t(lang, "summary", parts=" · ".join(parts)) if parts else ""


def missing_step(data: dict[str, Any]) -> str | None:
    """The first settings step without a choice (an old conversation may lack one)."""
    for step in STEPS[:-1]:
        if data.get(step) is None:
            return step
    return None


def photo_limit(settings: Settings) -> int:
    """Bytes of the largest photo the bot takes: the Bot API's download cap or ours, if lower."""
    return min(DOWNLOAD_LIMIT, settings.max_upload_bytes)


def mb(size: int) -> str:
    return f"{size / MB:.3g}"


def step_text(
    lang: str, step: str, data: dict[str, Any], *, limit: int = DOWNLOAD_LIMIT, again: bool = False
) -> str:
    chosen = summary(lang, data, step)
    if step == "duration":
        return t(lang, "step_duration")
    if step == "motion":
        descriptions = "\n".join(
            f"▸ {motion_name(lang, p)} — {motion_description(lang, p)}" for p in motion.PRESETS
        )
        # "Same photo, other motion" is one question, not step 3 of 5.
        key = "step_motion_other" if data.get("reuse") else "step_motion"
        return t(lang, key, summary=chosen, descriptions=descriptions)
    if step == "photo":
        key = "step_photo_again" if again else "step_photo"
        return t(lang, key, summary=chosen, limit=mb(limit))
    return t(lang, f"step_{step}", summary=chosen)


def format_eta(lang: str, seconds: float | None) -> str:
    if seconds is None:
        return t(lang, "eta_unknown")
    if seconds < 60:
        # Coarse steps keep the text (and so the edits) from changing on every frame.
        step = 1 if seconds < 10 else 5
        return t(lang, "eta_seconds", s=max(1, int(round(seconds / step) * step)))
    return t(lang, "eta_minutes", m=round(seconds / 60))


def phase_text(lang: str, phase: str, step: int = 0, steps: int = 0) -> str:
    """The user's words for a render phase (a `Phase` value), with its pass: "Animating 2/4"."""
    key = f"phase_{phase}"
    if not phase or key not in EN:
        return t(lang, "phase_generic")
    words = t(lang, key)
    return f"{words} {step}/{steps}" if steps else words


def bar(percent: float, cells: int = 12) -> str:
    filled = int(percent / 100 * cells)
    return "▓" * filled + "░" * (cells - filled)


def job_params(lang: str, job: Job) -> str:
    aspect = t(lang, "aspect_auto") if job.aspect == "auto" else job.aspect
    return t(
        lang,
        "params",
        motion=motion_name(lang, job.motion_preset),
        duration=t(lang, "seconds", n=job.duration),
        resolution=job.resolution,
        aspect=aspect,
    )


# Letters and digits that no one mixes up (no 0/O, 1/I/L).
_VARIANT_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


def variant_label(seed: int) -> str:
    """A short name for a variant (its seed): three characters, e.g. "K7Q"."""
    size = len(_VARIANT_ALPHABET)
    value = abs(int(seed)) % size**3
    return "".join(_VARIANT_ALPHABET[(value // size**i) % size] for i in (2, 1, 0))


def aspect_label(
    lang: str, aspect: str, width: int | None = None, height: int | None = None
) -> str:
    """The frame shape: "16:9"; auto says what it became when the size is known."""
    if aspect != "auto":
        return aspect
    if width and height:
        return next(
            (shape for shape, ratio in _SHAPES if abs(width / height - ratio) < 0.02),
            t(lang, "aspect_auto"),
        )
    return t(lang, "aspect_auto")


_SHAPES = (("16:9", 16 / 9), ("9:16", 9 / 16), ("1:1", 1.0), ("4:3", 4 / 3), ("3:4", 3 / 4))


def job_caption(lang: str, job: Job, width: int | None = None, height: int | None = None) -> str:
    """The caption of a delivered video: its parameters and a short variant label."""
    width, height = width or job.width, height or job.height
    story = ""
    if job.story:  # what the story used: its photos and whether music
        told = json.loads(job.story)
        music = t(lang, "caption_music") if told.get("music") else ""
        story = t(lang, "caption_story", n=len(told["shots"]), music=music) + "\n"
    return story + t(
        lang,
        "caption",
        motion=motion_name(lang, job.motion_preset),
        duration=t(lang, "seconds", n=job.duration),
        resolution=job.resolution,
        width=width or "?",
        height=height or "?",
        aspect=aspect_label(lang, job.aspect, width, height),
        fps=job.fps,
        variant=variant_label(job.seed),
    )


def cancel_keyboard(lang: str, job_id: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[[button(t(lang, "btn_cancel"), JobButton(action="cancel", job_id=job_id))]]
    )


def result_keyboard(lang: str, job_id: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [button(t(lang, "btn_again"), JobButton(action="again", job_id=job_id))],
            [button(t(lang, "btn_other"), JobButton(action="other", job_id=job_id))],
            [button(t(lang, "btn_menu"), Nav(to="menu"))],
        ]
    )


def remake_keyboard(lang: str, job_id: str) -> InlineKeyboardMarkup:
    """Under a video that can't be sent again: make it again (same photo and settings)."""
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [button(t(lang, "btn_remake"), JobButton(action="again", job_id=job_id))],
            [button(t(lang, "btn_menu"), Nav(to="menu"))],
        ]
    )


def retry_keyboard(lang: str, job_id: str) -> InlineKeyboardMarkup:
    """Under a failed or cancelled job: try again, or other settings on the same photo."""
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [button(t(lang, "btn_retry"), JobButton(action="retry", job_id=job_id))],
            [button(t(lang, "btn_settings"), JobButton(action="settings", job_id=job_id))],
            [button(t(lang, "btn_menu"), Nav(to="menu"))],
        ]
    )


def failure_text(lang: str, error: str | None) -> str:
    """Why a job failed, in the user's words: the server's own message never reaches them."""
    text = (error or "").lower()
    if "took longer" in text or "timed out" in text:
        return t(lang, "fail_timeout")
    if "memory" in text:
        return t(lang, "fail_memory")
    return t(lang, "fail_render")


def job_note(
    lang: str, job: Job, *, tries: int, resumed: bool = False, continued: int | None = None
) -> str:
    """A line on a job that is not on its first try: a retry, or a restart of the service.

    After a restart the line says what the renderer reported: continuing from a pass
    (`continued`, from its "resumed" phase), or starting over once it works without one.
    """
    if job.terminal:
        return ""
    if resumed or (job.attempts > 0 and job.status == "queued" and not job.error):
        if job.status == "queued":
            return t(lang, "note_resumed")
        if continued:
            return t(lang, "note_from_pass", step=continued)
        if job.phase in ("", "starting", "loading", "preparing"):
            return t(lang, "note_restart_running")
        return t(lang, "note_from_start")
    if job.attempts <= 0:
        return ""
    return t(lang, "note_retry", attempt=min(job.attempts + 1, tries), tries=tries)


def progress_view(
    lang: str,
    job: Job,
    *,
    eta: float | None,
    position: int | None,
    live: Progress | None = None,
    paused: bool = False,
    tries: int = 1,
    resumed: bool = False,
    continued: int | None = None,
    starting: bool = False,
) -> tuple[str, InlineKeyboardMarkup | None]:
    """The progress message for a job's state: text and keyboard.

    `starting`: a running job whose message has not said yet that rendering started.
    """
    params = job_params(lang, job)
    if job.status == "completed":
        return t(lang, "progress_done", params=params), None
    if job.status == "cancelled":
        return t(lang, "progress_cancelled", params=params), retry_keyboard(lang, job.job_id)
    if job.status == "failed":
        error = failure_text(lang, job.error)
        return t(lang, "progress_failed", error=error, params=params), retry_keyboard(
            lang, job.job_id
        )
    keyboard = live_keyboard(lang, job)
    if job.status == "queued":
        if paused:
            text = t(lang, "progress_paused", position=position or "?", params=params)
        elif position is None:
            text = t(lang, "progress_waiting", eta=format_eta(lang, eta), params=params)
        else:
            text = t(
                lang, "progress_queued", position=position, eta=format_eta(lang, eta), params=params
            )
    else:
        percent, phase = job.progress, phase_text(lang, job.phase, job.phase_step, job.phase_steps)
        if live is not None:
            percent, eta = live.percent, live.eta
            phase = phase_text(lang, live.phase, live.step, live.steps)
        text = t(
            lang,
            "progress_started" if starting else "progress_running",
            phase=phase,
            percent=int(percent),
            bar=bar(percent),
            eta=format_eta(lang, eta),
            params=params,
        )
    note = job_note(lang, job, tries=tries, resumed=resumed, continued=continued)
    warning = upscale_text(lang, job)
    text = f"{text}\n{warning}" if warning else text
    return (f"{text}\n{note}" if note else text), keyboard


def live_keyboard(lang: str, job: Job) -> InlineKeyboardMarkup:
    """Under a live job: Cancel, and the one-tap lower resolution when the photo is small."""
    keyboard = cancel_keyboard(lang, job.job_id)
    lower = lower_resolution(job)
    if lower is None:
        return keyboard
    action = JobButton(action="lower", job_id=job.job_id)
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [button(t(lang, "btn_lower", resolution=lower), action)],
            *keyboard.inline_keyboard,
        ]
    )


def upscale_of(job: Job) -> dict[str, Any] | None:
    return next((w for w in job.warnings if w.get("code") == "upscale"), None)


def lower_resolution(job: Job) -> str | None:
    """The largest resolution that would not enlarge this job's photo, when lower than its own."""
    warning = upscale_of(job)
    best = str((warning or {}).get("max_resolution") or "")
    if best in motion.RESOLUTIONS and motion.RESOLUTIONS[best] < motion.RESOLUTIONS.get(
        job.resolution, 0
    ):
        return best
    return None


def upscale_text(lang: str, job: Job) -> str:
    """The warning of a photo too small for the resolution (while the job is not over)."""
    warning = upscale_of(job)
    if warning is None or job.terminal:
        return ""
    factor = f"{float(warning.get('factor') or 0):.1f}"
    factor = factor.replace(".", ",") if lang == "ru" else factor  # a decimal comma
    return t(lang, "warn_upscale", resolution=job.resolution, factor=factor)


def daily_limit_text(lang: str, exc: FanslyError) -> str:
    """The daily limit's refusal: the limit, what was ordered, when (UTC) and in how long it
    resets."""
    details = exc.details
    resets = str(details.get("resets_at") or "")[11:16] or "00:00"
    minutes = max(1, round((exc.retry_after or 60) / 60))
    hours, rest = divmod(minutes, 60)
    unit_h, unit_m = ("ч", "мин") if lang == "ru" else ("h", "min")
    wait = f"{hours} {unit_h} {rest} {unit_m}" if hours else f"{rest} {unit_m}"
    return t(
        lang,
        "cap_daily",
        limit=details.get("limit", "?"),
        used=details.get("used", "?"),
        resets=resets,
        wait=wait,
    )


def error_text(lang: str, exc: FanslyError, *, active: int, limit: int) -> str:
    """A friendly, translated text for a domain error (its message is safe to quote)."""
    if isinstance(exc, TooManyJobs) and exc.code == "daily_limit":
        return daily_limit_text(lang, exc)
    if isinstance(exc, Forbidden) and exc.code == "user_blocked":
        return t(lang, "blocked_by_operator")
    if isinstance(exc, TooManyJobs):
        if active >= limit:
            return t(lang, "cap_user", videos=videos(lang, active), limit=limit)
        return t(lang, "cap_queue", seconds=exc.retry_after or 30)
    if isinstance(exc, BadRequest | UnsupportedMedia | PayloadTooLarge | InvalidParams):
        # The settings come from our own buttons, so an input error is about the photo
        # (unreadable, too small, too many pixels...); its code says which, in the user's
        # language. A case without a text of its own gets a general one (never the server's).
        why = f"why_{exc.code}"
        detail = t(lang, why, **exc.details) if exc.code and why in EN else t(lang, "why_generic")
        return t(lang, "unreadable", detail=detail)
    if isinstance(exc, Unavailable):
        return t(lang, "unavailable")
    if isinstance(exc, InsufficientStorage):
        return t(lang, "storage")
    return t(lang, "generic_error")


def lang_keyboard(current: str | None = None) -> InlineKeyboardMarkup:
    """The language picker; the current language is marked with •."""
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                button(
                    ("• " if code == current else "") + LANGUAGE_NAMES[code], LangButton(code=code)
                )
                for code in LANGUAGES
            ]
        ]
    )


def cancel_list_keyboard(lang: str, jobs: list[Job]) -> InlineKeyboardMarkup:
    buttons = [
        button(t(lang, "btn_cancel_job", n=n), JobButton(action="cancel", job_id=job.job_id))
        for n, job in enumerate(jobs, start=1)
    ]
    return InlineKeyboardMarkup(
        inline_keyboard=[*rows_of(buttons, 3), [button(t(lang, "btn_menu"), Nav(to="menu"))]]
    )


def resend_keyboard(lang: str, job_id: str) -> InlineKeyboardMarkup:
    """Under the offer of a video whose upload a restart cut short."""
    return InlineKeyboardMarkup(
        inline_keyboard=[[button(t(lang, "btn_resend"), JobButton(action="resend", job_id=job_id))]]
    )


def new_video_keyboard(lang: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[button(t(lang, "btn_new"), Nav(to="new"))]])


def status_line(
    lang: str,
    n: int,
    job: Job,
    *,
    position: int | None,
    eta: float | None,
    live: Progress | None,
    paused: bool = False,
) -> str:
    """One job's line in /status: its place in the queue, or its phase and percent."""
    params = job_params(lang, job)
    if job.status == "queued" and paused:
        return t(lang, "status_paused", n=n, params=params, position=position or "?")
    if job.status == "queued":
        return t(
            lang,
            "status_queued",
            n=n,
            params=params,
            position=position or "?",
            eta=format_eta(lang, eta),
        )
    if live is not None:
        percent, phase = live.percent, phase_text(lang, live.phase, live.step, live.steps)
    else:
        percent = job.progress
        phase = phase_text(lang, job.phase, job.phase_step, job.phase_steps)
    return t(
        lang,
        "status_running",
        n=n,
        params=params,
        phase=phase,
        percent=int(percent),
        eta=format_eta(lang, eta),
    )


def accepted_text(lang: str, *, position: int | None, eta: float | None, paused: bool) -> str:
    """The first answer to a photo: the place in the queue and when the video will be ready."""
    if position is not None and paused:
        return t(lang, "accepted_paused", position=position)
    if position is not None:
        return t(lang, "accepted_queued", position=position, eta=format_eta(lang, eta))
    return t(lang, "accepted_running", eta=format_eta(lang, eta))


def missed_keyboard(lang: str, job_id: str) -> InlineKeyboardMarkup:
    """Under "while you were away...": send the videos the user missed."""
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [button(t(lang, "btn_send_missed"), JobButton(action="missed", job_id=job_id))]
        ]
    )


def photo_first_keyboard(lang: str, data: dict[str, Any]) -> InlineKeyboardMarkup:
    """The first step, with "as last time" on top when the user has made a video before."""
    markup = step_keyboard(lang, "duration", data)
    last = data.get("last") or {}
    if all(last.get(step) is not None for step in STEPS[:-1]):
        parts = " · ".join(choice_label(lang, step, str(last[step])) for step in STEPS[:-1])
        quick = button(t(lang, "btn_last_settings", params=parts), Nav(to="last"))
        return InlineKeyboardMarkup(inline_keyboard=[[quick], *markup.inline_keyboard])
    return markup
