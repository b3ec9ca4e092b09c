"""What the bot's handlers and screens use of the running bot (`bot.TelegramBot` provides it),
so that they depend on this small port and not on the module that builds them: no cycle."""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

from aiogram import Bot
from aiogram.fsm.context import FSMContext

from .bot_album import Albums
from .bot_delivery import Outbox
from .bot_progress import ProgressTracker
from .config import Settings
from .queue import JobQueue
from .store import Job
from .store.port import BotStore
from .story import Story
from .story_intake import StoryFiles


class BotPort(Protocol):
    """The running bot as its handlers see it."""

    settings: Settings
    jobs: JobQueue
    store: BotStore
    outbox: Outbox
    progress: ProgressTracker

    async def set_language(self, bot: Bot, user_id: int, lang: str) -> None: ...

    async def send_missed(self, user_id: int) -> int: ...

    def album_part(self, chat_id: int, media_group_id: str | None) -> str: ...

    albums: Albums

    def handling(self) -> contextlib.AbstractContextManager[None]: ...

    async def active_jobs(self, user_id: int) -> list[Job]: ...

    async def submit(
        self,
        *,
        bot: Bot,
        chat_id: int,
        user_id: int,
        lang: str,
        params: dict[str, Any],
        image: bytes,
        photo_ref: str | None,
        state: FSMContext,
        reply_to: int | None = None,
        note: str = "",
        ends_flow: bool = True,
        collapse: tuple[int, str] | None = None,
        story: Story | None = None,
        story_files: StoryFiles | None = None,
    ) -> Job | None: ...

    async def download(self, bot: Bot, file_id: str) -> bytes: ...

    async def heic_to_png(self, data: bytes) -> bytes | None: ...

    async def photo_of(
        self, bot: Bot, job: Job, data: dict[str, Any]
    ) -> tuple[bytes, str | None] | None: ...
