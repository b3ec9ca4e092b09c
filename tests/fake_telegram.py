"""A fake Telegram Bot API server for the bot's tests: aiohttp on 127.0.0.1, a random port.

It speaks the real wire format (form or multipart requests, the `{"ok", "result" | "error_code",
"description", "parameters"}` envelope, `attach://` file fields, long-polled `getUpdates` with
offsets) and answers errors the way the real API does, so the real aiogram Dispatcher can poll
it. Tests "are a user" through `send_text`, `press`, `send_photo` and `send_document`, and read
what the bot did from `calls` and `messages`. Fault switches: `edit_storm` (429 on
editMessageText), `flood` (429 with retry_after on any method in one chat), `block` (403 for
everything sent to a user, until `unblock`), `delete` (the user deletes a bot message: 400 on
edits), `outage` (502 HTML pages from a proxy, as a real outage looks), `drop` (the connection
closes without an answer), `slow_uploads` (per chat), `upload_limit` (413), `upload_failures`
(500 on uploads).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, web

from .fake_telegram_api import MB, ApiError, BotApiMethods, StoredFile


@dataclass(frozen=True)
class FakeUser:
    """A Telegram user the test plays."""

    id: int
    first_name: str = "Tess"
    language_code: str | None = "en"
    last_name: str | None = None
    username: str | None = None

    def as_dict(self) -> dict[str, Any]:
        user: dict[str, Any] = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.language_code is not None:
            user["language_code"] = self.language_code
        for key in ("last_name", "username"):
            if getattr(self, key) is not None:
                user[key] = getattr(self, key)
        return user


@dataclass
class ApiCall:
    """One request the bot made, as the server understood it."""

    method: str
    params: dict[str, Any]
    files: dict[str, bytes]
    at: float
    status: int = 200
    result: Any = None
    description: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200

    def get(self, name: str, default: Any = None) -> Any:
        return self.params.get(name, default)


# Parameters that aiogram sends JSON-encoded (everything that is not a plain string).
_JSON_PARAMS = {
    "allowed_updates",
    "chat_id",
    "commands",
    "menu_button",
    "duration",
    "from_chat_id",
    "height",
    "limit",
    "message_id",
    "offset",
    "media",
    "reply_markup",
    "reply_parameters",
    "scope",
    "show_alert",
    "supports_streaming",
    "timeout",
    "width",
    "drop_pending_updates",
    "cache_time",
    "disable_notification",
    "link_preview_options",
}


# What a reverse proxy in front of the Bot API answers while the API is down.
_BAD_GATEWAY = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


class FakeTelegram(BotApiMethods):
    """The server, its state and the user-side helpers."""

    def __init__(self, token: str = "123456:TEST-token") -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_user = {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "FanslyMotion",
            "username": "fanslymotion_test_bot",
            "can_join_groups": False,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self.url = ""
        self.calls: list[ApiCall] = []
        self.updates: list[dict[str, Any]] = []
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.files: dict[str, StoredFile] = {}
        self.commands: dict[str, list[dict[str, Any]]] = {}
        self.menu_buttons: list[dict[str, Any]] = []  # setChatMenuButton's, in order
        self.blocked: set[int] = set()
        self.upload_limit = 50 * MB
        self.download_limit = 20 * MB
        self.edit_storm = 0  # how many editMessageText calls still get a 429
        self.storm_retry_after = 1
        self.upload_failures = 0  # how many sendVideo/sendDocument calls still get a 500
        self.webhook_deleted = 0
        # method (lower case) -> how many calls still get a 502 HTML page; "*" for every method
        self.outages: dict[str, int] = {}
        self.drops: dict[str, int] = {}  # method -> how many calls still lose their connection
        self.floods: dict[tuple[str, int], tuple[int, int]] = {}  # (method, chat): (n, seconds)
        self.slow_uploads: dict[int, float] = {}  # chat -> seconds an upload takes
        self.file_outage = 0  # how many file downloads still get a 502 page
        self.refuse_media = False  # editMessageMedia answers 400, as for a message it can't edit
        self._update_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._callback_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._confirmed = 0
        self._changed = asyncio.Condition()
        self._closing = False
        self._runner: web.AppRunner | None = None

    # -- life cycle ---------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application(client_max_size=200 * MB)
        app.router.add_post("/bot{token}/{method}", self._api)
        app.router.add_get("/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._file)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        self._closing = True
        await self._notify()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- the user's side ----------------------------------------------------------------------

    def _user_message(self, user: FakeUser, **content: Any) -> dict[str, Any]:
        message = {
            "message_id": self._next_message_id(user.id),
            "date": int(time.time()),
            "chat": {"id": user.id, "type": "private", "first_name": user.first_name},
            "from": user.as_dict(),
            **content,
        }
        self.messages[(user.id, message["message_id"])] = message
        return message

    async def _push(self, update: dict[str, Any]) -> dict[str, Any]:
        update = {"update_id": next(self._update_ids), **update}
        self.updates.append(update)
        await self._notify()
        return update

    async def send_text(self, user: FakeUser, text: str) -> dict[str, Any]:
        """The user types `text` (a command when it starts with /)."""
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            command = text.split()[0]
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command)}]
        message = self._user_message(user, **content)
        await self._push({"message": message})
        return message

    async def send_content(self, user: FakeUser, **content: Any) -> dict[str, Any]:
        """The user sends any other kind of message: `sticker={...}`, `voice={...}`..."""
        message = self._user_message(user, **content)
        await self._push({"message": message})
        return message

    async def send_photo(
        self,
        user: FakeUser,
        data: bytes,
        caption: str | None = None,
        *,
        media_group_id: str | None = None,
    ) -> dict[str, Any]:
        """The user sends a compressed photo: a thumbnail and the full size, as Telegram does."""
        from PIL import Image

        sizes: list[dict[str, Any]] = []
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            thumb = image.convert("RGB")
            thumb.thumbnail((90, 90))
            buffer = io.BytesIO()
            thumb.save(buffer, "JPEG")
        for blob, (w, h) in ((buffer.getvalue(), thumb.size), (data, (width, height))):
            file_id, unique = self._store_file(blob, "photos", "jpg")
            sizes.append(
                {
                    "file_id": file_id,
                    "file_unique_id": unique,
                    "width": w,
                    "height": h,
                    "file_size": len(blob),
                }
            )
        content: dict[str, Any] = {"photo": sizes}
        if caption:
            content["caption"] = caption
        if media_group_id:
            content["media_group_id"] = media_group_id
        message = self._user_message(user, **content)
        await self._push({"message": message})
        return message

    async def send_audio(
        self, user: FakeUser, data: bytes, *, voice: bool = False, title: str = "Tune"
    ) -> dict[str, Any]:
        """The user sends a music file (`audio`) or a voice message (`voice`)."""
        file_id, unique = self._store_file(data, "music" if not voice else "voice", "ogg")
        item: dict[str, Any] = {
            "file_id": file_id,
            "file_unique_id": unique,
            "duration": 5,
            "file_size": len(data),
        }
        if not voice:
            item["title"] = title
        message = self._user_message(user, **{"voice" if voice else "audio": item})
        await self._push({"message": message})
        return message

    async def send_document(
        self,
        user: FakeUser,
        data: bytes,
        file_name: str,
        mime_type: str | None,
        *,
        declare_size: bool = True,
    ) -> dict[str, Any]:
        """The user sends a file (an uncompressed image, or anything else).

        `file_size` is optional in the Bot API; `declare_size=False` leaves it out, so only
        getFile can tell the bot that a file is too big.
        """
        file_id, unique = self._store_file(data, "documents", file_name.rsplit(".", 1)[-1])
        document: dict[str, Any] = {
            "file_id": file_id,
            "file_unique_id": unique,
            "file_name": file_name,
        }
        if declare_size:
            document["file_size"] = len(data)
        if mime_type is not None:
            document["mime_type"] = mime_type
        message = self._user_message(user, document=document)
        await self._push({"message": message})
        return message

    async def press(
        self, user: FakeUser, message: dict[str, Any], button: str, *, seen: bool = False
    ) -> dict[str, Any]:
        """The user presses the inline button whose callback data or text matches `button`.

        The message is taken as the server has it now (its current keyboard), and the button must
        be on it: a test cannot press what the user cannot see. `seen=True` presses the message
        as the test saw it: a second quick tap on a keyboard whose edit had not arrived yet.
        """
        current = message if seen else self.messages[(message["chat"]["id"], message["message_id"])]
        data = self.find_button(current, button)
        query = {
            "id": str(next(self._callback_ids)),
            "from": user.as_dict(),
            "message": current,
            "chat_instance": f"-{user.id}{self.bot_id}",
            "data": data,
        }
        await self._push({"callback_query": query})
        return query

    @staticmethod
    def buttons(message: dict[str, Any]) -> list[tuple[str, str]]:
        """(text, callback_data) of every inline button of a message."""
        markup = message.get("reply_markup") or {}
        return [
            (str(b.get("text")), str(b.get("callback_data")))
            for row in markup.get("inline_keyboard", [])
            for b in row
        ]

    def find_button(self, message: dict[str, Any], button: str) -> str:
        pairs = self.buttons(message)
        for _, data in pairs:
            if data == button:
                return data
        for text, data in pairs:
            if button.lower() in text.lower():
                return data
        raise AssertionError(f"no button {button!r} on message: {pairs}")

    def block(self, user_id: int) -> None:
        """The user blocks the bot: every send to them answers 403 from now on."""
        self.blocked.add(user_id)

    def unblock(self, user_id: int) -> None:
        self.blocked.discard(user_id)

    def delete(self, chat_id: int, message_id: int) -> None:
        """The user deletes a message of the bot: edits answer 400 "message to edit not found"."""
        del self.messages[(chat_id, message_id)]

    def outage(self, calls: int, method: str = "*") -> None:
        """The next `calls` calls (of `method`, or of any) get a proxy's 502 HTML page."""
        self.outages[method.lower()] = calls

    def drop(self, calls: int, method: str) -> None:
        """The next `calls` calls of `method` lose their connection before any answer."""
        self.drops[method.lower()] = calls

    def flood(self, method: str, chat_id: int, calls: int, retry_after: int) -> None:
        """The next `calls` calls of `method` in a chat get 429 with `retry_after`."""
        self.floods[(method.lower(), chat_id)] = (calls, retry_after)

    # -- what the bot did ---------------------------------------------------------------------

    def calls_of(self, method: str, *, ok: bool | None = None) -> list[ApiCall]:
        return [
            c
            for c in self.calls
            if c.method.lower() == method.lower() and (ok is None or c.ok == ok)
        ]

    def bot_messages(self, chat_id: int) -> list[dict[str, Any]]:
        """The bot's messages in a chat as they are now (edits applied), oldest first."""
        return [
            m
            for (chat, _), m in sorted(self.messages.items())
            if chat == chat_id and m.get("from", {}).get("id") == self.bot_id
        ]

    def message(self, chat_id: int, message_id: int) -> dict[str, Any]:
        return self.messages[(chat_id, message_id)]

    async def wait_for(
        self, predicate: Callable[[], Any], within: float = 10.0, what: str = "condition"
    ) -> Any:
        """Wait until `predicate()` is truthy (checked after every request); return its value."""
        deadline = time.monotonic() + within
        async with self._changed:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), min(left, 0.5))

    async def wait_message(
        self, chat_id: int, contains: str, *, after: int = 0, within: float = 10.0
    ) -> dict[str, Any]:
        """Wait for a bot message (sent or edited) in the chat whose text contains `contains`."""

        def find() -> dict[str, Any] | None:
            for candidate in self.bot_messages(chat_id)[::-1]:
                text = str(candidate.get("text") or candidate.get("caption") or "")
                if candidate["message_id"] > after and contains.lower() in text.lower():
                    return candidate
            return None

        found: dict[str, Any] = await self.wait_for(find, within, f"a message with {contains!r}")
        return found

    async def wait_call(
        self,
        method: str,
        predicate: Callable[[ApiCall], bool] = lambda call: True,
        *,
        within: float = 10.0,
        ok: bool | None = True,
    ) -> ApiCall:
        def find() -> ApiCall | None:
            for call in self.calls_of(method, ok=ok):
                if predicate(call):
                    return call
            return None

        call: ApiCall = await self.wait_for(find, within, f"a {method} call")
        return call

    # -- the API ------------------------------------------------------------------------------

    async def _read(self, request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
        params: dict[str, Any] = {}
        files: dict[str, bytes] = {}
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader) or part.name is None:
                    continue
                if part.filename is not None:
                    files[part.name] = bytes(await part.read())
                else:
                    params[part.name] = await part.text()
        elif request.content_type == "application/json":
            params = dict(await request.json())
        else:
            form = await request.post()
            params = {k: v for k, v in form.items() if isinstance(v, str)}
            params.update(request.query)
        for name in list(params):
            value = params[name]
            if name in _JSON_PARAMS and isinstance(value, str):
                with contextlib.suppress(ValueError):
                    params[name] = json.loads(value)
        return params, files

    def _take(self, faults: dict[str, int], method: str) -> bool:
        """Use up one planned fault for `method` (or for any method, under "*")."""
        for key in (method.lower(), "*"):
            if faults.get(key, 0) > 0:
                faults[key] -= 1
                return True
        return False

    def _flooded(self, method: str, params: dict[str, Any]) -> None:
        with contextlib.suppress(KeyError, TypeError, ValueError):
            key = (method.lower(), int(params["chat_id"]))
            calls, retry_after = self.floods.get(key, (0, 0))
            if calls > 0:
                self.floods[key] = (calls - 1, retry_after)
                raise ApiError(
                    429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after
                )

    async def _fault(self, call: ApiCall, request: web.Request) -> web.Response | None:
        """A planned outage or dropped connection for this call, if any."""
        if call.method.lower() == "getupdates" and not (
            self.outages.get("getupdates") or self.drops.get("getupdates")
        ):
            return None  # "*" spares polling; an outage of getUpdates is named
        if self._take(self.drops, call.method):
            call.status, call.description = 0, "connection dropped"
            self.calls.append(call)
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=204)
        if self._take(self.outages, call.method):
            call.status, call.description = 502, "502 Bad Gateway (HTML)"
            self.calls.append(call)
            await self._notify()
            return web.Response(status=502, text=_BAD_GATEWAY, content_type="text/html")
        return None

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params, files = await self._read(request)
        call = ApiCall(method, params, files, time.monotonic())
        fault = await self._fault(call, request)
        if fault is not None:
            return fault
        if method.lower() in ("sendvideo", "senddocument") and files:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                delay = self.slow_uploads.get(int(params["chat_id"]), 0.0)
                if delay:
                    await asyncio.sleep(delay)
        try:
            self._flooded(method, params)
            if request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            handler = getattr(self, f"_m_{method.lower()}", None)
            if handler is None:
                raise ApiError(404, "Not Found: method not found")
            if method.lower() == "getupdates":
                result = await handler(params)
            else:
                result = handler(params, files)
            call.result = result
            body: dict[str, Any] = {"ok": True, "result": result}
        except ApiError as exc:
            call.status, call.description = exc.code, exc.description
            body = {"ok": False, "error_code": exc.code, "description": exc.description}
            if exc.retry_after is not None:
                body["parameters"] = {"retry_after": exc.retry_after}
        self.calls.append(call)
        await self._notify()
        return web.json_response(body, status=call.status)

    async def _file(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.json_response(
                {"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401
            )
        if self.file_outage > 0:
            self.file_outage -= 1
            return web.Response(status=502, text=_BAD_GATEWAY, content_type="text/html")
        path = request.match_info["path"]
        for stored in self.files.values():
            if stored.path == path:
                return web.Response(body=stored.data, content_type="application/octet-stream")
        return web.json_response(
            {"ok": False, "error_code": 404, "description": "Not Found"}, status=404
        )

    # getUpdates: confirm everything below `offset`, then answer at once or long-poll.
    async def _m_getupdates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        limit = int(params.get("limit") or 100)
        allowed = params.get("allowed_updates") or None
        if offset:
            self._confirmed = max(self._confirmed, offset)
            self.updates = [u for u in self.updates if u["update_id"] >= offset]

        def pending() -> list[dict[str, Any]]:
            ready = [u for u in self.updates if u["update_id"] >= self._confirmed]
            if allowed:
                ready = [u for u in ready if any(kind in u for kind in allowed)]
            return ready[:limit]

        deadline = time.monotonic() + timeout
        async with self._changed:
            while not (ready := pending()) and not self._closing:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), left)
        return ready

    def uploaded(self, call: ApiCall, name: str = "video") -> bytes:
        """The bytes a sendVideo/sendDocument call carried (or the stored file it referenced)."""
        value = call.params.get(name)
        if isinstance(value, str) and value.startswith("attach://"):
            return call.files[value.removeprefix("attach://")]
        if name in call.files:
            return call.files[name]
        return self.files[str(value)].data
