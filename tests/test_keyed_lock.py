"""KeyedLock: one lock per key that serialises every holder, however their turns overlap (the
front's uploads of one job take turns through it)."""

from __future__ import annotations

import asyncio

from fanslymotion.keyed_lock import KeyedLock


async def test_a_third_holder_waits_for_the_second_after_the_first_left() -> None:
    locks = KeyedLock()
    inside: list[str] = []
    most = 0
    release = {name: asyncio.Event() for name in "abc"}
    entered = {name: asyncio.Event() for name in "abc"}

    async def hold(name: str) -> None:
        nonlocal most
        async with locks.hold("job-1"):
            inside.append(name)
            most = max(most, len(inside))
            entered[name].set()
            await release[name].wait()
            inside.remove(name)

    a = asyncio.create_task(hold("a"))
    await entered["a"].wait()
    b = asyncio.create_task(hold("b"))
    await asyncio.sleep(0)  # b queues on the lock
    release["a"].set()
    await a
    await entered["b"].wait()
    c = asyncio.create_task(hold("c"))  # arrives while b holds, after a has gone
    for _ in range(5):
        await asyncio.sleep(0)
    assert not entered["c"].is_set() and inside == ["b"]
    release["b"].set()
    await entered["c"].wait()
    release["c"].set()
    await asyncio.gather(b, c)
    assert most == 1 and locks.held() == 0


async def test_keys_do_not_wait_for_each_other() -> None:
    locks = KeyedLock()
    async with locks.hold("job-1"), asyncio.timeout(1), locks.hold("job-2"):
        assert locks.held() == 2
    assert locks.held() == 0
