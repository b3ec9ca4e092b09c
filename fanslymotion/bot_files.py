"""What a file sent to the bot is, from what the update says of it (no download): an image
the service may read, or which other kind of file, to name it in the refusal; and a HEIC photo
made PNG (called in an executor)."""

from __future__ import annotations

import io
import logging

log = logging.getLogger(__name__)

# File extensions accepted for an image sent as a document without a MIME type.
IMAGE_EXTENSIONS = frozenset(
    {"jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif", "heic", "heif"}
)


def looks_like_image(mime_type: str | None, file_name: str | None) -> bool:
    if mime_type:
        return mime_type.lower().startswith("image/") and "svg" not in mime_type.lower()
    extension = (file_name or "").rsplit(".", 1)[-1].lower()
    return extension in IMAGE_EXTENSIONS


_ARCHIVES = ("zip", "rar", "7z", "tar", "gz", "tgz", "bz2", "xz")


def document_kind(mime_type: str | None, file_name: str | None) -> str:
    """The text key naming what a non-image file is ("kind_pdf", "kind_zip"...)."""
    mime = (mime_type or "").lower()
    extension = (file_name or "").rsplit(".", 1)[-1].lower() if file_name else ""
    if mime == "application/pdf" or extension == "pdf":
        return "kind_pdf"
    if any(word in mime for word in ("zip", "rar", "7z", "tar", "compressed")):
        return "kind_zip"
    if extension in _ARCHIVES:
        return "kind_zip"
    for prefix, kind in (
        ("text/", "kind_text"),
        ("video/", "kind_video"),
        ("audio/", "kind_audio"),
    ):
        if mime.startswith(prefix):
            return kind
    return "kind_text" if extension in ("txt", "md", "csv") else "kind_file"


def is_heic(mime_type: str | None, file_name: str | None) -> bool:
    mime = (mime_type or "").lower()
    extension = (file_name or "").rsplit(".", 1)[-1].lower() if file_name else ""
    return mime in ("image/heic", "image/heif", "image/heic-sequence", "image/heif-sequence") or (
        extension in ("heic", "heif")
    )


def heic_to_png(data: bytes, max_pixels: int) -> bytes | None:
    """Decode a HEIC/HEIF file to PNG bytes; None when it cannot be read or is too large."""
    import pillow_heif  # only when a HEIC file arrives

    try:
        heif = pillow_heif.open_heif(io.BytesIO(data))
        width, height = heif.size
        if width * height > max_pixels:
            return None
        buffer = io.BytesIO()
        heif.to_pillow().save(buffer, "PNG")
    except (ValueError, OSError, RuntimeError) as exc:
        log.info("HEIC file not readable: %s", exc)
        return None
    return buffer.getvalue()
