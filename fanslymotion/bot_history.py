"""The /history view: one paged message of the user's videos (a pure function, like
bot_views)."""

from __future__ import annotations

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from .bot_views import HistPage, JobButton, Nav, button, job_params, variant_label
from .store import Job
from .texts import t

HISTORY_PAGE = 5  # videos per page of /history
HISTORY_KEPT = 50  # the most videos /history pages through


def history_view(
    lang: str, entries: list[tuple[Job, str | None]], page: int
) -> tuple[str, InlineKeyboardMarkup]:
    """One page of /history: a numbered list (newest first), one button per video (send it
    again by its kept file id, or make it again when there is none), and paging."""
    total = len(entries)
    pages = max(1, -(-total // HISTORY_PAGE))
    page = min(max(page, 0), pages - 1)
    first = page * HISTORY_PAGE
    shown = entries[first : first + HISTORY_PAGE]
    lines = [t(lang, "history_header", first=first + 1, last=first + len(shown), total=total)]
    buttons: list[InlineKeyboardButton] = []
    for n, (job, file_id) in enumerate(shown, start=first + 1):
        lines.append(
            t(
                lang,
                "history_line",
                n=n,
                params=job_params(lang, job),
                fps=t(lang, "fps", fps=job.fps),
                variant=variant_label(job.seed),
            )
        )
        if file_id:
            buttons.append(
                button(t(lang, "btn_hist_send", n=n), JobButton(action="send", job_id=job.job_id))
            )
        else:
            buttons.append(
                button(
                    t(lang, "btn_hist_repeat", n=n), JobButton(action="again", job_id=job.job_id)
                )
            )
    lines.append("")
    lines.append(t(lang, "history_legend"))
    paging: list[InlineKeyboardButton] = []
    if page > 0:
        paging.append(button(t(lang, "btn_newer"), HistPage(page=page - 1)))
    if page < pages - 1:
        paging.append(button(t(lang, "btn_older"), HistPage(page=page + 1)))
    rows = [buttons, *([paging] if paging else []), [button(t(lang, "btn_menu"), Nav(to="menu"))]]
    return "\n".join(lines), InlineKeyboardMarkup(inline_keyboard=rows)
