"""The frame resampler of the camera-motion engine: float crop boxes onto planes of YUV 4:2:0,
the encoder's own format, compiled with numba.

The geometry is Pillow's `resize(box=...)` with its bicubic filter (a = -0.5): the box's float
pixel edges map onto the output's, and when shrinking the kernel widens by the scale, so it
low-passes what the frame cannot show. It runs as two passes of row sums, each vectorised
across a row: the rows the box covers are combined into the output's rows (in float32, where
Pillow rounds its intermediate to 8 bits), the result is transposed and the same is done for
the columns. Measured on two shared cores (docs/benchmarks.md): a 720p frame in ~5 ms against
Pillow's ~25 ms for RGB, with the same sub-pixel exactness.

The photo is converted once per clip into BT.709 TV-range planes, as ffmpeg would convert
RGB for x264: Y at full size, Cb and Cr halved (an area average), so each frame resamples one
and a half planes instead of Pillow's four channels, and ffmpeg no longer converts colours.
Pure engine: nothing of the service.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import cv2
import numba
import numpy as np
import numpy.typing as npt
from PIL import Image

Box = tuple[float, float, float, float]
FloatPlane = npt.NDArray[np.float32]
BytePlane = npt.NDArray[np.uint8]

# BT.709 with TV range, from RGB in 0-255: Y in 16-235, Cb and Cr in 16-240 around 128.
_KR, _KB = 0.2126, 0.0722
_KG = 1.0 - _KR - _KB
_LUMA = np.array([_KR, _KG, _KB]) * 219 / 255
_CB = (np.array([0.0, 0.0, 1.0]) - [_KR, _KG, _KB]) / (2 * (1 - _KB)) * 224 / 255
_CR = (np.array([1.0, 0.0, 0.0]) - [_KR, _KG, _KB]) / (2 * (1 - _KR)) * 224 / 255
_MATRIX = np.array([_LUMA, _CB, _CR], dtype=np.float32)
_OFFSET = np.array([16.0, 128.0, 128.0], dtype=np.float32)


def _bicubic(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    a = -0.5
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.asarray(np.where(x < 1, near, np.where(x < 2, far, 0.0)))


def weights(
    low: float, high: float, out: int, size: int
) -> tuple[npt.NDArray[np.int64], FloatPlane]:
    """Pillow's coefficients for one axis: the first source pixel of each output pixel and
    its weights (zero past the window, which also keeps every read inside the plane)."""
    scale = (high - low) / out
    widen = max(scale, 1.0)
    support = 2.0 * widen
    centre = low + (np.arange(out) + 0.5) * scale
    first = np.maximum((centre - support + 0.5).astype(np.int64), 0)
    end = np.minimum((centre + support + 0.5).astype(np.int64), size)
    taps = 2 * math.ceil(support) + 1
    index = first[:, None] + np.arange(taps)
    w = _bicubic((index - centre[:, None] + 0.5) / widen)
    w[index >= end[:, None]] = 0.0
    w /= w.sum(axis=1, keepdims=True)
    return first, w.astype(np.float32)


def _rows(
    src: FloatPlane, first: npt.NDArray[np.int64], w: FloatPlane, c0: int, c1: int, out: FloatPlane
) -> None:
    """out[i] = sum over k of w[i, k] * src[first[i] + k, c0:c1]."""
    n, taps = w.shape
    width = c1 - c0
    acc = np.empty(width, np.float32)
    for i in range(n):
        for j in range(width):
            acc[j] = 0.0
        for k in range(taps):
            wk = w[i, k]
            if wk != 0.0:
                row = src[first[i] + k, c0:c1]
                for j in range(width):
                    acc[j] += wk * row[j]
        out[i, :] = acc


def _rows_to_bytes(
    src: FloatPlane, first: npt.NDArray[np.int64], w: FloatPlane, out: BytePlane
) -> None:
    """`_rows` over whole rows, rounded and clipped into bytes."""
    n, taps = w.shape
    width = src.shape[1]
    acc = np.empty(width, np.float32)
    for i in range(n):
        for j in range(width):
            acc[j] = 0.5
        for k in range(taps):
            wk = w[i, k]
            if wk != 0.0:
                row = src[first[i] + k]
                for j in range(width):
                    acc[j] += wk * row[j]
        line = out[i]
        for j in range(width):
            v = acc[j]
            line[j] = np.uint8(0.0 if v < 0.0 else (255.0 if v > 255.0 else v))


_jit: Any = numba.njit(nogil=True, cache=True, fastmath=True)
# Compiled on first use (about a second, then cached beside this file); nogil, so the render
# threads run them in parallel.
_rows_jit: Callable[..., None] = _jit(_rows)
_rows_to_bytes_jit: Callable[..., None] = _jit(_rows_to_bytes)


def plane(src: FloatPlane, box: Box, size: tuple[int, int]) -> BytePlane:
    """The float `box` (pixel edges, inside `src`) of a plane resampled to `size` (w, h)."""
    out_w, out_h = size
    x0, y0, x1, y1 = box
    first_x, wx = weights(x0, x1, out_w, src.shape[1])
    first_y, wy = weights(y0, y1, out_h, src.shape[0])
    c0 = int(first_x[0])
    c1 = min(int(first_x[-1]) + wx.shape[1], src.shape[1])
    columns = np.empty((out_h, c1 - c0), np.float32)
    _rows_jit(src, first_y, wy, c0, c1, columns)
    turned = np.ascontiguousarray(cv2.transpose(columns))
    out = np.empty((out_w, out_h), np.uint8)
    _rows_to_bytes_jit(turned, first_x - c0, wx, out)
    return np.asarray(cv2.transpose(out))


class YUVSource:
    """A photo as float planes of BT.709 TV-range YUV 4:2:0, for `frame`."""

    def __init__(self, image: Image.Image) -> None:
        rgb = np.asarray(image.convert("RGB") if image.mode != "RGB" else image)
        self.width, self.height = image.size
        yuv = cv2.transform(rgb.astype(np.float32), _MATRIX) + _OFFSET
        self.luma: FloatPlane = np.ascontiguousarray(yuv[:, :, 0], dtype=np.float32)
        half = (max(1, self.width // 2), max(1, self.height // 2))
        chroma = cv2.resize(yuv[:, :, 1:], half, interpolation=cv2.INTER_AREA)
        self.cb: FloatPlane = np.ascontiguousarray(chroma[:, :, 0], dtype=np.float32)
        self.cr: FloatPlane = np.ascontiguousarray(chroma[:, :, 1], dtype=np.float32)
        self.chroma_scale = (half[0] / self.width, half[1] / self.height)

    def frame(self, box: Box, size: tuple[int, int]) -> BytePlane:
        """The I420 frame of `box` (photo pixels) at `size`: Y, then Cb and Cr, as rows of one
        (h * 3 / 2, w) array, the layout ffmpeg reads as yuv420p. Sizes must be even."""
        out_w, out_h = size
        sx, sy = self.chroma_scale
        half = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
        small = (out_w // 2, out_h // 2)
        parts = (
            plane(self.luma, box, size),
            plane(self.cb, half, small),
            plane(self.cr, half, small),
        )
        return np.concatenate([p.ravel() for p in parts]).reshape(out_h * 3 // 2, out_w)

    @staticmethod
    def to_i420(rgb: npt.NDArray[np.uint8]) -> BytePlane:
        return to_i420(rgb)


def to_i420(rgb: npt.NDArray[np.uint8]) -> BytePlane:
    """An RGB frame (h, w, 3) as an I420 frame, converted as `YUVSource` converts a photo."""
    height, width = rgb.shape[:2]
    yuv = cv2.transform(rgb.astype(np.float32), _MATRIX) + _OFFSET
    chroma = cv2.resize(yuv[:, :, 1:], (width // 2, height // 2), interpolation=cv2.INTER_AREA)
    parts = (yuv[:, :, 0], chroma[:, :, 0], chroma[:, :, 1])
    flat = np.concatenate([p.ravel() for p in parts])
    return np.clip(flat + 0.5, 0, 255).astype(np.uint8).reshape(height * 3 // 2, width)


def warm() -> None:
    """Load (or compile, the first time on a machine) the kernels now: about a second that
    the first clip of a process would otherwise pay."""
    plane(np.zeros((8, 8), np.float32), (0.0, 0.0, 8.0, 8.0), (4, 4))
