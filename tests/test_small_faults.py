"""The small faults of issue 23: status events never dropped by a slow listener, input
retention with a photo that is gone, per-host and per-chat state that does not grow for ever,
and background failures that are logged instead of "never retrieved"."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections import Counter

import pytest

from fanslymotion import datadir
from fanslymotion.events import BACKLOG, EventHub, JobEvent, is_closed
from fanslymotion.loops import watch

from .bot_stack import ALICE, BORIS, Stack, choose, wait_until, wait_video
from .conftest import ServiceFactory, photo_bytes
from .fake_telegram import FakeTelegram
from .test_webhooks import LOOPBACK, SECRET, Receiver, hooked


async def test_a_full_listener_misses_progress_never_a_status(
    start_service: ServiceFactory,
) -> None:
    client = await start_service()
    await client.service.jobs.pause()
    _, created = await client.create()
    job = await client.service.jobs.get(created["job_id"])
    hub = EventHub()
    async with hub.subscribe() as events:
        for _ in range(BACKLOG + 50):
            hub.publish(JobEvent("progress", job))
        hub.publish(JobEvent("status", job))
        hub.publish(JobEvent("preview", job))  # coalesced like progress
        hub.publish(JobEvent("status", job))
        hub.close()  # the close always gets in too
        seen: Counter[str] = Counter()
        last = None
        while not events.empty():
            last = events.get_nowait()
            if not is_closed(last):
                seen[last.kind] += 1
    assert seen == Counter({"progress": BACKLOG, "status": 2})
    assert is_closed(last)


async def test_archive_retention_with_a_photo_that_is_gone(
    start_service: ServiceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    client = await start_service(input_retention="archive")
    service = client.service
    await service.jobs.pause()
    _, created = await client.create()
    job = await service.jobs.get(created["job_id"])
    assert job.input_path is not None
    (service.settings.data_dir / job.input_path).unlink()  # removed by hand
    with caplog.at_level(logging.WARNING, logger="fanslymotion.datadir"):
        await datadir.retire_input(service.settings, service.store, job)
    assert "its photo" in caplog.text and "is gone" in caplog.text
    after = await service.store.get_job(job.job_id)
    assert after is not None and after.input_path is None  # no row pointing at nothing


async def test_a_receiving_host_holds_no_state_once_delivered(
    start_service: ServiceFactory,
) -> None:
    receiver = Receiver()
    await receiver.start()
    try:
        await _deliver_two(start_service, receiver)
    finally:
        await receiver.close()


async def _deliver_two(start_service: ServiceFactory, receiver: Receiver) -> None:
    client = await start_service(
        webhook_secret=SECRET, webhook_allow_hosts=LOOPBACK, webhook_backoff=0.2
    )
    first = await hooked(client, receiver, ["completed"])
    second = await hooked(client, receiver, ["completed"], user_id=2)
    await receiver.wait_for(lambda ds: {d.body["job_id"] for d in ds} == {first, second}, 60)
    sender = client.service.webhooks
    assert sender is not None
    await wait_until(lambda: sender.hosts_tracked == 0, what="the host's slots released")


async def test_a_chat_without_live_jobs_holds_no_progress_state(
    stack: Stack, tg: FakeTelegram
) -> None:
    bot = await stack.start(bot_progress_interval=0.2)
    await choose(tg, ALICE)
    await tg.send_photo(ALICE, photo_bytes(320, 240, seed=3))
    await wait_video(tg, ALICE)
    assert ALICE.id in bot.progress.held_chats()
    await wait_until(lambda: bot.progress.budget_left(ALICE.id) <= 0, what="Alice's budget")
    await choose(tg, BORIS)
    await tg.send_photo(BORIS, photo_bytes(320, 240, seed=4))
    await wait_video(tg, BORIS)
    # Tracking Boris' job forgot Alice's chat: the state is as large as the live chats.
    assert bot.progress.held_chats() == {BORIS.id}


async def test_a_failed_background_task_is_logged_not_left_unretrieved(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fails() -> None:
        raise OSError("disk gone")

    task = asyncio.ensure_future(fails())
    watch(task, "job x: input")
    with caplog.at_level(logging.ERROR):
        await asyncio.wait([task])
        await asyncio.sleep(0)  # the done callback runs
        del task
        gc.collect()
    messages = [r.getMessage() for r in caplog.records]
    assert "job x: input failed: OSError: disk gone" in messages
    assert not any("never retrieved" in m for m in messages)
