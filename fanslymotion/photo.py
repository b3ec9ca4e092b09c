"""Input photos: open anything Pillow reads, safely, and hand back a plain RGB image.

Every failure becomes one domain error whose message is safe to show to the user: an empty
file, a file that is not an image, a damaged image, one with too many pixels (checked from the
header, before decoding: decompression bombs), or one too small to make a video from.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import numpy as np
from PIL import ExifTags, Image, ImageCms, UnidentifiedImageError

from .errors import BadRequest, FanslyError, InvalidParams, PayloadTooLarge, UnsupportedMedia

log = logging.getLogger(__name__)

Source = bytes | bytearray | memoryview | Path | str

SUPPORTED_TEXT = "JPEG, PNG, WebP, AVIF, BMP, TIFF or GIF"
# The formats read, and no others: what an error names is what is accepted.
_ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "AVIF", "BMP", "TIFF", "GIF")
NEUTRAL_GREY = (128, 128, 128)

# Magic numbers of the common formats: a file that starts like one of these but that Pillow
# cannot identify is a damaged image, not an unsupported one.
_SIGNATURES = (
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"II*\x00",
    b"MM\x00*",
    b"BM",
)

_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# `warnings.catch_warnings` swaps process-wide state; the lock keeps two threads (the API's
# executor and the render thread) from restoring each other's filters.
_warnings_lock = threading.Lock()

_DAMAGED = "the image is damaged or truncated and could not be read"


def _formats() -> list[str]:
    Image.init()
    return [name for name in Image.ID if name in _ACCEPTED_FORMATS]


def warm() -> None:
    """Import Pillow's format plugins now (tens of milliseconds, once per process), so that
    the first photo a renderer decodes does not pay for them."""
    _formats()


def _looks_like_image(head: bytes) -> bool:
    if head.startswith(_SIGNATURES):
        return True
    return head[:4] == b"RIFF" and head[8:12] == b"WEBP"


@contextmanager
def _quiet_pillow() -> Iterator[list[warnings.WarningMessage]]:
    """Collect Pillow's warnings (bomb, corrupt EXIF...) instead of letting them escape."""
    with _warnings_lock, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
        for warning in caught:
            if not issubclass(warning.category, Image.DecompressionBombWarning):
                log.debug("pillow: %s", warning.message)


@contextmanager
def _open(source: Source, max_pixels: int, min_side: int) -> Iterator[Image.Image]:
    """Open (header only), map every failure to a domain error, and check the pixel count."""
    stream: IO[bytes]
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if not data:
            raise BadRequest("the file is empty", code="photo_empty")
        stream = io.BytesIO(data)
    else:
        try:
            if os.path.getsize(source) == 0:
                raise BadRequest("the file is empty", code="photo_empty")
            stream = open(source, "rb")  # noqa: SIM115 - closed in the finally below
        except OSError:
            raise BadRequest("the photo could not be read", code="photo_unreadable") from None
    try:
        head = stream.read(16)
        stream.seek(0)
        try:
            image = Image.open(stream, formats=_formats())
        except Image.DecompressionBombError:
            raise _too_many_pixels(max_pixels) from None
        except UnidentifiedImageError:
            if _looks_like_image(head):
                raise _damaged() from None
            raise UnsupportedMedia(
                f"this file is not a supported image: send a {SUPPORTED_TEXT} photo",
                code="photo_unsupported",
                details={"formats": SUPPORTED_TEXT},
            ) from None
        except Exception as exc:  # a plugin choking on a damaged header
            log.debug("open failed: %r", exc)
            raise _damaged() from None
        with image:
            width, height = image.size
            if width * height > max_pixels:
                raise _too_many_pixels(max_pixels)
            if min(width, height) < min_side:
                raise InvalidParams(
                    f"the photo is too small: at least {min_side} px on the short side"
                    f" (this one is {width}x{height})",
                    code="photo_too_small",
                    details={"min_side": min_side, "width": width, "height": height},
                )
            yield image
    finally:
        stream.close()


def _too_many_pixels(max_pixels: int) -> PayloadTooLarge:
    megapixels = f"{max_pixels / 1e6:g}"
    return PayloadTooLarge(
        f"the photo has too many pixels: at most {megapixels} megapixels",
        code="photo_too_many_pixels",
        details={"megapixels": megapixels},
    )


def _damaged() -> BadRequest:
    return BadRequest(_DAMAGED, code="photo_damaged")


def _orientation(image: Image.Image, *, header_only: bool) -> int:
    """The EXIF orientation (1-8); 1 when absent or unreadable."""
    try:
        if header_only and image.format == "PNG" and "exif" not in image.info:
            # PNG may keep eXIf after the pixels; Pillow would decode the whole image to find it.
            return 1
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
        return int(value) if int(value) in _ORIENTATION_TRANSPOSE else 1
    except Exception as exc:  # a corrupt EXIF block must not cost the user the photo
        log.debug("unreadable EXIF: %r", exc)
        return 1


def probe_photo(
    source: Source, *, max_pixels: int = 50_000_000, min_side: int = 64
) -> tuple[int, int]:
    """(width, height) as displayed (EXIF rotation applied), from the header: cheap.

    Raises the same errors as `load_photo` for empty, unsupported, too large or too small
    files; a file damaged after its header is only caught by `load_photo`.
    """
    with _quiet_pillow(), _open(source, max_pixels, min_side) as image:
        width, height = image.size
        if _orientation(image, header_only=True) in (5, 6, 7, 8):
            return height, width
        return width, height


def load_photo(source: Source, *, max_pixels: int = 50_000_000, min_side: int = 64) -> Image.Image:
    """Decode a photo into an RGB image, upright (EXIF orientation applied).

    The first frame of animations and multi-page files is used; transparency is composited
    over a neutral grey; 16-bit, CMYK and palette images are converted faithfully.
    """
    with _quiet_pillow(), _open(source, max_pixels, min_side) as image:
        try:
            image.load()
            orientation = _orientation(image, header_only=False)
            rgb = _to_rgb(image)
        except FanslyError:
            raise
        except Image.DecompressionBombError:  # raised by some plugins while decoding
            raise _too_many_pixels(max_pixels) from None
        except Exception as exc:
            log.debug("decode failed: %r", exc)
            raise _damaged() from None
    if orientation in _ORIENTATION_TRANSPOSE:
        rgb = rgb.transpose(_ORIENTATION_TRANSPOSE[orientation])
    return rgb


def _to_rgb(image: Image.Image) -> Image.Image:
    """A new RGB image from any Pillow mode; independent of the file it came from."""
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        return _high_depth_to_rgb(image)
    has_alpha = mode in ("RGBA", "RGBa", "LA", "PA") or "transparency" in image.info
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*NEUTRAL_GREY, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode in ("RGB", "CMYK") and image.info.get("icc_profile"):
        converted = _icc_to_srgb(image)
        if converted is not None:
            return converted
    return image.convert("RGB")


def _high_depth_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float grey: scale to 8 bits (Pillow's convert would clip)."""
    values = np.asarray(image).astype(np.float64)
    if image.mode == "F" and values.size and float(np.nanmax(values)) <= 1.0:
        values = values * 255.0  # float images are usually 0-1
    elif image.mode.startswith("I;16") or (values.size and float(np.nanmax(values)) > 255.0):
        values = values / 257.0  # 0-65535 onto 0-255
    grey = np.clip(np.nan_to_num(values), 0.0, 255.0).round().astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def _icc_to_srgb(image: Image.Image) -> Image.Image | None:
    """Colour-manage an embedded profile (CMYK, wide gamut) into sRGB; None if it fails."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(image.info["icc_profile"]))
        if image.mode == "RGB" and "srgb" in ImageCms.getProfileDescription(profile).lower():
            return None  # already sRGB: a plain copy is exact and much cheaper
        transform = ImageCms.buildTransform(
            profile, ImageCms.createProfile("sRGB"), image.mode, "RGB"
        )
        result = ImageCms.applyTransform(image, transform)
        return result if result is not None and result.mode == "RGB" else None
    except Exception as exc:  # a broken profile: fall back to the plain conversion
        log.debug("ICC conversion failed: %r", exc)
        return None
