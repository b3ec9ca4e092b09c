"""Loops that stop: no `wait_for` anywhere, the shared wait and the bounded stop, and a SIGTERM
past the stop's grace that still parks the running job uncounted (on a real process)."""

from __future__ import annotations

import ast
import asyncio
import logging
import signal
import time
from pathlib import Path

import pytest

from fanslymotion.loops import stop_tasks, wait_event

from .test_process import Process, wait_rendering

PACKAGE = Path(__file__).resolve().parents[1] / "fanslymotion"


def _wait_for_calls(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    """Every call of `wait_for` in a module (asyncio.wait_for, or the name imported alone)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "wait_for":
                found.append(f"{path.relative_to(root)}:{node.lineno}")
        elif isinstance(node, ast.ImportFrom) and any(a.name == "wait_for" for a in node.names):
            found.append(f"{path.relative_to(root)}:{node.lineno} (import)")
    return found


def test_nothing_in_the_package_uses_wait_for() -> None:
    """`asyncio.wait_for` around a wait can lose a cancel on Python 3.11 (gh-86296): waits
    with a limit use `loops.wait_event` or `asyncio.timeout`."""
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 40
    offenders = [hit for path in files for hit in _wait_for_calls(path)]
    assert offenders == []


def test_the_ast_check_sees_a_wait_for(tmp_path: Path) -> None:
    """The check above would catch the old pattern (so its empty answer means something)."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import asyncio\nfrom asyncio import wait_for\n"
        "async def f(e):\n    await asyncio.wait_for(e.wait(), 1.0)\n",
        encoding="utf-8",
    )
    assert _wait_for_calls(sample, tmp_path) == ["sample.py:2 (import)", "sample.py:4"]


async def test_wait_event_answers_set_or_timed_out() -> None:
    event = asyncio.Event()
    started = time.monotonic()
    assert await wait_event(event, 0.05) is False
    assert time.monotonic() - started >= 0.04
    asyncio.get_running_loop().call_later(0.02, event.set)
    assert await wait_event(event, 5.0) is True
    assert await wait_event(event, 0) is True  # already set: no wait at all


async def test_a_cancel_during_wait_event_is_never_lost() -> None:
    """The race of gh-86296: the event is set and the waiter cancelled in the same loop turn.
    The cancel must win every time (with wait_for it was sometimes swallowed)."""
    for _ in range(200):
        event = asyncio.Event()
        waiter = asyncio.create_task(wait_event(event, 10.0))
        await asyncio.sleep(0)  # the waiter is inside its wait
        event.set()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert waiter.cancelled()


@pytest.mark.serial  # stopped within 2 s
async def test_stop_tasks_waits_then_cancels_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    flag = asyncio.Event()

    async def obedient() -> None:
        await flag.wait()

    async def deaf() -> None:
        await asyncio.sleep(3600)

    async def broken() -> None:
        raise RuntimeError("boom")

    tasks = [
        asyncio.create_task(obedient(), name="obedient"),
        asyncio.create_task(deaf(), name="deaf"),
        asyncio.create_task(broken(), name="broken"),
    ]
    await asyncio.sleep(0)
    flag.set()
    with caplog.at_level(logging.WARNING, logger="fanslymotion.loops"):
        started = time.monotonic()
        left = await stop_tasks(tasks, 0.2, "test")
    assert left == []
    assert time.monotonic() - started < 2.0
    assert not tasks[0].cancelled() and tasks[1].cancelled()
    messages = [r.getMessage() for r in caplog.records]
    assert "test: deaf did not stop within 0.2s; cancelled" in messages
    assert "test: broken ended with RuntimeError: boom" in messages
    assert not any("obedient" in m for m in messages)


async def test_a_task_that_swallows_its_cancel_is_reported_not_awaited(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fanslymotion.loops.CANCEL_GRACE", 0.1)
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # the bug we must survive: a loop that eats its cancel

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="fanslymotion.loops"):
        left = await stop_tasks([task], 0.05, "test")
    assert left == [task]
    assert "test: stubborn did not end even when cancelled; left behind" in caplog.text
    release.set()
    await task


def test_sigterm_past_the_grace_parks_the_job_uncounted(tmp_path: Path) -> None:
    """STOP_GRACE=0: the dispatcher is cancelled while the render still runs; the job is
    parked all the same (shielded), so the next start does not count an attempt."""
    process = Process(tmp_path, FANSLYMOTION_STOP_GRACE="0")
    try:
        process.start()
        job_id = process.create(duration=12, resolution="1080p", motion_preset="pan_r")
        wait_rendering(process, job_id)
        assert process.stop(signal.SIGTERM) == 0
        row = process.row(job_id)
        assert (row["status"], row["attempts"]) == ("queued", 0)
        log = process.log()
        assert "dispatcher did not stop within 0.0s; cancelled" in log
        assert "stopped by shutdown, will resume" in log
        assert "Traceback" not in log
        process.start()
        final = process.wait(job_id, ("completed", "failed"))
        assert (final["status"], final["attempts"]) == ("completed", 0)
        assert process.stop(signal.SIGTERM) == 0
    finally:
        if process.proc is not None and process.proc.poll() is None:
            process.proc.kill()
