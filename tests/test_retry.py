"""The retry policy (fanslymotion/retry.py), the one both deployments apply: each case is the
function itself, in microseconds."""

from __future__ import annotations

import pytest

from fanslymotion.errors import GPUOutOfMemory, InvalidParams, RenderError
from fanslymotion.retry import Failed, Interrupted, Next, Policy, Stopped, TimedOut, next_state

POLICY = Policy(max_retries=2, backoff=5.0, timeout=600.0)


@pytest.mark.parametrize(("attempts", "delay"), [(0, 5.0), (1, 10.0)])
def test_a_retryable_error_waits_a_doubling_backoff(attempts: int, delay: float) -> None:
    after = next_state(POLICY, Failed(RenderError("the encoder failed")), attempts=attempts)
    assert after == Next("queued", "the encoder failed", delay)


def test_the_last_retry_fails_for_good() -> None:
    after = next_state(POLICY, Failed(RenderError("the encoder failed")), attempts=2)
    assert after == Next("failed", "the encoder failed")


@pytest.mark.parametrize(
    "error", [GPUOutOfMemory("try a shorter video"), InvalidParams("no such preset")]
)
def test_errors_another_try_cannot_help_fail_at_once(error: Exception) -> None:
    after = next_state(POLICY, Failed(error), attempts=0)
    assert after.status == "failed" and after.error == str(error) and not after.unexpected


def test_a_bug_is_retried_under_a_plain_message_and_flagged() -> None:
    after = next_state(POLICY, Failed(KeyError("frame")), attempts=0)
    assert after == Next("queued", "internal render error", 5.0, unexpected=True)


def test_a_timeout_is_retried_with_the_limit_in_its_message() -> None:
    assert next_state(POLICY, TimedOut(), attempts=1) == Next(
        "queued", "the render took longer than 600 s", 10.0
    )


def test_a_shutdown_puts_the_job_back_uncounted_at_any_attempt() -> None:
    assert next_state(POLICY, Stopped(), attempts=2) == Next("queued", None, counted=False)


def test_the_crash_loop_guard_fails_a_job_that_keeps_killing_its_renderer() -> None:
    crash = Interrupted("the service stopped")
    assert next_state(POLICY, crash, attempts=1, interruptions=1) == Next(
        "queued", None, interrupted=True
    )
    assert next_state(POLICY, crash, attempts=2, interruptions=1) == Next(
        "failed", "the service stopped while rendering this video 2 times", interrupted=True
    )
