"""Colour looks, defined once and applied the same way to every renderer's frames.

A look is a saturation (1 = unchanged, 0 = grey) followed by one tone curve per channel, applied
through OpenCV's table lookup: a few milliseconds a 1080p frame, so a story's look costs little
beside the encoder. Pure engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

Frame = npt.NDArray[np.uint8]

_X = np.arange(256, dtype=np.float64) / 255.0


@dataclass(frozen=True)
class LookSpec:
    """Saturation, then per channel (R, G, B): gain, lift (added to the blacks) and an S-curve
    amount (0: straight; > 0: more contrast through the mid-tones)."""

    saturation: float = 1.0
    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)
    lift: tuple[float, float, float] = (0.0, 0.0, 0.0)
    contrast: float = 0.0


LOOK_SPECS: dict[str, LookSpec] = {
    "natural": LookSpec(),
    "warm": LookSpec(1.05, (1.06, 1.0, 0.88), (0.02, 0.01, 0.0), 0.05),
    "cool": LookSpec(0.97, (0.92, 1.0, 1.08), (0.0, 0.01, 0.03), 0.05),
    "vivid": LookSpec(1.35, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), 0.18),
    "mono": LookSpec(0.0, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), 0.12),
    # Faded blacks, softer colour, a warm cast in the highlights.
    "film": LookSpec(0.82, (1.03, 1.0, 0.93), (0.06, 0.05, 0.07), 0.14),
}


def _curve(gain: float, lift: float, contrast: float) -> npt.NDArray[np.float64]:
    # Slope 1 + contrast at the mid-tones, 1 - contrast at the ends; 0 and 1 stay put.
    s_curve = _X - contrast / (2 * np.pi) * np.sin(2 * np.pi * _X)
    toned = np.clip(s_curve, 0.0, 1.0) * gain
    return np.clip(lift + toned * (1.0 - lift), 0.0, 1.0)


@cache
def table(name: str) -> Frame:
    """The look's lookup table, shape (256, 1, 3), for cv2.LUT on RGB frames."""
    spec = LOOK_SPECS[name]
    channels = [_curve(g, lf, spec.contrast) for g, lf in zip(spec.gain, spec.lift, strict=True)]
    lut = np.stack(channels, axis=-1) * 255.0
    return np.clip(np.rint(lut), 0, 255).astype(np.uint8).reshape(256, 1, 3)


def apply(frame: Frame, name: str) -> Frame:
    """`frame` (H, W, 3 RGB uint8) in the look `name`; `natural` returns it as it is."""
    if name == "natural":
        return frame
    spec = LOOK_SPECS[name]
    if spec.saturation != 1.0:  # one pass: each channel mixed toward the luma
        frame = np.asarray(cv2.transform(frame, saturation_matrix(name)), dtype=np.uint8)
    return np.asarray(cv2.LUT(frame, table(name)), dtype=np.uint8)


def apply_image(image: Image.Image, name: str) -> Image.Image:
    """`apply` to a whole photo (RGB); `natural` returns it as it is."""
    if name == "natural":
        return image
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return Image.fromarray(apply(np.ascontiguousarray(np.asarray(rgb)), name))


_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@cache
def saturation_matrix(name: str) -> npt.NDArray[np.float32]:
    """s * I + (1 - s) * luma: s = 1 leaves colour alone, s = 0 gives grey (BT.601 luma)."""
    s = np.float32(LOOK_SPECS[name].saturation)
    matrix = s * np.eye(3, dtype=np.float32) + (1 - s) * np.tile(_LUMA, (3, 1))
    return matrix.astype(np.float32)
