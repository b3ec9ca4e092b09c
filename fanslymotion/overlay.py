"""What is drawn over a story's frames: the shots' captions and the watermark.

Each is drawn once with Pillow into a small RGBA patch (sized from the output's height), and
blended into every frame it shows on over its own rectangle only, at an opacity that the
compositor fades with the shot. Captions use DejaVu Sans Bold from Debian's
`fonts-dejavu-core` (Latin, Greek and Cyrillic), read from disk: never fetched. Pure engine.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from . import ycbcr
from .errors import InvalidParams, RenderError

log = logging.getLogger(__name__)

Frame = npt.NDArray[np.uint8]

FONT_PACKAGE = "fonts-dejavu-core"
FONT_PATHS = (
    Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
    Path("/usr/share/fonts/dejavu/DejaVuSans-Bold.ttf"),
)
CAPTION_HEIGHT = 0.048
"""Caption font size as a fraction of the output's height."""
CAPTION_LINES = 3
SAFE_BOTTOM = 0.08
"""The caption's lowest line sits this far (of the height) above the bottom edge."""
SAFE_SIDE = 0.07
WATERMARK_HEIGHT = 0.034
LOGO_HEIGHT = 0.09
MAX_LOGO_BYTES = 1_000_000
MAX_LOGO_SIDE = 2000
MARGIN = 0.03


@dataclass(frozen=True)
class Patch:
    """An RGBA drawing placed at (x, y) of the frame: colour and alpha (0-1) as float32."""

    x: int
    y: int
    rgb: npt.NDArray[np.float32]
    alpha: npt.NDArray[np.float32]

    @property
    def box(self) -> tuple[int, int, int, int]:
        h, w = self.alpha.shape[:2]
        return self.x, self.y, self.x + w, self.y + h

    def blend(self, frame: Frame, opacity: float = 1.0) -> Frame:
        """`frame` with the patch drawn at `opacity` (the frame is copied when read-only)."""
        if opacity <= 0.0:
            return frame
        if not frame.flags.writeable:
            frame = frame.copy()
        x0, y0, x1, y1 = self.box
        region = frame[y0:y1, x0:x1].astype(np.float32)
        weight = self.alpha * np.float32(opacity)
        region += (self.rgb - region) * weight
        frame[y0:y1, x0:x1] = np.rint(region).astype(np.uint8)
        return frame

    def i420(self) -> PlanePatch:
        """The patch for I420 frames, converted once: Y'CbCr by `ycbcr`'s matrix, placed on
        even pixels (padded with transparent ones), and for Cb and Cr at half size the 2x2
        blocks' mean alpha and their alpha-weighted mean colour, so that blending there is the
        mean of blending each pixel, as if the frame were blended in RGB and then converted."""
        x0, y0 = self.x - self.x % 2, self.y - self.y % 2
        h, w = self.alpha.shape[:2]
        rows, cols = _even(self.y - y0 + h), _even(self.x - x0 + w)
        alpha = np.zeros((rows, cols), np.float32)
        alpha[self.y - y0 : self.y - y0 + h, self.x - x0 : self.x - x0 + w] = self.alpha[..., 0]
        ycc = np.zeros((rows, cols, 3), np.float32)
        ycc[self.y - y0 : self.y - y0 + h, self.x - x0 : self.x - x0 + w] = ycbcr.colours(self.rgb)
        blocks = (rows // 2, 2, cols // 2, 2)
        weight = alpha.reshape(blocks).sum(axis=(1, 3))
        weighted = (ycc[..., 1:] * alpha[..., None]).reshape(*blocks, 2).sum(axis=(1, 3))
        chroma = np.full((rows // 2, cols // 2, 2), 128.0, np.float32)
        np.divide(weighted, weight[..., None], out=chroma, where=weight[..., None] > 0)
        return PlanePatch(x0, y0, ycc[..., 0].copy(), alpha, chroma, weight / 4)


def _even(n: int) -> int:
    return n + n % 2


@dataclass(frozen=True)
class PlanePatch:
    """A `Patch` for I420 frames: at (x, y) (even), Y and its alpha at full size, Cb and Cr
    (h / 2, w / 2, 2) and their alpha at half size, all float32."""

    x: int
    y: int
    luma: npt.NDArray[np.float32]
    alpha: npt.NDArray[np.float32]
    chroma: npt.NDArray[np.float32]
    chroma_alpha: npt.NDArray[np.float32]

    def blend(self, frame: Frame, opacity: float = 1.0) -> Frame:
        """The I420 `frame` with the patch drawn at `opacity` (copied when read-only)."""
        if opacity <= 0.0:
            return frame
        if not frame.flags.writeable:
            frame = frame.copy()
        luma, cb, cr = ycbcr.planes(frame)
        h, w = self.alpha.shape
        _mix(luma[self.y : self.y + h, self.x : self.x + w], self.luma, self.alpha, opacity)
        x, y, h, w = self.x // 2, self.y // 2, h // 2, w // 2
        for i, plane in enumerate((cb, cr)):
            region = plane[y : y + h, x : x + w]
            _mix(region, self.chroma[..., i], self.chroma_alpha, opacity)
        return frame


def _mix(
    region: Frame,
    colour: npt.NDArray[np.float32],
    alpha: npt.NDArray[np.float32],
    opacity: float,
) -> None:
    """region += (colour - region) * alpha * opacity, rounded, in place."""
    values = region.astype(np.float32)
    values += (colour - values) * (alpha * np.float32(opacity))
    region[...] = np.rint(values).astype(np.uint8)


def font_path() -> Path:
    for path in FONT_PATHS:
        if path.is_file():
            return path
    raise RenderError(
        f"the caption font is missing: install Debian's {FONT_PACKAGE} package", retryable=False
    )


@cache
def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(font_path()), size)


def _patch(image: Image.Image, x: int, y: int, size: tuple[int, int]) -> Patch:
    """`image` placed at (x, y), cut to what lies inside a frame of `size`."""
    x, y = max(0, x), max(0, y)
    image = image.crop((0, 0, min(image.width, size[0] - x), min(image.height, size[1] - y)))
    array = np.asarray(image.convert("RGBA"), dtype=np.float32)
    return Patch(x, y, array[..., :3].copy(), (array[..., 3:] / 255.0).astype(np.float32))


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """Greedy word wrap to `width` pixels; a word longer than a line is broken by letters."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        trial = f"{current} {word}".strip()
        if font.getlength(trial) <= width:
            current = trial
            continue
        if current:
            lines.append(current)
        current = word
        while font.getlength(current) > width and len(current) > 1:
            cut = len(current) - 1
            while cut > 1 and font.getlength(current[:cut]) > width:
                cut -= 1
            lines.append(current[:cut])
            current = current[cut:]
    if current:
        lines.append(current)
    return lines


def _text_image(lines: list[str], font: ImageFont.FreeTypeFont, stroke: int) -> Image.Image:
    """White text with a black outline, lines centred, on a transparent image."""
    ascent, descent = font.getmetrics()
    line_h = ascent + descent + stroke * 2
    width = max(int(font.getlength(line)) for line in lines) + stroke * 2 + 2
    image = Image.new("RGBA", (width, line_h * len(lines)), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        x = (width - font.getlength(line)) / 2
        draw.text(
            (x, i * line_h + stroke),
            line,
            font=font,
            fill=(255, 255, 255, 255),
            stroke_width=stroke,
            stroke_fill=(0, 0, 0, 255),
        )
    return image


def caption(text: str, size: tuple[int, int]) -> Patch | None:
    """The caption drawn for an output of `size` (width, height), centred in the lower safe
    area; None for no text. A caption too long for `CAPTION_LINES` lines is shrunk to fit."""
    text = " ".join(text.split())
    if not text:
        return None
    width, height = size
    usable = int(width * (1 - 2 * SAFE_SIDE))
    points = max(10, round(height * CAPTION_HEIGHT))
    while True:
        font = _font(points)
        lines = _wrap(text, font, usable)
        if len(lines) <= CAPTION_LINES or points <= 10:
            break
        points = max(10, int(points * 0.85))
    lines = lines[: CAPTION_LINES + 2]
    image = _text_image(lines, font, max(1, round(points / 12)))
    x = (width - image.width) // 2
    y = round(height * (1 - SAFE_BOTTOM)) - image.height
    return _patch(image, x, y, size)


def _corner(image: Image.Image, size: tuple[int, int], corner: str) -> tuple[int, int]:
    width, height = size
    margin = round(min(width, height) * MARGIN)
    x = margin if corner.endswith("left") else width - image.width - margin
    y = margin if corner.startswith("top") else height - image.height - margin
    return max(0, x), max(0, y)


def read_logo(data: bytes) -> Image.Image:
    """A watermark logo: a PNG of at most `MAX_LOGO_BYTES` and `MAX_LOGO_SIDE` pixels a side."""
    if len(data) > MAX_LOGO_BYTES:
        raise InvalidParams(f"watermark logo: at most {MAX_LOGO_BYTES // 1000} kB")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG":
                raise InvalidParams("watermark logo must be a PNG")
            if max(image.size) > MAX_LOGO_SIDE:
                raise InvalidParams(f"watermark logo: at most {MAX_LOGO_SIDE} pixels a side")
            return image.convert("RGBA")
    except (OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, InvalidParams):
            raise
        raise InvalidParams("watermark logo is not a readable PNG") from None


def watermark(text: str, png: bytes, corner: str, size: tuple[int, int]) -> Patch:
    """The watermark for an output of `size`: the logo scaled to `LOGO_HEIGHT` of the height
    (and at most a quarter of the width), else the text, in `corner`."""
    width, height = size
    if png:
        logo = read_logo(png)
        scale = min(height * LOGO_HEIGHT / logo.height, width * 0.25 / logo.width)
        target = (max(1, round(logo.width * scale)), max(1, round(logo.height * scale)))
        image = logo.resize(target, Image.Resampling.LANCZOS)
    else:
        points = max(9, round(height * WATERMARK_HEIGHT))
        image = _text_image([text], _font(points), max(1, round(points / 14)))
    x, y = _corner(image, size, corner)
    return _patch(image, x, y, size)
