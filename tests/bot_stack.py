"""The bot's test stack and a user's moves, shared by the bot's test files.

`Stack` runs store, queue and bot on one data folder against `FakeTelegram`, started and
stopped as the service does it; the helpers play a user (open the menu, choose the settings,
wait for the progress message or the video) and read the outcome from the fake and SQLite.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from fanslymotion import story_render
from fanslymotion.backends import select_renderer
from fanslymotion.bot import TelegramBot
from fanslymotion.config import Settings
from fanslymotion.dispatcher import LocalExecutor
from fanslymotion.queue import JobQueue
from fanslymotion.renderer import RenderWorker
from fanslymotion.store import Job, Store

from .conftest import make_settings
from .fake_telegram import ApiCall, FakeTelegram, FakeUser

TOKEN = "123456:TEST-token"
ALICE = FakeUser(1001, "Alice", "en")
BORIS = FakeUser(1002, "Борис", "ru")


class Stack:
    """Store + queue + bot on one data dir, started and stopped like the service does it."""

    def __init__(self, tg: FakeTelegram, data_dir: Path) -> None:
        self.tg = tg
        self.data_dir = data_dir
        self.running: list[tuple[Store, JobQueue, TelegramBot]] = []

    async def start(self, **overrides: Any) -> TelegramBot:
        values: dict[str, Any] = {
            "bot_token": TOKEN,
            "telegram_api": self.tg.url,
            "bot_progress_interval": 0.3,
        }
        values.update(overrides)
        settings = make_settings(self.data_dir, **values)
        store = await Store.open(settings.db_path)
        jobs = JobQueue(
            settings,
            store,
            LocalExecutor(
                settings,
                store,
                RenderWorker(settings, select_renderer(settings), stories=story_render.render),
            ),
        )
        await jobs.start()
        bot = TelegramBot(settings, jobs, store)
        bot.outbox.poll = 0.5
        bot.outbox.backoff = 0.2
        bot.connect_backoff = 0.2
        self.running.append((store, jobs, bot))
        await bot.start()
        if bot.status()["enabled"]:
            await wait_until(lambda: bot.status()["state"] != "connecting", what="a connection")
        return bot

    @property
    def bot(self) -> TelegramBot:
        return self.running[-1][2]

    @property
    def jobs(self) -> JobQueue:
        return self.running[-1][1]

    @property
    def store(self) -> Store:
        return self.running[-1][0]

    @property
    def settings(self) -> Settings:
        return self.bot.settings

    async def stop(self) -> None:
        """Stop the newest instance: the bot first, then the queue, then the database."""
        store, jobs, bot = self.running.pop()
        await bot.stop()
        await jobs.stop()
        await store.close()

    async def stop_all(self) -> None:
        while self.running:
            await self.stop()


async def outbox_scans(bot: TelegramBot, count: int) -> None:
    """Wait for `count` more scans of the delivery outbox (what a "nothing more is sent" check
    needs to have happened, rather than a guess at the time it takes)."""
    target = bot.outbox.scans + count
    await wait_until(lambda: bot.outbox.scans >= target, what=f"{count} outbox scans")


async def wait_until(predicate: Any, within: float = 10.0, what: str = "a condition") -> Any:
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


# -- playing a user --------------------------------------------------------------------------------


def _text(message: dict[str, Any]) -> str:
    return str(message.get("text") or message.get("caption") or "")


async def wait_button(
    tg: FakeTelegram, chat_id: int, data: str, *, prefix: bool = False, within: float = 10.0
) -> dict[str, Any]:
    """The newest bot message in the chat carrying a button with this callback data."""

    def find() -> dict[str, Any] | None:
        for message in tg.bot_messages(chat_id)[::-1]:
            for _, button in tg.buttons(message):
                if button == data or (prefix and button.startswith(data)):
                    return message
        return None

    found: dict[str, Any] = await tg.wait_for(find, within, f"a button {data!r}")
    return found


async def open_menu(tg: FakeTelegram, user: FakeUser) -> dict[str, Any]:
    """/start, and the new menu it opens (an older menu in the chat is outdated by it)."""
    before = max((m["message_id"] for m in tg.bot_messages(user.id)), default=0)
    await tg.send_text(user, "/start")

    def find() -> dict[str, Any] | None:
        for message in tg.bot_messages(user.id)[::-1]:
            buttons = [data for _, data in tg.buttons(message)]
            if message["message_id"] > before and "nav:new" in buttons:
                return message
        return None

    found: dict[str, Any] = await tg.wait_for(find, 10, "a new menu")
    return found


async def choose(
    tg: FakeTelegram,
    user: FakeUser,
    *,
    duration: int = 3,
    resolution: str = "360p",
    motion: str = "pan_l",
    aspect: str = "auto",
) -> dict[str, Any]:
    """From /start to the photo step; returns the step message.

    Every step is looked for in the menu's own message (the conversation edits that one), not
    in whichever older message of the chat carries the same buttons."""
    menu = await open_menu(tg, user)
    await tg.press(user, menu, "nav:new")

    async def on_menu(data: str) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            current = tg.message(user.id, menu["message_id"])
            return current if any(d == data for _, d in tg.buttons(current)) else None

        found: dict[str, Any] = await tg.wait_for(find, 10, f"a button {data!r}")
        return found

    for step, value in (
        ("duration", str(duration)),
        ("resolution", resolution),
        ("motion", motion),
        ("aspect", aspect.replace(":", "x")),
    ):
        data = f"pick:{step}:{value}"
        await tg.press(user, await on_menu(data), data)
    return await on_menu("back:aspect")


async def progress_message(tg: FakeTelegram, user: FakeUser, after: int = 0) -> dict[str, Any]:
    """The newest "accepted" message (it carries the Cancel button of its job)."""

    def find() -> dict[str, Any] | None:
        for message in tg.bot_messages(user.id)[::-1]:
            if message["message_id"] > after and any(
                data.startswith("job:cancel:") for _, data in tg.buttons(message)
            ):
                return message
        return None

    found: dict[str, Any] = await tg.wait_for(find, 15, "an accepted message")
    return found


def job_id_of(tg: FakeTelegram, message: dict[str, Any]) -> str:
    for _, data in tg.buttons(message):
        if data.startswith("job:"):
            return data.rsplit(":", 1)[1]
    raise AssertionError(f"no job button on {message}")


async def wait_video(
    tg: FakeTelegram, user: FakeUser, *, count: int = 1, within: float = 30.0
) -> ApiCall:
    def find() -> ApiCall | None:
        calls = [
            c
            for c in tg.calls_of("sendVideo", ok=True)
            if int(c.get("chat_id")) == user.id and c.files
        ]
        return calls[count - 1] if len(calls) >= count else None

    call: ApiCall = await tg.wait_for(find, within, f"video #{count}")
    return call


async def wait_job(stack: Stack, job_id: str, status: str, within: float = 30.0) -> Job:
    async def check() -> Job | None:
        job = await stack.store.get_job(job_id)
        return job if job is not None and job.status == status else None

    job: Job = await wait_until(check, within, f"job {job_id} {status}")
    return job


def edits_of(tg: FakeTelegram, message: dict[str, Any]) -> list[ApiCall]:
    return [
        c
        for c in tg.calls_of("editMessageText")
        if int(c.get("chat_id")) == message["chat"]["id"]
        and int(c.get("message_id")) == message["message_id"]
    ]
