"""Owners (issue 24, items 2 and 3 on the API): a Telegram user (the Mini App's launch data in
`Authorization: tma ...`) sees, streams, downloads and cancels only their own jobs, 404 for
anyone else's; only the admin token acts for any user and lists across users. Forged or stale
launch data is 401; a job made on the page is offered in the user's chat too."""

from __future__ import annotations

import asyncio
import base64

from .bot_stack import TOKEN as BOT
from .bot_stack import wait_until
from .conftest import Client, ServiceFactory, photo_bytes
from .fake_telegram import FakeTelegram
from .miniapp_data import tma

ADMIN = "owners-admin-token-0123"
AUTH = {"Authorization": f"Bearer {ADMIN}"}
ALICE, BOB = 5001, 5002


def _payload(user_id: int = 1) -> dict[str, object]:
    return {
        "user_id": user_id,
        "duration": 3,
        "resolution": "360p",
        "motion_preset": "pan_l",
        "image_data": base64.b64encode(photo_bytes()).decode(),
    }


async def _create(client: Client, headers: dict[str, str], user_id: int = 1) -> str:
    status, body, _ = await client.request(
        "POST", "/job/create", json=_payload(user_id), headers=headers
    )
    assert status == 201, body
    return str(body["job_id"])


async def _done(client: Client, job_id: str) -> None:
    async with asyncio.timeout(60):
        while True:
            _, body, _ = await client.request("GET", f"/job/status/{job_id}", headers=AUTH)
            if body["status"] == "completed":
                return
            await asyncio.sleep(0.05)


async def test_a_telegram_user_sees_only_their_own_jobs(
    start_service: ServiceFactory, tg: FakeTelegram
) -> None:
    client = await start_service(api_token=ADMIN, bot_token=BOT, telegram_api=tg.url)
    alice, bob = tma(BOT, ALICE), tma(BOT, BOB)
    mine = await _create(client, alice, user_id=999)  # the id in the body is not hers: ignored
    api_job = await _create(client, AUTH, user_id=ALICE)  # an API user with her number
    await _done(client, mine)
    await _done(client, api_job)
    row = await client.service.store.get_job(mine)
    assert row is not None and (row.source, row.user_id, row.chat_id) == ("telegram", ALICE, ALICE)
    # Her gallery: her own job only, not the API user's with the same number.
    status, listed, _ = await client.request("GET", "/jobs", headers=alice)
    assert status == 200 and [j["job_id"] for j in listed["jobs"]] == [mine]
    status, listed, _ = await client.request("GET", f"/jobs?user_id={BOB}", headers=alice)
    assert [j["job_id"] for j in listed["jobs"]] == [mine]  # asking for another's: still hers
    for path in ("/job/status/{}", "/job/result/{}", "/job/download/{}", "/job/{}/poster"):
        status, _, _ = await client.request("GET", path.format(mine), headers=alice)
        assert status == 200, path
        for headers, job in ((bob, mine), (alice, api_job)):
            status, body, _ = await client.request("GET", path.format(job), headers=headers)
            assert status == 404 and body["ok"] is False, path
    status, _, _ = await client.request("GET", f"/job/{mine}/events", headers=bob)
    assert status == 404
    status, _, _ = await client.request("POST", f"/job/{mine}/cancel", headers=bob)
    assert status == 404
    # The admin token acts for anyone and lists across users.
    status, listed, _ = await client.request("GET", "/jobs", headers=AUTH)
    assert {j["job_id"] for j in listed["jobs"]} == {mine, api_job}
    # The video made on the page is offered in her chat with the bot as well.
    await wait_until(
        lambda: any(int(c.params["chat_id"]) == ALICE for c in tg.calls_of("sendVideo")),
        30,
        "the video sent to Alice's chat",
    )


async def test_forged_or_stale_launch_data_is_refused(
    start_service: ServiceFactory, tg: FakeTelegram
) -> None:
    client = await start_service(
        api_token=ADMIN, bot_token=BOT, telegram_api=tg.url, miniapp_max_age=60
    )
    cases = [
        (tma(BOT, ALICE, forged=True), "tma_invalid"),
        (tma("654321:another-bot", ALICE), "tma_invalid"),
        (tma(BOT, ALICE, age=120), "tma_expired"),
        ({"Authorization": "tma "}, "tma_invalid"),
        ({"Authorization": "tma user=%7B%7D&hash=00"}, "tma_invalid"),
    ]
    for headers, code in cases:
        status, body, _ = await client.request("GET", "/jobs", headers=headers)
        assert status == 401 and body["code"] == code, (headers, body)
    assert (await client.request("GET", "/jobs", headers=tma(BOT, ALICE, age=30)))[0] == 200


async def test_without_a_bot_telegram_sign_in_is_off(start_service: ServiceFactory) -> None:
    client = await start_service()
    status, body, _ = await client.request("GET", "/jobs", headers=tma(BOT, ALICE))
    assert status == 401 and "Telegram" in body["error"]


async def test_a_telegram_user_and_an_api_user_of_one_number_have_their_own_caps(
    start_deployed: ServiceFactory, tg: FakeTelegram
) -> None:
    """Caps and idempotency keys count by owner: Telegram user 7001 and API user 7001 each reach
    their own MAX_ACTIVE_PER_USER, and the same Idempotency-Key names each one's own job."""
    client = await start_deployed(
        api_token=ADMIN, bot_token=BOT, telegram_api=tg.url, max_active_per_user=2
    )
    await client.service.jobs.pause()
    number = 7001
    ways = {"telegram": tma(BOT, number), "api": AUTH}
    made: dict[str, list[str]] = {}
    for source, headers in ways.items():
        made[source] = [
            await _create(client, {**headers, "Idempotency-Key": f"order-{n}"}, user_id=number)
            for n in range(2)
        ]
    for source, headers in ways.items():
        status, body, response = await client.request(
            "POST", "/job/create", json=_payload(number), headers=headers
        )
        assert status == 429 and "at most 2" in body["error"], (source, body)
        assert int(response.headers["Retry-After"]) > 0
        again = {**headers, "Idempotency-Key": "order-1"}
        status, body, _ = await client.request(
            "POST", "/job/create", json=_payload(number), headers=again
        )
        assert status == 200 and body["job_id"] == made[source][1], (source, body)
        for job_id in made[source]:
            row = await client.service.store.get_job(job_id)
            assert row is not None and (row.source, row.user_id) == (source, number)
            assert row.photo_pixels == 320 * 240  # the photo's size, for its ETA (item 8)
    assert not set(made["telegram"]) & set(made["api"])
    assert await client.service.store.count_jobs(status="queued") == 4
