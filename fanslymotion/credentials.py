"""Credentials: a bearer header read and compared with the tokens that open a door. An empty
credential never matches (`compare_digest(b"", b"")` is True, so it is refused first)."""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping

from pydantic import SecretStr


def bearer(headers: Mapping[str, str]) -> str | None:
    """The credentials of an `Authorization: Bearer ...` header (the scheme in any case)."""
    scheme, _, given = headers.get("Authorization", "").strip().partition(" ")
    return given.strip() if scheme.lower() == "bearer" else None


def matches(given: str | None, tokens: Iterable[SecretStr | None]) -> bool:
    """Whether `given` is one of `tokens` (unset ones left out); compared in constant time,
    every token compared so the time does not say which one matched."""
    if not given:
        return False
    found = False
    for token in tokens:
        if token is None or not token.get_secret_value():
            continue
        found |= hmac.compare_digest(given.encode(), token.get_secret_value().encode())
    return found
