"""The retry policy: what follows one attempt at a job. Pure: the job's tries and the attempt's
outcome in, the next state and its backoff out. Both deployments apply it: the single box's
dispatcher and its recovery after a crash, the cluster's workers and its sweep of silent ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .config import Settings
from .errors import FanslyError, RenderError


@dataclass(frozen=True)
class Policy:
    """MAX_RETRIES, RETRY_BACKOFF (seconds, doubled per attempt) and JOB_TIMEOUT (for its text)."""

    max_retries: int
    backoff: float
    timeout: float

    @classmethod
    def of(cls, settings: Settings) -> Policy:
        return cls(settings.max_retries, settings.retry_backoff, settings.job_timeout)


@dataclass(frozen=True)
class Failed:
    """The render raised `error`."""

    error: BaseException


@dataclass(frozen=True)
class TimedOut:
    """The render ran past JOB_TIMEOUT and was stopped."""


@dataclass(frozen=True)
class Interrupted:
    """The process rendering the job died or went silent (`cause`, e.g. "the service stopped").
    Counted, and past MAX_RETRIES the job fails: a photo that kills the renderer cannot loop."""

    cause: str


@dataclass(frozen=True)
class Stopped:
    """A shutdown stopped the render: the job waits again, uncounted, and resumes."""


Outcome = Failed | TimedOut | Interrupted | Stopped


@dataclass(frozen=True)
class Next:
    """The job's next state: `queued` again after `delay` seconds, or `failed` with `error`.

    `counted`: the attempt adds one to `attempts`; `interrupted`: also to `interruptions`;
    `unexpected`: the error was not one of ours (worth an error line in the log)."""

    status: Literal["queued", "failed"]
    error: str | None
    delay: float = 0.0
    counted: bool = True
    interrupted: bool = False
    unexpected: bool = False


def next_state(policy: Policy, outcome: Outcome, *, attempts: int, interruptions: int = 0) -> Next:
    """What follows `outcome` for a job that had used `attempts` retries (and been interrupted
    `interruptions` times) before this attempt."""
    if isinstance(outcome, Stopped):
        return Next("queued", None, counted=False)
    if isinstance(outcome, Interrupted):
        return after_interruption(policy.max_retries, outcome, attempts, interruptions)
    retryable, message, unexpected = _judge(policy, outcome)
    if retryable and attempts < policy.max_retries:
        return Next("queued", message, policy.backoff * 2**attempts, unexpected=unexpected)
    return Next("failed", message, unexpected=unexpected)


def _judge(policy: Policy, outcome: Failed | TimedOut) -> tuple[bool, str, bool]:
    """(retryable, the message users see, unexpected)."""
    if isinstance(outcome, TimedOut):
        return True, f"the render took longer than {policy.timeout:.0f} s", False
    error = outcome.error
    if isinstance(error, RenderError):
        return error.retryable, error.message, False
    if isinstance(error, FanslyError):
        return False, error.message, False  # bad input: another try cannot help
    return True, "internal render error", True


def after_interruption(
    max_retries: int, outcome: Interrupted, attempts: int, interruptions: int
) -> Next:
    """The crash-loop guard: an interrupted attempt counts, and past `max_retries` the job fails
    with how many times it brought its renderer down."""
    if attempts >= max_retries:
        times = interruptions + 1
        error = f"{outcome.cause} while rendering this video {times} times"
        return Next("failed", error, interrupted=True)
    return Next("queued", None, interrupted=True)
