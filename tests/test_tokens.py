"""Tokens (issue 24, item 1): API_TOKEN and WORKER_TOKEN, when set, have at least 16
characters (refused at start, exit 2); an empty credential never opens anything; the front
accepts WORKER_TOKEN_PREVIOUS too while workers move to a new token."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import ServiceFactory
from .test_process import Process

LONG_ENOUGH = "x" * 16


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("FANSLYMOTION_API_TOKEN", ""),
        ("FANSLYMOTION_API_TOKEN", "short-token"),
        ("FANSLYMOTION_API_TOKEN", " " * 20),
        ("FANSLYMOTION_WORKER_TOKEN", ""),
        ("FANSLYMOTION_WORKER_TOKEN", "x" * 15),
        ("FANSLYMOTION_WORKER_TOKEN_PREVIOUS", "old"),
        ("FANSLYMOTION_METRICS_TOKEN", "scrape"),
    ],
)
def test_a_short_or_empty_token_is_refused_at_start(tmp_path: Path, name: str, value: str) -> None:
    done = Process(tmp_path).run_once(60, **{name: value})
    assert done.returncode == 2, done.stderr
    line = next(line for line in done.stderr.splitlines() if name in line)
    assert "at least 16 characters" in line and "invalid settings" in line
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "fanslymotion.sqlite3").exists()


async def test_an_empty_bearer_never_opens_the_api(start_service: ServiceFactory) -> None:
    client = await start_service(api_token=LONG_ENOUGH)
    for header in ("Bearer", "Bearer ", "Bearer  ", "bearer\t", "Basic Og=="):
        status, body, _ = await client.request("GET", "/jobs", headers={"Authorization": header})
        assert status == 401 and body["ok"] is False, header
    status, _, _ = await client.request(
        "GET", "/jobs", headers={"Authorization": f"Bearer {LONG_ENOUGH}"}
    )
    assert status == 200


async def test_the_front_takes_the_previous_worker_token_while_workers_rotate(
    start_service: ServiceFactory, pg_url: str
) -> None:
    new, old = "new-worker-token-0123", "old-worker-token-4567"
    client = await start_service(database_url=pg_url, worker_token=new, worker_token_previous=old)
    for token, expected in [(new, 200), (old, 200), ("", 401), ("another-token-89ab", 401)]:
        status, body, _ = await client.request(
            "GET", "/internal/worker", headers={"Authorization": f"Bearer {token}"}
        )
        assert status == expected, (token, body)
    # Without a previous token set, only the current one opens the door.
    client.service.settings.worker_token_previous = None
    status, _, _ = await client.request(
        "GET", "/internal/worker", headers={"Authorization": f"Bearer {old}"}
    )
    assert status == 401
