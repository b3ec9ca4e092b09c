"""Bounded requests, one set of words (issue 24, item 6): the whole multipart body is capped
and read no further; an unknown part is named; the same bad photo gets the same status and
code in JSON and in a form; 3.0 is no whole number; NaN is named; the formats an error names
are the ones read; `GET /` and OpenAPI list every route; one start-up line says it all."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import re
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from fanslymotion import photo

from .conftest import Client, ServiceFactory, photo_bytes
from .test_process import Process

FIELDS = {"user_id": "1", "duration": "3", "resolution": "360p", "motion_preset": "pan_l"}


def _form(image: bytes | None, name: str = "image", **extra: str) -> aiohttp.FormData:
    form = aiohttp.FormData()
    for key, value in {**FIELDS, **extra}.items():
        form.add_field(key, value)
    if image is not None:
        form.add_field(name, image, filename="p.jpg", content_type="application/octet-stream")
    return form


async def _json(client: Client, image: bytes, **extra: Any) -> tuple[int, Any]:
    payload = {**{k: int(v) if v.isdigit() else v for k, v in FIELDS.items()}, **extra}
    payload["image_data"] = base64.b64encode(image).decode()
    status, body, _ = await client.request("POST", "/job/create", json=payload)
    return status, body


async def _multipart(client: Client, image: bytes | None, **kwargs: Any) -> tuple[int, Any]:
    status, body, _ = await client.request("POST", "/job/create", data=_form(image, **kwargs))
    return status, body


async def test_a_huge_form_is_refused_at_its_cap_and_read_no_further(
    start_service: ServiceFactory,
) -> None:
    # A form may be a story (several photos): its whole cap is MAX_STORY_MB.
    client = await start_service(max_upload_mb=0.5, max_story_mb=1)
    host, port = client.base.removeprefix("http://").split(":")
    # Said up front: refused before a byte of the body is read.
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /job/create HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n"
        b"Content-Type: multipart/form-data; boundary=B\r\n\r\n"
    )
    async with asyncio.timeout(30):
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.findall(rb"Content-Length: (\d+)", head)[0])
        body = json.loads(await reader.readexactly(length))
    assert head.startswith(b"HTTP/1.1 413") and "MAX_STORY_MB (1 MB)" in body["error"], body
    writer.close()
    await writer.wait_closed()
    # Chunked, so no length is said: small fields without end. The answer comes once the
    # cap is passed and the sender is cut off long before its 64 MB.
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /job/create HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: multipart/form-data; boundary=B\r\n\r\n"
    )
    part = b'--B\r\nContent-Disposition: form-data; name="aspect"\r\n\r\nauto\r\n' * 100
    chunk = b"%x\r\n%s\r\n" % (len(part), part)
    sent = 0

    async def send() -> None:
        nonlocal sent
        while sent < 64 * 1024 * 1024:
            writer.write(chunk)
            await writer.drain()
            sent += len(part)

    sender = asyncio.create_task(send())
    async with asyncio.timeout(30):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    with pytest.raises((ConnectionError, OSError)):
        async with asyncio.timeout(30):
            await sender
    assert sent < 16 * 1024 * 1024
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def test_an_unknown_part_is_named_with_the_expected_one(client: Client) -> None:
    status, body = await _multipart(client, photo_bytes(), name="photo")
    assert status == 422 and "'photo'" in body["error"] and "'image'" in body["error"]
    status, body = await _multipart(client, photo_bytes(), colour="red")
    assert status == 422 and "'colour'" in body["error"] and "'image'" in body["error"]


@pytest.mark.parametrize(
    ("image", "status", "code"),
    [
        (b"", 400, "photo_empty"),
        (b"hello, I am text", 415, "photo_unsupported"),
        (photo_bytes(40, 40), 422, "photo_too_small"),
        (b"\xff\xd8\xff\xe0 broken", 400, "photo_damaged"),
    ],
)
async def test_the_same_bad_photo_gets_the_same_answer_in_both_forms(
    client: Client, image: bytes, status: int, code: str
) -> None:
    as_json = await _json(client, image)
    as_form = await _multipart(client, image)
    assert as_json[0] == as_form[0] == status, (as_json, as_form)
    assert as_json[1]["code"] == as_form[1]["code"] == code


async def test_whole_numbers_refuse_a_decimal_point_and_nan_is_named(client: Client) -> None:
    for name, value in (("duration", 3.0), ("fps", 24.0)):
        status, body = await _json(client, photo_bytes(), **{name: value})
        assert status == 422 and name in body["error"] and "3.0" in body["error"], body
    raw = json.dumps({**FIELDS, "user_id": 1, "duration": 3, "image_data": "eA=="})
    raw = raw.replace('"user_id": 1', '"user_id": 1, "strength": NaN')
    status, body, _ = await client.request(
        "POST", "/job/create", data=raw, headers={"Content-Type": "application/json"}
    )
    assert status == 422 and "strength: NaN" in body["error"], body
    status, body = await _multipart(client, photo_bytes(), strength="nan")
    assert status == 422 and "strength: NaN" in body["error"], body
    status, body = await _multipart(client, photo_bytes(), duration="3.0")
    assert status == 422 and "duration" in body["error"]


def _encoded(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(photo_bytes())).save(out, format=fmt)
    return out.getvalue()


async def test_the_formats_named_are_the_formats_read(client: Client) -> None:
    status, body = await _json(client, b"hello, I am text")
    assert status == 415 and photo.SUPPORTED_TEXT in body["error"]
    named = set(re.findall(r"[A-Za-z]+", photo.SUPPORTED_TEXT)) - {"or"}
    for fmt in ("AVIF", "WEBP", "PNG", "BMP", "TIFF", "GIF"):
        assert fmt.lower() in {n.lower() for n in named}
        status, body = await _json(client, _encoded(fmt), user_id=hash(fmt) % 1000)
        assert status == 201, (fmt, body)
    for fmt in ("PPM", "TGA", "PCX"):  # Pillow reads them; the service does not, nor names them
        assert fmt not in photo.SUPPORTED_TEXT
        status, body = await _json(client, _encoded(fmt))
        assert status == 415 and body["code"] == "photo_unsupported", (fmt, body)


async def test_the_index_and_openapi_list_every_route(client: Client) -> None:
    runner = client.service._runner
    assert runner is not None and runner.app is not None
    served = set()
    for route in runner.app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        pages = ("/static", "/internal", "/favicon")  # files, the workers' door
        if route.method != "HEAD" and not path.startswith(pages) and path != "/admin":
            served.add((route.method, path))  # (/admin: the operator's HTML page)
    _, index, _ = await client.request("GET", "/")
    listed = {tuple(key.split(" ", 1)) for key in index["endpoints"]}
    assert served == listed and ("GET", "/camera") in listed and ("GET", "/web/config") in listed
    _, document, _ = await client.request("GET", "/openapi.json")
    described = {
        (method.upper(), path) for path, ops in document["paths"].items() for method in ops
    }
    assert described == served


def test_the_start_up_line_says_where_what_and_who(tmp_path: Path) -> None:
    process = Process(tmp_path, FANSLYMOTION_API_TOKEN="a-token-of-sixteen+")
    process.start()
    try:
        line = next(line for line in process.log().splitlines() if "HTTP API on" in line)
        assert f"http://127.0.0.1:{process.port} (the web page at /)" in line
        assert "renderer motion" in line and "ways in: the API token (API_TOKEN)" in line
    finally:
        assert process.stop(signal.SIGTERM) == 0
