"""The bot through Telegram's faults: the edit budget, lost messages, outages, slow chats.

Same stack as tests/test_bot.py (the real Dispatcher polling `FakeTelegram`, a real queue
rendering real MP4s); the fake now also deletes messages, blocks chats, answers 502 HTML pages,
drops connections, floods one chat with 429s and uploads slowly. The edit budget is read from
the fake's call log: the count and spacing of `editMessageText` per chat.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from fanslymotion.bot_telegram import SessionClosed

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
from .fake_telegram import ApiCall, FakeTelegram

# Serial: the edit budget is read from the spacing of the fake's arrival times, and the outage,
# flood and slow-upload cases compare when calls arrived.
pytestmark = pytest.mark.serial

INTERVAL = 0.3


def progress_edits(tg: FakeTelegram, chat_id: int, message_ids: set[int]) -> list[ApiCall]:
    return [
        c
        for c in tg.calls_of("editMessageText")
        if int(c.get("chat_id")) == chat_id and int(c.get("message_id")) in message_ids
    ]


def assert_budget(calls: list[ApiCall], interval: float = INTERVAL) -> None:
    """Consecutive progress edits of one chat are at least one interval apart."""
    for before, after in itertools.pairwise(calls):
        assert after.at - before.at >= interval * 0.9, (before, after)


def cancel_messages(tg: FakeTelegram, chat_id: int, job_id: str) -> list[dict[str, Any]]:
    """The bot's messages carrying this job's Cancel button (its progress messages)."""
    wanted = f"job:cancel:{job_id}"
    return [
        c.result
        for c in tg.calls_of("sendMessage", ok=True)
        if int(c.get("chat_id")) == chat_id
        and any(
            b.get("callback_data") == wanted
            for row in (c.get("reply_markup") or {}).get("inline_keyboard", [])
            for b in row
        )
    ]


async def test_a_deleted_progress_message_is_replaced_once_never_flooded(
    stack: Stack, tg: FakeTelegram
) -> None:
    await stack.start(fps=12)
    await choose(tg, ALICE, duration=10, resolution="720p")
    await tg.send_photo(ALICE, photo_bytes(640, 480))
    accepted = await progress_message(tg, ALICE)
    job_id = job_id_of(tg, accepted)
    first = accepted["message_id"]
    await tg.wait_for(lambda: "%" in _text(tg.message(ALICE.id, first)), 15, "a progress bar")
    tg.delete(ALICE.id, first)

    replacement = await tg.wait_for(
        lambda: next((m for m in cancel_messages(tg, ALICE.id, job_id)[1:]), None),
        10,
        "a replacement progress message",
    )
    second = replacement["message_id"]

    async def recorded() -> bool:
        job = await stack.store.get_job(job_id)
        return job is not None and job.progress_message_id == second

    await wait_until(recorded, what="the replacement recorded as the progress message")
    tg.delete(ALICE.id, second)
    await wait_video(tg, ALICE, within=60)
    await wait_job(stack, job_id, "completed")

    refused = [c for c in progress_edits(tg, ALICE.id, {first, second}) if not c.ok]
    assert [c.description for c in refused] == ["Bad Request: message to edit not found"] * 2
    # replaced once only: the second deletion is final
    assert len(cancel_messages(tg, ALICE.id, job_id)) == 2
    assert_budget(progress_edits(tg, ALICE.id, {first, second}))


async def test_a_blocked_chat_gets_nothing_and_is_offered_its_video_when_back(
    stack: Stack, tg: FakeTelegram
) -> None:
    await stack.start(fps=12)
    await choose(tg, ALICE, duration=6, resolution="480p")
    await tg.send_photo(ALICE, photo_bytes(640, 480))
    accepted = await progress_message(tg, ALICE)
    job_id = job_id_of(tg, accepted)
    await tg.wait_for(
        lambda: "%" in _text(tg.message(ALICE.id, accepted["message_id"])), 15, "a progress bar"
    )
    blocked_at = len(tg.calls)
    tg.block(ALICE.id)
    await wait_job(stack, job_id, "completed", within=60)

    async def undeliverable() -> bool:
        delivery = await stack.store.get_delivery(job_id)
        return delivery is not None and delivery.status == "undeliverable"

    await wait_until(undeliverable, within=15, what="the delivery given up")
    to_alice = [c for c in tg.calls[blocked_at:] if str(c.get("chat_id", "")) == str(ALICE.id)]
    # one refused edit, and nothing more, however many events came (not even the upload)
    assert [c.method for c in to_alice] == ["editMessageText"]

    tg.unblock(ALICE.id)
    await tg.send_text(ALICE, "hello again")
    offer = await wait_button(tg, ALICE.id, f"job:missed:{job_id}")
    assert "While you were away" in _text(offer) and "1" in _text(offer)
    await tg.press(ALICE, offer, f"job:missed:{job_id}")
    await wait_video(tg, ALICE)

    async def sent() -> bool:
        delivery = await stack.store.get_delivery(job_id)
        return delivery is not None and delivery.status == "sent"

    await wait_until(sent, what="the missed video sent")


async def test_progress_converges_after_an_outage_and_comes_before_the_video(
    stack: Stack, tg: FakeTelegram
) -> None:
    bot = await stack.start(fps=12)
    bot.progress.reconcile_interval = 0.5
    bot.progress.failure_backoff = 1.0
    await choose(tg, ALICE, duration=6, resolution="720p")
    await tg.send_photo(ALICE, photo_bytes(640, 480))
    accepted = await progress_message(tg, ALICE)
    message_id = accepted["message_id"]
    await tg.wait_for(lambda: "%" in _text(tg.message(ALICE.id, message_id)), 15, "a bar")
    tg.outage(10**6, "editMessageText")  # the edits hit a proxy's 502 page, for 11 edits
    await tg.wait_for(
        lambda: len([c for c in tg.calls_of("editMessageText") if c.status == 502]) >= 11,
        60,
        "eleven failed edits",
    )
    assert "%" in _text(tg.message(ALICE.id, message_id))  # stuck at the old percent for now
    tg.outages.clear()
    await wait_video(tg, ALICE, within=60)
    ready = await tg.wait_for(
        lambda: "Here comes the video" in _text(tg.message(ALICE.id, message_id)),
        10,
        "the message converged to ready",
    )
    assert ready
    assert_budget(progress_edits(tg, ALICE.id, {message_id}))

    # A second job, no outage: "ready" is edited in before the video is sent.
    await choose(tg, ALICE)
    await tg.send_photo(ALICE, photo_bytes(seed=2))
    second = await progress_message(tg, ALICE, after=message_id)
    video = await wait_video(tg, ALICE, count=2)
    done = [
        c
        for c in progress_edits(tg, ALICE.id, {second["message_id"]})
        if c.ok and "Here comes the video" in c.get("text")
    ]
    assert done and done[0].at < video.at


async def test_photo_download_retried_through_faults_then_refused_with_a_word(
    stack: Stack, tg: FakeTelegram
) -> None:
    bot = await stack.start()
    bot.download_backoff = 0.05
    await choose(tg, ALICE)
    tg.drop(1, "getFile")
    tg.outage(1, "getFile")
    tg.file_outage = 1
    await tg.send_photo(ALICE, photo_bytes())
    await progress_message(tg, ALICE)
    await wait_video(tg, ALICE)
    statuses = [c.status for c in tg.calls_of("getFile")]
    assert statuses == [0, 502, 200, 200]  # dropped, a 502 page, then a 502 file, then fine

    await choose(tg, ALICE)
    tg.outage(10**6, "getFile")
    await tg.send_photo(ALICE, photo_bytes(seed=3))
    await tg.wait_message(ALICE.id, "could not download that file")
    assert len(tg.calls_of("getFile")) == 4 + bot.download_attempts
    assert await stack.store.count_jobs() == 1


async def test_replies_survive_an_outage(stack: Stack, tg: FakeTelegram) -> None:
    await stack.start()
    tg.outage(2, "sendMessage")
    menu = await open_menu(tg, ALICE)  # /start during the outage: answered once it ends
    assert "FanslyMotion turns a photo" in _text(menu)
    assert [c.status for c in tg.calls_of("sendMessage")] == [502, 502, 200]
    # Polling itself cut off: the long poll in flight returns Alice's text, the next ones fail.
    tg.drop(1, "getUpdates")
    tg.outage(2, "getUpdates")
    await tg.send_text(ALICE, "ping")
    await tg.wait_message(ALICE.id, "I did not get that")
    await open_menu(tg, BORIS)
    polls = [c.status for c in tg.calls_of("getUpdates")]
    assert polls.count(0) == 1 and polls.count(502) == 2


async def test_a_handler_left_running_by_stop_cannot_reach_telegram(
    stack: Stack, tg: FakeTelegram
) -> None:
    """A handler still finishing after stop() (its update was fetched before polling ended)
    gets a refusal, not a fresh HTTP session that nobody would close."""
    await stack.start()
    await open_menu(tg, ALICE)
    bot = stack.bot
    assert bot.bot is not None
    await stack.stop()
    with pytest.raises(SessionClosed):
        await bot.bot.send_message(ALICE.id, "too late")
    assert not [c for c in tg.calls_of("sendMessage") if c.get("text") == "too late"]


async def test_one_slow_or_flooded_chat_does_not_hold_another(
    stack: Stack, tg: FakeTelegram
) -> None:
    await stack.start()
    tg.slow_uploads[ALICE.id] = 6.0
    await choose(tg, ALICE)
    await choose(tg, BORIS)
    await tg.send_photo(ALICE, photo_bytes())
    await progress_message(tg, ALICE)
    await tg.send_photo(BORIS, photo_bytes(seed=1))
    await progress_message(tg, BORIS)
    boris = await wait_video(tg, BORIS, within=30)
    alice = await wait_video(tg, ALICE, within=30)
    assert boris.at < alice.at + 6.0  # Boris's upload went out while Alice's was in flight

    del tg.slow_uploads[ALICE.id]
    tg.flood("sendVideo", ALICE.id, 1, 5)
    await choose(tg, ALICE)
    await choose(tg, BORIS)
    await tg.send_photo(ALICE, photo_bytes(seed=4))
    await progress_message(tg, ALICE, after=alice.result["message_id"])
    await tg.send_photo(BORIS, photo_bytes(seed=5))
    boris = await wait_video(tg, BORIS, count=2, within=30)
    alice = await wait_video(tg, ALICE, count=2, within=30)
    refused = [c for c in tg.calls_of("sendVideo") if c.status == 429]
    assert len(refused) == 1 and int(refused[0].get("chat_id")) == ALICE.id
    assert alice.at - refused[0].at >= 5.0 - 0.05  # retry_after honoured for Alice
    assert boris.at < refused[0].at + 5.0  # and only for Alice


async def test_pause_retry_and_restart_are_said_in_the_progress_message(
    stack: Stack, tg: FakeTelegram
) -> None:
    await stack.start()
    await stack.jobs.pause()
    await choose(tg, ALICE)
    await tg.send_photo(ALICE, photo_bytes())
    accepted = await progress_message(tg, ALICE)
    assert "Paused by the operator" in _text(accepted) and "Ready in" not in _text(accepted)
    await tg.send_text(ALICE, "/status")
    listing = await tg.wait_message(ALICE.id, "Your videos in progress")
    assert "paused by the operator" in _text(listing) and "ready in" not in _text(listing)
    await stack.jobs.resume()
    await wait_video(tg, ALICE)
    await stack.stop()

    # every attempt runs out of time: "retrying (2 of 3)", then a failure in Boris's words
    await stack.start(fps=12, job_timeout=1.0, max_retries=2)
    await choose(tg, BORIS, duration=12, resolution="720p")
    await tg.send_photo(BORIS, photo_bytes(640, 480))
    failed = await progress_message(tg, BORIS)
    job_id = job_id_of(tg, failed)
    await wait_job(stack, job_id, "failed", within=60)
    text = await tg.wait_for(
        lambda: "⚠️" in _text(tg.message(BORIS.id, failed["message_id"])), 10, "the failure"
    )
    text = _text(tg.message(BORIS.id, failed["message_id"]))
    assert "оно создавалось слишком долго" in text and "took longer" not in text
    edits = [c.get("text") for c in progress_edits(tg, BORIS.id, {failed["message_id"]})]
    assert any("Повторная попытка (2 из 3)" in e for e in edits)
    buttons = [data for _, data in tg.buttons(tg.message(BORIS.id, failed["message_id"]))]
    assert f"job:retry:{job_id}" in buttons and f"job:settings:{job_id}" in buttons
    await stack.stop()

    # a restart mid-render: "the service restarted, continuing"
    await stack.start(fps=12)
    await choose(tg, ALICE, duration=12, resolution="720p")
    await tg.send_photo(ALICE, photo_bytes(640, 480))
    running = await progress_message(tg, ALICE, after=listing["message_id"])
    await tg.wait_for(
        lambda: "%" in _text(tg.message(ALICE.id, running["message_id"])), 15, "a progress bar"
    )
    await stack.stop()
    await stack.start(fps=12)
    await tg.wait_for(
        lambda: "The service restarted" in _text(tg.message(ALICE.id, running["message_id"])),
        15,
        "the restart said",
    )
    await wait_video(tg, ALICE, count=2, within=60)


async def test_a_restart_edits_only_progress_messages_within_the_budget(
    stack: Stack, tg: FakeTelegram
) -> None:
    """A cancelled job's message became Alice's menu: the restart leaves it alone, while Boris's
    live job is refreshed within the budget."""
    await stack.start()
    await stack.jobs.pause()
    await choose(tg, ALICE)
    await tg.send_photo(ALICE, photo_bytes())
    accepted = await progress_message(tg, ALICE)
    job_id = job_id_of(tg, accepted)
    await tg.press(ALICE, accepted, f"job:cancel:{job_id}")
    await tg.wait_for(
        lambda: "Cancelled" in _text(tg.message(ALICE.id, accepted["message_id"])), 5, "cancelled"
    )
    await tg.press(ALICE, tg.message(ALICE.id, accepted["message_id"]), "nav:menu")
    await tg.wait_for(
        lambda: (
            "nav:new" in [d for _, d in tg.buttons(tg.message(ALICE.id, accepted["message_id"]))]
        ),
        5,
        "the menu in that message",
    )
    await choose(tg, BORIS)
    await tg.send_photo(BORIS, photo_bytes(seed=1))
    boris = await progress_message(tg, BORIS)
    await stack.stop()

    restarted = len(tg.calls)
    bot = await stack.start()
    await wait_until(bot.progress.resumed.is_set, what="progress resumed")
    await stack.jobs.resume()
    await wait_video(tg, BORIS)
    assert "FanslyMotion turns a photo" in _text(tg.message(ALICE.id, accepted["message_id"]))
    later = [c for c in tg.calls[restarted:] if c.method == "editMessageText"]
    assert not [c for c in later if int(c.get("chat_id")) == ALICE.id]
    assert_budget([c for c in later if int(c.get("message_id")) == boris["message_id"]])
