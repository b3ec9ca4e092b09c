"""The frame resampler of the camera-motion engine: float crop boxes onto planes of YUV 4:2:0,
the encoder's own format, compiled with numba.

The geometry is Pillow's `resize(box=...)` with its bicubic filter (a = -0.5): the box's float
pixel edges map onto the output's, and when shrinking the kernel widens by the scale, so it
low-passes what the frame cannot show. It runs as two passes of row sums, each vectorised
across a row: the rows the box covers are combined into the output's rows (summed in float32
and kept in 1/64 of a level, where Pillow rounds its intermediate to 8 bits), the result is
transposed and the same is done for the columns. Measured on two shared cores
(docs/benchmarks.md): a 720p frame in about 2.6 ms against Pillow's ~25 ms for RGB, with the
same sub-pixel exactness.

The photo is converted once per clip into BT.709 TV-range planes, as ffmpeg would convert
RGB for x264: Y at full size, Cb and Cr halved (an area average), so each frame resamples one
and a half planes instead of Pillow's four channels, and ffmpeg no longer converts colours;
the clip's shrink is done on these planes too (`shrink`, Pillow's Lanczos). The planes are
int16 in 1/128 of a level (`FIXED`): half the bytes of float32 to stream, with a rounding far
below the jitter bound. Pure engine: nothing of the service.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

import cv2
import numba
import numpy as np
import numpy.typing as npt
from PIL import Image

from . import kernelcache, ycbcr

kernelcache.keep_in_step()  # before any kernel below loads from numba's cache

Box = tuple[float, float, float, float]
FloatPlane = npt.NDArray[np.float32]
BytePlane = npt.NDArray[np.uint8]
FixedPlane = npt.NDArray[np.int16]
SourcePlane = FloatPlane | FixedPlane

FIXED = 128
"""A photo's YUV planes are kept as int16 in 1/FIXED of a level (seven fractional bits: TV
range tops at 240, x 128 = 30720): half the bytes of float32 for the first pass to stream,
and a rounding 128 times finer than bytes (planes of bytes moved the picture past the jitter
bound, docs/benchmarks.md). The first pass's weights carry the 1/FIXED (`gain`)."""

# BT.709 with TV range (ycbcr: the one definition the compositor uses too).
_MATRIX = ycbcr.MATRIX
_OFFSET = ycbcr.OFFSET


_A = -0.5  # the bicubic kernel's parameter, Pillow's


def bicubic(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Pillow's bicubic at distances x, for arrays (`kernel_jit` is its compiled scalar form)."""
    x = np.abs(x)
    near = ((_A + 2) * x - (_A + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * _A
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
    w = bicubic((index - centre[:, None] + 0.5) / widen)
    w[index >= end[:, None]] = 0.0
    w /= w.sum(axis=1, keepdims=True)
    return first, w.astype(np.float32)


def _kernel(x: float) -> float:
    """Pillow's bicubic at distance |x|; compiled as `kernel_jit`, inlined where called."""
    x = abs(x)
    if x < 1.0:
        return ((_A + 2.0) * x - (_A + 3.0)) * x * x + 1.0
    if x < 2.0:
        return (((x - 5.0) * x + 8.0) * x - 4.0) * _A
    return 0.0


def _lanczos(x: float) -> float:
    """Pillow's Lanczos (three lobes) at distance |x|; compiled as `lanczos_jit`."""
    x = abs(x)
    if x == 0.0:
        return 1.0
    if x < 3.0:
        px = math.pi * x
        return 3.0 * math.sin(px) * math.sin(px / 3.0) / (px * px)
    return 0.0


def _axis(
    low: float, high: float, out: int, size: int, taps: int, lanczos: bool = False
) -> tuple[npt.NDArray[np.int64], FloatPlane, int]:
    """`weights` compiled (of Pillow's Lanczos instead of its bicubic with `lanczos`), with
    the number of taps any output pixel uses (the last are zero for every pixel when the
    window's width rounds down)."""
    scale = (high - low) / out
    widen = max(scale, 1.0)
    support = (3.0 if lanczos else 2.0) * widen
    first = np.empty(out, np.int64)
    w = np.zeros((out, max(taps, 8)), np.float32)  # `_sweep` reads eight at a time
    tmp = np.empty(taps, np.float64)
    used = 1
    for i in range(out):
        centre = low + (i + 0.5) * scale
        f = max(int(centre - support + 0.5), 0)
        end = min(int(centre + support + 0.5), size)
        total = 0.0
        for k in range(taps):
            x = (f + k - centre + 0.5) / widen
            v = 0.0 if f + k >= end else lanczos_jit(x) if lanczos else kernel_jit(x)
            tmp[k] = v
            total += v
        for k in range(taps):
            w[i, k] = tmp[k] / total
            if tmp[k] != 0.0 and k >= used:
                used = k + 1
        first[i] = f
    return first, w, used


Store = tuple[float, float, float]
"""How a pass stores its float sums (`store_jit`): (bias, low, high)."""

BYTES: Store = (0.5, 0.0, 255.0)
WORDS: Store = (0.5, -32768.0, 32767.0)  # int16, rounded
OPEN: Store = (0.0, -3.0e38, 3.0e38)  # floats as they are (finite: the kernels use fastmath)


def _store(acc: FloatPlane, out: npt.NDArray[Any], store: Store) -> None:
    """out = acc + bias, clipped to [low, high]: floats as they are, int16 and bytes rounded
    by a bias of 0.5 (the cast truncates toward zero, so a rare int16 overshoot below zero is
    off by one unit)."""
    bias, low, high = np.float32(store[0]), np.float32(store[1]), np.float32(store[2])  # as _group
    for x in range(acc.shape[0]):
        out[x] = min(max(acc[x] + bias, low), high)


def _rows(
    src: SourcePlane,
    first: npt.NDArray[np.int64],
    w: FloatPlane,
    used: int,
    c0: int,
    out: npt.NDArray[Any],
    store: Store,
) -> None:
    """out[i] = sum over k of w[i, k] * src[first[i] + k, c0:c0 + out's width], stored as
    `store` says (`_sweep`, row by row)."""
    acc = np.empty(out.shape[1], np.float32)
    for i in range(out.shape[0]):
        _sweep_jit(src, first, w, used, i, c0, acc, out[i], store)


def _group(
    src: SourcePlane,
    w: FloatPlane,
    i: int,
    f: int,
    c0: int,
    six: bool,
    out: npt.NDArray[Any],
    store: Store,
) -> None:
    """out = the sum of the six (`six`) or eight taps of row i's weights from source row f
    on, stored as `store_jit` does, in one sweep: the output written once and never read
    back, 2.5x the throughput of three rows per sweep (inlined)."""
    width = out.shape[0]
    c1 = c0 + width
    # In float32: the tuple's float64 would widen every sum, at about twice the CPU.
    bias, low, high = np.float32(store[0]), np.float32(store[1]), np.float32(store[2])
    if six:
        a0, a1, a2 = w[i, 0], w[i, 1], w[i, 2]
        a3, a4, a5 = w[i, 3], w[i, 4], w[i, 5]
        s0, s1, s2 = src[f, c0:c1], src[f + 1, c0:c1], src[f + 2, c0:c1]
        s3, s4, s5 = src[f + 3, c0:c1], src[f + 4, c0:c1], src[f + 5, c0:c1]
        for j in range(width):
            v = (a0 * s0[j] + a1 * s1[j] + a2 * s2[j]) + (a3 * s3[j] + a4 * s4[j] + a5 * s5[j])
            out[j] = min(max(v + bias, low), high)
        return
    a0, a1, a2, a3 = w[i, 0], w[i, 1], w[i, 2], w[i, 3]
    a4, a5, a6, a7 = w[i, 4], w[i, 5], w[i, 6], w[i, 7]
    s0, s1, s2, s3 = src[f, c0:c1], src[f + 1, c0:c1], src[f + 2, c0:c1], src[f + 3, c0:c1]
    s4, s5 = src[f + 4, c0:c1], src[f + 5, c0:c1]
    s6, s7 = src[f + 6, c0:c1], src[f + 7, c0:c1]
    for j in range(width):
        v = (a0 * s0[j] + a1 * s1[j] + a2 * s2[j] + a3 * s3[j]) + (
            a4 * s4[j] + a5 * s5[j] + a6 * s6[j] + a7 * s7[j]
        )
        out[j] = min(max(v + bias, low), high)


def _sweep(
    src: SourcePlane,
    first: npt.NDArray[np.int64],
    w: FloatPlane,
    used: int,
    i: int,
    c0: int,
    acc: FloatPlane,
    out: npt.NDArray[Any],
    store: Store,
) -> None:
    """out = sum over k of w[i, k] * src[first[i] + k, c0:], stored as `store` says. Where
    one group of six or eight source rows holds every tap (a shrink by up to about 1.7: six
    for five or six taps, ~12 % less than eight with two of them zero), in one sweep
    (`_group`); else eight rows (where the plane has them) into the float row `acc`, which
    stays in the L1 cache, then four, then one, and the row stored. Weights past `used` are
    zero (`_axis` keeps at least eight), so a group may run past the last used tap."""
    width = acc.shape[0]
    c1 = c0 + width
    f = first[i]
    rows = src.shape[0] - f
    used = min(used, rows)  # past the plane's edge the weights are zero
    if used <= 6 and rows >= 6:
        _group_jit(src, w, i, f, c0, True, out, store)
        return
    if used <= 8 and rows >= 8:
        _group_jit(src, w, i, f, c0, False, out, store)
        return
    k = 0
    if rows >= 8:
        _group_jit(src, w, i, f, c0, False, acc, OPEN)
        k = 8
    else:
        for j in range(width):
            acc[j] = 0.0
    while used - k >= 3 and rows - k >= 4:
        a0, a1, a2, a3 = w[i, k], w[i, k + 1], w[i, k + 2], w[i, k + 3]
        s0, s1 = src[f + k, c0:c1], src[f + k + 1, c0:c1]
        s2, s3 = src[f + k + 2, c0:c1], src[f + k + 3, c0:c1]
        for j in range(width):
            acc[j] += (a0 * s0[j] + a1 * s1[j]) + (a2 * s2[j] + a3 * s3[j])
        k += 4
    while k < used:
        a0 = w[i, k]
        if a0 != 0.0:
            s0 = src[f + k, c0:c1]
            for j in range(width):
                acc[j] += a0 * s0[j]
        k += 1
    store_jit(acc, out, store)


def _block_mean(
    top: npt.NDArray[np.uint8], bottom: npt.NDArray[np.uint8], c: int, ch: int, quarter: np.float32
) -> np.float32:
    """The mean of channel `ch` over columns 2c and 2c + 1 of two rows (inlined)."""
    pair = np.float32(top[2 * c, ch]) + np.float32(top[2 * c + 1, ch])
    return (pair + np.float32(bottom[2 * c, ch]) + np.float32(bottom[2 * c + 1, ch])) * quarter


def _to_planes(
    rgb: npt.NDArray[np.uint8], luma: FixedPlane, cb: FixedPlane, cr: FixedPlane
) -> None:
    """BT.709 TV-range Y into `luma`, and Cb and Cr of each 2x2 block's mean colour into `cb`
    and `cr` (h // 2, w // 2), all in 1/FIXED of a level: the conversion is linear, so this is
    the area average of full-size chroma without ever making it. `ycbcr.from_rgb` does the
    same for frames, in bytes; a photo's planes keep the fractions the jitter bound needs."""
    m = _MATRIX_C
    fixed, half, quarter = np.float32(FIXED), np.float32(0.5), np.float32(0.25)
    for r in range(rgb.shape[0]):
        for c in range(rgb.shape[1]):
            red, green = np.float32(rgb[r, c, 0]), np.float32(rgb[r, c, 1])
            blue = np.float32(rgb[r, c, 2])
            y = m[0, 0] * red + m[0, 1] * green + m[0, 2] * blue + np.float32(16.0)
            luma[r, c] = np.int16(y * fixed + half)
    for r in range(cb.shape[0]):
        top, bottom = rgb[2 * r], rgb[2 * r + 1]
        for c in range(cb.shape[1]):
            mr = _block_mean_jit(top, bottom, c, 0, quarter)
            mg = _block_mean_jit(top, bottom, c, 1, quarter)
            mb = _block_mean_jit(top, bottom, c, 2, quarter)
            u = m[1, 0] * mr + m[1, 1] * mg + m[1, 2] * mb + np.float32(128.0)
            v = m[2, 0] * mr + m[2, 1] * mg + m[2, 2] * mb + np.float32(128.0)
            cb[r, c] = np.int16(u * fixed + half)
            cr[r, c] = np.int16(v * fixed + half)


_MATRIX_C = _MATRIX
_jit: Any = numba.njit(nogil=True, cache=True, fastmath=True)
_block_mean_jit: Callable[..., np.float32] = numba.njit(inline="always")(_block_mean)
kernel_jit: Callable[[float], float] = numba.njit(inline="always")(_kernel)
lanczos_jit: Callable[[float], float] = numba.njit(inline="always")(_lanczos)
# Compiled on first use (a few seconds, then cached beside this file); nogil, so the render
# threads run them in parallel.
_axis_jit: Callable[..., tuple[npt.NDArray[np.int64], FloatPlane, int]] = _jit(_axis)
_group_jit: Callable[..., None] = numba.njit(inline="always")(_group)
_sweep_jit: Callable[..., None] = _jit(_sweep)
store_jit: Callable[..., None] = _jit(_store)
_rows_jit: Callable[..., None] = _jit(_rows)
_to_planes_jit: Callable[..., None] = _jit(_to_planes)

_scratch = threading.local()


def buffer(name: str, shape: tuple[int, int], dtype: type) -> Any:
    """A per-thread buffer reused from frame to frame: a fresh multi-megabyte array costs its
    page faults every frame. One allocation per name, grown when asked for more and handed
    out as a view of the asked shape, so the luma and chroma planes and a moving box share it
    instead of reallocating it."""
    buffers: dict[str, Any] = _scratch.__dict__.setdefault("buffers", {})
    size = shape[0] * shape[1]
    buf = buffers.get(name)
    if buf is None or buf.size < size or buf.dtype != dtype:
        buf = buffers[name] = np.empty(size, dtype)
    return buf[:size].reshape(shape)


INTER = 64
"""The bytes path's intermediate (the rows combined, before the columns) is int16 in 1/INTER
of a level: 240 with a bicubic overshoot stays far below 32767 / 64."""


def gain(src: SourcePlane) -> np.float32:
    """What the first pass's weights carry: 1/FIXED for a fixed-point plane, else 1."""
    return np.float32(1.0 / FIXED if src.dtype == np.int16 else 1.0)


Axis = tuple[npt.NDArray[np.int64], FloatPlane, int]
"""One axis's weights (`_axis`): each output pixel's first source pixel, weights, taps used."""


def _passes(
    src: SourcePlane,
    rows: Axis,
    columns: Axis,
    out: BytePlane | FixedPlane,
    store: Store,
    room: Callable[[str, tuple[int, int], type], Any],
) -> None:
    """`src` resampled into `out` (h, w) by two passes of row sums: the rows combined into
    the output's rows, a transpose, the same for the columns, a transpose back. The
    intermediate is int16 in 1/INTER of a level (half the bytes of float32 to transpose and
    read again); `out` is bytes or, in 1/FIXED of a level, int16, stored as `store` says.
    `room(name, shape, dtype)` gives the arrays (`buffer` for frames)."""
    first_y, wy, used_y = rows
    first_x, wx, used_x = columns
    out_h, out_w = out.shape
    wy *= gain(src) * np.float32(INTER)
    wx *= np.float32((FIXED if out.dtype == np.int16 else 1.0) / INTER)
    c0 = int(first_x[0])
    c1 = min(int(first_x[-1]) + used_x, src.shape[1])
    combined = room("rows", (out_h, c1 - c0), np.int16)
    _rows_jit(src, first_y, wy, used_y, c0, combined, WORDS)
    turned = room("turned", (c1 - c0, out_h), np.int16)
    cv2.transpose(combined, turned)
    done = room("done", (out_w, out_h), out.dtype.type)
    _rows_jit(turned, first_x - c0, wx, used_x, 0, done, store)
    cv2.transpose(done, out)


def plane_into(src: SourcePlane, box: Box, out: BytePlane) -> None:
    """The float `box` (pixel edges, inside `src`, float or fixed point) of a plane resampled
    into the bytes of `out` (h, w), with Pillow's bicubic (`_passes`)."""
    out_h, out_w = out.shape
    x0, y0, x1, y1 = box
    tx = 2 * math.ceil(2.0 * max((x1 - x0) / out_w, 1.0)) + 1
    ty = 2 * math.ceil(2.0 * max((y1 - y0) / out_h, 1.0)) + 1
    columns = _axis_jit(x0, x1, out_w, src.shape[1], tx)
    rows = _axis_jit(y0, y1, out_h, src.shape[0], ty)
    _passes(src, rows, columns, out, BYTES, buffer)


def shrink(
    src: FixedPlane, box: Box, size: tuple[int, int], levels: tuple[float, float]
) -> FixedPlane:
    """The float `box` of a fixed-point plane shrunk to `size` (w, h) by Pillow's Lanczos
    geometry and kernel, clipped to `levels` (Pillow clips its RGB; this is the TV range it
    converts into): the photo's one shrink per clip, done on the planes."""
    out_w, out_h = size
    x0, y0, x1, y1 = box
    tx = 2 * math.ceil(3.0 * max((x1 - x0) / out_w, 1.0)) + 1
    ty = 2 * math.ceil(3.0 * max((y1 - y0) / out_h, 1.0)) + 1
    columns = _axis_jit(x0, x1, out_w, src.shape[1], tx, True)
    rows = _axis_jit(y0, y1, out_h, src.shape[0], ty, True)
    out = np.empty((out_h, out_w), np.int16)
    store = (0.5, levels[0] * FIXED, levels[1] * FIXED)
    _passes(src, rows, columns, out, store, lambda _, shape, dtype: np.empty(shape, dtype))
    return out


def plane(src: SourcePlane, box: Box, size: tuple[int, int]) -> BytePlane:
    """The float `box` (pixel edges, inside `src`) of a plane resampled to `size` (w, h)."""
    out = np.empty((size[1], size[0]), np.uint8)
    plane_into(src, box, out)
    return out


class YUVSource:
    """A photo as fixed-point planes (`FIXED`) of BT.709 TV-range YUV 4:2:0, for `frame`;
    shrunk to `size` (w, h) on the way when that is smaller (`shrink`)."""

    def __init__(self, image: Image.Image, size: tuple[int, int] | None = None) -> None:
        rgb = np.asarray(image.convert("RGB") if image.mode != "RGB" else image)
        height, width = rgb.shape[:2]
        luma = np.empty((height, width), np.int16)
        cb = np.empty((height // 2, width // 2), np.int16)
        cr = np.empty_like(cb)
        _to_planes_jit(np.ascontiguousarray(rgb), luma, cb, cr)
        # A chroma pixel covers 2x2 of the luma's, from the top left (an odd last row or
        # column has none of its own).
        self.chroma_scale = (0.5, 0.5)
        self.width, self.height = size = size or image.size
        if size == image.size:
            self.luma, self.cb, self.cr = luma, cb, cr
            return
        self.luma = shrink(luma, (0.0, 0.0, width, height), size, (16.0, 235.0))
        # The shrunk chroma covers twice its size of the shrunk luma: that much of the photo,
        # in the photo's chroma pixels.
        half = (max(1, size[0] // 2), max(1, size[1] // 2))
        box = (0.0, 0.0, half[0] * width / size[0], half[1] * height / size[1])
        self.cb = shrink(cb, box, half, (16.0, 240.0))
        self.cr = shrink(cr, box, half, (16.0, 240.0))

    def frame(self, box: Box, size: tuple[int, int]) -> BytePlane:
        """The I420 frame of `box` (photo pixels) at `size` (even sides)."""
        planes = (self.luma, self.cb, self.cr)
        return i420(box, size, self.chroma_scale, lambda i, b, out: plane_into(planes[i], b, out))


def i420(
    box: Box,
    size: tuple[int, int],
    chroma_scale: tuple[float, float],
    draw: Callable[[int, Box, BytePlane], None],
) -> BytePlane:
    """An I420 frame of `size` (even sides), in `ycbcr`'s layout (ffmpeg's yuv420p).
    `draw(i, box, out)` fills plane i (0: Y, at `box`; 1 and 2: Cb and Cr, at `box` scaled by
    `chroma_scale`) into `out`."""
    out_w, out_h = size
    sx, sy = chroma_scale
    half = (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy)
    frame = np.empty((out_h * 3 // 2, out_w), np.uint8)
    for i, (plane, at) in enumerate(zip(ycbcr.planes(frame), (box, half, half), strict=True)):
        draw(i, at, plane)
    return frame


class RGBSource:
    """A photo as three float planes (R, G, B), for `frame`: Pillow's picture at about 2.5x
    less CPU, for the frames that stay RGB (a story's shots, composited before encoding)."""

    def __init__(self, image: Image.Image) -> None:
        rgb = np.asarray(image.convert("RGB") if image.mode != "RGB" else image)
        self.width, self.height = image.size
        self.planes: list[FloatPlane] = [
            np.ascontiguousarray(rgb[:, :, c], dtype=np.float32) for c in range(3)
        ]

    def frame(self, box: Box, size: tuple[int, int]) -> npt.NDArray[np.uint8]:
        """The (h, w, 3) RGB frame of `box` (photo pixels) at `size` (w, h)."""
        out_w, out_h = size
        channels = [np.empty((out_h, out_w), np.uint8) for _ in range(3)]
        for src, out in zip(self.planes, channels, strict=True):
            plane_into(src, box, out)
        return np.asarray(cv2.merge(channels), dtype=np.uint8)


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
    YUVSource(Image.new("RGB", (8, 8))).frame((0.0, 0.0, 8.0, 8.0), (4, 4))
