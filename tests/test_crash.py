"""Issue 6's crash test with the bot in the loop: `python -m fanslymotion` talking to the fake
Telegram API, ten jobs from the bot and the API, SIGKILL mid-render, a restart. Every job ends
completed exactly once and every Telegram user gets exactly one video."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from fanslymotion import video

from .bot_stack import TOKEN, choose, job_id_of, progress_message
from .conftest import photo_bytes
from .fake_telegram import ApiCall, FakeTelegram, FakeUser
from .test_process import Process

USERS = [FakeUser(2000 + n, f"User{n}", "en" if n % 2 else "ru") for n in range(5)]


async def call(
    proc: Process, method: str, path: str, body: dict[str, object] | None = None
) -> tuple[int, object]:
    """Process's blocking HTTP helpers, off the loop that serves the fake Telegram API."""
    return await asyncio.get_running_loop().run_in_executor(None, proc.call, method, path, body)


@pytest.mark.serial  # the SIGKILL must land mid-render of a 24-frame clip
async def test_kill_mid_render_with_bot_and_api_jobs(tmp_path: Path) -> None:
    tg = FakeTelegram(TOKEN)
    await tg.start()
    proc = Process(
        tmp_path,
        FANSLYMOTION_BOT_TOKEN=TOKEN,
        FANSLYMOTION_TELEGRAM_API=tg.url,
        FANSLYMOTION_BOT_PROGRESS_INTERVAL="0.3",
    )
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, proc.start)
        job_ids: list[str] = []
        # Five Telegram users each go through the conversation and send a photo...
        for user in USERS:
            await choose(tg, user, duration=6, resolution="720p", motion="dolly_in")
            await tg.send_photo(user, photo_bytes(400, 300, seed=user.id))
            job_ids.append(job_id_of(tg, await progress_message(tg, user)))
        # ...and five API clients post one job each.
        for user_id in range(1, 6):
            job_ids.append(
                await loop.run_in_executor(
                    None, partial(proc.create, user_id=user_id, duration=6, resolution="720p")
                )
            )
        assert len(set(job_ids)) == 10

        # Kill the process while a job is in the middle of its render: well past its start and
        # far enough from its end that it cannot finish before the signal lands.
        deadline = time.monotonic() + 90
        victim = None
        while victim is None:
            assert time.monotonic() < deadline, "no render got going"
            for job_id in job_ids:
                _, body = await call(proc, "GET", f"/job/status/{job_id}")
                assert isinstance(body, dict)
                if body["status"] == "processing" and 10 < body["progress"] < 60:
                    victim = job_id
                    break
            else:
                await asyncio.sleep(0.02)
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGKILL)
        assert await loop.run_in_executor(None, proc.proc.wait) == -signal.SIGKILL
        with sqlite3.connect(tmp_path / "fanslymotion.sqlite3") as db:
            running = [
                r[0] for r in db.execute("SELECT job_id FROM jobs WHERE status = 'processing'")
            ]
        assert running == [victim], "the kill did not land in the victim's render"

        await loop.run_in_executor(None, proc.start)
        for job_id in job_ids:
            final = await loop.run_in_executor(
                None, proc.wait, job_id, ("completed", "failed", "cancelled"), 180
            )
            assert final["status"] == "completed", final

        # Every Telegram user gets exactly one video, and it is whole. An upload the kill cut
        # short is not sent again blindly (Telegram may have it already): the user is offered
        # it and, when it never arrived, taps the button.
        def videos_for(user: FakeUser) -> list[ApiCall]:
            return [
                c for c in tg.calls_of("sendVideo", ok=True) if int(c.get("chat_id")) == user.id
            ]

        def offer_for(user: FakeUser) -> dict[str, Any] | None:
            for message in tg.bot_messages(user.id):
                if any(data.startswith("job:resend:") for _, data in tg.buttons(message)):
                    return message
            return None

        await tg.wait_for(
            lambda: all(videos_for(u) or offer_for(u) for u in USERS), 60, "a video or an offer"
        )
        for user in USERS:
            offer = offer_for(user)
            if offer is not None and not videos_for(user):
                await tg.press(user, offer, tg.buttons(offer)[0][1])
        await tg.wait_for(lambda: all(videos_for(u) for u in USERS), 60, "five videos")

        # Nothing left to send in the outbox, then the process ends: the count below is final.
        def outbox_settled() -> bool:
            with sqlite3.connect(tmp_path / "fanslymotion.sqlite3") as db:
                rows = db.execute(
                    "SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'sending')"
                ).fetchone()
            return int(rows[0]) == 0

        await tg.wait_for(outbox_settled, 60, "an empty outbox")
        assert await loop.run_in_executor(None, proc.stop, signal.SIGTERM) == 0
        for user in USERS:
            sent = videos_for(user)
            assert len(sent) == 1, f"user {user.id} got {len(sent)} videos"
            received = tmp_path / f"got-{user.id}.mp4"
            received.write_bytes(tg.uploaded(sent[0]))
            info = video.probe(received)
            assert info.frames == 6 * 4 and (info.width, info.height) == (1280, 720)  # FPS=4

        log = proc.log()
        assert "recovered 1 interrupted job" in log
        assert "Traceback" not in log
        for job_id in job_ids:
            assert log.count(f"job {job_id} completed") == 1, job_id
        with sqlite3.connect(tmp_path / "fanslymotion.sqlite3") as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            statuses = [r[0] for r in db.execute("SELECT status FROM deliveries")]
            # `interrupted`: the upload arrived before the kill and the user needed no button.
            assert len(statuses) == 5 and set(statuses) <= {"sent", "interrupted"}
            attempts = db.execute(
                "SELECT attempts FROM jobs WHERE job_id = ?", (victim,)
            ).fetchone()[0]
            assert attempts == 1
        assert sorted(p.name for p in (tmp_path / "hot").iterdir()) == sorted(
            f"{j}.mp4" for j in job_ids
        )
    finally:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait()
        await tg.close()
        # pytest shows captured output only when the test fails: the service's side of it.
        if (tmp_path / "service.log").exists():
            print(proc.log()[-6000:])
