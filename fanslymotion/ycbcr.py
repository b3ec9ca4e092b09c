"""Y'CbCr as the encoder gets it: BT.709, TV range, 4:2:0 planes (I420), defined once.

The compiled resampler converts photos with this matrix, and the story compositor converts
RGB shots and the caption and watermark drawings with it, so everything that reaches x264 is
in the colours its tags say (`video.x264_args`). An I420 frame is one uint8 array of
(height * 3 / 2, width) rows: Y, then Cb and Cr at half the width and height, ffmpeg's
yuv420p layout. The conversion is affine, so blends and fades in Y'CbCr are those of RGB up to
rounding. Pure engine: numpy and OpenCV only.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

Frame = npt.NDArray[np.uint8]
Plane = npt.NDArray[np.uint8]

# BT.709 with TV range, from RGB in 0-255: Y in 16-235, Cb and Cr in 16-240 around 128.
_KR, _KB = 0.2126, 0.0722
_KG = 1.0 - _KR - _KB
_LUMA = np.array([_KR, _KG, _KB]) * 219 / 255
_CB = (np.array([0.0, 0.0, 1.0]) - [_KR, _KG, _KB]) / (2 * (1 - _KB)) * 224 / 255
_CR = (np.array([1.0, 0.0, 0.0]) - [_KR, _KG, _KB]) / (2 * (1 - _KR)) * 224 / 255
MATRIX = np.array([_LUMA, _CB, _CR], dtype=np.float32)
"""RGB (0-255) to Y'CbCr, before `OFFSET` is added."""
OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float32)
BLACK = (16, 128, 128)
"""Video black: Y, Cb, Cr of RGB (0, 0, 0)."""

_AFFINE = np.hstack([MATRIX, OFFSET[:, None]]).astype(np.float32)


def planes(frame: Frame) -> tuple[Plane, Plane, Plane]:
    """Views of an I420 frame's Y, Cb and Cr planes."""
    rows, width = frame.shape
    height = rows * 2 // 3
    flat = frame.reshape(-1)
    luma, quarter = width * height, (width // 2) * (height // 2)
    small = (height // 2, width // 2)
    return (
        frame[:height],
        flat[luma : luma + quarter].reshape(small),
        flat[luma + quarter :].reshape(small),
    )


def colours(rgb: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Y, Cb, Cr (h, w, 3) of RGB values (h, w, 3) in 0-255, as floats."""
    return np.asarray(cv2.transform(np.asarray(rgb, np.float32), _AFFINE), dtype=np.float32)


def from_rgb(rgb: Frame) -> Frame:
    """An RGB frame (h, w, 3 uint8, even sides) as an I420 frame. Cb and Cr are those of the
    2x2 blocks' mean colour (the matrix is linear, so it is the mean of their Cb and Cr):
    about 3 ms at 1080p, where the float conversion of every pixel costs five times that."""
    height, width = rgb.shape[:2]
    frame = np.empty((height * 3 // 2, width), np.uint8)
    luma, cb, cr = planes(frame)
    luma[...] = cv2.transform(rgb, _AFFINE[:1])
    half = cv2.resize(rgb, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    chroma = cv2.transform(half, _AFFINE[1:])
    cb[...] = chroma[..., 0]
    cr[...] = chroma[..., 1]
    return frame
