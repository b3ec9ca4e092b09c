"""HEAD (issue 24, item 7): the video, the poster and the live preview answer HEAD with the
headers GET sends and no body, with the bearer token as with a signed link."""

from __future__ import annotations

import asyncio
import base64

import aiohttp

from .conftest import Client, ServiceFactory, photo_bytes

TOKEN = "head-test-token-0123"
SAME = ("Content-Type", "Content-Length", "ETag", "Last-Modified", "Accept-Ranges")


async def _fetch(
    session: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str]
) -> tuple[int, dict[str, str], bytes]:
    async with session.request(method, url, headers=headers) as response:
        return response.status, dict(response.headers), await response.read()


async def _completed(client: Client, job_id: str, auth: dict[str, str]) -> None:
    async with asyncio.timeout(60):
        while True:
            _, body, _ = await client.request("GET", f"/job/status/{job_id}", headers=auth)
            if body["status"] == "completed":
                return
            await asyncio.sleep(0.05)


async def test_head_answers_as_get_without_a_body(start_service: ServiceFactory) -> None:
    client = await start_service(api_token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    payload = {
        "user_id": 1,
        "duration": 3,
        "resolution": "360p",
        "motion_preset": "pan_l",
        "image_data": base64.b64encode(photo_bytes()).decode(),
    }
    status, created, _ = await client.request("POST", "/job/create", json=payload, headers=auth)
    assert status == 201, created
    job_id = created["job_id"]
    await _completed(client, job_id, auth)
    _, result, _ = await client.request("GET", f"/job/result/{job_id}", headers=auth)
    paths = [
        (f"/job/download/{job_id}", auth),
        (f"/job/{job_id}/poster", auth),
        (result["video_url"], {}),  # signed links: no header
        (result["poster_url"], {}),
    ]
    async with aiohttp.ClientSession() as session:
        for path, headers in paths:
            url = path if path.startswith("http") else client.base + path
            got, got_headers, body = await _fetch(session, "GET", url, headers)
            head, head_headers, nothing = await _fetch(session, "HEAD", url, headers)
            assert got == head == 200, (path, got, head)
            assert len(body) > 100 and nothing == b""
            for name in SAME:
                assert head_headers.get(name) == got_headers.get(name), (path, name)
            assert int(head_headers["Content-Length"]) == len(body)
        # No preview for a motion job: HEAD says so with GET's status.
        preview = f"{client.base}/job/{job_id}/preview"
        got = (await _fetch(session, "GET", preview, auth))[0]
        head = (await _fetch(session, "HEAD", preview, auth))[0]
        assert got == head == 409
        # Without the token or a signature, HEAD is refused as GET is.
        assert (await _fetch(session, "HEAD", client.base + paths[0][0], {}))[0] == 401
