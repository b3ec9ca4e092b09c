"""The Telegram bot end to end: the real Dispatcher long-polls the fake Bot API server.

No module of ours is mocked: a real SQLite store, the real queue and GPU thread rendering real
(tiny) MP4s with the camera-motion renderer, and the bot talking HTTP to `FakeTelegram` on
127.0.0.1. Each test plays one or more users through the conversation.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fanslymotion import video
from fanslymotion.bot_views import variant_label

from .bot_stack import (
    ALICE,
    BORIS,
    TOKEN,
    Stack,
    _text,
    choose,
    edits_of,
    job_id_of,
    open_menu,
    outbox_scans,
    progress_message,
    wait_button,
    wait_job,
    wait_until,
    wait_video,
)
from .conftest import photo_bytes
from .fake_telegram import FakeTelegram, FakeUser

# -- the conversation ----------------------------------------------------------------------------


@pytest.mark.serial  # edit spacing of the budget
async def test_full_conversation_to_a_delivered_mp4(
    stack: Stack, tg: FakeTelegram, tmp_path: Path
) -> None:
    bot = await stack.start(fps=12)
    assert bot.status() == {"enabled": True, "state": "polling", "reason": bot.status()["reason"]}
    assert tg.webhook_deleted == 1
    assert {c["command"] for c in tg.commands[""]} >= {"start", "help", "status", "history"}
    assert "ru" in tg.commands

    # Menu, into step 1, Back to the menu, in again: every step has Back.
    menu = await open_menu(tg, ALICE)
    assert "FanslyMotion turns a photo" in _text(menu)
    await tg.press(ALICE, menu, "nav:new")
    step = await wait_button(tg, ALICE.id, "pick:duration:6")
    assert "Step 1 of 5" in _text(step)
    await tg.press(ALICE, step, "back:menu")
    menu = await wait_button(tg, ALICE.id, "nav:new")
    await tg.press(ALICE, menu, "nav:new")
    step = await wait_button(tg, ALICE.id, "pick:duration:6")
    await tg.press(ALICE, step, "6 s")
    step = await wait_button(tg, ALICE.id, "pick:resolution:720p")
    assert "Step 2 of 5" in _text(step) and "6 s" in _text(step)
    await tg.press(ALICE, step, "back:duration")
    step = await wait_button(tg, ALICE.id, "pick:duration:6")
    assert "• 6 s" in [text for text, _ in tg.buttons(step)]  # the choice is remembered
    await tg.press(ALICE, step, "pick:duration:6")
    step = await wait_button(tg, ALICE.id, "pick:resolution:720p")
    await tg.press(ALICE, step, "720p")
    step = await wait_button(tg, ALICE.id, "pick:motion:dolly_in")
    text = _text(step)
    assert "Step 3 of 5" in text
    assert "Pan left — the camera turns left" in text  # a one-line description per preset
    assert text.count("\n▸ ") == 6 and "• " not in text  # "•" only marks a choice
    await tg.press(ALICE, step, "Pan left")
    step = await wait_button(tg, ALICE.id, "pick:aspect:auto")
    assert "Step 4 of 5" in _text(step)
    assert tg.buttons(step)[0] == ("Auto (from the photo)", "pick:aspect:auto")
    await tg.press(ALICE, step, "pick:aspect:auto")
    step = await wait_button(tg, ALICE.id, "back:aspect")
    assert "Step 5 of 5" in _text(step) and "20 MB" in _text(step)
    # the whole conversation edited one message
    assert len({m["message_id"] for m in tg.bot_messages(ALICE.id)}) == 1

    photo = await tg.send_photo(ALICE, photo_bytes(320, 240))
    accepted = await progress_message(tg, ALICE)
    job_id = job_id_of(tg, accepted)
    first = tg.calls_of("sendMessage")[-1]
    assert "Accepted" in first.get("text")
    assert "#1 in the queue" in first.get("text") or "Rendering has started" in first.get("text")

    call = await wait_video(tg, ALICE)
    job = await wait_job(stack, job_id, "completed")
    assert job.source == "telegram" and job.chat_id == ALICE.id
    assert job.message_id == photo["message_id"]
    assert job.progress_message_id == accepted["message_id"]
    assert (job.duration, job.resolution, job.motion_preset, job.aspect) == (
        6,
        "720p",
        "pan_l",
        "auto",
    )

    # sendVideo: the size, duration, streaming flag, a caption with parameters and seed
    assert int(call.get("width")) == 1280 and int(call.get("height")) == 720
    assert int(call.get("duration")) == 6
    assert call.get("supports_streaming") is True
    caption = call.get("caption")
    assert "Pan left" in caption and f"Variant #{variant_label(job.seed)}" in caption
    assert str(job.seed) not in caption and "6 s" in caption and "16:9 · 12 fps" in caption
    assert "720p (1280×720)" in caption
    path = tmp_path / "received.mp4"
    path.write_bytes(tg.uploaded(call))
    info = video.probe(path)
    assert info.frames == 6 * 12
    assert (info.width, info.height) == (1280, 720)
    assert info.fps == pytest.approx(12, abs=0.01)
    # the buttons under the video
    sent = tg.message(ALICE.id, call.result["message_id"])
    assert [data for _, data in tg.buttons(sent)] == [
        f"job:again:{job_id}",
        f"job:other:{job_id}",
        "nav:menu",
    ]
    assert tg.calls_of("sendChatAction") and all(
        c.get("action") == "upload_video" for c in tg.calls_of("sendChatAction")
    )

    # The accepted message itself became the progress bar, then "ready"; edits were spaced
    # by the interval and never repeated a text (no "message is not modified").
    edits = edits_of(tg, accepted)
    assert any("%" in c.get("text") and "░" in c.get("text") for c in edits)  # a bar
    assert any("Rendering" in c.get("text") for c in edits)
    final = await tg.wait_for(
        lambda: "Here comes the video" in _text(tg.message(ALICE.id, accepted["message_id"])),
        5,
        "ready",
    )
    assert final
    assert all(c.ok for c in edits), [c.description for c in edits if not c.ok]
    texts = [c.get("text") for c in edits]
    assert all(a != b for a, b in itertools.pairwise(texts))
    times = [c.at for c in edits]
    assert all(b - a >= 0.3 * 0.9 for a, b in itertools.pairwise(times)), times

    async def recorded() -> bool:  # the outbox commits `sent` just after Telegram's answer
        delivery = await stack.store.get_delivery(job_id)
        return delivery is not None and delivery.status != "sending"

    await wait_until(recorded, what="the delivery recorded")
    delivery = await stack.store.get_delivery(job_id)
    assert delivery is not None and delivery.status == "sent" and delivery.file_id


async def test_again_other_motion_and_history(stack: Stack, tg: FakeTelegram) -> None:
    await stack.start()
    step = await choose(tg, ALICE)
    await tg.send_photo(ALICE, photo_bytes(320, 240, seed=3))
    first_call = await wait_video(tg, ALICE)
    first_id = job_id_of(tg, tg.message(ALICE.id, first_call.result["message_id"]))
    first = await wait_job(stack, first_id, "completed")
    await wait_until(
        lambda: (
            not (stack.settings.data_dir / "inputs").exists()
            or not any((stack.settings.data_dir / "inputs").iterdir())
        ),
        what="the input photo retired",
    )
    video_message = tg.message(ALICE.id, first_call.result["message_id"])

    # Again, new seed: same photo (fetched again from Telegram: the input was deleted).
    downloads = len(tg.calls_of("getFile"))
    await tg.press(ALICE, video_message, f"job:again:{first_id}")
    second_call = await wait_video(tg, ALICE, count=2)
    assert len(tg.calls_of("getFile")) == downloads + 1
    second_id = job_id_of(tg, tg.message(ALICE.id, second_call.result["message_id"]))
    second = await wait_job(stack, second_id, "completed")
    assert second_id != first_id
    assert (second.duration, second.resolution, second.motion_preset) == (3, "360p", "pan_l")
    assert second.seed != first.seed

    # Same photo, other motion: the motion step (Back leads to the menu), then straight on.
    await tg.press(ALICE, video_message, f"job:other:{first_id}")
    step = await wait_button(tg, ALICE.id, "pick:motion:dolly_in")
    assert ("⬅️ Back", "back:menu") in tg.buttons(step)
    await tg.press(ALICE, step, "pick:motion:dolly_in")
    third_call = await wait_video(tg, ALICE, count=3)
    third_id = job_id_of(tg, tg.message(ALICE.id, third_call.result["message_id"]))
    third = await wait_job(stack, third_id, "completed")
    assert third.motion_preset == "dolly_in" and third.resolution == "360p"
    assert "Dolly in" in third_call.get("caption")

    # /history: one message listing the three videos, newest first, one button each; a button
    # re-sends its video by the cached file_id: no upload.
    before = len(tg.calls_of("sendVideo"))
    messages = len(tg.bot_messages(ALICE.id))
    await tg.send_text(ALICE, "/history")
    listing = await tg.wait_message(ALICE.id, "Your videos, 1–3 of 3")
    assert len(tg.bot_messages(ALICE.id)) == messages + 1
    assert "1. Dolly in · 3 s · 360p" in _text(listing) and "3. Pan left" in _text(listing)
    ids = (third_id, second_id, first_id)
    assert [d for _, d in tg.buttons(listing) if d.startswith("job:")] == [
        f"job:send:{job_id}" for job_id in ids
    ]
    for job_id in ids:
        await tg.press(ALICE, listing, f"job:send:{job_id}")
    await tg.wait_for(lambda: len(tg.calls_of("sendVideo")) == before + 3, 10, "history")
    resent = tg.calls_of("sendVideo")[before:]
    assert all(not c.files for c in resent)
    deliveries = [await stack.store.get_delivery(j) for j in (first_id, second_id, third_id)]
    assert {c.get("video") for c in resent} == {d.file_id for d in deliveries if d is not None}
    assert all(c.ok for c in resent)


async def test_cancel_while_rendering(stack: Stack, tg: FakeTelegram) -> None:
    await stack.start(fps=12)
    await choose(tg, ALICE, duration=12, resolution="720p")
    await tg.send_photo(ALICE, photo_bytes(640, 480))
    accepted = await progress_message(tg, ALICE)
    job_id = job_id_of(tg, accepted)

    def rendering() -> bool:
        return "%" in _text(tg.message(ALICE.id, accepted["message_id"]))

    await tg.wait_for(rendering, 15, "a progress bar")
    job = await stack.store.get_job(job_id)
    assert job is not None and job.status == "processing"
    await tg.press(ALICE, tg.message(ALICE.id, accepted["message_id"]), f"job:cancel:{job_id}")
    answer = await tg.wait_call("answerCallbackQuery", lambda c: c.get("text") == "Cancelling…")
    assert answer.ok
    job = await wait_job(stack, job_id, "cancelled", within=10)
    assert job.completed_at is not None
    await tg.wait_for(
        lambda: "Cancelled" in _text(tg.message(ALICE.id, accepted["message_id"])), 5, "cancelled"
    )
    assert ("🏠 Menu", "nav:menu") in tg.buttons(tg.message(ALICE.id, accepted["message_id"]))
    await outbox_scans(stack.bot, 2)  # a delivery would have gone out by now
    assert not tg.calls_of("sendVideo")
    assert await stack.store.get_delivery(job_id) is None
    assert not list((stack.settings.data_dir / "hot").glob("*.mp4"))


async def test_status_and_cancel_of_a_queued_job(stack: Stack, tg: FakeTelegram) -> None:
    await stack.start()
    await stack.jobs.pause()
    await choose(tg, ALICE)
    await tg.send_photo(ALICE, photo_bytes())
    accepted = await progress_message(tg, ALICE)
    job_id = job_id_of(tg, accepted)
    assert "#1 in the queue" in _text(accepted)

    await tg.send_text(ALICE, "/status")
    listing = await tg.wait_message(ALICE.id, "Your videos in progress")
    assert "#1 in the queue" in _text(listing) and "Pan left · 3 s · 360p" in _text(listing)
    await tg.press(ALICE, listing, f"job:cancel:{job_id}")
    await wait_job(stack, job_id, "cancelled", within=5)
    await tg.wait_for(
        lambda: "Cancelled" in _text(tg.message(ALICE.id, accepted["message_id"])), 5, "cancelled"
    )
    # pressing the old Cancel button again is harmless
    await tg.press(ALICE, tg.message(ALICE.id, accepted["message_id"]), "nav:menu")
    await tg.send_text(ALICE, "/status")
    await tg.wait_message(ALICE.id, "no videos in progress")
    await stack.jobs.resume()


async def test_restart_mid_render_then_delivery_once(stack: Stack, tg: FakeTelegram) -> None:
    await stack.start(fps=12)
    await choose(tg, ALICE, duration=12, resolution="720p")
    await tg.send_photo(ALICE, photo_bytes(640, 480))
    accepted = await progress_message(tg, ALICE)
    job_id = job_id_of(tg, accepted)
    await tg.wait_for(
        lambda: "%" in _text(tg.message(ALICE.id, accepted["message_id"])), 15, "a progress bar"
    )
    await stack.stop()  # mid-render: the job goes back to the queue
    stopped = time.monotonic()
    assert not tg.calls_of("sendVideo")

    await stack.start(fps=12)
    call = await wait_video(tg, ALICE, within=60)
    job = await wait_job(stack, job_id, "completed")
    assert int(call.get("width")) == job.width
    # progress edits resumed on the same message after the restart
    after = [c for c in edits_of(tg, accepted) if c.at > stopped and c.ok]
    assert any("%" in c.get("text") for c in after)
    await tg.wait_for(
        lambda: "Here comes the video" in _text(tg.message(ALICE.id, accepted["message_id"])),
        5,
        "ready",
    )
    await outbox_scans(stack.bot, 3)  # three delivery polls: nothing is sent twice
    assert len([c for c in tg.calls_of("sendVideo") if c.files]) == 1
    delivery = await stack.store.get_delivery(job_id)
    assert delivery is not None and delivery.status == "sent"


async def test_upload_cut_by_a_crash_is_offered_not_resent(stack: Stack, tg: FakeTelegram) -> None:
    """A process that died between the upload and the commit of `sent` leaves the row `sending`.

    Telegram may or may not have the video and has no idempotency key: the next process offers
    it with a button instead of sending a possible second copy, and sends it when asked.
    """
    await stack.start(fps=4)
    await choose(tg, BORIS)
    await tg.send_photo(BORIS, photo_bytes(320, 240))
    job_id = job_id_of(tg, await progress_message(tg, BORIS))
    await wait_video(tg, BORIS)
    await stack.stop()
    # What a SIGKILL right after Telegram took the upload leaves behind.
    with sqlite3.connect(stack.data_dir / "fanslymotion.sqlite3") as db:
        db.execute("UPDATE deliveries SET status = 'sending' WHERE job_id = ?", (job_id,))

    await stack.start(fps=4)
    offer = await wait_button(tg, BORIS.id, f"job:resend:{job_id}")
    assert "перезапустился" in _text(offer)  # in Boris's language
    await outbox_scans(stack.bot, 3)  # three delivery polls: nothing went out on its own
    assert len(tg.calls_of("sendVideo", ok=True)) == 1
    delivery = await stack.store.get_delivery(job_id)
    assert delivery is not None and delivery.status == "interrupted"

    await tg.press(BORIS, offer, f"job:resend:{job_id}")
    await wait_video(tg, BORIS, count=2)

    async def sent() -> bool:
        delivery = await stack.store.get_delivery(job_id)
        return delivery is not None and delivery.status == "sent"

    await wait_until(sent, what="the delivery recorded as sent")
    await tg.press(BORIS, offer, f"job:resend:{job_id}")  # a second tap sends nothing more
    await tg.wait_call("answerCallbackQuery", lambda c: "уже отправлено" in str(c.get("text")))
    await outbox_scans(stack.bot, 2)
    assert len(tg.calls_of("sendVideo", ok=True)) == 2


@pytest.mark.serial  # its one edit must beat a 12-frame render
async def test_final_progress_edit_after_a_restart(stack: Stack, tg: FakeTelegram) -> None:
    """The process stopped before a finished job's last edit: the next one sends it."""
    await stack.start(bot_progress_interval=60)  # one edit, then a minute of silence
    await choose(tg, ALICE)
    await tg.send_photo(ALICE, photo_bytes())
    accepted = await progress_message(tg, ALICE)
    await wait_video(tg, ALICE)
    assert "Here comes the video" not in _text(tg.message(ALICE.id, accepted["message_id"]))
    await stack.stop()

    await stack.start()
    await tg.wait_for(
        lambda: "Here comes the video" in _text(tg.message(ALICE.id, accepted["message_id"])),
        5,
        "the final edit",
    )
    await outbox_scans(stack.bot, 2)  # delivery polls of the new process: nothing sent twice
    assert len(tg.calls_of("sendVideo")) == 1


async def test_failed_delivery_is_retried_across_a_restart(stack: Stack, tg: FakeTelegram) -> None:
    """Telegram fails uploads: the outbox keeps the video, retries, and a new process sends it."""
    await stack.start()
    tg.upload_failures = 3
    await choose(tg, ALICE)
    await tg.send_photo(ALICE, photo_bytes())
    job_id = job_id_of(tg, await progress_message(tg, ALICE))
    await wait_job(stack, job_id, "completed")

    async def failed_twice() -> bool:
        delivery = await stack.store.get_delivery(job_id)
        return delivery is not None and delivery.attempts >= 2

    await wait_until(failed_twice, what="two failed uploads")
    await stack.stop()
    await stack.start()
    call = await wait_video(tg, ALICE)
    assert int(call.get("chat_id")) == ALICE.id

    async def sent() -> bool:
        delivery = await stack.store.get_delivery(job_id)
        return delivery is not None and delivery.status == "sent" and delivery.attempts == 4

    await wait_until(sent, what="the delivery marked sent")
    assert [c.status for c in tg.calls_of("sendVideo")] == [500, 500, 500, 200]


async def test_conversation_survives_a_restart(stack: Stack, tg: FakeTelegram) -> None:
    await stack.start()
    menu = await open_menu(tg, ALICE)
    await tg.press(ALICE, menu, "nav:new")
    step = await wait_button(tg, ALICE.id, "pick:duration:3")
    await tg.press(ALICE, step, "pick:duration:3")
    step = await wait_button(tg, ALICE.id, "pick:resolution:360p")
    await stack.stop()

    await stack.start()
    await tg.press(ALICE, step, "pick:resolution:360p")
    step = await wait_button(tg, ALICE.id, "pick:motion:micro")
    assert "Your choice: 3 s · 360p" in _text(step)
    await tg.press(ALICE, step, "pick:motion:micro")
    step = await wait_button(tg, ALICE.id, "pick:aspect:1x1")
    await tg.press(ALICE, step, "pick:aspect:1x1")
    await wait_button(tg, ALICE.id, "back:aspect")
    await tg.send_photo(ALICE, photo_bytes())
    call = await wait_video(tg, ALICE)
    assert (int(call.get("width")), int(call.get("height"))) == (360, 360)


# -- Telegram misbehaving --------------------------------------------------------------------------


@pytest.mark.serial  # retry_after windows timed
async def test_429_storm_on_progress_edits(stack: Stack, tg: FakeTelegram) -> None:
    await stack.start(fps=12)
    await choose(tg, ALICE, duration=6, resolution="720p")
    tg.edit_storm = 3
    tg.storm_retry_after = 1
    await tg.send_photo(ALICE, photo_bytes(640, 480))
    accepted = await progress_message(tg, ALICE)
    await wait_video(tg, ALICE, within=60)
    await tg.wait_for(
        lambda: "Here comes the video" in _text(tg.message(ALICE.id, accepted["message_id"])),
        10,
        "ready",
    )
    edits = [c for c in tg.calls_of("editMessageText") if int(c.get("chat_id")) == ALICE.id]
    refused = [c for c in edits if c.status == 429]
    assert len(refused) == 3
    for call in refused:  # nothing was edited in that chat before retry_after had passed
        later = [c for c in edits if c.at > call.at]
        assert later and later[0].at - call.at >= 1.0 - 0.05


async def test_blocked_user_is_undeliverable_and_harmless(stack: Stack, tg: FakeTelegram) -> None:
    bot = await stack.start()
    await choose(tg, ALICE)
    await tg.send_photo(ALICE, photo_bytes())
    accepted = await progress_message(tg, ALICE)
    job_id = job_id_of(tg, accepted)
    tg.block(ALICE.id)
    job = await wait_job(stack, job_id, "completed")

    async def undeliverable() -> bool:
        delivery = await stack.store.get_delivery(job_id)
        return delivery is not None and delivery.status == "undeliverable"

    await wait_until(undeliverable, what="undeliverable")
    delivery = await stack.store.get_delivery(job_id)
    assert delivery is not None and "blocked" in (delivery.last_error or "")
    assert job.status == "completed"
    await outbox_scans(stack.bot, 2)  # more delivery polls: the job untouched, nothing retried
    again = await stack.store.get_job(job_id)
    assert again is not None and again.status == "completed"
    delivery = await stack.store.get_delivery(job_id)
    assert delivery is not None and delivery.attempts == 1
    assert not tg.calls_of("sendVideo", ok=True)
    # the bot goes on serving everyone else
    assert bot.status()["state"] == "polling"
    menu = await open_menu(tg, BORIS)
    assert menu


async def test_video_over_the_upload_limit_is_reencoded(
    stack: Stack, tg: FakeTelegram, tmp_path: Path
) -> None:
    await stack.start(fps=12)
    tg.upload_limit = 60_000  # the server's limit, unknown to the bot until it answers 413
    await choose(tg, ALICE, duration=6, resolution="480p")
    await tg.send_photo(ALICE, photo_bytes(640, 480))
    call = await wait_video(tg, ALICE, within=60)
    refused = [c for c in tg.calls_of("sendVideo") if c.status == 413]
    assert refused, "the original should have been too large"
    data = tg.uploaded(call)
    assert len(data) <= 60_000
    path = tmp_path / "small.mp4"
    path.write_bytes(data)
    info = video.probe(path)
    assert info.frames == 6 * 12
    assert (info.width, info.height) == (int(call.get("width")), int(call.get("height")))


# -- bad uploads, languages, limits ----------------------------------------------------------------


async def test_bad_uploads_are_refused_and_the_step_stays(stack: Stack, tg: FakeTelegram) -> None:
    await stack.start()
    await choose(tg, ALICE)

    await tg.send_document(ALICE, b"hello, not a photo\n", "notes.txt", "text/plain")
    await tg.wait_message(ALICE.id, "not an image")
    big = b"\xff\xd8\xff\xe0" + bytes(21 * 1024 * 1024)
    await tg.send_document(ALICE, big, "huge.jpg", "image/jpeg")
    first = await tg.wait_message(ALICE.id, "larger than 20 MB")
    assert not tg.calls_of("getFile")  # refused from its declared size, never downloaded
    await tg.send_document(ALICE, big, "huge.jpg", "image/jpeg", declare_size=False)
    await tg.wait_message(ALICE.id, "larger than 20 MB", after=first["message_id"])
    assert tg.calls_of("getFile", ok=False)[0].description == "Bad Request: file is too big"
    corrupt = photo_bytes()[:300]
    await tg.send_document(ALICE, corrupt, "broken.jpg", "image/jpeg")
    await tg.wait_message(ALICE.id, "could not use that image: it is damaged or cut short")
    await tg.send_text(ALICE, "here you go")
    await tg.wait_message(ALICE.id, "send a photo for this step")
    assert not tg.calls_of("sendVideo")
    assert await stack.store.count_jobs() == 0
    texts = [_text(m) for m in tg.bot_messages(ALICE.id)]
    assert not any("Traceback" in x or "/tmp" in x or "Error:" in x for x in texts)

    # still on the photo step: an image sent as a file is taken
    await tg.send_document(ALICE, photo_bytes(fmt="PNG"), "photo.png", "image/png")
    await progress_message(tg, ALICE)
    await wait_video(tg, ALICE)

    # /cancel leaves the conversation: a photo now only gets a hint
    await choose(tg, ALICE)
    await tg.send_text(ALICE, "/cancel")
    await tg.wait_message(ALICE.id, "OK, stopped")
    await tg.send_photo(ALICE, photo_bytes())
    await tg.wait_message(ALICE.id, "First choose the video settings")
    assert await stack.store.count_jobs() == 1


async def test_russian_and_language_switch(stack: Stack, tg: FakeTelegram) -> None:
    await stack.start()
    menu = await open_menu(tg, BORIS)
    assert "превращает фото в короткое видео" in _text(menu)
    assert tg.buttons(menu)[0][0] == "🎬 Фото → видео"
    await tg.press(BORIS, menu, "nav:new")
    step = await wait_button(tg, BORIS.id, "pick:duration:3")
    assert "Шаг 1 из 5" in _text(step)
    await tg.press(BORIS, step, "3 с")
    step = await wait_button(tg, BORIS.id, "pick:resolution:360p")
    await tg.press(BORIS, step, "360p")
    step = await wait_button(tg, BORIS.id, "pick:motion:pan_l")
    assert "Панорама влево — камера поворачивается влево" in _text(step)
    await tg.press(BORIS, step, "Панорама влево")
    step = await wait_button(tg, BORIS.id, "pick:aspect:auto")
    await tg.press(BORIS, step, "Авто")
    await wait_button(tg, BORIS.id, "back:aspect")
    await tg.send_photo(BORIS, photo_bytes())
    accepted = await progress_message(tg, BORIS)
    assert "Принято" in _text(accepted)
    call = await wait_video(tg, BORIS)
    assert "Панорама влево" in call.get("caption")
    await tg.wait_for(
        lambda: "Готово" in _text(tg.message(BORIS.id, accepted["message_id"])), 5, "ready"
    )

    # A refused photo is explained in Russian, details included.
    await choose(tg, BORIS)
    await tg.send_photo(BORIS, photo_bytes(48, 40))
    refusal = await tg.wait_message(BORIS.id, "Не получилось использовать это изображение")
    assert _text(refusal) == (
        "Не получилось использовать это изображение: оно слишком маленькое (48×40; нужно хотя"
        " бы 64 пикс. по короткой стороне). Попробуйте другое фото."
    )
    await tg.send_document(BORIS, b"GIF89a" + bytes(10), "broken.gif", "image/gif")
    await tg.wait_message(BORIS.id, "оно повреждено или обрезано")

    await tg.send_text(BORIS, "/lang")
    picker = await wait_button(tg, BORIS.id, "lang:en")
    await tg.press(BORIS, picker, "English")
    await tg.wait_message(BORIS.id, "Language: English")
    await tg.send_text(BORIS, "/help")
    await tg.wait_message(BORIS.id, "makes a short video from one photo")
    assert await stack.store.get_language(BORIS.id) == "en"
    # and back, from the menu
    menu = await open_menu(tg, BORIS)
    await tg.press(BORIS, menu, "nav:lang")
    picker = await wait_button(tg, BORIS.id, "lang:ru")
    await tg.press(BORIS, picker, "lang:ru")
    await tg.wait_message(BORIS.id, "Язык: русский")


async def test_per_user_cap_gives_a_friendly_message(stack: Stack, tg: FakeTelegram) -> None:
    await stack.start(max_active_per_user=1)
    await stack.jobs.pause()
    await choose(tg, ALICE)
    await tg.send_photo(ALICE, photo_bytes())
    await progress_message(tg, ALICE)
    await choose(tg, ALICE)
    await tg.send_photo(ALICE, photo_bytes(seed=2))
    refusal = await tg.wait_message(ALICE.id, "You already have 1 video in progress")
    assert "at most 1" in _text(refusal) and "/status" in _text(refusal)
    assert await stack.store.count_jobs(user_id=ALICE.id) == 1
    await stack.jobs.resume()
    await wait_video(tg, ALICE)


async def test_full_disk_gives_a_friendly_message(stack: Stack, tg: FakeTelegram) -> None:
    await stack.start(min_free_mb=10**9)  # more free space than any disk has: the guard trips
    await choose(tg, BORIS)
    await tg.send_photo(BORIS, photo_bytes())
    await tg.wait_message(BORIS.id, "На сервере сейчас мало места")
    assert await stack.store.count_jobs() == 0
    assert not any("Traceback" in _text(m) for m in tg.bot_messages(BORIS.id))


async def test_allow_list_and_admin_commands(stack: Stack, tg: FakeTelegram) -> None:
    admin = FakeUser(99, "Root", "en")
    stranger = FakeUser(5, "Eve", "en")
    await stack.start(allowed_users=[ALICE.id], admins=[admin.id])

    await tg.send_text(stranger, "/start")
    await tg.wait_message(stranger.id, "this bot is private")
    await open_menu(tg, ALICE)
    await tg.send_text(ALICE, "/queue")  # not an admin: an unknown command
    await tg.wait_message(ALICE.id, "I did not get that")

    await tg.send_text(admin, "/queue")
    stats = await tg.wait_message(admin.id, "Queue:")
    assert "Renderer: motion" in _text(stats) and "Processing: running" in _text(stats)
    await tg.send_text(admin, "/pause")
    await tg.wait_message(admin.id, "Processing paused")
    assert stack.jobs.paused
    await choose(tg, ALICE)
    await tg.send_photo(ALICE, photo_bytes())
    accepted = await progress_message(tg, ALICE)
    await tg.send_text(admin, "/queue")
    stats = await tg.wait_message(admin.id, "Processing: paused")
    assert "Queue: 1 waiting" in _text(stats)
    await tg.send_text(admin, "/resume")
    await tg.wait_message(admin.id, "Processing resumed")
    assert not stack.jobs.paused
    await wait_video(tg, ALICE)
    assert accepted


async def test_rejected_missing_and_malformed_tokens(
    stack: Stack, tg: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await stack.start(bot_token="654321:WRONG-token")
    status = await wait_until(
        lambda: bot.status() if bot.status()["state"] == "retrying" else None, what="retrying"
    )
    assert status["enabled"] is True
    assert "401 Unauthorized" in str(status["reason"]) and "retrying in" in str(status["reason"])
    assert "WRONG" not in str(status["reason"])
    await stack.stop()

    bot = await stack.start(bot_token=None)
    assert bot.status() == {
        "enabled": False,
        "state": "off",
        "reason": "FANSLYMOTION_BOT_TOKEN is not set",
    }
    await stack.stop()
    bot = await stack.start(bot_token="not-a-token")
    assert bot.status()["state"] == "off" and "malformed" in str(bot.status()["reason"])
    await stack.stop()

    # an unreachable API: retrying, and the reason says so
    bot = await stack.start(telegram_api="http://127.0.0.1:9")
    status = await wait_until(
        lambda: bot.status() if bot.status()["state"] == "retrying" else None, what="retrying"
    )
    assert "unreachable" in str(status["reason"])
    await stack.stop()

    # aiohttp quotes the URL (token included) for a malformed base: never shown, never logged
    caplog.set_level(logging.DEBUG)
    bot = await stack.start(telegram_api="notaurl://telegram")
    status = await wait_until(
        lambda: bot.status() if bot.status()["state"] == "retrying" else None, what="retrying"
    )
    assert "<bot-token>" in str(status["reason"])
    await wait_until(lambda: bot.connect_attempts >= 2, what="a second attempt")  # logged too
    assert "TEST-token" not in str(status["reason"])
    assert "TEST-token" not in caplog.text


@pytest.mark.serial  # an answer within a second
async def test_fake_server_speaks_the_bot_api(tg: FakeTelegram) -> None:
    """The fake itself: envelope, token check, long polling that answers at once, offsets."""
    base = f"{tg.url}/bot{TOKEN}"
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{tg.url}/bot123:nope/getMe") as response:
            assert response.status == 401
            assert await response.json() == {
                "ok": False,
                "error_code": 401,
                "description": "Unauthorized",
            }
        async with session.post(f"{base}/getMe") as response:
            body = await response.json()
            assert body["ok"] is True and body["result"]["is_bot"] is True

        started = time.monotonic()
        async with session.post(f"{base}/getUpdates", data={"timeout": "1"}) as response:
            assert (await response.json())["result"] == []
        assert time.monotonic() - started >= 0.9

        async def poll() -> dict[str, Any]:
            async with session.post(f"{base}/getUpdates", data={"timeout": "10"}) as response:
                result: dict[str, Any] = await response.json()
                return result

        started = time.monotonic()
        waiting = asyncio.create_task(poll())
        await asyncio.sleep(0.2)
        await tg.send_text(ALICE, "hi")
        body = await waiting
        assert time.monotonic() - started < 1.0  # answered as soon as the update arrived
        (update,) = body["result"]
        assert update["message"]["text"] == "hi"
        offset = {"offset": str(update["update_id"] + 1), "timeout": "0"}
        async with session.post(f"{base}/getUpdates", data=offset) as response:
            assert (await response.json())["result"] == []  # confirmed: never again

        tg.edit_storm = 1
        edit = {"chat_id": str(ALICE.id), "message_id": "1", "text": "x"}
        async with session.post(f"{base}/editMessageText", data=edit) as response:
            assert response.status == 429
            body = await response.json()
            assert body["error_code"] == 429 and body["parameters"] == {"retry_after": 1}


def test_every_text_exists_in_both_languages_with_the_same_placeholders() -> None:
    import string

    from fanslymotion import motion, texts

    def fields(template: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name}

    assert set(texts.EN) == set(texts.RU)
    for key, english in texts.EN.items():
        assert fields(english) == fields(texts.RU[key]), key
    for lang in texts.LANGUAGES:
        assert set(texts.DESCRIPTIONS[lang]) == set(motion.PRESETS)
        assert all(f"motion_{preset}" in texts.TEXTS[lang] for preset in motion.PRESETS)
        assert len(texts.COMMANDS[lang]) == len(texts.COMMANDS["en"])
        assert [c for c, _ in texts.COMMANDS[lang]] == [c for c, _ in texts.COMMANDS["en"]]
        assert all(texts.TEXTS[lang][key].strip() for key in texts.EN), lang  # none empty
    assert texts.language_from_code("ru-RU") == "ru"
    for code in ("uk", "az", "hy", "uz", "kk", "be"):  # Russian only for Russian
        assert texts.language_from_code(code) == "en", code
    assert texts.language_from_code("de") == "en" and texts.language_from_code(None) == "en"
