"""Who a job belongs to: its owner is the (source, user_id) pair the jobs table keeps.

`telegram` owners are Telegram users, through the bot or the Mini App (user_id is their
Telegram id); `api` owners are the `user_id`s an API caller with the API token names. The
two never meet: the same number under another source is another owner. A `Caller` is who sent
a request: the API token (or the operator's ADMIN_TOKEN, or anyone where no API token is set)
acts for every owner; a Telegram user only for themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Source = Literal["api", "telegram"]
TELEGRAM: Source = "telegram"
API: Source = "api"


class _Owned(Protocol):
    @property
    def source(self) -> str: ...

    @property
    def user_id(self) -> int: ...


@dataclass(frozen=True)
class Owner:
    source: Source
    user_id: int

    def owns(self, job: _Owned) -> bool:
        return job.source == self.source and job.user_id == self.user_id


@dataclass(frozen=True)
class Caller:
    """Who sent a request: `owner` None is the admin, who acts for every owner."""

    owner: Owner | None = None
    language: str | None = None  # a Telegram user's language, for the chat's words

    @property
    def admin(self) -> bool:
        return self.owner is None

    def may_see(self, job: _Owned) -> bool:
        return self.owner is None or self.owner.owns(job)


ADMIN = Caller()
