"""The conversation as users meet it (issue 28), through the real Dispatcher and the fake Bot API,
in both languages: unusable photos refused before any step, one live prompt per chat, true queue
positions and a "started" edit, repeats after delivery, English by default, restarts told as they
are, and /history as one paged message."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from .bot_stack import (
    ALICE,
    BORIS,
    Stack,
    _text,
    choose,
    edits_of,
    job_id_of,
    open_menu,
    progress_message,
    wait_button,
    wait_job,
    wait_until,
    wait_video,
)
from .conftest import photo_bytes
from .fake_telegram import FakeTelegram, FakeUser

# The words each test looks for, per language.
WORDS: dict[str, dict[str, str]] = {
    "en": {
        "too_small": "it is too small (48×48",
        "too_big": "larger than 20 MB",
        "nice": "Nice photo!",
        "kept": "Got your photo",
        "step5": "Step 5 of 5",
        "voice": "That's a voice message. Please choose with the buttons above",
        "sticker_photo": "That's a sticker. Please send a photo for this step",
        "summary": "Your choice: 3 s · 360p · Pan left · Auto (from the photo)",
        "stale_none": "Send /start for a new one",
        "queue1": "#1 in the queue",
        "queue2": "#2 in the queue",
        "waiting1": "Waiting in the queue: #1",
        "started": "Rendering has started",
        "restarted": "The service restarted",
        "from_start": "Rendering again from the beginning",
        "from_pass": "Continuing from pass",
    },
    "ru": {
        "too_small": "оно слишком маленькое (48×48",
        "too_big": "больше 20 МБ",
        "nice": "Отличное фото!",
        "kept": "Фото у меня",
        "step5": "Шаг 5 из 5",
        "voice": "Это голосовое сообщение. Выберите вариант кнопками выше",
        "sticker_photo": "Это стикер. На этом шаге нужно фото",
        "summary": "Вы выбрали: 3 с · 360p · Панорама влево · Авто (по фото)",
        "stale_none": "Отправьте /start, чтобы открыть новое",
        "queue1": "№1 в очереди",
        "queue2": "№2 в очереди",
        "waiting1": "В очереди: №1",
        "started": "Началось создание видео",
        "restarted": "Сервис перезапускался",
        "from_start": "Видео создаётся заново, с самого начала",
        "from_pass": "Продолжаем с прохода",
    },
}
USERS = pytest.mark.parametrize("user", [ALICE, BORIS], ids=["en", "ru"])
PICKS = ("pick:duration:3", "pick:resolution:360p", "pick:motion:pan_l", "pick:aspect:auto")
CONVERSATION = ("nav:", "pick:", "back:", "lang:", "hist:")
STICKER = {
    "file_id": "sticker-1",
    "file_unique_id": "sticker-1u",
    "type": "regular",
    "width": 512,
    "height": 512,
    "is_animated": False,
    "is_video": False,
}
VOICE = {"file_id": "voice-1", "file_unique_id": "voice-1u", "duration": 2}


def words(user: FakeUser) -> dict[str, str]:
    return WORDS["ru" if user.language_code == "ru" else "en"]


def live_prompts(tg: FakeTelegram, user: FakeUser) -> list[dict[str, Any]]:
    """The chat's messages with working conversation buttons (a video's or a job's own buttons
    are not a prompt)."""
    found = []
    for message in tg.bot_messages(user.id):
        data = [d for _, d in tg.buttons(message)]
        if any(d.startswith(CONVERSATION) for d in data) and not any(
            d.startswith("job:") for d in data
        ):
            found.append(message)
    return found


async def one_live_prompt(tg: FakeTelegram, user: FakeUser) -> dict[str, Any]:
    """Wait until the chat holds exactly one live prompt (retiring edits may be on their way)."""
    found: list[dict[str, Any]] = await tg.wait_for(
        lambda: (lambda live: live if len(live) == 1 else None)(live_prompts(tg, user)),
        5,
        "exactly one live prompt",
    )
    return found[0]


async def pick(tg: FakeTelegram, user: FakeUser, data: str) -> None:
    await tg.press(user, await wait_button(tg, user.id, data), data)


def texts_of(tg: FakeTelegram, user: FakeUser) -> list[str]:
    return [_text(m) for m in tg.bot_messages(user.id)]


# -- 1. refuse at once -----------------------------------------------------------------------------


@USERS
async def test_unusable_photos_are_refused_before_any_step(
    stack: Stack, tg: FakeTelegram, user: FakeUser
) -> None:
    say = words(user)
    await stack.start()
    await tg.send_photo(user, photo_bytes(48, 48))
    refusal = await tg.wait_message(user.id, say["too_small"])
    big = b"\x89PNG\r\n\x1a\n" + bytes(25 * 1024 * 1024)
    await tg.send_document(user, big, "scan.png", "image/png")
    await tg.wait_message(user.id, say["too_big"], after=refusal["message_id"])
    assert not tg.calls_of("getFile")  # judged from the update: nothing downloaded
    assert not any(say["nice"] in text for text in texts_of(tg, user))
    assert not any(
        d.startswith("pick:") for m in tg.bot_messages(user.id) for _, d in tg.buttons(m)
    )

    # A good photo now: kept, the settings asked once, then straight into the queue.
    await tg.send_photo(user, photo_bytes(320, 240))
    await tg.wait_message(user.id, say["nice"])
    for data in PICKS:
        await pick(tg, user, data)
    await progress_message(tg, user)
    await wait_video(tg, user)
    assert not any(say["step5"] in text for text in texts_of(tg, user))

    # In the middle of the steps: one line for a tiny photo, the step stays live; a good photo
    # then continues from that same step, none asked again.
    menu = await open_menu(tg, user)
    await tg.press(user, menu, "nav:new")
    await pick(tg, user, "pick:duration:3")
    step = await wait_button(tg, user.id, "pick:resolution:360p")
    await tg.send_photo(user, photo_bytes(48, 48, seed=2))
    line = await tg.wait_message(user.id, say["too_small"], after=step["message_id"])
    assert not tg.buttons(line)
    await tg.send_photo(user, photo_bytes(320, 240, seed=3))
    kept = await tg.wait_message(user.id, say["kept"], after=line["message_id"])
    assert not tg.buttons(kept)
    assert (await one_live_prompt(tg, user))["message_id"] == step["message_id"]
    for data in PICKS[1:]:
        await pick(tg, user, data)
    await wait_video(tg, user, count=2)
    assert not any(say["step5"] in text for text in texts_of(tg, user))
    assert await stack.store.count_jobs() == 2


# -- 2. one live prompt per chat ------------------------------------------------------------------


@USERS
async def test_a_chat_full_of_strays_ends_with_one_live_keyboard(
    stack: Stack, tg: FakeTelegram, user: FakeUser
) -> None:
    say = words(user)
    await stack.start()
    menu = await open_menu(tg, user)  # 1
    await tg.press(user, menu, "nav:new")  # 2
    await wait_button(tg, user.id, "pick:duration:3")
    await tg.send_content(user, voice=VOICE)  # 3: one short line, not a new copy of the step
    hint = await tg.wait_message(user.id, say["voice"])
    assert not tg.buttons(hint)
    await pick(tg, user, "pick:duration:3")  # 4
    await tg.send_content(user, sticker=STICKER)  # 5
    await tg.send_text(user, "hello?")  # 6
    await tg.wait_for(lambda: len(tg.bot_messages(user.id)) == 4, 5, "two more hints")
    await one_live_prompt(tg, user)
    await open_menu(tg, user)  # 7: a new menu; the step loses its buttons
    assert (await one_live_prompt(tg, user))["message_id"] != menu["message_id"]
    await tg.send_text(user, "/help")  # 8
    await tg.send_text(user, "/status")  # 9
    await tg.send_text(user, "/language")  # 10
    picker = await wait_button(tg, user.id, "lang:en")
    assert (await one_live_prompt(tg, user))["message_id"] == picker["message_id"]
    step = await choose(tg, user)  # 11: /start and the four steps
    await tg.send_content(user, sticker=STICKER)  # 12: on the photo step
    line = await tg.wait_message(user.id, say["sticker_photo"])
    assert not tg.buttons(line)
    assert (await one_live_prompt(tg, user))["message_id"] == step["message_id"]
    seen = copy.deepcopy(tg.message(user.id, step["message_id"]))
    await tg.send_photo(user, photo_bytes())  # 13: the step is answered
    await wait_video(tg, user)
    # The answered prompt keeps only the choice, without buttons.
    await tg.wait_for(
        lambda: _text(tg.message(user.id, step["message_id"])) == say["summary"], 5, "the summary"
    )
    assert not live_prompts(tg, user)
    # A tap on it (before its buttons went) says how to start, since nothing newer is live.
    await tg.press(user, seen, "back:aspect", seen=True)
    await tg.wait_call("answerCallbackQuery", lambda c: say["stale_none"] in str(c.get("text")))
    newest = await open_menu(tg, user)  # 14
    assert (await one_live_prompt(tg, user))["message_id"] == newest["message_id"]
    assert await stack.store.count_jobs() == 1


# -- 3. true states -------------------------------------------------------------------------------


@pytest.mark.serial  # edits raced against the budget
async def test_two_users_true_positions_and_a_started_edit(stack: Stack, tg: FakeTelegram) -> None:
    await stack.start(fps=12)
    await stack.jobs.pause()
    await choose(tg, ALICE, duration=6, resolution="720p")
    await tg.send_photo(ALICE, photo_bytes(640, 480))
    alice = await progress_message(tg, ALICE)
    assert WORDS["en"]["queue1"] in _text(alice)
    # Long enough to outlast the chat's edit budget: a job that ends before its "started"
    # edit may go out is rightly told as done, and the start is never said.
    await choose(tg, BORIS, duration=6, resolution="720p")
    await tg.send_photo(BORIS, photo_bytes(640, 480, seed=1))
    boris = await progress_message(tg, BORIS)
    assert WORDS["ru"]["queue2"] in _text(boris)
    await stack.jobs.resume()

    def said(message: dict[str, Any], words: str) -> bool:
        return any(words in str(c.get("text")) for c in edits_of(tg, message) if c.ok)

    # Alice's job starts: her message says so, by an edit; Boris moves up to #1, then starts.
    await tg.wait_for(lambda: said(alice, WORDS["en"]["started"]), 15, "Alice's start")
    await tg.wait_for(lambda: said(boris, WORDS["ru"]["waiting1"]), 15, "Boris at #1")
    await tg.wait_for(lambda: said(boris, WORDS["ru"]["started"]), 30, "Boris's start")
    texts = [str(c.get("text")) for c in edits_of(tg, boris) if c.ok]
    first_started = next(i for i, x in enumerate(texts) if WORDS["ru"]["started"] in x)
    assert any(WORDS["ru"]["waiting1"] in x for x in texts[:first_started])
    await wait_video(tg, ALICE)
    await wait_video(tg, BORIS)
    await tg.wait_for(lambda: said(boris, "Готово"), 5, "Boris's ready")
    for message in (alice, boris):  # said once, by one edit; then the progress goes on
        started = [c for c in edits_of(tg, message) if c.ok and "🎬 " in str(c.get("text"))]
        assert (
            sum(WORDS["en"]["started"] in str(c.get("text")) for c in started)
            + sum(WORDS["ru"]["started"] in str(c.get("text")) for c in started)
            == 1
        )

    # The queue is idle now: a new job starts at once and is never "in the queue".
    await choose(tg, ALICE)
    await tg.send_photo(ALICE, photo_bytes(seed=2))
    now = await progress_message(tg, ALICE, after=alice["message_id"])
    assert WORDS["en"]["started"] in _text(now)
    await wait_video(tg, ALICE, count=2)
    said_now = [_text(now)] + [str(c.get("text")) for c in edits_of(tg, now)]
    assert not any("in the queue" in x for x in said_now)


async def test_status_drops_a_cancelled_job(stack: Stack, tg: FakeTelegram) -> None:
    await stack.start()
    await stack.jobs.pause()
    ids, last = [], 0
    for seed in (1, 2):
        await choose(tg, ALICE)
        await tg.send_photo(ALICE, photo_bytes(seed=seed))
        accepted = await progress_message(tg, ALICE, after=last)
        ids.append(job_id_of(tg, accepted))
        last = accepted["message_id"]
    await tg.send_text(ALICE, "/status")
    listing = await tg.wait_message(ALICE.id, "Your videos in progress")
    assert "1. " in _text(listing) and "2. " in _text(listing)
    await tg.press(ALICE, listing, f"job:cancel:{ids[0]}")
    await wait_job(stack, ids[0], "cancelled")

    def redrawn() -> bool:
        now = tg.message(ALICE.id, listing["message_id"])
        data = [d for _, d in tg.buttons(now)]
        return f"job:cancel:{ids[0]}" not in data and f"job:cancel:{ids[1]}" in data

    await tg.wait_for(redrawn, 5, "the list without the cancelled job")
    assert "2. " not in _text(tg.message(ALICE.id, listing["message_id"]))
    await tg.send_text(ALICE, "/status")
    again = await tg.wait_message(ALICE.id, "Your videos in progress", after=listing["message_id"])
    assert [d for _, d in tg.buttons(again) if d.startswith("job:")] == [f"job:cancel:{ids[1]}"]
    await stack.jobs.resume()
    await wait_video(tg, ALICE)


# -- 4. repeats that repeat, 7. history as one paged message --------------------------------------


async def test_another_variant_after_delivery_then_history_pages(
    stack: Stack, tg: FakeTelegram
) -> None:
    await stack.start()
    await choose(tg, ALICE)
    await tg.send_photo(ALICE, photo_bytes())
    first = await wait_video(tg, ALICE)
    video = tg.message(ALICE.id, first.result["message_id"])
    first_id = job_id_of(tg, video)
    # Tapped after each delivery, minutes or moments later: a new variant every time.
    for count in range(2, 5):
        await tg.press(ALICE, video, f"job:again:{first_id}")
        await wait_video(tg, ALICE, count=count)
        await wait_job(
            stack,
            job_id_of(tg, await wait_button(tg, ALICE.id, "job:again:", prefix=True)),
            "completed",
        )
    # Two taps at once still make one.
    await tg.press(ALICE, video, f"job:again:{first_id}")
    await tg.press(ALICE, video, f"job:again:{first_id}")
    await tg.wait_call(
        "answerCallbackQuery", lambda c: c.get("text") == "This one is already on its way."
    )
    await wait_video(tg, ALICE, count=5)
    await tg.press(ALICE, video, f"job:again:{first_id}")
    await wait_video(tg, ALICE, count=6)
    assert await stack.store.count_jobs() == 6
    captions = [str(c.get("caption")) for c in tg.calls_of("sendVideo", ok=True)]
    assert all("Pan left · 3 s · 360p (640×360) · 16:9 · 4 fps\nVariant #" in c for c in captions)
    assert len({c.rsplit("#", 1)[1] for c in captions}) == 6  # six variants, six labels

    async def delivered() -> bool:
        return len(await stack.store.sent_videos(ALICE.id, limit=10)) == 6

    await wait_until(delivered, what="six deliveries recorded")
    messages = len(tg.bot_messages(ALICE.id))
    await tg.send_text(ALICE, "/history")
    listing = await tg.wait_message(ALICE.id, "Your videos, 1–5 of 6")
    assert len(tg.bot_messages(ALICE.id)) == messages + 1  # one message, not one per video
    assert _text(listing).count("Pan left · 3 s · 360p · Auto (from the photo) · 4 fps") == 5
    assert [d for _, d in tg.buttons(listing) if d.startswith("job:send:")].__len__() == 5
    await tg.press(ALICE, listing, "hist:1")
    await tg.wait_for(
        lambda: "6–6 of 6" in _text(tg.message(ALICE.id, listing["message_id"])), 5, "page 2"
    )
    page = tg.message(ALICE.id, listing["message_id"])
    assert f"job:send:{first_id}" in [d for _, d in tg.buttons(page)]  # the oldest, last
    assert "hist:0" in [d for _, d in tg.buttons(page)]
    sent = len(tg.calls_of("sendVideo"))
    await tg.press(ALICE, page, f"job:send:{first_id}")
    resent = await tg.wait_for(lambda: tg.calls_of("sendVideo")[sent:], 5, "the video again")
    assert resent[0].ok and not resent[0].files
    assert len(tg.bot_messages(ALICE.id)) == messages + 2


async def test_try_again_after_delivery_makes_another(stack: Stack, tg: FakeTelegram) -> None:
    await stack.start()
    await stack.jobs.pause()
    await choose(tg, BORIS)
    await tg.send_photo(BORIS, photo_bytes())
    accepted = await progress_message(tg, BORIS)
    job_id = job_id_of(tg, accepted)
    await tg.press(BORIS, accepted, f"job:cancel:{job_id}")
    await wait_job(stack, job_id, "cancelled")
    await stack.jobs.resume()
    ended = await wait_button(tg, BORIS.id, f"job:retry:{job_id}")
    await tg.press(BORIS, ended, f"job:retry:{job_id}")
    await wait_video(tg, BORIS)
    await wait_job(
        stack,
        job_id_of(tg, await wait_button(tg, BORIS.id, "job:again:", prefix=True)),
        "completed",
    )
    await tg.press(BORIS, ended, f"job:retry:{job_id}")
    await wait_video(tg, BORIS, count=2)
    assert await stack.store.count_jobs() == 3
    assert not any(
        c.get("text") == "Это видео уже в работе." for c in tg.calls_of("answerCallbackQuery")
    )


# -- 5. languages ---------------------------------------------------------------------------------


async def test_a_ukrainian_user_gets_english_and_switches_mid_steps(
    stack: Stack, tg: FakeTelegram
) -> None:
    oksana = FakeUser(1003, "Оксана", "uk")
    await stack.start()
    menu = await open_menu(tg, oksana)
    assert "FanslyMotion turns a photo" in _text(menu)
    await tg.press(oksana, menu, "nav:new")
    await pick(tg, oksana, "pick:duration:3")
    await wait_button(tg, oksana.id, "pick:resolution:360p")
    await tg.send_text(oksana, "/language")
    picker = await wait_button(tg, oksana.id, "lang:ru")
    assert ("• English", "lang:en") in tg.buttons(picker)
    await tg.press(oksana, picker, "lang:ru")
    # The conversation goes on where it was, now in Russian.
    step = await tg.wait_message(oksana.id, "Шаг 2 из 5")
    assert "Язык: русский" in _text(step) and "Вы выбрали: 3 с" in _text(step)
    assert (await one_live_prompt(tg, oksana))["message_id"] == step["message_id"]
    for data in PICKS[1:]:
        await pick(tg, oksana, data)
    await tg.send_photo(oksana, photo_bytes())
    call = await wait_video(tg, oksana)
    assert "Панорама влево" in call.get("caption") and "Вариант №" in call.get("caption")
    assert await stack.store.get_language(oksana.id) == "ru"


# -- 6. restarts told as they are -----------------------------------------------------------------


@USERS
async def test_restarts_say_what_happens_and_leave_finished_messages_alone(
    stack: Stack, tg: FakeTelegram, user: FakeUser
) -> None:
    say = words(user)
    # 24 fps at 1080p: a render long enough (288 frames) not to end between the first
    # progress bar and the stop, now that a 720p frame takes a few milliseconds.
    await stack.start(fps=24)
    await choose(tg, user)
    await tg.send_photo(user, photo_bytes())
    done = await progress_message(tg, user)
    await wait_video(tg, user)
    await choose(tg, user, duration=12, resolution="1080p")
    await tg.send_photo(user, photo_bytes(640, 480))
    running = await progress_message(tg, user, after=done["message_id"])
    await tg.wait_for(
        lambda: "%" in _text(tg.message(user.id, running["message_id"])), 15, "a progress bar"
    )
    await stack.stop()
    restarted = len(tg.calls)
    bot = await stack.start(fps=24)
    await wait_until(bot.progress.resumed.is_set, what="progress resumed")
    await wait_video(tg, user, count=2, within=60)
    later = [c for c in tg.calls[restarted:] if c.method == "editMessageText"]
    assert not [c for c in later if int(c.get("message_id")) == done["message_id"]]
    said = [str(c.get("text")) for c in later if int(c.get("message_id")) == running["message_id"]]
    # The camera renderer starts over.
    assert any(say["from_start"] in x for x in said), "\n----\n".join(said)
    assert not any(say["from_pass"] in x for x in said)
    assert any(say["restarted"] in x for x in said)


# -- issue 21's bot parts: fps, the subject grid, the one-tap lower resolution ---------------------

SHOT_WORDS = {
    "en": {
        "fps": "• 30 fps",
        "grid": "Where is the subject?",
        "subject": "🎯 Subject: top right",
        "warning": "The photo is small for 720p: it will be enlarged 1.8×",
        "lower": "📉 Make it 360p instead",
        "caption": "360p (640×360) · 16:9 · 30 fps",
    },
    "ru": {
        "fps": "• 30 кадр/с",
        "grid": "Где главный объект?",
        "subject": "🎯 Объект: вверху справа",
        "warning": "Фото маловато для 720p: его придётся увеличить в 1,8 раза",
        "lower": "📉 Сделать в 360p",
        "caption": "360p (640×360) · 16:9 · 30 кадр/с",
    },
}


@USERS
async def test_fps_subject_grid_and_a_lower_resolution_in_one_tap(
    stack: Stack, tg: FakeTelegram, user: FakeUser, tmp_path: Any
) -> None:
    from fanslymotion import video

    say = SHOT_WORDS["ru" if user.language_code == "ru" else "en"]
    await stack.start()
    menu = await open_menu(tg, user)
    await tg.press(user, menu, "nav:new")
    await pick(tg, user, "pick:duration:3")
    await pick(tg, user, "pick:fps:30")  # an option: the resolution step stays, marked
    await tg.wait_for(
        lambda: say["fps"] in [x for x, _ in tg.buttons(tg.message(user.id, menu["message_id"]))],
        5,
        "30 fps marked",
    )
    await pick(tg, user, "pick:resolution:720p")
    await pick(tg, user, "pick:motion:pan_l")
    await pick(tg, user, "pick:subject:open")
    grid = await tg.wait_message(user.id, say["grid"])
    assert grid["message_id"] == menu["message_id"]  # the same live message
    assert len([d for _, d in tg.buttons(grid) if d.startswith("pick:subject:")]) == 10
    await tg.press(user, grid, "pick:subject:2")  # top right
    await tg.wait_for(
        lambda: (
            say["subject"] in [x for x, _ in tg.buttons(tg.message(user.id, menu["message_id"]))]
        ),
        5,
        "the aspect step with the subject",
    )
    await pick(tg, user, "pick:aspect:auto")
    await wait_button(tg, user.id, "back:aspect")
    await tg.send_photo(user, photo_bytes(800, 600))
    # Before rendering: the warning, and the lower resolution one tap away.
    accepted = await progress_message(tg, user)
    first_id = job_id_of(tg, accepted)
    assert say["warning"] in _text(accepted)
    assert (say["lower"], f"job:lower:{first_id}") in tg.buttons(accepted)
    await tg.press(user, accepted, f"job:lower:{first_id}")
    first = await wait_job(stack, first_id, "cancelled")
    assert (first.resolution, first.fps, first.focus) == ("720p", 30, {"x": 0.8333, "y": 0.1667})
    call = await wait_video(tg, user)
    assert say["caption"] in call.get("caption")
    path = tmp_path / "lower.mp4"
    path.write_bytes(tg.uploaded(call))
    info = video.probe(path)
    assert (info.width, info.height, info.frames) == (640, 360, 3 * 30)
    jobs = await stack.store.list_jobs(user_id=user.id, status="completed", limit=5)
    assert [(j.resolution, j.fps, j.focus) for j in jobs] == [("360p", 30, first.focus)]
    assert not upscale_warned(jobs[0])
    assert await stack.store.count_jobs() == 2


def upscale_warned(job: Any) -> bool:
    return any(w.get("code") == "upscale" for w in job.warnings)
