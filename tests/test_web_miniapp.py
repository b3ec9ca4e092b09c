"""The page as a Telegram Mini App (issue 24, item 3) in Debian's Chromium against the real
service: opened with launch data signed by a test bot's token (in the URL fragment, as Telegram
hands it over; Telegram's script is not there), it shows the user's own gallery only, makes
videos as that Telegram user, gets 404 for another user's job, and says in words when the
launch data is forged or too old."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest

from .conftest import photo_bytes
from .miniapp_data import launch_data, tma
from .test_process import Process, free_port
from .test_web import Console, _page, _photo, _service, launch_browser

BOT = "424242:MINIAPP-test-token"
ADMIN = "miniapp-admin-token-01"
ALICE, BOB = 7001, 7002


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_browser()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    yield from _service(
        tmp_path_factory.mktemp("web-miniapp"),
        FANSLYMOTION_API_TOKEN=ADMIN,
        FANSLYMOTION_BOT_TOKEN=BOT,
        # No Bot API here: the bot keeps retrying; the page and the API do not need it.
        FANSLYMOTION_TELEGRAM_API=f"http://127.0.0.1:{free_port()}",
        FANSLYMOTION_MINIAPP_MAX_AGE="600",
        FANSLYMOTION_MAX_ACTIVE_PER_USER="5",  # her seeded jobs may still run when she animates
    )


def _call(site: Process, method: str, path: str, headers: dict[str, str], body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"http://127.0.0.1:{site.port}{path}",
        data=data,
        method=method,
        headers={**headers, **({"Content-Type": "application/json"} if data else {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _create(site: Process, headers: dict[str, str], user_id: int) -> str:
    body = {
        "user_id": user_id,
        "duration": 3,
        "resolution": "360p",
        "motion_preset": "pan_l",
        "image_data": base64.b64encode(photo_bytes()).decode(),
    }
    status, created = _call(site, "POST", "/job/create", headers, body)
    assert status == 201, created
    return str(created["job_id"])


def _open(page: Any, site: Process, data: str) -> None:
    fragment = f"tgWebAppData={quote(data, safe='')}&tgWebAppVersion=8.0&tgWebAppPlatform=web"
    page.goto(f"http://127.0.0.1:{site.port}/#{fragment}")


def test_the_mini_app_shows_and_makes_only_the_users_own(browser: Any, site: Process) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    hers = _create(site, tma(BOT, ALICE), 1)
    api_same_number = _create(site, admin, ALICE)  # an API user with her number: not hers
    bobs = _create(site, tma(BOT, BOB), 1)
    console = Console()
    page = _page(browser, console)
    _open(page, site, launch_data(BOT, ALICE))
    page.wait_for_selector(f"#gallery-grid li[data-job-id='{hers}']")
    assert page.is_hidden("#token-panel") and page.is_hidden("#tma-panel")
    assert "through Telegram" in page.inner_text("#user-note")
    shown = page.eval_on_selector_all(
        "#gallery-grid li", "items => items.map(i => i.dataset.jobId)"
    )
    assert shown == [hers], (shown, api_same_number, bobs)

    # A video made on the page is hers, as a Telegram user (offered in her chat as well).
    page.set_input_files("#file-input", _photo("p.jpg", photo_bytes(480, 360), "image/jpeg"))
    page.get_by_label("Duration").select_option("3")
    page.get_by_label("Resolution").select_option("360p")
    page.get_by_role("button", name="Animate").click()
    page.wait_for_function("() => document.getElementById('video').readyState >= 2")
    made = page.get_attribute("#video", "data-job-id")
    _, listed = _call(site, "GET", "/jobs?limit=50", admin)
    row = next(job for job in listed["jobs"] if job["job_id"] == made)
    assert row["user_id"] == ALICE
    _, mine = _call(site, "GET", "/jobs", tma(BOT, ALICE))
    assert {job["job_id"] for job in mine["jobs"]} == {hers, made}

    assert console.errors == [], console.errors
    # Another user's job, asked for from inside the page with her launch data: 404.
    answer = page.evaluate(
        """async ([jobId, header]) => {
            const r = await fetch(`/job/status/${jobId}`, {headers: {Authorization: header}});
            return [r.status, (await r.json()).ok];
        }""",
        [bobs, tma(BOT, ALICE)["Authorization"]],
    )
    assert answer == [404, False]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (launch_data(BOT, ALICE, forged=True), "was not accepted"),
        (launch_data("999:another-bot", ALICE), "was not accepted"),
        (launch_data(BOT, ALICE, age=3600), "has expired"),
    ],
)
def test_forged_or_stale_launch_data_is_refused_in_words(
    browser: Any, site: Process, data: str, words: str
) -> None:
    console = Console()
    page = _page(browser, console)
    _open(page, site, data)
    page.wait_for_selector(f"#tma-error:text('{words}')")
    assert page.is_hidden("#gallery") and page.is_hidden("#make")
    assert page.is_hidden("#token-panel")
    assert page.eval_on_selector_all("#gallery-grid li", "items => items.length") == 0
    assert all("401" in error for error in console.errors), console.errors
