"""The operator's page (/admin) in Debian's Chromium (Playwright) against the real service
process: nothing but the token prompt without the token; then a running job, the queue, a
failed job retried to completion, an owner blocked and another limited from the page (their
next create refused through the API), a Telegram owner by name, the charts with one bar per hour or day, pause and resume,
and the page in Russian. `FANSLYMOTION_ADMIN_SCREENSHOT=docs/admin-page.png` keeps a screenshot."""

from __future__ import annotations

import base64
import json
import os
import re
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fanslymotion import web

from .conftest import photo_bytes
from .test_process import Process
from .test_web import Console, _page, _photo, _service, launch_browser

TOKEN = "operator-s3cret-for-tests"
SCREENSHOT = os.environ.get("FANSLYMOTION_ADMIN_SCREENSHOT", "")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_browser()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    yield from _service(
        tmp_path_factory.mktemp("admin"),
        FANSLYMOTION_ADMIN_TOKEN=TOKEN,
        FANSLYMOTION_DAILY_SECONDS_PER_USER="60",
        FANSLYMOTION_MAX_ACTIVE_PER_USER="5",
        FANSLYMOTION_MAX_RETRIES="0",
    )


def call(
    site: Process, method: str, path: str, body: Any = None, token: str | None = TOKEN
) -> tuple[int, Any, dict[str, str]]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        f"http://127.0.0.1:{site.port}{path}", data=data, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def create(site: Process, user_id: int, **params: Any) -> tuple[int, Any, dict[str, str]]:
    body = {
        "user_id": user_id,
        "duration": 3,
        "resolution": "360p",
        "motion_preset": "pan_l",
        "image_data": base64.b64encode(photo_bytes()).decode(),
        **params,
    }
    return call(site, "POST", "/job/create", body, token=None)


def wait_status(site: Process, job_id: str, *statuses: str, limit: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    while True:
        _, body, _ = call(site, "GET", f"/job/status/{job_id}", token=None)
        if body["status"] in statuses:
            return dict(body)
        assert time.monotonic() < deadline, body
        time.sleep(0.1)


@pytest.mark.serial  # two Chromium pages and renders: 30 s waits missed twice beside another file
def test_the_operators_page(browser: Any, site: Process) -> None:
    console = Console()
    page = _page(browser, console, viewport={"width": 1280, "height": 900})
    base = f"http://127.0.0.1:{site.port}"

    # Without the token: the prompt and nothing else.
    page.goto(f"{base}/admin")
    page.wait_for_selector("#token-panel:not([hidden])")
    assert page.is_hidden("#room") and page.is_hidden("#tabs")
    assert page.locator("#room tbody tr").count() == 0
    page.get_by_label("Admin token", exact=True).fill("wrong")
    page.get_by_role("button", name="Open").click()
    page.wait_for_selector("#token-error:text('was not accepted')")
    assert page.is_hidden("#room")

    # One job done before the operator looks.
    _, first, _ = create(site, 5, resolution="480p")
    wait_status(site, first["job_id"], "completed")

    # A failed job: its photo spoiled while it waits, restored before the retry.
    assert call(site, "POST", "/admin/pause")[0] == 200
    _, failing, _ = create(site, 1, seed=777)
    photo = site.data_dir / "inputs" / f"{failing['job_id']}.img"
    good = photo.read_bytes()
    photo.write_bytes(b"not a photo at all")
    assert call(site, "POST", "/admin/resume")[0] == 200
    assert wait_status(site, failing["job_id"], "failed")["status"] == "failed"

    # A long job renders while two wait behind it.
    _, running, _ = create(site, 2, duration=12, resolution="720p")
    waiting = [create(site, user)[1]["job_id"] for user in (3, 4)]

    # A Telegram owner the bot knows by name (the bot writes it; this service runs no bot).
    with sqlite3.connect(site.data_dir / "fanslymotion.sqlite3") as db:
        db.execute(
            "INSERT INTO users (user_id, first_name, last_name, username)"
            " VALUES (4242, 'Ada', 'Lovelace', 'ada_l')"
        )
    assert call(site, "PUT", "/admin/users/telegram:4242", {"daily_seconds": 30})[0] == 200

    page.get_by_label("Admin token", exact=True).fill(TOKEN)
    page.keyboard.press("Enter")
    page.wait_for_selector("#room:not([hidden])")
    ada = page.locator("#users-table tr[data-owner='telegram:4242']")
    ada.wait_for()
    assert ada.locator(".owner-name").inner_text() == "Ada Lovelace @ada_l"
    assert "telegram:4242" in ada.inner_text()
    page.wait_for_selector(f"#running .run[data-job='{running['job_id']}']")
    rows = page.locator("#queue-table tbody tr")
    page.wait_for_function("() => document.querySelectorAll('#queue-table tbody tr').length === 2")
    assert [rows.nth(i).get_attribute("data-job") for i in range(2)] == waiting
    assert rows.nth(0).locator("td").nth(0).inner_text() == "1"
    assert "api:3" in rows.nth(0).inner_text()
    failed_row = page.locator(f"#recent-table tr[data-job='{failing['job_id']}']")
    failed_row.wait_for()
    assert failed_row.get_attribute("data-status") == "failed"
    assert "not a supported image" in failed_row.inner_text()
    bars = page.locator("#renders-chart svg rect.bar")
    # The trends come from their own request, drawn whenever it answers (count() does not wait).
    page.locator("#renders-chart svg").wait_for()
    assert bars.count() == 24
    if SCREENSHOT:
        page.screenshot(path=str(Path(SCREENSHOT)), full_page=True)

    # Retry the failed job from the page: the same job and seed, to a real video.
    photo.write_bytes(good)
    failed_row.get_by_role("button", name="Retry").click()
    page.wait_for_selector(
        f"#recent-table tr[data-job='{failing['job_id']}']:not([data-status=failed])"
    )
    done = wait_status(site, failing["job_id"], "completed", "failed")
    assert done["status"] == "completed" and done["attempts"] == 1
    _, result, _ = call(site, "GET", f"/job/result/{failing['job_id']}", token=None)
    assert result["seed"] == 777 and result["frames"] == 3 * 12

    # Block api:4 and limit api:3 to the 3 s it already ordered, from the page.
    page.wait_for_selector("#users-table tr[data-owner='api:4']")
    page.locator("#users-table tr[data-owner='api:4']").get_by_role("button", name="Block").click()
    page.wait_for_selector("#users-table tr[data-owner='api:4'][data-blocked=true]")
    status, body, _ = create(site, 4)
    assert status == 403 and body["code"] == "user_blocked"
    three = page.locator("#users-table tr[data-owner='api:3']")
    three.locator("input").fill("3")
    three.get_by_role("button", name="Save").click()
    page.wait_for_selector("#users-table tr[data-owner='api:3'] input[value='3']")
    status, body, headers = create(site, 3)
    assert status == 429 and body["code"] == "daily_limit"
    assert int(headers["Retry-After"]) > 0 and int(headers["X-RateLimit-Reset"]) > time.time()

    # Charts: one bar per day over 30 days; the renders so far are in today's bar.
    page.get_by_role("button", name="Last 30 days").click()
    page.wait_for_function(
        "() => document.querySelectorAll('#renders-chart rect.bar').length === 30"
    )
    wait_status(site, running["job_id"], "completed")
    for job_id in waiting:
        wait_status(site, job_id, "completed")

    # Pause and resume from Actions: the service's own flag.
    page.get_by_role("button", name="Pause processing").click()
    page.wait_for_selector("#action-log li:text('Paused at')")
    assert call(site, "GET", "/admin/overview")[1]["paused"] is True
    page.get_by_role("button", name="Resume processing").click()
    page.wait_for_selector("#action-log li:text('Resumed at')")
    assert call(site, "GET", "/admin/overview")[1]["paused"] is False
    page.get_by_role("button", name="Last 24 hours").click()
    page.wait_for_function(
        "() => [...document.querySelectorAll('#renders-chart rect.bar')]"
        ".reduce((sum, bar) => sum + Number(bar.dataset.value), 0) === 5"
    )

    # The user page says the daily limit in its own words, with the time it resets: api:3
    # (limited to the 3 s it ordered) tries once more from the page.
    user = browser.new_context(locale="ru-RU").new_page()
    user.set_default_timeout(30_000)
    console.watch(user)
    user.add_init_script("localStorage.setItem('fanslymotion.user', '3')")
    user.goto(f"{base}/")
    user.set_input_files("#file-input", _photo("p.jpg", photo_bytes(480, 360), "image/jpeg"))
    user.locator("#animate:not([disabled])").click()
    user.wait_for_selector("#make-error:text('Дневной лимит видео исчерпан')")
    assert "Заказать снова можно после" in user.inner_text("#make-error")

    # In Russian, the token kept in the browser.
    page.get_by_role("button", name="Русский").click()
    page.wait_for_selector("#now-title:text('Сейчас')")
    page.wait_for_selector("#users-table tr[data-owner='api:4'] button:text('Разблокировать')")
    # Chromium logs the refused requests (401, 429) itself; nothing else went wrong.
    assert [e for e in console.errors if "401" not in e and "429" not in e] == [], console.errors


def test_the_operators_page_has_every_word_in_both_languages() -> None:
    source = (web.STATIC_DIR / "js" / "admin_i18n.js").read_text(encoding="utf-8")
    english, russian = source.split("\n  ru: {")
    keys = [set(re.findall(r'^\s+"([\w.]+)":', part, re.M)) for part in (english, russian)]
    assert keys[0] and keys[0] == keys[1], keys[0] ^ keys[1]
    used = set(re.findall(r'data-i18n="([\w.]+)"', (web.STATIC_DIR / "admin.html").read_text()))
    script = (web.STATIC_DIR / "js" / "admin.js").read_text(encoding="utf-8")
    used |= set(re.findall(r'\bt\("([\w.]+)"', script))
    assert used and used <= keys[0], used - keys[0]
