"""KeyedLock: one asyncio lock per key (a job's uploads take turns), forgotten once nobody
holds or waits for it, so the map does not grow with every job ever seen."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class KeyedLock:
    """Serialises the holders of each key; a key's lock lives while anyone holds or wants it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]  # the last one out: nobody else can hold a reference
            else:
                self._locks[key] = (lock, users - 1)

    def held(self) -> int:
        """How many keys have a holder or a waiter."""
        return len(self._locks)
