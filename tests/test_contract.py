"""The HTTP contract against the real service on 127.0.0.1 (issue 12: idempotency, /health,
HTTP hygiene, signed links and the poster)."""

from __future__ import annotations

import asyncio
import base64
import io
import signal
import time
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from fanslymotion import api_files, datadir, video

from .conftest import Client, ServiceFactory, assert_error_body, photo_bytes


def _payload(**params: Any) -> dict[str, Any]:
    return {
        "user_id": 1,
        "duration": 3,
        "resolution": "360p",
        "motion_preset": "pan_l",
        "image_data": base64.b64encode(photo_bytes()).decode(),
        **params,
    }


async def test_idempotency_key_is_bound_to_its_request(
    start_service: ServiceFactory, tmp_path: Path
) -> None:
    data = tmp_path / "idem"
    client = await start_service(data_dir=data, max_active_per_user=5)
    await client.service.jobs.pause()
    key = {"Idempotency-Key": "order-17"}
    status, first, _ = await client.request("POST", "/job/create", json=_payload(), headers=key)
    assert status == 201
    # The same request again (seed still left to the service): the same job.
    status, again, _ = await client.request("POST", "/job/create", json=_payload(), headers=key)
    assert status == 200 and again["job_id"] == first["job_id"]
    # Another duration and resolution, or another photo, under the same key: refused.
    for other in (
        _payload(duration=6, resolution="480p"),
        _payload(image_data=base64.b64encode(photo_bytes(seed=5)).decode()),
    ):
        status, body, _ = await client.request("POST", "/job/create", json=other, headers=key)
        assert status == 422 and body["code"] == "idempotency_key_reused", body
        assert_error_body(body, 422)
    # Keys are per user: another user may use the same one.
    status, body, _ = await client.request(
        "POST", "/job/create", json=_payload(user_id=2), headers=key
    )
    assert status == 201 and body["job_id"] != first["job_id"]
    assert await client.service.store.count_jobs(user_id=1) == 1
    # The binding is in the database: it holds after a restart.
    await client.service.stop()
    client = await start_service(data_dir=data, max_active_per_user=5)
    other = _payload(motion_preset="dolly_in")
    status, body, _ = await client.request("POST", "/job/create", json=other, headers=key)
    assert status == 422 and body["code"] == "idempotency_key_reused"
    status, body, _ = await client.request("POST", "/job/create", json=_payload(), headers=key)
    assert status == 200 and body["job_id"] == first["job_id"]


async def test_health_is_503_while_the_service_cannot_take_work(
    start_service: ServiceFactory, tmp_path: Path
) -> None:
    client = await start_service()
    status, health, _ = await client.request("GET", "/health")
    assert status == 200 and health["ok"] is True and health["reason"] is None
    await client.service.jobs.pause()
    status, health, _ = await client.request("GET", "/health")
    assert status == 503 and health["ok"] is False and "paused" in health["reason"]
    await client.service.jobs.resume()
    assert (await client.request("GET", "/health"))[0] == 200
    full = await start_service(data_dir=tmp_path / "full", min_free_mb=10**9)
    status, health, _ = await full.request("GET", "/health")
    assert status == 503 and "MIN_FREE_MB" in health["reason"]


async def _completed(client: Client, **params: Any) -> tuple[str, bytes]:
    status, created, _ = await client.request(
        "POST", "/job/create", json=_payload(**params), headers=_auth(client)
    )
    assert status == 201, created
    job_id = created["job_id"]
    deadline = time.monotonic() + 60
    while True:
        _, body, _ = await client.request("GET", f"/job/status/{job_id}", headers=_auth(client))
        if body["status"] == "completed":
            break
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.05)
    path = client.service.settings.data_dir / f"hot/{job_id}.mp4"
    return job_id, path.read_bytes()


def _auth(client: Client) -> dict[str, str]:
    token = client.service.settings.api_token
    return {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}


async def test_ranges_and_if_range(client: Client) -> None:
    job_id, data = await _completed(client)
    url = f"/job/download/{job_id}"
    status, _, response = await client.request("GET", url)
    etag, modified = response.headers["ETag"], response.headers["Last-Modified"]
    assert status == 200 and response.headers["Accept-Ranges"] == "bytes"
    # Past the end: a JSON 416 that names the length.
    status, body, response = await client.request("GET", url, headers={"Range": "bytes=99999999-"})
    assert status == 416 and response.content_type == "application/json"
    assert_error_body(body, 416)
    assert response.headers["Content-Range"] == f"bytes */{len(data)}"
    # If-Range: the current strong ETag or the exact date -> the range; anything else -> all.
    for validator, expected in (
        (etag, 206),
        (modified, 206),
        ('"0-0"', 200),
        (f"W/{etag}", 200),
        (formatdate(time.time() - 86400, usegmt=True), 200),
        ("not a date", 200),
    ):
        status, part, response = await client.request(
            "GET", url, headers={"Range": "bytes=10-19", "If-Range": validator}
        )
        assert status == expected, validator
        assert part == (data[10:20] if expected == 206 else data)
    # A form aiohttp does not serve (several ranges) is ignored: the whole file.
    status, whole, _ = await client.request("GET", url, headers={"Range": "bytes=0-1,5-6"})
    assert status == 200 and whole == data


async def test_request_hygiene(start_service: ServiceFactory) -> None:
    client = await start_service(
        api_token="tok-123-for-the-contract", max_upload_mb=0.5, max_active_per_user=5
    )
    # 401 carries the challenge; the scheme is matched in any case.
    status, body, response = await client.request("GET", "/jobs")
    assert status == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    for scheme in ("bearer", "BEARER", "Bearer"):
        headers = {"Authorization": f"{scheme} tok-123-for-the-contract"}
        assert (await client.request("GET", "/jobs", headers=headers))[0] == 200
    auth = _auth(client)
    # Strict JSON types: true is no user id, "3" no duration.
    for wrong in ({"user_id": True}, {"duration": "3"}, {"user_id": "1"}):
        status, body, _ = await client.request(
            "POST", "/job/create", json=_payload(**wrong), headers=auth
        )
        assert status == 422, wrong
        assert_error_body(body, 422)
    # base64 as `base64` writes it, with a line break every 76 characters.
    wrapped = base64.encodebytes(photo_bytes()).decode()
    assert "\n" in wrapped
    status, created, response = await client.request(
        "POST", "/job/create", json=_payload(image_data=wrapped), headers=auth
    )
    assert status == 201, created
    assert response.headers["Location"] == f"/job/status/{created['job_id']}"
    assert created["eta_seconds"] == created["estimated_time"]  # the old name, kept a release
    # The size limit is named as configured, in JSON and in multipart.
    # (A body under 1 MiB: aiohttp's client warns about larger bytes bodies.)
    big = np.random.default_rng(0).integers(0, 256, (450, 500, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(big).save(out, format="PNG")
    assert 0.5 * 1024 * 1024 < out.tell() < 0.7 * 1024 * 1024
    status, body, _ = await client.request(
        "POST",
        "/job/create",
        json=_payload(image_data=base64.b64encode(out.getvalue()).decode()),
        headers=auth,
    )
    assert status == 413 and body["error"] == "the photo is larger than 0.5 MB"


async def test_409_says_why_there_is_no_video_and_a_pruned_one_is_deleted(
    start_service: ServiceFactory,
) -> None:
    client = await start_service(max_active_per_user=5, max_retries=0)
    await client.service.jobs.pause()
    _, queued = await client.create()
    status, body, _ = await client.request("GET", f"/job/download/{queued['job_id']}")
    assert status == 409 and body["code"] == "not_ready"
    await client.request("POST", f"/job/{queued['job_id']}/cancel")
    status, body, _ = await client.request("GET", f"/job/download/{queued['job_id']}")
    assert status == 409 and body["code"] == "job_cancelled"
    _, status_body, _ = await client.request("GET", f"/job/status/{queued['job_id']}")
    assert status_body["video"] == "none" and status_body["video_url"] is None
    # A photo removed before its render: the job fails (not retried), no video.
    _, failing = await client.create()
    row = await client.service.store.get_job(failing["job_id"])
    assert row is not None and row.input_path is not None
    (client.service.settings.data_dir / row.input_path).unlink()
    await client.service.jobs.resume()
    assert (await client.wait(failing["job_id"]))["status"] == "failed"
    status, body, _ = await client.request("GET", f"/job/{failing['job_id']}/poster")
    assert status == 409 and body["code"] == "job_failed"
    # Completed, then pruned: still completed, and it says the video is gone.
    job_id, _ = await _completed(client)
    settings = client.service.settings
    later = datetime.now(UTC) + timedelta(days=settings.prune_after_days + 1)
    assert await datadir.housekeeping(settings, client.service.store, now=later) == (0, 1)
    for route in ("status", "result"):
        _, body, _ = await client.request("GET", f"/job/{route}/{job_id}")
        assert body["status"] == "completed" and body["video"] == "deleted"
        assert body["video_url"] is None and body["poster_url"] is None
    status, body, _ = await client.request("GET", f"/job/download/{job_id}")
    assert status == 410 and body["code"] == "video_deleted"


async def test_signed_links_open_without_the_header(start_service: ServiceFactory) -> None:
    client = await start_service(api_token="tok-123-for-the-contract", max_active_per_user=5)
    job_id, data = await _completed(client, motion_preset="dolly_in")
    other_id, _ = await _completed(client)
    _, result, _ = await client.request("GET", f"/job/result/{job_id}", headers=_auth(client))
    assert result["video"] == "ready"
    video_url, poster_url = result["video_url"], result["poster_url"]
    assert "sig=" in video_url and "expires=" in video_url and "tok-123" not in video_url
    # No bearer header: the signed link alone opens the video, ranges included.
    status, body, response = await client.request("GET", video_url)
    assert status == 200 and body == data and response.content_type == "video/mp4"
    status, part, _ = await client.request("GET", video_url, headers={"Range": "bytes=0-9"})
    assert status == 206 and part == data[:10]
    # The unsigned URL still needs the header.
    assert (await client.request("GET", f"/job/download/{job_id}"))[0] == 401
    # A wrong signature, the signature of another job, an expired link: 403, header or not.
    query = video_url.split("?", 1)[1]
    settings = client.service.settings
    expired = api_files.link(
        settings, f"/job/download/{job_id}", job_id, now=time.time() - 2 * settings.link_ttl
    )
    for url, code in (
        (video_url[:-4] + "0000", "link_invalid"),
        (f"/job/download/{other_id}?{query}", "link_invalid"),
        (expired, "link_expired"),
    ):
        for headers in ({}, _auth(client)):
            status, body, _ = await client.request("GET", url, headers=headers)
            assert status == 403 and body["code"] == code, (url, body)
            assert_error_body(body, 403)
    # The poster: the first frame as JPEG, made once and kept.
    status, jpeg, response = await client.request("GET", poster_url)
    assert status == 200 and response.content_type == "image/jpeg"
    poster = Image.open(io.BytesIO(jpeg))
    assert poster.format == "JPEG" and poster.size == (result["width"], result["height"])
    cached = datadir.poster_path(settings, job_id)
    made = cached.stat().st_mtime_ns
    path = settings.data_dir / f"hot/{job_id}.mp4"
    frames = video.read_frames(path)
    first = next(frames)
    frames.close()
    diff = np.abs(np.asarray(poster.convert("RGB"), dtype=np.int16) - first.astype(np.int16))
    assert diff.mean() < 4  # the same picture, up to JPEG's loss
    assert (await client.request("GET", poster_url))[1] == jpeg
    assert cached.stat().st_mtime_ns == made
    assert not [p for p in cached.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("public", ["", "https://motion.example.com"])
async def test_links_and_location_use_public_url(
    start_service: ServiceFactory, public: str
) -> None:
    client = await start_service(public_url=public + "/" if public else "")
    job_id, _ = await _completed(client)
    _, body, _ = await client.request("GET", f"/job/status/{job_id}")
    assert body["video_url"] == f"{public}/job/download/{job_id}"
    assert body["poster_url"] == f"{public}/job/{job_id}/poster"


def test_the_contract_on_the_real_process(tmp_path: Path) -> None:
    """`python -m fanslymotion` with a token: lowercase bearer, 201 Location, a signed link that
    opens without the header, a JSON 416, and /health."""
    import json as jsonlib
    import urllib.error
    import urllib.request

    from .test_process import Process

    proc = Process(tmp_path, FANSLYMOTION_API_TOKEN="tok-9-for-the-contract")
    proc.start()
    base = f"http://127.0.0.1:{proc.port}"

    def call(path: str, headers: dict[str, str], body: bytes | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(base + path, data=body, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, (response.read(), response.headers)
        except urllib.error.HTTPError as exc:
            return exc.code, (exc.read(), exc.headers)

    try:
        auth = {
            "Authorization": "bearer tok-9-for-the-contract",
            "Content-Type": "application/json",
        }
        status, (raw, headers) = call("/job/create", auth, jsonlib.dumps(_payload()).encode())
        assert status == 201, raw
        job_id = jsonlib.loads(raw)["job_id"]
        assert headers["Location"] == f"/job/status/{job_id}"
        deadline = time.monotonic() + 60
        while True:
            _, (raw, _) = call(f"/job/status/{job_id}", auth)
            body = jsonlib.loads(raw)
            if body["status"] == "completed":
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.05)
        status, (raw, headers) = call(body["video_url"], {})
        assert status == 200 and headers.get_content_type() == "video/mp4"
        assert raw == (tmp_path / f"hot/{job_id}.mp4").read_bytes()
        status, (raw, headers) = call(body["video_url"], {"Range": "bytes=99999999-"})
        assert status == 416 and headers.get_content_type() == "application/json"
        assert_error_body(jsonlib.loads(raw), 416)
        status, (raw, headers) = call(f"/job/status/{job_id}", {})
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        status, (raw, _) = call("/health", {})
        assert status == 200 and jsonlib.loads(raw)["ok"] is True
    finally:
        assert proc.stop(signal.SIGTERM) == 0
    assert "Traceback" not in proc.log()
