"""Rolled frames in YUV 4:2:0, compiled: the seed's slight roll (`drift.drift_roll`) at the
cost of about two upright frames, with the sub-pixel care of `rolling.rolled`.

Per plane: the upright box around the rolled window is resampled (area-filtered, from float
coordinates, `resample.plane_into`) into a float intermediate at OVERSAMPLE times the
output's scale, the same in x and y, so the roll there is a pure rotation; it is rotated by
Keys' six-point cubic from exact float coordinates (no 1/32 px steps as in OpenCV), where the detail
is below Nyquist; then shrunk to the output by a resize that is the same in every frame, so
it adds no motion of its own. Pure engine: nothing of the service.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import cv2
import numba
import numpy as np
import numpy.typing as npt

from . import resample, rolling
from .resample import Box, BytePlane, FloatPlane

# Mirrored border (luma pixels) around the photo's planes: the intermediate's margin may reach
# past the photo's edge by a few of its pixels (the rolled window itself never does).
PAD = 16
OVERSAMPLE = 1.25


def _keys6(s: float) -> float:
    """Keys' six-point cubic convolution kernel (fourth-order accurate; the four-point one,
    a = -0.5, is third-order and moves fine detail by up to 0.04 px when it rotates)."""
    s = abs(s)
    if s < 1.0:
        return (4.0 / 3.0 * s - 7.0 / 3.0) * s * s + 1.0
    if s < 2.0:
        return ((-7.0 / 12.0 * s + 3.0) * s - 59.0 / 12.0) * s + 2.5
    if s < 3.0:
        return ((1.0 / 12.0 * s - 2.0 / 3.0) * s + 1.75) * s - 1.5
    return 0.0


def _shift_rows(src: FloatPlane, shifts: npt.NDArray[np.float64], out: FloatPlane) -> None:
    """out[r, c] = src[r, c + shifts[r]], by Keys' six-point kernel; reads past the edge repeat
    it. The weights are the same along a row, so each row is six vectorised sweeps."""
    w = src.shape[1]
    width = out.shape[1]
    taps = np.empty(6, np.float32)
    for r in range(out.shape[0]):
        s = shifts[r]
        i = math.floor(s)
        t = s - i
        for m in range(6):
            taps[m] = _keys6_jit(t + 2.0 - m)
        a, b, c, d, e, f = taps[0], taps[1], taps[2], taps[3], taps[4], taps[5]
        row, line = src[r], out[r]
        lo = min(max(2 - i, 0), width)  # the first column whose taps are all inside
        hi = max(min(w - 3 - i, width), lo)
        # Slices indexed by the loop variable alone: numba then drops its negative-index
        # checks and the loop vectorises (15x faster than indexing row[x + i - 2 + m]).
        n, k = hi - lo, lo + i - 2
        o = line[lo:hi]
        r0, r1, r2 = row[k : k + n], row[k + 1 : k + 1 + n], row[k + 2 : k + 2 + n]
        r3, r4, r5 = row[k + 3 : k + 3 + n], row[k + 4 : k + 4 + n], row[k + 5 : k + 5 + n]
        for x in range(n):
            o[x] = a * r0[x] + b * r1[x] + c * r2[x] + d * r3[x] + e * r4[x] + f * r5[x]
        for edge in range(lo + width - hi):  # the columns left and right of the inside
            x = edge if edge < lo else hi + edge - lo
            acc = 0.0
            for m in range(6):
                acc += taps[m] * row[min(max(x + i - 2 + m, 0), w - 1)]
            line[x] = acc


_jit: Any = numba.njit(nogil=True, cache=True, fastmath=True)
_keys6_jit: Callable[[float], float] = _jit(_keys6)
_shift_rows_jit: Callable[..., None] = _jit(_shift_rows)


def rolled_plane(src: FloatPlane, pad: float, box: Box, angle: float, out: BytePlane) -> None:
    """The window `box` (in the unpadded plane's pixels) rolled by `angle` about its centre,
    from `src`, the plane with `pad` mirrored pixels around it, into `out`."""
    out_h, out_w = out.shape
    k = OVERSAMPLE
    big_w, big_h = math.ceil(out_w * k), math.ceil(out_h * k)
    sin = math.sin(angle)
    # 6: the rotation's taps, and a little more.
    inter_w, inter_h, inter_box = rolling.around(
        box, (out_w, out_h), (k, k), angle, margin=6, pad=pad
    )
    inter = resample.buffer("roll_inter", (inter_h, inter_w), np.float32)
    resample.plane_into(src, inter_box, inter)
    # Big pixel (x, y) is the intermediate's point R (p - c) + ci, p = (x, y), c its centre,
    # ci the intermediate's (indices: pixel centres at whole coordinates). R is made of three
    # shears, Sx(alpha) Sy(beta) Sx(alpha) (Paeth), each a shift by a constant per line.
    cx, cy = out_w * k / 2 - 0.5, out_h * k / 2 - 0.5
    ix, iy = inter_w / 2 - 0.5, inter_h / 2 - 0.5
    alpha, beta = -math.tan(angle / 2), sin
    sheared = resample.buffer("roll_sheared", (inter_h, inter_w), np.float32)
    _shift_rows_jit(inter, alpha * (np.arange(inter_h) - iy), sheared)
    turned = resample.buffer("roll_turned", (inter_w, inter_h), np.float32)
    cv2.transpose(sheared, turned)
    columns = resample.buffer("roll_columns", (inter_w, big_h), np.float32)
    _shift_rows_jit(turned, (iy - cy) + beta * (np.arange(inter_w) - ix), columns)
    upright = resample.buffer("roll_upright", (big_h, inter_w), np.float32)
    cv2.transpose(columns, upright)
    big = resample.buffer("roll_big", (big_h, big_w), np.float32)
    _shift_rows_jit(upright, (ix - cx) + alpha * (np.arange(big_h) - cy), big)
    resample.plane_into(big, (0.0, 0.0, out_w * k, out_h * k), out)


class RolledSource:
    """A photo's YUV planes with a mirrored border, for rolled `frame`s."""

    def __init__(self, planes: resample.YUVSource) -> None:
        def padded(plane: FloatPlane, pad: int) -> FloatPlane:
            return np.asarray(cv2.copyMakeBorder(plane, *(pad,) * 4, cv2.BORDER_REFLECT_101))

        self.chroma_scale = planes.chroma_scale
        self.luma = padded(planes.luma, PAD)
        self.cb = padded(planes.cb, PAD // 2)
        self.cr = padded(planes.cr, PAD // 2)

    def frame(self, box: Box, angle: float, size: tuple[int, int]) -> BytePlane:
        """The I420 frame of `box` (photo pixels) rolled by `angle`, at `size` (even)."""
        planes, pads = (self.luma, self.cb, self.cr), (PAD, PAD // 2, PAD // 2)

        def draw(i: int, plane_box: Box, out: BytePlane) -> None:
            rolled_plane(planes[i], pads[i], plane_box, angle, out)

        return resample.i420(box, size, self.chroma_scale, draw)
