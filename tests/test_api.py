"""The HTTP API against the real service: real SQLite, real renders, real MP4s."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema
import pytest

from fanslymotion import video

from .conftest import Client, ServiceFactory, assert_error_body, photo_bytes


def _db_row(client: Client, job_id: str) -> Any:
    """Read a job straight from the store of record (the SQLite file, or a cluster's
    PostgreSQL), as another process would."""
    settings = client.service.settings
    if settings.database_url is not None:
        import psycopg
        from psycopg.rows import dict_row

        url = settings.database_url.get_secret_value()
        with psycopg.connect(url, row_factory=dict_row) as conn:
            found = conn.execute("SELECT * FROM fm_jobs WHERE job_id = %s", (job_id,)).fetchone()
        assert found is not None
        return found
    with sqlite3.connect(settings.db_path) as db:
        db.row_factory = sqlite3.Row
        row: sqlite3.Row | None = db.execute(
            "SELECT * FROM jobs WHERE job_id = ?", (job_id,)
        ).fetchone()
    assert row is not None
    return row


def _conforms(document: dict[str, Any], schema_name: str, body: Any) -> None:
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": document["components"]}
    jsonschema.validate(body, schema, cls=jsonschema.Draft202012Validator)


async def test_index_health_and_openapi(start_deployed: ServiceFactory) -> None:
    client = await start_deployed()
    status, index, _ = await client.request("GET", "/")
    assert status == 200 and index["name"] == "FanslyMotion"
    assert "POST /job/create" in index["endpoints"]
    status, health, _ = await client.request("GET", "/health")
    assert status == 200
    assert health["ok"] is True
    assert health["renderer"]["name"] == "motion"
    assert health["renderer"]["reason"]  # says why this renderer runs
    assert health["queue_length"] == 0 and health["running_job"] is None
    assert health["free_disk_mb"] > 0
    status, document, _ = await client.request("GET", "/openapi.json")
    assert status == 200 and document["openapi"].startswith("3.1")
    _conforms(document, "HealthOut", health)
    _conforms(document, "IndexOut", index)


async def test_job_lifecycle_json(start_deployed: ServiceFactory) -> None:
    client = await start_deployed()
    _, document, _ = await client.request("GET", "/openapi.json")
    status, created = await client.create(
        duration=3, resolution="360p", motion_preset="dolly_in", seed=42
    )
    assert status == 201, created
    _conforms(document, "JobCreated", created)
    assert created["status"] == "queued" and created["estimated_time"] > 0
    job_id = created["job_id"]
    final = await client.wait(job_id)
    assert final["status"] == "completed", final
    assert final["progress"] == 100
    _conforms(document, "JobStatusOut", final)

    status, result, _ = await client.request("GET", f"/job/result/{job_id}")
    assert status == 200
    _conforms(document, "JobResultOut", result)
    assert result["seed"] == 42 and result["fps"] == 4 and result["frames"] == 12
    assert (result["width"], result["height"]) == (640, 360)
    assert result["video_url"] == f"/job/download/{job_id}"
    assert "/" not in (result["video_url"].split("/job/download/")[0])  # no server path

    status, data, response = await client.request("GET", result["video_url"])
    assert status == 200 and response.content_type == "video/mp4"
    out = Path(client.service.settings.data_dir) / "check.mp4"
    out.write_bytes(data)
    info = video.probe(out)
    assert (info.frames, info.width, info.height) == (12, 640, 360)
    assert info.fps == pytest.approx(4.0)
    assert "seed=42" in json.dumps(info.metadata)

    row = _db_row(client, job_id)
    assert row["status"] == "completed" and row["output_path"] == f"hot/{job_id}.mp4"
    assert row["size_bytes"] == len(data) and row["started_at"] and row["completed_at"]

    # HTTP Range: a player seeking in the file.
    status, part, response = await client.request(
        "GET", result["video_url"], headers={"Range": "bytes=0-99"}
    )
    assert status == 206 and part == data[:100]
    assert response.headers["Content-Range"] == f"bytes 0-99/{len(data)}"


async def test_multipart_create(start_deployed: ServiceFactory) -> None:
    client = await start_deployed()
    form = aiohttp.FormData()
    for name, value in {
        "user_id": "7",
        "duration": "3",
        "resolution": "360p",
        "motion_preset": "tilt_up",
        "aspect": "1:1",
    }.items():
        form.add_field(name, value)
    form.add_field(
        "image", photo_bytes(300, 300, "PNG"), filename="a.png", content_type="image/png"
    )
    status, created, _ = await client.request("POST", "/job/create", data=form)
    assert status == 201, created
    final = await client.wait(created["job_id"])
    assert final["status"] == "completed"
    _, result, _ = await client.request("GET", f"/job/result/{created['job_id']}")
    assert (result["width"], result["height"]) == (360, 360)


@pytest.mark.parametrize(
    ("kwargs", "status", "fragment"),
    [
        ({"image_data": "!!!not base64!!!"}, 400, "base64"),
        ({"image": b"hello, I am text"}, 415, ""),
        ({"image": photo_bytes(40, 40)}, 422, "small"),
        # Issue 24: an empty photo is 400 photo_empty in JSON as in a form (it was 422).
        ({"image": b""}, 400, "empty"),
        ({"duration": 5}, 422, "duration"),
        ({"resolution": "4k"}, 422, "resolution"),
        ({"motion_preset": "spin"}, 422, "motion_preset"),
        ({"strength": 2}, 422, "strength"),
        ({"seed": -1}, 422, "seed"),
        ({"colour": "red"}, 422, "colour"),
        ({"user_id": "abc"}, 422, "user_id"),
    ],
)
async def test_bad_create_requests(
    client: Client, kwargs: dict[str, Any], status: int, fragment: str
) -> None:
    image = kwargs.pop("image", None)
    if image is not None:
        kwargs["image_data"] = base64.b64encode(image).decode()
    got, body = await client.create(**kwargs)
    assert got == status, body
    assert_error_body(body, status)
    assert fragment in body["error"]
    if fragment == "small":
        assert body["code"] == "photo_too_small"
    assert "Traceback" not in body["error"] and "/" not in body["error"].replace("1/", "")
    _, health, _ = await client.request("GET", "/health")
    assert health["ok"] is True


async def test_malformed_bodies(start_deployed: ServiceFactory) -> None:
    client = await start_deployed()
    status, body, _ = await client.request(
        "POST", "/job/create", data=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert (status, body["status"]) == (400, 400)
    status, body, _ = await client.request(
        "POST", "/job/create", data=b"[1, 2]", headers={"Content-Type": "application/json"}
    )
    assert status == 422
    status, body, _ = await client.request(
        "POST", "/job/create", data=b"x", headers={"Content-Type": "text/plain"}
    )
    assert status == 415 and body["ok"] is False
    status, body, _ = await client.request("GET", "/no/such/route")
    assert status == 404 and body["ok"] is False
    status, body, _ = await client.request("DELETE", "/job/create")
    assert status == 405 and body["ok"] is False


async def test_upload_cap(start_deployed: ServiceFactory) -> None:
    client = await start_deployed(max_upload_mb=0.05)
    big = photo_bytes(300, 300, "PNG")
    assert len(big) > 0.05 * 1024 * 1024
    status, body = await client.create(big)
    assert status == 413 and "MB" in body["error"]
    form = aiohttp.FormData()
    for name, value in {
        "user_id": "1",
        "duration": "3",
        "resolution": "360p",
        "motion_preset": "micro",
    }.items():
        form.add_field(name, value)
    form.add_field("image", io.BytesIO(big), filename="big.png", content_type="image/png")
    status, body, _ = await client.request("POST", "/job/create", data=form)
    assert status == 413


async def test_unknown_and_unfinished_jobs(start_deployed: ServiceFactory) -> None:
    client = await start_deployed()
    await client.service.jobs.pause()
    missing = str(uuid.uuid4())
    for path in (
        f"/job/status/{missing}",
        f"/job/result/{missing}",
        f"/job/download/{missing}",
        "/job/status/not-a-uuid",
        "/job/download/..%2F..%2Fetc%2Fpasswd",
    ):
        status, body, _ = await client.request("GET", path)
        assert status == 404, path
        assert body["ok"] is False
    _, created = await client.create()
    status, body, _ = await client.request("GET", f"/job/download/{created['job_id']}")
    assert status == 409 and "not ready" in body["error"]


async def test_cancel_queued_and_running(start_deployed: ServiceFactory) -> None:
    client = await start_deployed(max_active_per_user=5)
    await client.service.jobs.pause()
    _, queued = await client.create()
    status, body, _ = await client.request("POST", f"/job/{queued['job_id']}/cancel")
    assert status == 200 and body["status"] == "cancelled"
    status, again, _ = await client.request("POST", f"/job/{queued['job_id']}/cancel")
    assert status == 200 and again["status"] == "cancelled"  # idempotent
    assert _db_row(client, queued["job_id"])["status"] == "cancelled"

    # A long render, cancelled once it is under way.
    _, long = await client.create(duration=12, resolution="1080p", motion_preset="pan_r")
    await client.service.jobs.resume()
    await client.wait(long["job_id"], ("processing",))
    for _ in range(1000):  # until the render has really started producing frames
        if (await client.request("GET", f"/job/status/{long['job_id']}"))[1]["progress"] > 0:
            break
        await asyncio.sleep(0.02)
    status, body, _ = await client.request("POST", f"/job/{long['job_id']}/cancel")
    assert status == 200 and body["status"] == "cancelled"
    row = _db_row(client, long["job_id"])
    assert row["status"] == "cancelled" and row["output_path"] is None
    hot = client.service.settings.hot_dir
    assert not any(hot.iterdir()), "a cancelled render leaves no file behind"
    # The queue goes on with the next job.
    _, after = await client.create()
    assert (await client.wait(after["job_id"]))["status"] == "completed"


async def test_caps_answer_429(start_deployed: ServiceFactory) -> None:
    client = await start_deployed(max_queued=3, max_active_per_user=2)
    await client.service.jobs.pause()
    assert (await client.create(user_id=1))[0] == 201
    assert (await client.create(user_id=1))[0] == 201
    status, body, response = await client.request(
        "POST",
        "/job/create",
        json={
            "user_id": 1,
            "duration": 3,
            "resolution": "360p",
            "motion_preset": "micro",
            "image_data": base64.b64encode(photo_bytes()).decode(),
        },
    )
    assert status == 429 and "at most 2" in body["error"]
    assert int(response.headers["Retry-After"]) > 0
    assert (await client.create(user_id=2))[0] == 201
    status, body = await client.create(user_id=3)
    assert status == 429 and "queue is full" in body["error"]
    assert await client.service.store.count_jobs(status="queued") == 3


async def test_idempotency_survives_restart(start_deployed: ServiceFactory, tmp_path: Path) -> None:
    data = tmp_path / "shared"
    client = await start_deployed(data_dir=data)
    await client.service.jobs.pause()
    payload = {
        "user_id": 5,
        "duration": 3,
        "resolution": "360p",
        "motion_preset": "micro",
        "image_data": base64.b64encode(photo_bytes()).decode(),
    }
    headers = {"Idempotency-Key": "order-77"}
    status, first, _ = await client.request("POST", "/job/create", json=payload, headers=headers)
    assert status == 201
    status, second, _ = await client.request("POST", "/job/create", json=payload, headers=headers)
    assert status == 200 and second["job_id"] == first["job_id"]
    await client.service.stop()

    client = await start_deployed(data_dir=data)
    status, third, _ = await client.request("POST", "/job/create", json=payload, headers=headers)
    assert status == 200 and third["job_id"] == first["job_id"]
    # The paused flag survived too; resume and the one job renders once.
    assert client.service.jobs.paused
    await client.service.jobs.resume()
    assert (await client.wait(first["job_id"]))["status"] == "completed"
    assert await client.service.store.count_jobs(user_id=5) == 1


async def test_jobs_listing(start_deployed: ServiceFactory) -> None:
    client = await start_deployed(max_active_per_user=5)
    await client.service.jobs.pause()
    ids = [(await client.create(user_id=9))[1]["job_id"] for _ in range(3)]
    await client.create(user_id=10)
    status, body, _ = await client.request("GET", "/jobs", params={"user_id": "9"})
    assert status == 200
    assert [j["job_id"] for j in body["jobs"]] == ids[::-1]  # newest first
    status, body, _ = await client.request(
        "GET", "/jobs", params={"user_id": "9", "limit": "1", "offset": "1"}
    )
    assert [j["job_id"] for j in body["jobs"]] == [ids[1]]
    status, body, _ = await client.request("GET", "/jobs", params={"status": "completed"})
    assert body["jobs"] == []
    status, body, _ = await client.request("GET", "/jobs", params={"limit": "0"})
    assert status == 422
    status, body, _ = await client.request("GET", "/jobs", params={"status": "nope"})
    assert status == 422


# One box only: its last check is the box's GPU thread (a cluster's front has none).
async def test_failed_render_is_retried_then_fails_cleanly(start_service: ServiceFactory) -> None:
    # An x264 preset the encoder rejects makes every render fail the same way. Settings refuse
    # one at start, so it is slipped in after the service started.
    client = await start_service(max_retries=2)
    client.service.settings.x264_preset = "no-such-preset"
    _, created = await client.create()
    final = await client.wait(created["job_id"])
    assert final["status"] == "failed"
    assert final["attempts"] == 2 and final["error"] == "internal render error"
    assert "Traceback" not in final["error"] and "/" not in final["error"]
    assert not any(client.service.settings.hot_dir.iterdir())
    _, health, _ = await client.request("GET", "/health")
    assert health["ok"] and health["gpu_thread_alive"]


async def test_missing_input_fails_without_retry(start_deployed: ServiceFactory) -> None:
    client = await start_deployed(max_retries=2)
    await client.service.jobs.pause()
    _, created = await client.create()
    row = _db_row(client, created["job_id"])
    (client.service.settings.data_dir / row["input_path"]).unlink()
    await client.service.jobs.resume()
    final = await client.wait(created["job_id"])
    # Another attempt cannot bring the photo back: failed at once, with a plain message.
    assert final["status"] == "failed" and final["attempts"] == 0
    assert final["error"] == "the photo could not be read"
    # The next job is not affected.
    _, other = await client.create(user_id=2)
    assert (await client.wait(other["job_id"]))["status"] == "completed"


async def test_job_timeout(start_deployed: ServiceFactory) -> None:
    client = await start_deployed(job_timeout=0.3, max_retries=0)
    _, created = await client.create(duration=12, resolution="1080p")
    final = await client.wait(created["job_id"])
    assert final["status"] == "failed" and "longer than" in final["error"]


async def test_bearer_token(start_deployed: ServiceFactory) -> None:
    client = await start_deployed(api_token="s3cret-token-for-tests")
    status, body = await client.create()
    assert status == 401 and body["ok"] is False
    status, body, _ = await client.request("GET", "/jobs")
    assert status == 401
    status, body, _ = await client.request("GET", "/health")
    assert status == 200
    status, body, _ = await client.request(
        "GET", "/jobs", headers={"Authorization": "Bearer s3cret-token-for-tests"}
    )
    assert status == 200
    status, body, _ = await client.request("GET", "/openapi.json")
    assert "s3cret" not in json.dumps(body)


async def test_metrics(start_deployed: ServiceFactory) -> None:
    client = await start_deployed()
    _, created = await client.create()
    await client.wait(created["job_id"])
    status, body, response = await client.request("GET", "/metrics")
    assert status == 200 and response.content_type == "text/plain"
    text = body.decode()
    assert 'fanslymotion_jobs{status="completed"} 1.0' in text
    assert (
        'fanslymotion_render_seconds_count{duration="3",renderer="motion",resolution="360p"} 1.0'
        in text
    )
    assert "fanslymotion_queue_length 0.0" in text


async def test_stopping_service_answers_503(start_deployed: ServiceFactory) -> None:
    client = await start_deployed()
    await client.service.jobs.stop()
    status, body = await client.create()
    assert status == 503 and body["ok"] is False and "try again" in body["error"]
    _, health, _ = await client.request("GET", "/health")
    assert health["ok"] is False and health["stopping"] is True


def test_base64_is_decoded_in_slices_exactly() -> None:
    from fanslymotion.api_input import decode_base64

    data = photo_bytes(64, 48)
    text = base64.b64encode(data).decode()
    assert decode_base64(text, chunk=10) == data  # slices rounded down to whole quanta
    assert decode_base64(text) == data
    with pytest.raises(ValueError):
        decode_base64(text[:-3] + "!==", chunk=8)
