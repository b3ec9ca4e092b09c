"""The admin API against the real service: the token, the queue in dispatch order, an
operator's retry to completion, pause and resume, owners' blocks and daily limits, the figures."""

from __future__ import annotations

import asyncio
import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from fanslymotion import datadir, video

from .conftest import Client, ServiceFactory, photo_bytes

TOKEN = "admin-s3cret-for-tests"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


async def admin(client: Client, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    status, body, _ = await client.request(method, path, headers=ADMIN, **kwargs)
    return status, body


async def test_the_admin_api_needs_its_token(start_service: ServiceFactory) -> None:
    client = await start_service()
    status, body, _ = await client.request("GET", "/admin/overview")
    assert status == 403 and body["code"] == "admin_off"
    client = await start_service(
        admin_token=TOKEN, data_dir=client.service.settings.data_dir.parent / "b"
    )
    status, body, response = await client.request("GET", "/admin/overview")
    assert status == 401 and "WWW-Authenticate" in response.headers
    status, _, _ = await client.request(
        "GET", "/admin/users", headers={"Authorization": "Bearer wrong"}
    )
    assert status == 401
    status, body = await admin(client, "GET", "/admin/overview")
    assert status == 200 and body["mode"] == "single" and body["paused"] is False
    assert body["versions"]["service"] and body["versions"]["schema_version"] >= 6
    # The page itself holds no data: it is served to anyone, and asks for the token.
    status, html, response = await client.request("GET", "/admin")
    assert status == 200 and b"admin-token" not in html and b'id="token-panel"' in html
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    status, spec, _ = await client.request("GET", "/openapi.json")
    paths = spec["paths"]
    for path in (
        "/admin/overview",
        "/admin/queue",
        "/admin/jobs",
        "/admin/pause",
        "/admin/resume",
        "/admin/users",
        "/admin/users/{owner}",
        "/admin/stats",
        "/admin/jobs/{job_id}/retry",
    ):
        assert path in paths, path
    assert paths["/admin/pause"]["post"]["security"] == [{"admin": []}]
    assert "Overview" in spec["components"]["schemas"]


async def test_queue_in_dispatch_order_pause_and_resume(start_service: ServiceFactory) -> None:
    client = await start_service(admin_token=TOKEN, max_active_per_user=5)
    status, body = await admin(client, "POST", "/admin/pause")
    assert status == 200 and body == {"paused": True}
    assert client.service.local is not None
    assert await client.service.local.get_flag("paused") == "1"  # the bot's flag
    first = [(await client.create(user_id=1))[1]["job_id"] for _ in range(2)]
    other = (await client.create(user_id=2))[1]["job_id"]
    status, body = await admin(client, "GET", "/admin/queue")
    assert status == 200 and body["paused"] is True
    # Round robin between users: 1's first, 2's first, then 1's second.
    assert [j["job_id"] for j in body["jobs"]] == [first[0], other, first[1]]
    assert [j["queue_position"] for j in body["jobs"]] == [1, 2, 3]
    assert body["jobs"][1]["owner"] == {"source": "api", "user_id": 2, "id": "api:2"}
    status, body = await admin(client, "GET", "/admin/overview")
    assert body["paused"] is True and body["queue_length"] == 3
    status, body = await admin(client, "POST", "/admin/resume")
    assert body == {"paused": False}
    assert await client.service.local.get_flag("paused") == "0"
    for job_id in [*first, other]:
        assert (await client.wait(job_id))["status"] == "completed"
    status, body = await admin(client, "GET", "/admin/jobs", params={"user": "api:1"})
    assert [j["job_id"] for j in body["jobs"]] == first[::-1]
    assert all(j["video_url"] for j in body["jobs"])
    status, body = await admin(client, "GET", "/admin/jobs", params={"status": "nope"})
    assert status == 422


async def test_a_failed_job_retried_to_completion(start_service: ServiceFactory) -> None:
    client = await start_service(admin_token=TOKEN, max_retries=0)
    service = client.service
    preset = service.settings.x264_preset
    service.settings.x264_preset = "no-such-preset"  # every render fails (see test_api)
    _, created = await client.create(seed=4242)
    job_id = created["job_id"]
    failed = await client.wait(job_id)
    assert failed["status"] == "failed" and failed["attempts"] == 0
    status, body = await admin(client, "GET", "/admin/jobs", params={"status": "failed"})
    assert [j["job_id"] for j in body["jobs"]] == [job_id]
    assert body["jobs"][0]["error"] == "internal render error"
    service.settings.x264_preset = preset
    status, body = await admin(client, "POST", f"/admin/jobs/{job_id}/retry")
    assert status == 200 and body["status"] == "queued" and body["attempts"] == 1
    done = await client.wait(job_id)
    assert done["status"] == "completed" and done["error"] is None
    row = await service.store.get_job(job_id)
    assert row is not None and row.output_path is not None and row.seed == 4242
    info = await asyncio.get_running_loop().run_in_executor(
        None, video.probe, service.settings.data_dir / row.output_path
    )
    assert info.frames == 3 * service.settings.fps
    status, body = await admin(client, "POST", f"/admin/jobs/{job_id}/retry")
    assert status == 409 and body["code"] == "not_failed"
    status, body = await admin(client, "POST", "/admin/jobs/not-a-job/retry")
    assert status == 404


async def test_blocks_and_daily_limits(start_service: ServiceFactory) -> None:
    client = await start_service(
        admin_token=TOKEN, daily_seconds_per_user=5, max_active_per_user=10
    )
    await client.service.jobs.pause()
    status, body = await admin(client, "PUT", "/admin/users/api:7", json={"blocked": True})
    assert status == 200 and body["blocked"] is True and body["daily_limit"] == 5
    status, body = await client.create(user_id=7)
    assert status == 403 and body["code"] == "user_blocked"
    status, body = await admin(client, "PUT", "/admin/users/api:7", json={"blocked": False})
    assert body["blocked"] is False
    status, body = await client.create(user_id=7)
    assert status == 201
    # 3 s ordered of 5: another 3 s is over the limit until the next UTC midnight.
    status, body, response = await client.request("POST", "/job/create", json=_payload(user_id=7))
    assert status == 429 and body["code"] == "daily_limit"
    midnight = (datetime.now(UTC) + timedelta(days=1)).replace(
        hour=0, minute=0, second=0, microsecond=0
    )
    assert int(response.headers["X-RateLimit-Reset"]) == int(midnight.timestamp())
    wait = int(response.headers["Retry-After"])
    assert abs(wait - (midnight - datetime.now(UTC)).total_seconds()) < 5
    assert midnight.strftime("%Y-%m-%dT%H:%M") in body["error"]
    # The admin token is exempt; a per-owner limit replaces the service's.
    status, body, _ = await client.request(
        "POST", "/job/create", json=_payload(user_id=7), headers=ADMIN
    )
    assert status == 201
    status, body = await admin(client, "PUT", "/admin/users/api:7", json={"daily_seconds": 60})
    assert body["daily_limit"] == 60 and body["daily_seconds"] == 60
    assert body["seconds_today"] == 6 and body["jobs_today"] == 2
    status, body = await client.create(user_id=7)
    assert status == 201
    status, body = await admin(client, "GET", "/admin/users")
    seven = next(u for u in body["users"] if u["owner"]["id"] == "api:7")
    assert seven["seconds_today"] == 9 and seven["jobs_30d"] == 3 and seven["blocked"] is False
    status, body = await admin(client, "PUT", "/admin/users/nobody:1", json={"blocked": True})
    assert status == 404
    status, body = await admin(client, "PUT", "/admin/users/api:7", json={"daily_seconds": -1})
    assert status == 422


async def test_figures_of_a_window(start_service: ServiceFactory) -> None:
    client = await start_service(admin_token=TOKEN, max_active_per_user=5)
    ids = [
        (await client.create(user_id=n, resolution=r))[1]["job_id"]
        for n, r in ((1, "360p"), (2, "360p"), (3, "480p"))
    ]
    for job_id in ids:
        assert (await client.wait(job_id))["status"] == "completed"
    status, day = await admin(client, "GET", "/admin/stats", params={"window": "24h"})
    assert status == 200 and day["bucket"] == "hour" and len(day["renders"]) == 24
    assert sum(point["count"] for point in day["renders"]) == 3
    assert day["renders"][-1]["count"] == 3  # all in this hour
    assert set(day["median_render_seconds"]) == {"360p", "480p"}
    assert day["median_render_seconds"]["360p"]["renders"] == 2
    rows = [await client.service.store.get_job(job_id) for job_id in ids]
    times = [j.render_seconds for j in rows if j is not None and j.resolution == "360p"]
    assert len(times) == 2 and None not in times
    assert day["median_render_seconds"]["360p"]["seconds"] == round(
        sum(t or 0.0 for t in times) / 2, 2
    )
    assert day["completed"] == 3 and day["failure_rate"] == 0.0
    assert day["queue_wait_seconds"]["p50"] is not None
    status, month = await admin(client, "GET", "/admin/stats", params={"window": "30d"})
    assert len(month["renders"]) == 30 and month["renders"][-1]["count"] == 3
    status, _body = await admin(client, "GET", "/admin/stats", params={"window": "1y"})
    assert status == 422


def _payload(**params: Any) -> dict[str, Any]:
    return {
        "user_id": 1,
        "duration": 3,
        "resolution": "360p",
        "motion_preset": "pan_l",
        "image_data": base64.b64encode(photo_bytes()).decode(),
        **params,
    }


async def test_a_failed_jobs_photo_is_kept_for_a_retry_until_archive_days(
    start_service: ServiceFactory,
) -> None:
    client = await start_service(admin_token=TOKEN, max_retries=0)
    service = client.service
    service.settings.x264_preset = "no-such-preset"  # every render fails (see test_api)
    _, created = await client.create()
    job_id = created["job_id"]
    assert (await client.wait(job_id))["status"] == "failed"
    row = await service.store.get_job(job_id)
    assert row is not None and row.input_path is not None
    assert (service.settings.data_dir / row.input_path).is_file()  # kept, not retired
    # Housekeeping before ARCHIVE_AFTER_DAYS keeps it; after, the photo goes and so does retry.
    soon = datetime.now(UTC) + timedelta(days=1)
    later = datetime.now(UTC) + timedelta(days=service.settings.archive_after_days + 1)
    await datadir.housekeeping(service.settings, service.store, now=soon)
    assert (service.settings.data_dir / row.input_path).is_file()
    await datadir.housekeeping(service.settings, service.store, now=later)
    after = await service.store.get_job(job_id)
    assert after is not None and after.input_path is None
    assert not (service.settings.data_dir / row.input_path).exists()
    status, body = await admin(client, "POST", f"/admin/jobs/{job_id}/retry")
    assert status == 409 and body["code"] == "photo_gone"
