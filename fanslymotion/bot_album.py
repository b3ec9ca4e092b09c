"""An album's parts as they arrive: Telegram sends an album as one message per photo, and the
dispatcher handles one update of a chat at a time. So each part's handler only hands its message
to `Albums` and returns; the first part opens the album with what to do with it, which runs once
no new part has come for `ALBUM_QUIET` seconds: one answer for the whole album."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiogram.types import Message

from .loops import stop_tasks, watch
from .story import MAX_SHOTS

ALBUM_QUIET = 0.8
"""Seconds without a new part after which an album is taken as complete."""

AlbumDone = Callable[[list[Message]], Awaitable[None]]


@dataclass
class _Album:
    messages: list[Message] = field(default_factory=list)
    grew: asyncio.Event = field(default_factory=asyncio.Event)


class Albums:
    """The parts of the albums arriving now, per chat and media group."""

    def __init__(self, quiet: float = ALBUM_QUIET) -> None:
        self.quiet = quiet
        self._open: dict[tuple[int, str], _Album] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, message: Message, then: AlbumDone | None = None) -> None:
        """Note a part. The first (given `then`) opens the album: `then(parts)` runs once it
        is complete. A part that comes after its album was taken is left out."""
        key = (message.chat.id, str(message.media_group_id))
        album = self._open.get(key)
        if album is None:
            if then is None:
                return
            album = self._open[key] = _Album()
            task = asyncio.create_task(self._complete(key, album, then), name="album")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            watch(task, "album")
        album.messages.append(message)
        album.grew.set()

    async def _complete(self, key: tuple[int, str], album: _Album, then: AlbumDone) -> None:
        try:
            while True:
                album.grew.clear()
                try:
                    async with asyncio.timeout(self.quiet):
                        await album.grew.wait()
                except TimeoutError:
                    break
        finally:
            self._open.pop(key, None)
        await then(sorted(album.messages, key=lambda m: m.message_id)[:MAX_SHOTS])

    async def stop(self) -> None:
        """Cancel the albums still gathering (the bot stops)."""
        await stop_tasks(list(self._tasks), 1.0, "albums")
