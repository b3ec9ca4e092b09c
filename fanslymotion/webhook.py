"""Webhooks: job events pushed to the client's own server, from a durable outbox.

The store writes an event to `webhook_outbox` in the same transaction as the state change
that causes it (SQLite triggers, see store.schema.WEBHOOKS), so an event exists exactly when its
change was committed. `WebhookSender` delivers due rows: signed per the Standard Webhooks
scheme, retried with exponential backoff and jitter on timeouts, connection errors, 408, 429
(after its Retry-After) and 5xx, given up on other statuses and on redirects (never followed),
for at most `WEBHOOK_RETRY_HOURS`. A row is `sending` while in flight; a process that dies
then leaves it so, and the next start sends it again with the same `webhook-id`: delivery is at
least once and receivers deduplicate on that id.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, get_args
from urllib.parse import urlsplit

import aiohttp

from . import api_files, webhook_guard
from .config import Settings, parse_secret
from .errors import InvalidParams
from .loops import stop_tasks, wait_event
from .metrics import Metrics
from .models import JobStatusOut
from .store import Job, OutboxRow
from .store.port import Outbox
from .vocabulary import WebhookEvent

log = logging.getLogger(__name__)

EVENTS: tuple[str, ...] = get_args(WebhookEvent)
DEFAULT_EVENTS = ("completed", "failed", "cancelled")
BACKOFF_CAP = 600.0
"""Seconds at most between two attempts of one event."""
TIMEOUT = 10.0
"""Seconds a receiver has to answer one delivery."""
CONCURRENCY = 8
PER_HOST = 2
"""Deliveries in flight at once, in all and per receiver (host and port). A delivery takes its
receiver's slot before a global one, so a slow receiver holds at most two global slots and
never delays another's deliveries."""
USER_AGENT = "FanslyMotion-Webhooks/1"


@dataclass
class _Host:
    slots: asyncio.Semaphore
    users: int = 0


def receiver_of(url: str) -> str:
    """A receiver: the host and port a webhook URL reaches (the scheme's port when none)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    default = 443 if parts.scheme == "https" else 80
    return f"{(parts.hostname or '').lower()}:{port or default}"


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """`webhook-signature`: v1 and the base64 HMAC-SHA256 of "id.timestamp.body"."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def check_subscription(
    settings: Settings, url: str | None, events: list[str] | None
) -> tuple[str | None, tuple[str, ...]]:
    """Validate a job's webhook at create: (url, events). Raises InvalidParams (422)."""
    if url is None:
        if events:
            raise InvalidParams("webhook_events needs a webhook_url")
        return None, ()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2000:
        raise InvalidParams("webhook_url must be an absolute http or https URL")
    if settings.webhook_secret is None:
        raise InvalidParams("webhooks are off on this server (no FANSLYMOTION_WEBHOOK_SECRET)")
    allowed = settings.webhook_allow_hosts
    if allowed and parts.hostname.lower() not in allowed:
        raise InvalidParams(f"webhook host {parts.hostname} is not allowed on this server")
    chosen = tuple(dict.fromkeys(events)) if events else DEFAULT_EVENTS
    unknown = [e for e in chosen if e not in EVENTS]
    if unknown:
        raise InvalidParams(
            f"unknown webhook event {unknown[0]!r}: choose from {', '.join(EVENTS)}"
        )
    return url, chosen


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: delivered, retry (after `retry_after` when the receiver said),
    or give up."""

    kind: str  # "delivered" | "retry" | "give_up"
    error: str | None = None
    retry_after: float | None = None


def classify(status: int, retry_after: str | None) -> Outcome:
    if 200 <= status < 300:
        return Outcome("delivered")
    if status in (408, 429) or status >= 500:
        wait: float | None = None
        if status == 429 and retry_after is not None:
            with contextlib.suppress(ValueError):
                wait = max(0.0, float(retry_after))
        return Outcome("retry", f"HTTP {status}", wait)
    return Outcome("give_up", f"HTTP {status}")  # redirects (3xx) included: never followed


def status_body(settings: Settings, job: Job, event: str) -> dict[str, Any]:
    """A webhook's body: the status body of the job as it was when `event` happened (the
    sender adds the event's name). `completed` carries the result: `video: ready`, the video
    and poster links (signed when API_TOKEN is set), progress 100, phase `done`."""
    del event
    body = JobStatusOut.model_validate(job)
    fields = api_files.result_fields(settings, job, time.time())
    return body.model_copy(update=fields).model_dump(mode="json")


class WebhookSender:
    """The task that drains the outbox. `body_of(job, event)` renders an event's JSON body (the
    job's status body, from the API layer); `job` is the row as it was when the event happened."""

    def __init__(
        self,
        settings: Settings,
        store: Outbox,
        body_of: Callable[[Job, str], dict[str, Any]],
        metrics: Metrics,
    ) -> None:
        assert settings.webhook_secret is not None
        self._key = parse_secret(settings.webhook_secret.get_secret_value())
        self._settings = settings
        self._store = store
        self._body_of = body_of
        self._metrics = metrics
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._hosts: dict[str, _Host] = {}  # only hosts with a delivery in flight

    async def start(self) -> None:
        resent = await self._store.webhooks_interrupted()
        if resent:
            log.info("webhooks: %d delivery(ies) interrupted by a stop will be sent again", resent)
        timeout = aiohttp.ClientTimeout(total=TIMEOUT)
        # No DNS cache: every delivery's addresses pass the guard as they are now.
        connector = aiohttp.TCPConnector(
            resolver=webhook_guard.GuardedResolver(self._settings), use_dns_cache=False
        )
        self._session = aiohttp.ClientSession(
            timeout=timeout, headers={"User-Agent": USER_AGENT}, connector=connector
        )
        self._task = asyncio.create_task(self._run(), name="webhooks")

    def poke(self) -> None:
        """A new event may be due: look now rather than at the next tick."""
        self._wake.set()

    async def stop(self, grace: float = 2.0) -> None:
        """End the loop on its flag, give deliveries in flight `grace` seconds, cancel the rest."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await stop_tasks([self._task], grace, "webhooks")
        # A cancelled delivery stays `sending` in the outbox: the next start sends it again.
        await stop_tasks(list(self._in_flight), grace, "webhooks")
        if self._session is not None:
            await self._session.close()

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                due = await self._store.webhooks_due(time.time(), limit=CONCURRENCY * 4)
            except Exception as exc:  # a database hiccup must not end the sender
                log.error("webhooks: cannot read the outbox: %s", exc)
                due = []
            for row in due:
                if await self._store.webhook_claim(row.msg_id):
                    task = asyncio.create_task(self._deliver(row))
                    self._in_flight.add(task)
                    task.add_done_callback(self._in_flight.discard)
            self._metrics.webhooks_pending.set(await self._store.webhooks_pending())
            await wait_event(self._wake, 1.0)

    @property
    def hosts_tracked(self) -> int:
        """Receiving hosts with state held here (those with a delivery in flight)."""
        return len(self._hosts)

    async def _deliver(self, row: OutboxRow) -> None:
        name = receiver_of(row.url)
        host = self._hosts.setdefault(name, _Host(asyncio.Semaphore(PER_HOST)))
        host.users += 1
        try:
            # The receiver's own slot first: waiting for it holds no global slot.
            async with host.slots, self._slots:
                outcome = await self._attempt(row)
            await self._settle(row, outcome)
        except Exception:  # the row stays `sending`: the next start sends it again
            log.exception("webhook %s for job %s: delivery error", row.msg_id, row.job.job_id)
        finally:
            host.users -= 1
            if host.users == 0:  # a host seen once holds nothing for ever
                del self._hosts[name]

    async def _attempt(self, row: OutboxRow) -> Outcome:
        assert self._session is not None
        body = json.dumps(
            {"event": row.event, **self._body_of(row.job, row.event)}, separators=(",", ":")
        ).encode()
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": row.msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._key, row.msg_id, timestamp, body),
        }
        # What is recorded says no more than "HTTP <status>", "timeout" or "connection failed":
        # the sender must not tell a caller what is listening where. The log says more.
        try:
            webhook_guard.check_literal(self._settings, urlsplit(row.url).hostname or "")
            async with self._session.post(
                row.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                await response.read()
                return classify(response.status, response.headers.get("Retry-After"))
        except TimeoutError:
            return Outcome("retry", "timeout")
        except webhook_guard.InwardAddress as exc:
            log.warning("webhook %s for job %s: %s", row.msg_id, row.job.job_id, exc)
            return Outcome("give_up", "connection failed")
        except aiohttp.ClientError as exc:
            log.info(
                "webhook %s for job %s: %s: %s", row.msg_id, row.job.job_id, type(exc).__name__, exc
            )
            if isinstance(getattr(exc, "os_error", None), webhook_guard.InwardAddress):
                return Outcome("give_up", "connection failed")
            return Outcome("retry", "connection failed")

    async def _settle(self, row: OutboxRow, outcome: Outcome) -> None:
        attempts = row.attempts + 1
        if outcome.kind == "delivered":
            await self._store.webhook_delivered(row.msg_id)
            log.info("webhook %s %s for job %s delivered", row.msg_id, row.event, row.job.job_id)
        else:
            deadline = row.created + self._settings.webhook_retry_hours * 3600
            wait = outcome.retry_after
            if wait is None:  # full jitter: many receivers coming back do not retry in step
                ceiling = min(BACKOFF_CAP, self._settings.webhook_backoff * 2 ** (attempts - 1))
                wait = random.uniform(ceiling / 2, ceiling)
            retry_at = time.time() + min(wait, BACKOFF_CAP)
            if outcome.kind == "give_up" or retry_at > deadline:
                await self._store.webhook_failed(row.msg_id, outcome.error or "", retry_at=None)
                log.warning(
                    "webhook %s %s for job %s given up after %d attempt(s): %s",
                    row.msg_id,
                    row.event,
                    row.job.job_id,
                    attempts,
                    outcome.error,
                )
            else:
                await self._store.webhook_failed(row.msg_id, outcome.error or "", retry_at=retry_at)
                log.info(
                    "webhook %s %s for job %s: %s; retry in %.1fs",
                    row.msg_id,
                    row.event,
                    row.job.job_id,
                    outcome.error,
                    retry_at - time.time(),
                )
        result = "delivered" if outcome.kind == "delivered" else outcome.kind
        self._metrics.webhook_attempts.labels(result).inc()
        self._wake.set()
