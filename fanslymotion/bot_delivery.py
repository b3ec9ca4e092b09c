"""The delivery outbox: finished videos sent from the `deliveries` table, retried, restart-proof.

The transaction that completes a job writes its delivery row; `Outbox.run` sends the due rows,
woken by completions and scanning the table as a fallback. A video over the upload limit is
re-encoded to fit (`video.reencode`), or sent as a document when that fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramEntityTooLarge, TelegramRetryAfter
from aiogram.types import FSInputFile, ReplyParameters

from . import video
from .bot_telegram import chat_action, user_gone
from .bot_views import MB, job_caption, resend_keyboard, result_keyboard
from .config import Settings
from .loops import wait_event
from .store import Job
from .store.port import BotStore
from .texts import t

log = logging.getLogger(__name__)

# The public Bot API takes uploads up to 50 MB; a local Bot API server takes up to 2000 MB.
PUBLIC_UPLOAD_LIMIT = 50 * MB
LOCAL_UPLOAD_LIMIT = 2000 * MB
PUBLIC_API_HOST = "api.telegram.org"
# A document file_id is stored with this prefix so /history knows to re-send it as a document.
DOCUMENT_PREFIX = "doc:"


# The delivery's error when the chat is known to have blocked the bot (Telegram's own words).
BLOCKED = "Forbidden: bot was blocked by the user"


class TooLarge(Exception):
    """No version of a video fits the Bot API's upload limit."""


class Outbox:
    """Sends finished videos, several chats at once, one video at a time per chat.

    At most `uploads` uploads run together; a chat that is slow or told to wait (429) only holds
    its own videos back. See the module docstring.
    """

    poll = 3.0  # seconds between outbox scans when nothing wakes the loop
    backoff = 5.0  # first retry delay of a failed delivery, doubled per attempt
    max_backoff = 600.0
    attempts = 12  # after this many failures a delivery is given up
    uploads = 4  # uploads in flight at once, across chats
    settle_timeout = 3.0  # at most this long for the final progress text before a video

    def __init__(
        self,
        settings: Settings,
        store: BotStore,
        *,
        bot: Callable[[], Bot | None],
        language_of_job: Callable[[Job], Awaitable[str]],
        stopping: Callable[[], bool],
        before_send: Callable[[Job, float], Awaitable[None]],
        blocked: Callable[[int], Awaitable[None]],
        chat_blocked: Callable[[int], bool],
    ) -> None:
        self.settings = settings
        self.store = store
        self._bot = bot
        self._language_of_job = language_of_job
        self._stopping = stopping
        self._before_send = before_send
        self._blocked_user = blocked
        self._chat_blocked = chat_blocked
        public = PUBLIC_API_HOST in settings.telegram_api
        self.upload_limit = PUBLIC_UPLOAD_LIMIT if public else LOCAL_UPLOAD_LIMIT
        self._wake = asyncio.Event()
        self._slots: asyncio.Semaphore | None = None
        self._chats: dict[int, asyncio.Task[None]] = {}  # chat -> its sender
        self._held: dict[int, float] = {}  # chat -> time.time() before which it gets nothing
        self.scans = 0  # outbox scans so far (tests wait on it instead of on the clock)

    def wake(self) -> None:
        """Look at the outbox now (a job completed, or a user asked for a video again)."""
        self._wake.set()

    def senders(self) -> list[asyncio.Task[None]]:
        """The per-chat sender tasks in flight, for a clean stop."""
        return list(self._chats.values())

    async def run(self) -> None:
        """Hand due deliveries to per-chat senders; woken by completions, polling as a fallback."""
        self._slots = asyncio.Semaphore(self.uploads)
        try:
            await self._offer_interrupted()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("could not offer interrupted deliveries")
        while not self._stopping():
            self._wake.clear()
            try:
                await self._dispatch()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivery loop error")
            self.scans += 1
            await wait_event(self._wake, self.poll)

    async def _dispatch(self) -> None:
        now = time.time()
        for chat, until in list(self._held.items()):  # only chats still held keep an entry
            if until <= now:
                del self._held[chat]
        for delivery in await self.store.due_deliveries(limit=100):
            chat = delivery.chat_id
            if chat in self._chats or self._held.get(chat, 0.0) > now:
                continue  # its sender takes it in turn, or the chat must wait
            self._chats[chat] = asyncio.create_task(self._send_chat(chat), name=f"deliver-{chat}")

    async def _send_chat(self, chat_id: int) -> None:
        """Send one chat's due videos in order; stop at the first failure (it waits its turn)."""
        try:
            while not self._stopping():
                due = [
                    d for d in await self.store.due_deliveries(limit=100) if d.chat_id == chat_id
                ]
                if not due:
                    return
                assert self._slots is not None
                async with self._slots:
                    delivered = await self._deliver(due[0].job_id, chat_id, due[0].attempts)
                if not delivered:
                    return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery to chat %s failed", chat_id)
        finally:
            self._chats.pop(chat_id, None)
            self._wake.set()  # the next scan may have waited for this chat

    async def _offer_interrupted(self) -> None:
        """Uploads cut short by a dead process: offer the video instead of maybe sending it twice."""
        bot = self._bot()
        if bot is None:
            return
        for delivery in await self.store.interrupt_deliveries():
            job = await self.store.get_job(delivery.job_id)
            if job is None:
                continue
            lang = await self._language_of_job(job)
            log.info("job %s: delivery was interrupted by a restart; offering it", job.job_id)
            with contextlib.suppress(TelegramAPIError):
                await bot.send_message(
                    delivery.chat_id,
                    t(lang, "delivery_interrupted"),
                    reply_markup=resend_keyboard(lang, job.job_id),
                )

    async def _deliver(self, job_id: str, chat_id: int, attempts: int) -> bool:
        """One delivery; False when it failed (or could not start) and the chat should wait."""
        bot = self._bot()
        job = await self.store.get_job(job_id)
        if bot is None or job is None:
            return False
        lang = await self._language_of_job(job)
        path = self.settings.data_dir / job.output_path if job.output_path else None
        if path is None or not await asyncio.to_thread(path.is_file):
            log.error("job %s: video file missing, delivery given up", job_id)
            await self.store.delivery_failed(job_id, "video file missing", retry_at=None)
            with contextlib.suppress(TelegramAPIError):
                await bot.send_message(chat_id, t(lang, "video_missing"))
            return True
        # "Ready, here it comes" goes out before the video, not after it.
        await self._before_send(job, self.settle_timeout)
        if not await self.store.delivery_claim(job_id):
            return True  # not pending any more (sent, or claimed by an earlier pass)
        if self._chat_blocked(chat_id):
            # This process already heard 403 from the chat: no upload until the user writes.
            log.info("job %s undeliverable: chat %s blocked the bot", job_id, chat_id)
            await self.store.delivery_failed(job_id, BLOCKED, retry_at=None)
            return True
        try:
            async with chat_action(bot, chat_id, "upload_video"):
                file_id = await self._send_video(bot, job, path, chat_id, lang)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # whatever it was, the outbox row records it and retries
            await self._failed(bot, job, chat_id, attempts, exc, lang)
            return False
        if await self.store.delivery_sent(job_id, file_id):
            log.info("job %s delivered to chat %s", job_id, chat_id)
        return True

    async def _failed(
        self, bot: Bot, job: Job, chat_id: int, attempts: int, exc: Exception, lang: str
    ) -> None:
        reason = (
            exc.message if isinstance(exc, TelegramAPIError) else f"{type(exc).__name__}: {exc}"
        )
        if isinstance(exc, TelegramAPIError) and user_gone(exc):
            log.info("job %s undeliverable: %s", job.job_id, reason)
            await self.store.delivery_failed(job.job_id, reason, retry_at=None)
            await self._blocked_user(job.user_id)
            return
        too_large = isinstance(exc, TelegramEntityTooLarge | TooLarge)
        if too_large or attempts + 1 >= self.attempts:
            log.error(
                "job %s undeliverable after %d attempt(s): %s", job.job_id, attempts + 1, reason
            )
            await self.store.delivery_failed(job.job_id, reason, retry_at=None)
            key = "video_too_big" if too_large else "generic_error"
            with contextlib.suppress(TelegramAPIError):
                await bot.send_message(chat_id, t(lang, key))
            return
        if isinstance(exc, TelegramRetryAfter):
            delay = float(exc.retry_after)
        else:
            delay = min(self.max_backoff, self.backoff * 2**attempts)
        # This chat waits (its later videos too, to keep their order); the others go on.
        self._held[chat_id] = time.time() + delay
        log.warning("job %s delivery failed (%s); retrying in %.0fs", job.job_id, reason, delay)
        await self.store.delivery_failed(job.job_id, reason, retry_at=time.time() + delay)

    async def _send_video(self, bot: Bot, job: Job, path: Path, chat_id: int, lang: str) -> str:
        """Upload the video, re-encoded smaller when too large; returns the file_id.

        Raises `TooLarge` when no version fits, TelegramAPIError for anything else.
        """
        size = (await asyncio.to_thread(path.stat)).st_size
        limit = self.upload_limit
        if size <= limit:
            try:
                return await self._upload_video(bot, job, path, chat_id, lang)
            except TelegramEntityTooLarge:
                # The server's limit is below what we assumed (e.g. the public API's 50 MB).
                log.info("job %s: %d bytes refused as too large; re-encoding", job.job_id, size)
                limit = size - 1
        smaller = path.with_name(f".{job.job_id}.telegram.mp4")
        try:
            return await self._send_smaller(bot, job, path, smaller, chat_id, lang, size, limit)
        finally:
            await asyncio.to_thread(smaller.unlink, missing_ok=True)

    async def _send_smaller(
        self,
        bot: Bot,
        job: Job,
        path: Path,
        smaller: Path,
        chat_id: int,
        lang: str,
        size: int,
        limit: int,
    ) -> str:
        """Re-encode under `limit` (bitrate first, then half the frame) and upload that."""
        target, scale = int(limit * 0.9), 1.0
        for _ in range(4):
            width = max(2, int((job.width or 2) * scale) // 2 * 2)
            height = max(2, int((job.height or 2) * scale) // 2 * 2)
            try:
                new_size = await video.reencode(
                    path,
                    smaller,
                    width=width,
                    height=height,
                    seconds=job.duration,
                    max_bytes=target,
                )
            except OSError as exc:
                log.error("job %s: re-encoding failed: %s", job.job_id, exc)
                return await self._upload_document(bot, job, path, chat_id, lang)
            if new_size <= limit:
                log.info(
                    "job %s: re-encoded %d -> %d bytes to fit the upload limit",
                    job.job_id,
                    size,
                    new_size,
                )
                try:
                    return await self._upload_video(
                        bot, job, smaller, chat_id, lang, width=width, height=height
                    )
                except TelegramEntityTooLarge:
                    limit = new_size - 1
            else:
                scale /= 2  # x264 could not get this low at this size: halve the frame
            target = int(min(target, limit) * 0.7)
        raise TooLarge(f"no version of the video fits under {limit} bytes")

    async def _upload_document(
        self, bot: Bot, job: Job, path: Path, chat_id: int, lang: str
    ) -> str:
        """The original as a file: the last resort when re-encoding is impossible."""
        message = await bot.send_document(
            chat_id,
            FSInputFile(path, filename=f"fanslymotion-{job.job_id[:8]}.mp4"),
            caption=job_caption(lang, job),
            reply_markup=result_keyboard(lang, job.job_id),
            request_timeout=600,
        )
        return DOCUMENT_PREFIX + message.document.file_id if message.document is not None else ""

    async def _upload_video(
        self,
        bot: Bot,
        job: Job,
        path: Path,
        chat_id: int,
        lang: str,
        *,
        width: int | None = None,
        height: int | None = None,
    ) -> str:
        width = width or job.width
        height = height or job.height
        message = await bot.send_video(
            chat_id,
            FSInputFile(path, filename=f"fanslymotion-{job.job_id[:8]}.mp4"),
            width=width,
            height=height,
            duration=job.duration,
            supports_streaming=True,
            caption=job_caption(lang, job, width, height),
            reply_markup=result_keyboard(lang, job.job_id),
            reply_parameters=(
                ReplyParameters(message_id=job.message_id, allow_sending_without_reply=True)
                if job.message_id
                else None
            ),
            request_timeout=600,
        )
        if message.video is not None:
            return message.video.file_id
        if message.document is not None:  # Telegram may keep an odd MP4 as a file
            return DOCUMENT_PREFIX + message.document.file_id
        return ""
