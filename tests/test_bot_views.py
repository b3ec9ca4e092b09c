"""The bot's views, without a server: keyboards, step texts, progress texts in both languages."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from aiogram.types import InlineKeyboardMarkup

from fanslymotion import bot_files, bot_history, bot_views, motion, texts
from fanslymotion.errors import BadRequest, TooManyJobs
from fanslymotion.models import Phase, Progress
from fanslymotion.store import Job


def make_job(**values: Any) -> Job:
    """A job row with plausible values; a field added later gets an empty value of its type."""
    defaults: dict[str, Any] = {
        "job_id": "j1",
        "user_id": 1,
        "source": "telegram",
        "duration": 6,
        "resolution": "720p",
        "motion_preset": "pan_l",
        "aspect": "auto",
        "seed": 42,
        "status": "queued",
        "width": 1280,
        "height": 720,
    }
    defaults.update(values)
    for field in dataclasses.fields(Job):
        if field.name in defaults:
            continue
        kind = str(field.type)
        if "None" in kind:
            defaults[field.name] = None
        elif kind.startswith("int"):
            defaults[field.name] = 0
        elif kind.startswith("float"):
            defaults[field.name] = 0.0
        else:
            defaults[field.name] = ""
    return Job(**defaults)


def buttons(markup: InlineKeyboardMarkup | None) -> list[list[tuple[str, str]]]:
    assert markup is not None
    return [[(b.text, str(b.callback_data)) for b in row] for row in markup.inline_keyboard]


def test_preset_descriptions_are_ui_text() -> None:
    assert set(texts.PRESET_DESCRIPTIONS) == set(motion.PRESETS)
    for text in texts.PRESET_DESCRIPTIONS.values():
        assert text and "\n" not in text
    assert not hasattr(motion, "PRESET_DESCRIPTIONS")


@pytest.mark.parametrize("lang", texts.LANGUAGES)
def test_step_keyboards_mark_the_choice_and_lead_back(lang: str) -> None:
    rows = buttons(bot_views.step_keyboard(lang, "duration", {"duration": 6}))
    flat = [item for row in rows[:-1] for item in row]
    assert [data for _, data in flat] == [f"pick:duration:{d}" for d in motion.DURATIONS]
    marked = [text for text, _ in flat if text.startswith("• ")]
    assert marked == ["• " + texts.t(lang, "seconds", n=6)]
    assert rows[-1] == [(texts.t(lang, "btn_back"), "back:menu")]

    rows = buttons(bot_views.step_keyboard(lang, "aspect", {}))
    assert rows[0] == [(texts.t(lang, "aspect_auto"), "pick:aspect:auto")]  # alone, first
    assert ("16:9", "pick:aspect:16x9") in rows[1]
    assert rows[-1][0][1] == "back:motion"
    # "same photo, other motion" starts at the motion step: Back goes to the menu
    rows = buttons(bot_views.step_keyboard(lang, "motion", {"reuse": "j1"}))
    assert rows[-1][0][1] == "back:menu"


def test_choices_round_trip_and_stale_tokens() -> None:
    for step in ("duration", "resolution", "motion", "aspect"):
        for value in bot_views.choices(step):
            assert bot_views.decode_choice(step, bot_views.encode_choice(value)) == value
    assert bot_views.decode_choice("aspect", "2x1") is None
    assert bot_views.decode_choice("motion", "zoom_out") is None
    assert bot_views.missing_step({"duration": 3, "resolution": "360p"}) == "motion"
    full = {"duration": 3, "resolution": "360p", "motion": "micro", "aspect": "auto"}
    assert bot_views.missing_step(full) is None


@pytest.mark.parametrize("lang", texts.LANGUAGES)
def test_step_texts_carry_the_summary_and_the_limit(lang: str) -> None:
    data = {"duration": 3, "resolution": "480p", "motion": "micro", "aspect": "1:1"}
    text = bot_views.step_text(lang, "photo", data, limit=5 * bot_views.MB)
    assert "480p" in text and texts.motion_name(lang, "micro") in text and "5" in text
    motion_step = bot_views.step_text(lang, "motion", data)
    for preset in motion.PRESETS:
        assert texts.motion_description(lang, preset) in motion_step


@pytest.mark.parametrize("lang", texts.LANGUAGES)
def test_progress_view_for_every_state(lang: str) -> None:
    queued = make_job(status="queued")
    text, markup = bot_views.progress_view(lang, queued, eta=75, position=2)
    assert "2" in text and texts.t(lang, "eta_minutes", m=1) in text
    assert buttons(markup) == [[(texts.t(lang, "btn_cancel"), "job:cancel:j1")]]

    running = make_job(status="processing", progress=50.0, phase="rendering")
    text, markup = bot_views.progress_view(lang, running, eta=8, position=None)
    assert "50" in text and "▓" * 6 + "░" * 6 in text
    assert texts.t(lang, "eta_seconds", s=8) in text

    done, markup = bot_views.progress_view(
        lang, make_job(status="completed"), eta=None, position=None
    )
    assert done == texts.t(lang, "progress_done", params=bot_views.job_params(lang, queued))
    assert markup is None
    failed, markup = bot_views.progress_view(
        lang,
        make_job(status="failed", error="the render took longer than 2 s"),
        eta=None,
        position=None,
    )
    # the server's English never reaches the user; their own words do, with a way on
    assert "took longer" not in failed and texts.t(lang, "fail_timeout") in failed
    assert [row[0][1] for row in buttons(markup)] == ["job:retry:j1", "job:settings:j1", "nav:menu"]

    paused, _ = bot_views.progress_view(lang, queued, eta=5, position=3, paused=True)
    assert (
        paused.startswith("⏸") and "3" in paused and texts.t(lang, "eta_seconds", s=5) not in paused
    )
    retry = make_job(status="queued", attempts=1, error="internal render error")
    text, _ = bot_views.progress_view(lang, retry, eta=5, position=1, tries=3)
    assert text.endswith(texts.t(lang, "note_retry", attempt=2, tries=3))
    again = make_job(status="processing", attempts=0, progress=10.0, phase="rendering")
    text, _ = bot_views.progress_view(lang, again, eta=5, position=None, resumed=True)
    assert text.endswith(texts.t(lang, "note_from_start"))  # rendering: it starts over


def test_eta_is_coarse_so_edits_stay_rare() -> None:
    assert bot_views.format_eta("en", 3.4) == texts.t("en", "eta_seconds", s=3)
    assert bot_views.format_eta("en", 23) == texts.t("en", "eta_seconds", s=25)
    assert bot_views.format_eta("en", 150) == texts.t("en", "eta_minutes", m=2)
    assert bot_views.format_eta("ru", None) == texts.t("ru", "eta_unknown")


def test_error_texts_are_translated() -> None:
    cap = TooManyJobs("too many", retry_after=30)
    assert bot_views.error_text("ru", cap, active=3, limit=3) == texts.t(
        "ru", "cap_user", videos=texts.videos("ru", 3), limit=3
    )
    details = {"width": 40, "height": 30, "min_side": 64}
    small = BadRequest("photo too small", code="photo_too_small", details=details)
    detail = texts.t("ru", "why_photo_too_small", **details)
    text = bot_views.error_text("ru", small, active=0, limit=3)
    assert text == texts.t("ru", "unreadable", detail=detail)


def test_images_are_recognised_by_type_or_name() -> None:
    assert bot_files.looks_like_image("image/heic", None)
    assert not bot_files.looks_like_image("image/svg+xml", "a.svg")
    assert bot_files.looks_like_image(None, "IMG_0001.HEIC")
    assert not bot_files.looks_like_image(None, "report.pdf")
    assert not bot_files.looks_like_image("application/pdf", "x.jpg")


def test_the_bot_imports_no_renderer() -> None:
    """The bot's rooms talk to the queue, never to a renderer or the ML stack."""
    import ast
    from pathlib import Path

    forbidden = {"renderer", "svd", "torch", "diffusers", "transformers", "accelerate"}
    package = Path(bot_views.__file__).parent
    for path in sorted(package.glob("bot*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[0]} | {a.name for a in node.names}
            elif isinstance(node, ast.Import):
                names = {a.name.split(".")[0] for a in node.names}
            else:
                continue
            assert not names & forbidden, f"{path.name} imports {names & forbidden}"


@pytest.mark.parametrize("lang", texts.LANGUAGES)
def test_every_phase_has_words(lang: str) -> None:
    """A text for every Phase in every language: a new phase without one fails here."""
    for phase in Phase:
        assert f"phase_{phase}" in texts.TEXTS[lang], phase
        assert bot_views.phase_text(lang, phase) == texts.t(lang, f"phase_{phase}")
    animating = bot_views.phase_text(lang, Phase.ANIMATING, 2, 4)
    assert animating == texts.t(lang, "phase_animating") + " 2/4"
    assert bot_views.phase_text(lang, "") == texts.t(lang, "phase_generic")
    svd = make_job(status="processing", phase=Phase.DECODING, progress=96.0)
    text, _ = bot_views.progress_view(lang, svd, eta=3, position=None)
    assert text.startswith(f"🎬 {texts.t(lang, 'phase_decoding')}: 96%")
    live = Progress(percent=40.0, phase=Phase.ANIMATING, step=2, steps=4, eta=20.0)
    text, _ = bot_views.progress_view(lang, svd, eta=None, position=None, live=live)
    assert text.startswith(f"🎬 {animating}: 40%")


def _sample_values(template: str) -> dict[str, object]:
    import string

    names = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    samples: dict[str, object] = {"eta": "ETA", "params": "PARAMS", "kind": "KIND"}
    return {name: samples.get(name, 5) for name in names}


def test_russian_reads_right_with_its_placeholders_filled() -> None:
    """Every Russian text, filled in: no English words for people, no "через около"."""
    for key, template in texts.RU.items():
        text = template.format(**_sample_values(template))
        assert "seed" not in text.lower(), key
        assert not any(word in text for word in (" the ", "Step ", "Ready")), key
    for seconds in (3, 25, 150, None):
        eta = bot_views.format_eta("ru", seconds)
        for key in ("accepted_queued", "progress_queued", "progress_running", "status_queued"):
            filled = texts.t("ru", key, **{**_sample_values(texts.RU[key]), "eta": eta})
            assert "через около" not in filled and "через примерно" not in filled, key
    for key, template in texts.EN.items():
        filled = template.format(**_sample_values(template))
        assert "seed" not in filled.lower(), key  # people get "variant"
    assert texts.t("ru", "btn_again") == "🎲 Другой вариант"
    assert texts.t("en", "btn_again") == "🎲 Another variant"


def test_wrong_files_are_named_and_the_picker_marks_the_language() -> None:
    assert bot_files.document_kind("application/pdf", "a.pdf") == "kind_pdf"
    assert bot_files.document_kind("application/zip", "a.zip") == "kind_zip"
    assert bot_files.document_kind(None, "notes.txt") == "kind_text"
    assert bot_files.document_kind("video/mp4", "clip.mp4") == "kind_video"
    assert bot_files.is_heic(None, "IMG_0001.HEIC") and bot_files.is_heic("image/heif", None)
    rows = buttons(bot_views.lang_keyboard("ru"))
    assert rows == [[("English", "lang:en"), ("• Русский", "lang:ru")]]
    assert bot_views.step_text("en", "motion", {"reuse": "j1"}).startswith("Same photo")
    accepted = bot_views.accepted_text("en", position=2, eta=30, paused=True)
    assert "#2" in accepted and "Ready in" not in accepted


@pytest.mark.parametrize("lang", texts.LANGUAGES)
def test_a_restart_is_told_as_the_renderer_reports_it(lang: str) -> None:
    queued = make_job(status="queued", attempts=1)
    text, _ = bot_views.progress_view(lang, queued, eta=5, position=1, resumed=True)
    assert text.endswith(texts.t(lang, "note_resumed"))  # back in the queue
    loading = make_job(status="processing", attempts=1, phase="loading")
    text, _ = bot_views.progress_view(lang, loading, eta=5, position=None, resumed=True)
    assert text.endswith(texts.t(lang, "note_restart_running"))  # not known yet: no claim
    svd = make_job(status="processing", attempts=1, phase="animating", phase_step=3)
    text, _ = bot_views.progress_view(lang, svd, eta=5, position=None, resumed=True, continued=3)
    assert text.endswith(texts.t(lang, "note_from_pass", step=3))
    text, _ = bot_views.progress_view(lang, svd, eta=5, position=None, starting=True)
    assert text.startswith(
        texts.t(lang, "progress_started", phase="", percent=0, bar="", eta="", params="").split(
            "\n"
        )[0]
    )


@pytest.mark.parametrize("lang", texts.LANGUAGES)
def test_history_pages_and_the_caption(lang: str) -> None:
    jobs: list[tuple[Job, str | None]] = [
        (make_job(job_id=f"j{i}", seed=1000 + i, fps=24), f"file{i}" if i < 6 else None)
        for i in range(7)
    ]  # the last one's copy was never kept: it can be made again instead
    text, markup = bot_history.history_view(lang, jobs, 0)
    rows = buttons(markup)
    assert [d for _, d in rows[0]] == [f"job:send:j{i}" for i in range(5)]
    assert rows[1] == [(texts.t(lang, "btn_older"), "hist:1")]
    assert text.count("\n") == 5 + 2 and "24" in text
    text, markup = bot_history.history_view(lang, jobs, 1)
    rows = buttons(markup)
    assert [d for _, d in rows[0]] == ["job:send:j5", "job:again:j6"]
    assert rows[1] == [(texts.t(lang, "btn_newer"), "hist:0")] and rows[-1][0][1] == "nav:menu"
    labels = {bot_views.variant_label(seed) for seed in range(1000)}
    assert len(labels) == 1000 and all(len(label) == 3 for label in labels)
    job = make_job(status="completed", fps=24, aspect="auto", width=1280, height=720)
    caption = bot_views.job_caption(lang, job)
    assert "720p (1280×720) · 16:9 · 24" in caption and "42" not in caption
    assert bot_views.variant_label(42) in caption


def test_every_text_the_bot_names_exists_in_both_languages() -> None:
    """Keys named literally in the bot's code (t(lang, "key", ...)) are in both tables."""
    import re
    from pathlib import Path

    root = Path(bot_views.__file__).parent
    named: set[str] = set()
    for path in root.glob("bot*.py"):
        named |= set(re.findall(r"\bt\(\s*\w+,\s*\"(\w+)\"", path.read_text()))
    assert named and named <= set(texts.EN) and named <= set(texts.RU)


@pytest.mark.parametrize("lang", texts.LANGUAGES)
def test_fps_and_subject_options_and_the_upscale_warning(lang: str) -> None:
    rows = buttons(bot_views.step_keyboard(lang, "resolution", {"fps": 30}))
    assert rows[-2] == [
        (texts.t(lang, "fps", fps=24), "pick:fps:24"),
        ("• " + texts.t(lang, "fps", fps=30), "pick:fps:30"),
    ]
    rows = buttons(bot_views.step_keyboard(lang, "aspect", {"focus": {"x": 0.1, "y": 0.9}}))
    assert rows[-2] == [
        (texts.t(lang, "btn_subject", where=texts.t(lang, "subject_6")), "pick:subject:open")
    ]
    for cell in range(9):
        assert bot_views.cell_of_focus(bot_views.focus_of_cell(cell)) == cell
    _, markup = bot_views.subject_view(lang, {"focus": bot_views.focus_of_cell(4)})
    grid = buttons(markup)
    assert [len(row) for row in grid] == [3, 3, 3, 1, 1] and grid[1][1][0].startswith("• ")
    assert grid[-1] == [(texts.t(lang, "btn_back"), "back:aspect")]
    warning = {"code": "upscale", "factor": 2.84, "max_resolution": "480p", "message": "x"}
    job = make_job(resolution="1080p", shot=json.dumps({"warnings": [warning]}))
    text, live = bot_views.progress_view(lang, job, eta=5, position=1)
    assert ("2,8" if lang == "ru" else "2.8") in text and "1080p" in text
    assert buttons(live)[0] == [(texts.t(lang, "btn_lower", resolution="480p"), "job:lower:j1")]
    done = dataclasses.replace(job, status="completed")
    text, over = bot_views.progress_view(lang, done, eta=None, position=None)
    assert over is None and "🔍" not in text  # over: no warning, no button
