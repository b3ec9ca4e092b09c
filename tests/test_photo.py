"""Photo loading: formats, EXIF orientation, colour modes, and one clear error for bad files."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from fanslymotion import photo
from fanslymotion.errors import (
    BadRequest,
    FanslyError,
    InvalidParams,
    PayloadTooLarge,
    UnsupportedMedia,
)

from .imagetools import encoded, textured_photo


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def raw_png(width: int, height: int, rows: bytes, *, depth: int = 8, colour: int = 2) -> bytes:
    """A PNG written by hand: lets the tests claim any size, or use 16-bit RGB."""
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(rows))
        + png_chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    return textured_photo(160, 120, seed=3, scale=3)


def mean_colour(image: Image.Image) -> np.ndarray:
    mean: np.ndarray = np.asarray(image, dtype=np.float64).reshape(-1, 3).mean(axis=0)
    return mean


# --- formats --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_common_formats(picture: Image.Image, fmt: str) -> None:
    image = photo.load_photo(encoded(picture, fmt))
    assert image.mode == "RGB" and image.size == (160, 120)
    # Same picture back (GIF quantises to 256 colours, JPEG and WebP are lossy).
    assert np.abs(mean_colour(image) - mean_colour(picture)).max() < 6
    assert photo.probe_photo(encoded(picture, fmt)) == (160, 120)


def test_from_a_path(tmp_path: Path, picture: Image.Image) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(encoded(picture))
    assert photo.load_photo(path).size == (160, 120)
    assert photo.probe_photo(path) == (160, 120)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "TIFF"])
def test_first_frame_of_animations_and_multi_page_files(fmt: str) -> None:
    frames = [Image.new("RGB", (100, 80), colour) for colour in ((200, 30, 30), (30, 30, 200))]
    data = io.BytesIO()
    frames[0].save(data, fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    image = photo.load_photo(data.getvalue())
    assert image.size == (100, 80)
    red, _, blue = mean_colour(image)
    assert red > 150 and blue < 80


def test_jpeg_with_trailing_garbage_loads(picture: Image.Image) -> None:
    image = photo.load_photo(encoded(picture) + b"\x00garbage after the end of image" * 10)
    assert image.size == (160, 120)


# --- EXIF orientation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("orientation", "size", "corner"),
    [
        (1, (200, 100), (0, 0)),  # top-left stays
        (3, (200, 100), (199, 99)),  # rotated 180
        (6, (100, 200), (99, 0)),  # camera held 90° clockwise: top-left goes top-right
        (8, (100, 200), (0, 199)),
    ],
)
def test_exif_orientation(orientation: int, size: tuple[int, int], corner: tuple[int, int]) -> None:
    stored = Image.new("RGB", (200, 100), (40, 40, 40))
    stored.paste((250, 0, 0), (0, 0, 20, 20))  # a red mark at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encoded(stored, "JPEG", exif=exif.tobytes(), quality=95)
    image = photo.load_photo(data)
    assert image.size == size
    assert photo.probe_photo(data) == size
    x, y = corner
    red = np.asarray(image)[max(0, y - 5) : y + 6, max(0, x - 5) : x + 6, 0]
    assert red.mean() > 200


# --- colour modes ---------------------------------------------------------------------------


def test_transparency_goes_over_neutral_grey() -> None:
    rgba = Image.new("RGBA", (80, 80), (255, 0, 0, 0))
    rgba.paste((255, 0, 0, 255), (0, 0, 40, 80))
    image = photo.load_photo(encoded(rgba, "PNG"))
    pixels = np.asarray(image)
    assert tuple(pixels[40, 10]) == (255, 0, 0)
    assert tuple(pixels[40, 70]) == photo.NEUTRAL_GREY


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_grey_with_alpha(fmt: str) -> None:
    source = Image.new("RGBA", (80, 80), (0, 0, 0, 0))
    source.paste((250, 250, 250, 255), (0, 0, 40, 80))
    image = photo.load_photo(encoded(source.convert("LA"), fmt))
    pixels = np.asarray(image)
    assert pixels[40, 10].min() > 200
    assert tuple(pixels[40, 70]) == photo.NEUTRAL_GREY


def test_palette_with_transparency() -> None:
    palette = Image.new("P", (80, 80), 0)
    palette.putpalette([0, 0, 0, 255, 255, 0] + [0] * 762)
    palette.paste(1, (0, 0, 40, 80))
    for fmt in ("PNG", "GIF"):
        image = photo.load_photo(encoded(palette, fmt, transparency=0))
        pixels = np.asarray(image)
        assert tuple(pixels[40, 10]) == (255, 255, 0)
        assert tuple(pixels[40, 70]) == photo.NEUTRAL_GREY


def test_sixteen_bit_grey_is_scaled_not_clipped() -> None:
    values = np.array([[0, 32896, 65535] * 30] * 90, dtype=np.uint16)
    image = photo.load_photo(encoded(Image.fromarray(values), "PNG"))
    row = np.asarray(image)[0, :3, 0]
    assert list(row) == [0, 128, 255]


def test_sixteen_bit_rgb_png() -> None:
    pixel = struct.pack(">HHH", 65535, 32896, 0)
    rows = b"".join(b"\x00" + pixel * 70 for _ in range(70))
    image = photo.load_photo(raw_png(70, 70, rows, depth=16, colour=2))
    assert tuple(np.asarray(image)[5, 5]) == (255, 128, 0)


def test_float_tiff() -> None:
    values = np.full((70, 70), 0.5, dtype=np.float32)
    image = photo.load_photo(encoded(Image.fromarray(values, "F"), "TIFF"))
    assert np.asarray(image)[0, 0, 0] == 128


def test_cmyk_jpeg() -> None:
    cmyk = Image.new("CMYK", (80, 80), (0, 255, 255, 0))  # red in ink
    image = photo.load_photo(encoded(cmyk, "JPEG", quality=95))
    red, green, blue = mean_colour(image)
    assert red > 200 and green < 60 and blue < 60


@pytest.mark.parametrize("mode", ["L", "1", "P", "YCbCr"])
def test_plain_modes(picture: Image.Image, mode: str) -> None:
    fmt = "JPEG" if mode == "YCbCr" else "PNG"
    image = photo.load_photo(encoded(picture.convert(mode), fmt))
    assert image.mode == "RGB" and image.size == (160, 120)


def test_srgb_profile_is_kept_as_is(picture: Image.Image) -> None:
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image = photo.load_photo(encoded(picture, "PNG", icc_profile=profile))
    assert np.array_equal(np.asarray(image), np.asarray(picture))


def test_result_is_detached_from_the_file(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (100, 80), c) for c in ((1, 2, 3), (4, 5, 6))]
    path = tmp_path / "multi.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    image = photo.load_photo(path)
    path.unlink()  # no handle kept open: the file can go, the image stays usable
    assert image.copy().size == (100, 80)


# --- bad input: one clear domain error each ---------------------------------------------------


def test_empty(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="the file is empty"):
        photo.load_photo(b"")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(BadRequest, match="the file is empty"):
        photo.load_photo(empty)
    with pytest.raises(BadRequest, match="the file is empty") as info:
        photo.probe_photo(b"")
    assert info.value.code == "photo_empty"


@pytest.mark.parametrize(
    "data",
    [
        b"hello, this is just text\n" * 20,
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
        b'<rect width="100" height="100" fill="red"/></svg>',
        b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
        b"\x00" * 1000,
        bytes(range(256)) * 4,
    ],
    ids=["text", "svg", "pdf", "zeros", "bytes"],
)
def test_not_an_image(data: bytes) -> None:
    with pytest.raises(UnsupportedMedia) as info:
        photo.load_photo(data)
    assert "JPEG" in info.value.message and info.value.status == 415
    assert info.value.code == "photo_unsupported"
    assert info.value.details == {"formats": photo.SUPPORTED_TEXT}
    with pytest.raises(UnsupportedMedia):
        photo.probe_photo(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF"])
def test_truncated(picture: Image.Image, fmt: str) -> None:
    data = encoded(picture, fmt)
    with pytest.raises(BadRequest, match="damaged or truncated") as info:
        photo.load_photo(data[: len(data) // 2])
    assert info.value.code == "photo_damaged"


def test_header_only_png() -> None:
    with pytest.raises(BadRequest, match="damaged or truncated"):
        photo.load_photo(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIH")


def test_corrupt_png_data(picture: Image.Image) -> None:
    data = bytearray(encoded(picture, "PNG"))
    data[200:260] = b"\xff" * 60
    with pytest.raises(BadRequest, match="damaged or truncated"):
        photo.load_photo(bytes(data))


def test_too_small() -> None:
    data = encoded(Image.new("RGB", (63, 300)), "PNG")
    with pytest.raises(InvalidParams) as info:
        photo.load_photo(data)
    assert "too small: at least 64 px" in info.value.message and info.value.status == 422
    assert info.value.code == "photo_too_small"
    assert info.value.details == {"min_side": 64, "width": 63, "height": 300}
    with pytest.raises(InvalidParams):
        photo.probe_photo(data)
    assert photo.load_photo(encoded(Image.new("RGB", (64, 300)), "PNG")).size == (64, 300)
    with pytest.raises(InvalidParams, match="at least 100 px"):
        photo.load_photo(data, min_side=100)


@pytest.mark.parametrize(
    ("width", "height"),
    [
        (8000, 8000),  # over our cap, under Pillow's warning threshold
        (10000, 10000),  # where Pillow warns
        (100000, 100000),  # where Pillow refuses
    ],
)
def test_decompression_bomb_is_refused_from_the_header(width: int, height: int) -> None:
    """A few hundred bytes claiming billions of pixels: refused before any decoding."""
    data = raw_png(width, height, b"\x00" * 64)
    assert len(data) < 200
    with pytest.raises(PayloadTooLarge) as info:
        photo.load_photo(data)
    assert "megapixels" in info.value.message and info.value.status == 413
    assert info.value.code == "photo_too_many_pixels" and info.value.details == {"megapixels": "50"}
    with pytest.raises(PayloadTooLarge):
        photo.probe_photo(data)


def test_pixel_cap_is_configurable(picture: Image.Image) -> None:
    data = encoded(picture, "PNG")
    with pytest.raises(PayloadTooLarge):
        photo.load_photo(data, max_pixels=160 * 120 - 1)
    assert photo.load_photo(data, max_pixels=160 * 120).size == (160, 120)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BadRequest) as info:
        photo.load_photo(tmp_path / "nope.jpg")
    assert str(tmp_path) not in info.value.message
    assert info.value.code == "photo_unreadable"


def test_corruptions_never_escape_as_tracebacks(picture: Image.Image) -> None:
    """Random damage to real files: each one loads or raises one of our errors."""
    rng = np.random.default_rng(11)
    sources = [encoded(picture, fmt) for fmt in ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP")]
    for data in sources:
        for _ in range(12):
            damaged = bytearray(data)
            if rng.random() < 0.5:
                damaged = damaged[: int(rng.integers(1, len(damaged)))]
            else:
                for position in rng.integers(0, len(damaged), int(rng.integers(1, 20))):
                    damaged[position] = int(rng.integers(0, 256))
            try:
                image = photo.load_photo(bytes(damaged))
            except FanslyError as exc:
                assert exc.message and "Traceback" not in exc.message
                assert type(exc) in (BadRequest, UnsupportedMedia, InvalidParams, PayloadTooLarge)
            else:
                assert image.mode == "RGB"


def test_concurrent_loads(picture: Image.Image) -> None:
    """The API's executor and the render thread load at the same time."""
    good, bomb = encoded(picture, "JPEG"), raw_png(10000, 10000, b"\x00")
    failures: list[BaseException] = []

    def work(data: bytes, expected: type[Exception] | None) -> None:
        for _ in range(10):
            try:
                photo.load_photo(data)
                assert expected is None
            except BaseException as exc:
                if expected is None or not isinstance(exc, expected):
                    failures.append(exc)

    threads = [threading.Thread(target=work, args=(good, None)) for _ in range(3)]
    threads += [threading.Thread(target=work, args=(bomb, PayloadTooLarge)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


def _modules_a_load_imports(tmp_path: Path, picture: Image.Image, warm: bool) -> list[str]:
    """The modules a fresh interpreter imports while it loads its first JPEG."""
    path = tmp_path / "first.jpg"
    picture.save(path, "JPEG")
    script = (
        "import json, sys\n"
        "from fanslymotion import photo\n"
        f"{'photo.warm()' if warm else ''}\n"
        "before = set(sys.modules)\n"
        f"photo.load_photo({str(path)!r})\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, check=True, text=True
    )
    found: list[str] = json.loads(done.stdout)
    return found


def test_warm_leaves_the_first_photo_nothing_to_import(
    tmp_path: Path, picture: Image.Image
) -> None:
    """A renderer warms up at start: Pillow's format plugins (tens of milliseconds) are not
    imported on the clock of its first clip."""
    assert any("ImagePlugin" in name for name in _modules_a_load_imports(tmp_path, picture, False))
    assert _modules_a_load_imports(tmp_path, picture, True) == []
