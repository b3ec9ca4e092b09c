"""A bad-input corpus against the real service: every odd upload gets the right answer.

Each case is built here from PIL, numpy or raw bytes, sent to `POST /job/create`, and either
refused with the expected status and message (no job row, no input file left behind) or
rendered into a correct video (frame count, size, and the colours of its first frame, which
show that the right frame, rotation and colour conversion were used). After the whole corpus
the service is still healthy and its database consistent.
"""

from __future__ import annotations

import base64
import io
import json
import sqlite3
import struct
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from fanslymotion import motion, video
from fanslymotion.app import Service

from .conftest import Client, assert_error_body, make_settings, photo_bytes

pytestmark = pytest.mark.asyncio(loop_scope="module")

FPS = 4
DURATION = 3
RESOLUTION = "360p"
MAX_UPLOAD_MB = 2.0

RED = (220, 30, 30)
GREEN = (30, 200, 60)
BLUE = (30, 40, 220)
GREY = (128, 128, 128)

Rgb = tuple[int, int, int]
FrameCheck = Callable[[np.ndarray], None]


# -- building the corpus ----------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def solid(colour: Rgb, size: tuple[int, int] = (320, 240), mode: str = "RGB") -> Image.Image:
    image = Image.new("RGB", size, colour)
    return image if mode == "RGB" else image.convert(mode)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def streamed_png(width: int, height: int) -> bytes:
    """A real, complete 1-bit greyscale PNG of any size, compressed row by row (tiny memory)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def bomb_png() -> bytes:
    """A decompression bomb: a header that declares 65535 x 65535 palette pixels, 100 bytes long."""
    ihdr = struct.pack(">IIBBBBB", 65535, 65535, 8, 3, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"PLTE", bytes(GREY))
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 4096))
        + png_chunk(b"IEND", b"")
    )


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose frame header (SOF0) is patched to declare another size."""
    data = bytearray(encode(solid(GREY, (64, 64)), "JPEG"))
    at = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, at + 5, height, width)
    return bytes(data)


def broken_crc_png() -> bytes:
    data = bytearray(photo_bytes(320, 240, "PNG"))
    data[29:33] = b"\x00\x00\x00\x00"  # the CRC of IHDR (8 signature + 8 + 13 bytes before it)
    return bytes(data)


def half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def left_red_right_blue(size: tuple[int, int]) -> Image.Image:
    width, height = size
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:, : width // 2] = RED
    pixels[:, width // 2 :] = BLUE
    return Image.fromarray(pixels)


def exif_rotated_jpeg() -> bytes:
    """Stored 400x300, left half red; EXIF orientation 6 shows it turned 90° clockwise."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(left_red_right_blue((400, 300)), "JPEG", exif=exif.tobytes(), quality=95)


def cmyk_jpeg() -> bytes:
    return encode(solid(RED, mode="CMYK"), "JPEG", quality=95)


def png_16bit() -> bytes:
    """Mid grey in 16 bits (0x8080): must come out mid grey, not clipped to white."""
    return encode(Image.fromarray(np.full((240, 320), 0x8080, np.uint16)), "PNG")


def palette_transparent_png() -> bytes:
    """Palette PNG, index 0 transparent: the left half is see-through, the right half blue."""
    image = Image.new("P", (320, 240), 0)
    image.putpalette([*RED, *BLUE] + [0] * (256 - 2) * 3)
    image.paste(1, (160, 0, 320, 240))
    return encode(image, "PNG", transparency=0)


def la_png() -> bytes:
    """Grey + alpha: left half opaque white, right half fully transparent."""
    luminance = Image.new("L", (320, 240), 255)
    alpha = Image.new("L", (320, 240), 255)
    alpha.paste(0, (160, 0, 320, 240))
    return encode(Image.merge("LA", (luminance, alpha)), "PNG")


def animated(fmt: str) -> bytes:
    """Two frames, red then blue: the video must be made from the first one."""
    first, second = solid(RED), solid(BLUE)
    options: dict[str, Any] = {"save_all": True, "append_images": [second], "duration": 100}
    if fmt == "WEBP":
        options["lossless"] = True
    return encode(first, fmt, **options)


def multipage_tiff() -> bytes:
    return encode(solid(GREEN), "TIFF", save_all=True, append_images=[solid(RED), solid(BLUE)])


SVG = (
    b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="640" height="480">'
    b'<rect width="640" height="480" fill="red"/></svg>'
)


# -- checks on the first frame ----------------------------------------------------------------


def near(pixels: np.ndarray, colour: Rgb, tolerance: float = 14.0) -> bool:
    mean = pixels.reshape(-1, 3).mean(axis=0)
    return bool(np.all(np.abs(mean - np.array(colour)) <= tolerance))


def uniform(colour: Rgb) -> FrameCheck:
    def check(frame: np.ndarray) -> None:
        h, w, _ = frame.shape
        centre = frame[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]
        assert near(centre, colour), f"centre is {centre.reshape(-1, 3).mean(axis=0)}"

    return check


def halves(first: Rgb, second: Rgb, *, vertical: bool = False) -> FrameCheck:
    """Left half `first` and right half `second` (top and bottom with vertical=True)."""

    def check(frame: np.ndarray) -> None:
        h, w, _ = frame.shape
        if vertical:
            a, b = frame[h // 16 : h * 5 // 16], frame[h * 11 // 16 : h * 15 // 16]
        else:
            a, b = frame[:, w // 16 : w * 5 // 16], frame[:, w * 11 // 16 : w * 15 // 16]
        got = (a.reshape(-1, 3).mean(axis=0), b.reshape(-1, 3).mean(axis=0))
        assert near(a, first) and near(b, second), f"halves are {got}"

    return check


# -- the cases --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One request. `send` builds the aiohttp request arguments (lazily: some are large)."""

    send: Callable[[], dict[str, Any]]
    status: int
    fragment: str = ""
    size: tuple[int, int] | None = None  # the video's (width, height) when it is accepted
    frame: FrameCheck | None = None
    bug: str | None = None  # a known bug in the service: the case is a strict xfail meanwhile


def as_json(image: Callable[[], bytes], **params: Any) -> Callable[[], dict[str, Any]]:
    def send() -> dict[str, Any]:
        return {"json": body(base64.b64encode(image()).decode(), **params)}

    return send


def body(image_data: str, **params: Any) -> dict[str, Any]:
    return {
        "user_id": 11,
        "duration": DURATION,
        "resolution": RESOLUTION,
        "motion_preset": "micro",
        "image_data": image_data,
        **params,
    }


def raw_body(
    text: str | bytes | Callable[[], str], content_type: str = "application/json"
) -> Callable[[], dict[str, Any]]:
    """A body sent as is (a stream: aiohttp warns about large bytes bodies)."""

    def send() -> dict[str, Any]:
        value = text() if callable(text) else text
        data = value.encode() if isinstance(value, str) else value
        return {"data": io.BytesIO(data), "headers": {"Content-Type": content_type}}

    return send


def as_form(
    image: bytes | None,
    filename: str = "photo.jpg",
    content_type: str = "application/octet-stream",
    **fields: str,
) -> Callable[[], dict[str, Any]]:
    def send() -> dict[str, Any]:
        form = aiohttp.FormData(default_to_multipart=True)
        values = {
            "user_id": "12",
            "duration": str(DURATION),
            "resolution": RESOLUTION,
            "motion_preset": "micro",
            **fields,
        }
        for name, value in values.items():
            form.add_field(name, value)
        if image is not None:
            form.add_field("image", image, filename=filename, content_type=content_type)
        return {"data": form}

    return send


def landscape() -> tuple[int, int]:
    return motion.output_size(RESOLUTION, "auto", 320, 240)


GOOD_JPEG = photo_bytes(320, 240)
B64 = base64.b64encode(GOOD_JPEG).decode()

CASES: dict[str, Case] = {
    # unreadable or refused uploads
    "zero bytes (multipart)": Case(as_form(b""), 400, "empty"),
    "text file (multipart)": Case(
        as_form(b"Dear service,\nthis is a letter.\n" * 20, "a.txt", "text/plain"),
        415,
        "not a supported image",
    ),
    "truncated JPEG": Case(as_json(lambda: half(GOOD_JPEG)), 400, "damaged or truncated"),
    "truncated PNG": Case(
        as_json(lambda: half(photo_bytes(320, 240, "PNG"))), 400, "damaged or truncated"
    ),
    "PNG with a broken header CRC": Case(as_json(broken_crc_png), 400, "damaged"),
    "decompression bomb PNG 65535x65535 (100 bytes)": Case(
        as_json(bomb_png), 413, "too many pixels"
    ),
    "20000x20000 PNG (1-bit, complete)": Case(
        as_json(lambda: streamed_png(20000, 20000)), 413, "too many pixels"
    ),
    "20000x20000 JPEG header": Case(
        as_json(lambda: jpeg_declaring(20000, 20000)), 413, "too many pixels"
    ),
    "8000x7000 PNG: over the cap, under Pillow's bomb limit": Case(
        as_json(lambda: streamed_png(8000, 7000)), 413, "at most 50 megapixels"
    ),
    "1x1 PNG": Case(as_json(lambda: encode(solid(RED, (1, 1)), "PNG")), 422, "too small"),
    "64x63 JPEG, one pixel short": Case(as_json(lambda: photo_bytes(64, 63)), 422, "64x63"),
    "SVG": Case(as_json(lambda: SVG), 415, "not a supported image"),
    "SVG (multipart, image/svg+xml)": Case(
        as_form(SVG, "a.svg", "image/svg+xml"), 415, "not a supported image"
    ),
    # odd but valid photos: a correct video
    "CMYK JPEG": Case(as_json(cmyk_jpeg), 201, size=landscape(), frame=uniform(RED)),
    "16-bit greyscale PNG (I;16)": Case(
        as_json(png_16bit), 201, size=landscape(), frame=uniform(GREY)
    ),
    "palette PNG with a transparent index": Case(
        as_json(palette_transparent_png, motion_preset="tilt_up", strength=0.0),
        201,
        size=landscape(),
        frame=halves(GREY, BLUE),
    ),
    "LA (grey + alpha) PNG": Case(
        as_json(la_png, strength=0.0), 201, size=landscape(), frame=halves((255, 255, 255), GREY)
    ),
    "EXIF orientation 6 JPEG (stored 400x300)": Case(
        as_json(exif_rotated_jpeg, strength=0.0),
        201,
        size=(360, 640),
        frame=halves(RED, BLUE, vertical=True),
    ),
    "progressive JPEG": Case(
        as_json(lambda: encode(solid(GREEN), "JPEG", progressive=True, quality=95)),
        201,
        size=landscape(),
        frame=uniform(GREEN),
    ),
    "animated GIF (first frame)": Case(
        as_json(lambda: animated("GIF")), 201, size=landscape(), frame=uniform(RED)
    ),
    "animated WebP (first frame)": Case(
        as_json(lambda: animated("WEBP")), 201, size=landscape(), frame=uniform(RED)
    ),
    "multi-page TIFF (first page)": Case(
        as_json(multipage_tiff), 201, size=landscape(), frame=uniform(GREEN)
    ),
    "JPEG with trailing garbage": Case(
        as_json(lambda: encode(solid(BLUE), "JPEG", quality=95) + b"\x00garbage\xff\xd9" * 500),
        201,
        size=landscape(),
        frame=uniform(BLUE),
    ),
    "base64 as a data: URL": Case(
        lambda: {"json": body("data:image/jpeg;base64," + B64, aspect="1:1")},
        201,
        size=motion.output_size(RESOLUTION, "1:1", 320, 240),
    ),
    "multipart JPEG": Case(
        as_form(GOOD_JPEG, aspect="9:16"),
        201,
        size=motion.output_size(RESOLUTION, "9:16", 320, 240),
    ),
    # the request itself is wrong
    "JPEG bytes sent as image/jpeg": Case(
        raw_body(GOOD_JPEG, "image/jpeg"), 415, "application/json"
    ),
    "urlencoded form": Case(
        raw_body("user_id=1&duration=3", "application/x-www-form-urlencoded"),
        415,
        "multipart/form-data",
    ),
    "JSON without a Content-Type": Case(
        lambda: {"data": json.dumps(body(B64)).encode()}, 415, "application/json"
    ),
    "base64 with a bad character": Case(
        lambda: {"json": body(B64[:100] + "*" + B64[101:])}, 400, "base64"
    ),
    "base64 cut short (bad padding)": Case(lambda: {"json": body(B64[:-3])}, 400, "base64"),
    # Issue 12: whitespace in base64 (line breaks from `base64`, a stray space) is accepted.
    "base64 with spaces inside": Case(
        lambda: {"json": body(B64[:50] + " " + B64[50:])}, 201, size=landscape()
    ),
    "oversized JSON (photo over the cap)": Case(
        raw_body(lambda: json.dumps(body("A" * int(MAX_UPLOAD_MB * 1024 * 1024 * 4 / 3 + 1024)))),
        413,
        "MB",
    ),
    "oversized JSON (a huge unknown field)": Case(
        raw_body(lambda: json.dumps({**body(B64), "padding": "x" * (4 * 1024 * 1024)})),
        413,
        "large",
    ),
    "multipart with a 5 KB text field": Case(
        as_form(GOOD_JPEG, motion_preset="m" * 5000),
        422,
        "motion_preset: a form field is at most 4 KB",
    ),
    "data: URL with no data": Case(lambda: {"json": body("data:image/jpeg;base64,")}, 400, "empty"),
    "deeply nested JSON": Case(raw_body("[" * 50_000 + "]" * 50_000), 400, "JSON"),
    "multipart/form-data without a boundary": Case(
        raw_body(json.dumps(body(B64)), "multipart/form-data"), 400, "multipart"
    ),
    "multipart part with a NUL in its header": Case(
        raw_body(
            b'--xyz\r\nContent-Disposition: form-data; name="user\x00id"\r\n\r\n1\r\n--xyz--\r\n',
            "multipart/form-data; boundary=xyz",
        ),
        400,
        "multipart",
    ),
    "JSON that is not UTF-8": Case(raw_body(b'{"user_id": "\xff\xfe"}'), 400, "JSON"),
    "unknown field": Case(
        lambda: {"json": body(B64, callback_url="http://x")}, 422, "callback_url"
    ),
    "missing image_data": Case(
        lambda: {"json": {k: v for k, v in body(B64).items() if k != "image_data"}},
        422,
        "image_data",
    ),
    "missing duration": Case(
        lambda: {"json": {k: v for k, v in body(B64).items() if k != "duration"}}, 422, "duration"
    ),
    "multipart without an image part": Case(as_form(None), 422, "image"),
    "multipart with an unknown field": Case(as_form(GOOD_JPEG, colour="red"), 422, "colour"),
    "empty JSON object": Case(raw_body("{}"), 422, "user_id"),
    "user_id negative": Case(lambda: {"json": body(B64, user_id=-1)}, 422, "user_id"),
    "user_id over 2**53": Case(lambda: {"json": body(B64, user_id=2**53 + 1)}, 422, "user_id"),
    "duration 0": Case(lambda: {"json": body(B64, duration=0)}, 422, "duration"),
    "duration 3.5": Case(lambda: {"json": body(B64, duration=3.5)}, 422, "duration"),
    "strength NaN": Case(raw_body(json.dumps(body(B64, strength=float("nan")))), 422, "strength"),
    "strength -0.1": Case(lambda: {"json": body(B64, strength=-0.1)}, 422, "strength"),
    "seed 2**32": Case(lambda: {"json": body(B64, seed=2**32)}, 422, "seed"),
    "steps 0": Case(lambda: {"json": body(B64, steps=0)}, 422, "steps"),
    "steps 101": Case(lambda: {"json": body(B64, steps=101)}, 422, "steps"),
    "aspect 2:1": Case(lambda: {"json": body(B64, aspect="2:1")}, 422, "aspect"),
    "Idempotency-Key of 201 characters": Case(
        lambda: {"json": body(B64), "headers": {"Idempotency-Key": "k" * 201}},
        422,
        "Idempotency-Key",
    ),
}


# -- the service and its on-disk state ---------------------------------------------------------


@dataclass
class Corpus:
    client: Client
    accepted: list[str] = field(default_factory=list)  # job ids answered 201


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def corpus(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Corpus]:
    """One service for the whole corpus, so that its state after every case can be checked."""
    data_dir = tmp_path_factory.mktemp("corpus") / "data"
    settings = make_settings(
        data_dir,
        max_queued=100,
        max_active_per_user=100,
        max_upload_mb=MAX_UPLOAD_MB,
        fps=FPS,
    )
    service = await Service.start(settings)
    async with aiohttp.ClientSession() as session:
        yield Corpus(Client(session, f"http://127.0.0.1:{service.port}", service))
    await service.stop()


def job_rows(settings_db: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(settings_db) as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT * FROM jobs ORDER BY rowid").fetchall()


def input_files(data_dir: Path) -> set[str]:
    folder = data_dir / "inputs"
    return {f"inputs/{p.name}" for p in folder.iterdir()} if folder.is_dir() else set()


def first_frame(path: Path) -> np.ndarray:
    frames = video.read_frames(path)
    try:
        return next(iter(frames)).copy()
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=case.bug))
        if case.bug
        else name
        for name, case in CASES.items()
    ],
)
async def test_corpus(corpus: Corpus, name: str, tmp_path: Path) -> None:
    case = CASES[name]
    client = corpus.client
    settings = client.service.settings
    rows_before = len(job_rows(settings.db_path))
    inputs_before = input_files(settings.data_dir)

    status, answer, response = await client.request("POST", "/job/create", **case.send())

    assert status == case.status, answer
    if status != 201:
        assert_error_body(answer, status)
        assert case.fragment in answer["error"], answer["error"]
        if "damaged" in case.fragment:
            assert answer["code"] == "photo_damaged"
        assert "Traceback" not in answer["error"] and str(settings.data_dir) not in answer["error"]
        assert len(job_rows(settings.db_path)) == rows_before, "a refused upload left a job row"
        assert not input_files(settings.data_dir) - inputs_before, "a refused upload left a file"
        return

    job_id = answer["job_id"]
    corpus.accepted.append(job_id)
    final = await client.wait(job_id)
    assert final["status"] == "completed", final
    got, data, response = await client.request("GET", f"/job/download/{job_id}")
    assert got == 200 and response.content_type == "video/mp4"
    path = tmp_path / "video.mp4"
    path.write_bytes(data)
    info = video.probe(path)
    assert info.frames == DURATION * FPS
    assert info.fps == pytest.approx(FPS)
    assert case.size is not None
    assert (info.width, info.height) == case.size
    if case.frame is not None:
        case.frame(first_frame(path))


async def test_after_the_corpus(corpus: Corpus) -> None:
    """Still up and healthy; the database and the data dir tell the same story."""
    client = corpus.client
    settings = client.service.settings
    status, health, _ = await client.request("GET", "/health")
    assert status == 200 and health["ok"] is True and health["gpu_thread_alive"] is True
    rows = job_rows(settings.db_path)
    with sqlite3.connect(settings.db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA foreign_key_check").fetchall() == []
    assert [row["job_id"] for row in rows] == corpus.accepted, "only accepted uploads are jobs"
    assert all(row["status"] == "completed" for row in rows)
    # Inputs are deleted once a job ends (the default retention): nothing may remain but
    # files that a job row still points to.
    assert input_files(settings.data_dir) <= {row["input_path"] for row in rows}
    hot = sorted(p.name for p in settings.hot_dir.iterdir())
    assert hot == sorted(f"{row['job_id']}.mp4" for row in rows), "no partial or stray video"
