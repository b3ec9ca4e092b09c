"""The Bot API methods of `FakeTelegram` (tests/fake_telegram.py): each `_m_<method>` takes
the request's parameters and files and returns the result, or raises `ApiError` the way the real
API answers (400, 403, 413, 429, 500), so that aiogram sees Telegram's own errors."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

MB = 1024 * 1024


@dataclass
class StoredFile:
    data: bytes
    path: str
    unique_id: str


class ApiError(Exception):
    """Answered as the real API answers an error."""

    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.retry_after = retry_after


class BotApiMethods:
    """The methods; `FakeTelegram` holds the state they read and change."""

    bot_id: int
    bot_user: dict[str, Any]
    messages: dict[tuple[int, int], dict[str, Any]]
    files: dict[str, StoredFile]
    commands: dict[str, list[dict[str, Any]]]
    menu_buttons: list[dict[str, Any]]
    blocked: set[int]
    upload_limit: int
    download_limit: int
    edit_storm: int
    storm_retry_after: int
    upload_failures: int
    webhook_deleted: int
    refuse_media: bool
    _message_ids: dict[int, itertools.count[int]]
    _file_ids: itertools.count[int]

    def _next_message_id(self, chat_id: int) -> int:
        counter = self._message_ids.setdefault(chat_id, itertools.count(1))
        return next(counter)

    def _store_file(self, data: bytes, folder: str, extension: str) -> tuple[str, str]:
        number = next(self._file_ids)
        file_id = f"F{number:04d}-{folder}-AgADBAADr6cxG"
        unique = f"U{number:04d}"
        self.files[file_id] = StoredFile(data, f"{folder}/file_{number}.{extension}", unique)
        return file_id, unique

    def _m_getme(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        return self.bot_user

    def _m_deletewebhook(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        self.webhook_deleted += 1
        return True

    def _m_setmycommands(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list) or not commands:
            raise ApiError(400, "Bad Request: commands must be a non-empty list")
        scope = params.get("scope") or {}
        if isinstance(scope, dict) and scope.get("type") == "chat":
            # per chat: the key is "chat:<id>" (with ":<language>" when one is given)
            key = f"chat:{scope.get('chat_id')}"
            if params.get("language_code"):
                key += f":{params['language_code']}"
        else:
            key = str(params.get("language_code") or "")
        self.commands[key] = commands
        return True

    def _m_setchatmenubutton(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        button = params.get("menu_button") or {"type": "default"}
        if not isinstance(button, dict) or button.get("type") not in (
            "commands",
            "web_app",
            "default",
        ):
            raise ApiError(400, "Bad Request: menu_button is invalid")
        if button["type"] == "web_app" and not str(
            button.get("web_app", {}).get("url", "")
        ).startswith("https://"):
            raise ApiError(400, "Bad Request: BUTTON_URL_INVALID")  # Mini Apps are https only
        self.menu_buttons.append(button)
        return True

    def _chat(self, params: dict[str, Any]) -> int:
        try:
            chat_id = int(params["chat_id"])
        except (KeyError, TypeError, ValueError):
            raise ApiError(400, "Bad Request: chat_id is empty") from None
        if chat_id in self.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        if chat_id not in self._message_ids:
            raise ApiError(400, "Bad Request: chat not found")
        return chat_id

    def _bot_message(self, chat_id: int, params: dict[str, Any], **content: Any) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": self._next_message_id(chat_id),
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "from": self.bot_user,
            **content,
        }
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        self.messages[(chat_id, message["message_id"])] = message
        return message

    def _m_sendmessage(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        chat_id = self._chat(params)
        text = params.get("text") or ""
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            raise ApiError(400, "Bad Request: message is too long")
        return self._bot_message(chat_id, params, text=text)

    def _target(self, params: dict[str, Any]) -> dict[str, Any]:
        chat_id = self._chat(params)
        message = self.messages.get((chat_id, int(params.get("message_id") or 0)))
        if message is None or message.get("from", {}).get("id") != self.bot_id:
            raise ApiError(400, "Bad Request: message to edit not found")
        return message

    def _m_editmessagetext(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        if self.edit_storm > 0:
            self.edit_storm -= 1
            raise ApiError(
                429,
                f"Too Many Requests: retry after {self.storm_retry_after}",
                retry_after=self.storm_retry_after,
            )
        message = self._target(params)
        if "text" not in message:
            raise ApiError(400, "Bad Request: there is no text in the message to edit")
        text = params.get("text") or ""
        if not text.strip():
            raise ApiError(400, "Bad Request: message text is empty")
        markup = params.get("reply_markup") or None
        if message.get("text") == text and message.get("reply_markup") == markup:
            raise ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and reply"
                " markup are exactly the same as a current content and reply markup of the message",
            )
        message["text"] = text
        message["edit_date"] = int(time.time())
        if markup:
            message["reply_markup"] = markup
        else:
            message.pop("reply_markup", None)
        return message

    def _m_editmessagemedia(
        self, params: dict[str, Any], files: dict[str, bytes]
    ) -> dict[str, Any]:
        """A text message may become media (not the other way round: edits of its text are
        refused from then on, its caption is what changes)."""
        message = self._target(params)
        media = params.get("media")
        if not isinstance(media, dict) or media.get("type") not in ("animation", "video"):
            raise ApiError(400, "Bad Request: can't parse InputMedia")
        if self.refuse_media:
            raise ApiError(400, "Bad Request: MEDIA_EMPTY")
        file_id, stored = self._upload("media", {"media": media.get("media")}, files)
        message[str(media["type"])] = {
            "file_id": file_id,
            "file_unique_id": stored.unique_id,
            "width": int(media.get("width") or 0),
            "height": int(media.get("height") or 0),
            "duration": int(media.get("duration") or 0),
            "file_size": len(stored.data),
        }
        message.pop("text", None)
        message["caption"] = media.get("caption") or ""
        self._set_markup(message, params)
        return message

    def _m_editmessagecaption(
        self, params: dict[str, Any], files: dict[str, bytes]
    ) -> dict[str, Any]:
        message = self._target(params)
        if "text" in message:
            raise ApiError(400, "Bad Request: there is no caption in the message to edit")
        caption = params.get("caption") or ""
        if message.get("caption") == caption and message.get("reply_markup") == (
            params.get("reply_markup") or None
        ):
            raise ApiError(400, "Bad Request: message is not modified")
        message["caption"] = caption
        self._set_markup(message, params)
        return message

    @staticmethod
    def _set_markup(message: dict[str, Any], params: dict[str, Any]) -> None:
        markup = params.get("reply_markup") or None
        if markup:
            message["reply_markup"] = markup
        else:
            message.pop("reply_markup", None)

    def _m_editmessagereplymarkup(
        self, params: dict[str, Any], files: dict[str, bytes]
    ) -> dict[str, Any]:
        message = self._target(params)
        markup = params.get("reply_markup") or None
        if message.get("reply_markup") == markup:
            raise ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and reply"
                " markup are exactly the same as a current content and reply markup of the message",
            )
        if markup:
            message["reply_markup"] = markup
        else:
            message.pop("reply_markup", None)
        return message

    def _m_deletemessage(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        chat_id = self._chat(params)
        if self.messages.pop((chat_id, int(params.get("message_id") or 0)), None) is None:
            raise ApiError(400, "Bad Request: message to delete not found")
        return True

    def _m_answercallbackquery(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        if not params.get("callback_query_id"):
            raise ApiError(400, "Bad Request: query is too old and response timeout expired")
        return True

    def _m_sendchataction(self, params: dict[str, Any], files: dict[str, bytes]) -> bool:
        self._chat(params)
        return True

    def _m_getfile(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        stored = self.files.get(str(params.get("file_id")))
        if stored is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        if len(stored.data) > self.download_limit:
            raise ApiError(400, "Bad Request: file is too big")
        return {
            "file_id": params["file_id"],
            "file_unique_id": stored.unique_id,
            "file_size": len(stored.data),
            "file_path": stored.path,
        }

    def _upload(
        self, name: str, params: dict[str, Any], files: dict[str, bytes]
    ) -> tuple[str, StoredFile]:
        """Resolve a file parameter: `attach://<field>`, a file part of that name, or a file_id."""
        if self.upload_failures > 0:
            self.upload_failures -= 1
            raise ApiError(500, "Internal Server Error")
        value = params.get(name)
        if isinstance(value, str) and value.startswith("attach://"):
            data = files.get(value.removeprefix("attach://"))
        elif name in files:
            data = files[name]
        elif isinstance(value, str) and value in self.files:
            return value, self.files[value]
        else:
            raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")
        if data is None:
            raise ApiError(400, f"Bad Request: can't find the attached file for {name}")
        if len(data) > self.upload_limit:
            raise ApiError(413, "Request Entity Too Large")
        folder = "videos" if name == "video" else "documents"
        file_id, _ = self._store_file(data, folder, "mp4")
        return file_id, self.files[file_id]

    def _m_sendvideo(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        chat_id = self._chat(params)
        file_id, stored = self._upload("video", params, files)
        video = {
            "file_id": file_id,
            "file_unique_id": stored.unique_id,
            "width": int(params.get("width") or 0),
            "height": int(params.get("height") or 0),
            "duration": int(params.get("duration") or 0),
            "mime_type": "video/mp4",
            "file_size": len(stored.data),
        }
        content: dict[str, Any] = {"video": video}
        if params.get("caption"):
            content["caption"] = params["caption"]
        return self._bot_message(chat_id, params, **content)

    def _m_senddocument(self, params: dict[str, Any], files: dict[str, bytes]) -> dict[str, Any]:
        chat_id = self._chat(params)
        file_id, stored = self._upload("document", params, files)
        document = {
            "file_id": file_id,
            "file_unique_id": stored.unique_id,
            "file_name": "video.mp4",
            "mime_type": "video/mp4",
            "file_size": len(stored.data),
        }
        content: dict[str, Any] = {"document": document}
        if params.get("caption"):
            content["caption"] = params["caption"]
        return self._bot_message(chat_id, params, **content)
