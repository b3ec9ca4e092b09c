"""Real users' habits through the real Dispatcher and the fake Bot API: the photo first, repeated
taps, albums, old keyboards, wrong files, HEIC, and the language switch mid-job."""

from __future__ import annotations

import copy
import io

from PIL import Image

from .bot_stack import (
    ALICE,
    BORIS,
    Stack,
    _text,
    choose,
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


async def pick(tg: FakeTelegram, user: FakeUser, data: str) -> None:
    message = await wait_button(tg, user.id, data)
    await tg.press(user, message, data)


async def test_photo_first_is_kept_then_last_settings_are_offered(
    stack: Stack, tg: FakeTelegram
) -> None:
    await stack.start()
    await tg.send_photo(ALICE, photo_bytes(320, 240))
    first = await tg.wait_message(ALICE.id, "First choose the video settings")
    assert "Step 1 of 5" in _text(first)
    for data in ("pick:duration:3", "pick:resolution:360p", "pick:motion:micro", "pick:aspect:1x1"):
        await pick(tg, ALICE, data)
    await progress_message(tg, ALICE)  # straight into the queue: the photo is never asked for
    call = await wait_video(tg, ALICE)
    assert (int(call.get("width")), int(call.get("height"))) == (360, 360)
    assert not any("Step 5 of 5" in _text(m) for m in tg.bot_messages(ALICE.id))

    # next time: "as last time" on top of the first step
    await tg.send_photo(ALICE, photo_bytes(320, 240, seed=5))
    offer = await wait_button(tg, ALICE.id, "nav:last")
    assert "3 s · 360p · Micro · 1:1" in tg.buttons(offer)[0][0]
    await tg.press(ALICE, offer, "nav:last")
    call = await wait_video(tg, ALICE, count=2)
    assert (int(call.get("width")), int(call.get("height"))) == (360, 360)
    assert await stack.store.count_jobs() == 2


async def test_repeated_taps_make_one_job(stack: Stack, tg: FakeTelegram) -> None:
    await stack.start()
    await choose(tg, ALICE)
    await tg.send_photo(ALICE, photo_bytes())
    first = await wait_video(tg, ALICE)
    video = tg.message(ALICE.id, first.result["message_id"])
    first_id = job_id_of(tg, video)
    for _ in range(3):
        await tg.press(ALICE, video, f"job:again:{first_id}")
    await tg.wait_call(
        "answerCallbackQuery", lambda c: c.get("text") == "This one is already on its way."
    )
    await wait_video(tg, ALICE, count=2)
    answers = [c.get("text") for c in tg.calls_of("answerCallbackQuery")]
    assert answers.count("This one is already on its way.") == 2
    assert await stack.store.count_jobs() == 2

    # other motion, picked twice on the same keyboard: one job, the second tap is outdated
    await tg.press(ALICE, video, f"job:other:{first_id}")
    step = await wait_button(tg, ALICE.id, "pick:motion:dolly_in")
    assert "Same photo, another camera motion" in _text(step) and "Step 3" not in _text(step)
    await tg.press(ALICE, step, "pick:motion:dolly_in")
    await tg.press(ALICE, step, "pick:motion:tilt_up", seen=True)  # tapped before it changed
    await wait_video(tg, ALICE, count=3)
    await tg.wait_call("answerCallbackQuery", lambda c: "outdated" in str(c.get("text")))
    assert await stack.store.count_jobs() == 3


async def test_an_album_gets_one_answer(stack: Stack, tg: FakeTelegram) -> None:
    await stack.start()
    await choose(tg, ALICE)
    before = len(tg.bot_messages(ALICE.id))
    for seed in range(3):
        await tg.send_photo(ALICE, photo_bytes(seed=seed), media_group_id="album-1")
    accepted = await progress_message(tg, ALICE)
    assert "album" in _text(accepted)
    await wait_video(tg, ALICE)
    await tg.send_text(ALICE, "/status")  # handled after the album: every photo was seen
    await tg.wait_message(ALICE.id, "no videos in progress")
    assert await stack.store.count_jobs() == 1
    # the accepted message, the video and the /status answer: nothing per extra photo
    assert len(tg.bot_messages(ALICE.id)) == before + 3


async def test_old_menus_and_cancelled_steps_are_outdated(stack: Stack, tg: FakeTelegram) -> None:
    await stack.start()
    old = copy.deepcopy(await open_menu(tg, ALICE))  # as the user saw it
    new = await open_menu(tg, ALICE)
    await tg.wait_for(  # retired: its buttons are gone
        lambda: not tg.buttons(tg.message(ALICE.id, old["message_id"])), 5, "the old menu retired"
    )
    await tg.press(ALICE, old, "nav:new", seen=True)  # tapped before its buttons went
    await tg.wait_call("answerCallbackQuery", lambda c: "menu is outdated" in str(c.get("text")))
    assert tg.message(ALICE.id, old["message_id"])["text"] == old["text"]  # changed nothing
    await tg.press(ALICE, new, "nav:new")
    step = await wait_button(tg, ALICE.id, "pick:duration:6")
    await tg.press(ALICE, step, "pick:duration:6")
    step = copy.deepcopy(await wait_button(tg, ALICE.id, "pick:resolution:480p"))
    await tg.send_text(ALICE, "/cancel")
    await tg.wait_message(ALICE.id, "OK, stopped")
    await tg.wait_for(  # the step is retired with the conversation
        lambda: not tg.buttons(tg.message(ALICE.id, step["message_id"])), 5, "the step retired"
    )
    answered = len(tg.calls_of("answerCallbackQuery"))
    await tg.press(ALICE, step, "pick:resolution:480p", seen=True)
    await tg.wait_for(
        lambda: len(tg.calls_of("answerCallbackQuery")) > answered, 5, "an answer to the tap"
    )
    assert "outdated" in str(tg.calls_of("answerCallbackQuery")[-1].get("text"))
    assert "Step 2 of 5" in _text(tg.message(ALICE.id, step["message_id"]))  # not moved on


async def test_wrong_input_names_itself_and_the_step_stays(stack: Stack, tg: FakeTelegram) -> None:
    await stack.start()
    await tg.send_document(ALICE, b"%PDF-1.4\n", "invoice.pdf", "application/pdf")
    outside = await tg.wait_message(ALICE.id, "That's a PDF, not an image")
    assert "Nice photo" not in _text(outside) and ("🏠 Menu", "nav:menu") in tg.buttons(outside)
    menu = await open_menu(tg, ALICE)
    await tg.press(ALICE, menu, "nav:new")
    await wait_button(tg, ALICE.id, "pick:duration:3")
    await tg.send_text(ALICE, "ten seconds please")
    typed = await tg.wait_message(ALICE.id, "choose with the buttons above")
    # one short line, not a copy of the step: the step above stays the one live prompt
    assert "Step 1 of 5" not in _text(typed) and not tg.buttons(typed)
    assert "pick:duration:10" in [
        d for _, d in tg.buttons(tg.message(ALICE.id, menu["message_id"]))
    ]
    await choose(tg, ALICE)
    await tg.send_document(ALICE, b"PK\x03\x04", "photos.zip", "application/zip")
    again = await tg.wait_message(ALICE.id, "That's an archive, not an image")
    assert "Step 5 of 5" not in _text(again) and not tg.buttons(again)
    await tg.send_text(ALICE, "here")
    hint = await tg.wait_message(ALICE.id, "That's a text message. Please send a photo")
    assert not tg.buttons(hint)
    step = await wait_button(tg, ALICE.id, "back:aspect")  # the step itself, still live
    assert "Step 5 of 5" in _text(step)
    assert await stack.store.count_jobs() == 0


def heic_bytes(width: int = 320, height: int = 240) -> bytes:
    import pillow_heif

    image = Image.open(io.BytesIO(photo_bytes(width, height))).convert("RGB")
    buffer = io.BytesIO()
    pillow_heif.from_pillow(image).save(buffer, quality=80)
    return buffer.getvalue()


async def test_heic_files_are_read_or_refused_with_advice(stack: Stack, tg: FakeTelegram) -> None:
    await stack.start()
    await choose(tg, BORIS)
    await tg.send_document(BORIS, b"\x00\x00\x00\x18ftypheic" + bytes(40), "IMG_1.HEIC", None)
    await tg.wait_message(BORIS.id, "Отправьте его как фото")
    await tg.send_document(BORIS, heic_bytes(), "IMG_2.HEIC", "image/heic")
    call = await wait_video(tg, BORIS)
    assert (int(call.get("width")), int(call.get("height"))) == (640, 360)  # 360p, 16:9 auto


async def test_after_a_cancel_same_photo_other_settings(stack: Stack, tg: FakeTelegram) -> None:
    await stack.start()
    await stack.jobs.pause()
    await choose(tg, ALICE)
    await tg.send_photo(ALICE, photo_bytes())
    accepted = await progress_message(tg, ALICE)
    job_id = job_id_of(tg, accepted)
    await tg.press(ALICE, accepted, f"job:cancel:{job_id}")
    await wait_job(stack, job_id, "cancelled")
    await stack.jobs.resume()
    ended = await wait_button(tg, ALICE.id, f"job:settings:{job_id}")
    # "Try again", tapped twice: one more job
    await tg.press(ALICE, ended, f"job:retry:{job_id}")
    await tg.press(ALICE, ended, f"job:retry:{job_id}")
    await tg.wait_call(
        "answerCallbackQuery", lambda c: c.get("text") == "This one is already on its way."
    )
    first = await wait_video(tg, ALICE)
    assert await stack.store.count_jobs() == 2

    # "Same photo, other settings": the steps, then straight into the queue
    await tg.press(ALICE, ended, f"job:settings:{job_id}")
    for data in ("pick:duration:3", "pick:resolution:360p", "pick:motion:micro", "pick:aspect:1x1"):
        await pick(tg, ALICE, data)
    call = await wait_video(tg, ALICE, count=2)
    assert (int(call.get("width")), int(call.get("height"))) == (360, 360)
    assert await stack.store.count_jobs() == 3

    # /history says which video can't be re-sent instead of skipping it
    tg.files.pop(str(first.result["video"]["file_id"]))
    await tg.send_text(ALICE, "/history")
    listing = await tg.wait_message(ALICE.id, "Your videos")
    first_id = job_id_of(tg, tg.message(ALICE.id, first.result["message_id"]))
    await tg.press(ALICE, listing, f"job:send:{first_id}")
    gone = await tg.wait_message(ALICE.id, "can no longer be re-sent")
    assert f"job:again:{first_id}" in [d for _, d in tg.buttons(gone)]  # it can be made again
    assert "Pan left · 3 s · 360p" in _text(gone)


async def test_lang_switch_reaches_the_job_and_the_command_menu(
    stack: Stack, tg: FakeTelegram
) -> None:
    await stack.start()
    await stack.jobs.pause()
    await choose(tg, BORIS)
    await tg.send_photo(BORIS, photo_bytes())
    accepted = await progress_message(tg, BORIS)
    assert "приостановлена оператором" in _text(accepted) and "через около" not in _text(accepted)
    await tg.send_text(BORIS, "/lang")
    picker = await wait_button(tg, BORIS.id, "lang:en")
    assert ("• Русский", "lang:ru") in tg.buttons(picker)
    await tg.press(BORIS, picker, "lang:en")
    await tg.wait_for(
        lambda: "Paused by the operator" in _text(tg.message(BORIS.id, accepted["message_id"])),
        5,
        "the progress message in English",
    )
    assert tg.commands[f"chat:{BORIS.id}"] == tg.commands[""]  # the English menu, in his chat
    await stack.jobs.resume()
    call = await wait_video(tg, BORIS)
    assert "Variant #" in call.get("caption") and "seed" not in call.get("caption").lower()

    async def english_again() -> bool:
        return await stack.store.get_language(BORIS.id) == "en"

    await wait_until(english_again, what="the language stored")
