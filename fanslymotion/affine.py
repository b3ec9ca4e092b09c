"""Rolled frames by a two-pass affine resample (Catmull and Smith): the camera-motion
renderer's frames when the path rolls, at about twice an upright frame's CPU.

For output pixel (u, v) the source point is X = A u + B v + c, Y = D u + E v + f. Pass 1
(vertical): for each source column x, the row Y reached at output row v is linear in v with
one scale E' = E - D B / A for every column and an offset per column; pass 2 (horizontal):
for each output row v, X is linear in u with scale A and an offset per row. A constant scale
along a pass makes the kernel's weights a function of the sub-pixel phase alone, so they come
from a table of PHASES phases computed once per frame; the kernel is Pillow's bicubic widened
by the reduction, as in the upright passes (`resample`). Along a sloped pass the phase moves
by a fixed step from column to column, so the table is laid out by that step and a strip of
columns reads its weights as contiguous slices (docs/roll-two-pass.md has the measurements).
Where the taps allow, both passes sum int16 by pairs of rows (`pairsum`, integer weights):
about a quarter less CPU than the float strips. Pure engine: nothing of the service.
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

from . import pairsum, resample
from .resample import Box, BytePlane, FixedPlane, FloatPlane, SourcePlane, Store

OutPlane = FloatPlane | FixedPlane | BytePlane

PHASES = 256
# Sub-pixel phases per pixel in the weight tables: a phase is off by at most 1/512 px. Against
# 8192 phases, 0.4 % of a rolled frame's pixels differ by one level (1024: 0.15 %); a quarter
# of the tables of 1024, which the passes read for every output pixel: rolled frames 6 % less.

# A sloped pass's strips: columns whose first source row is one of SPAN - 1 rows above a
# common base (longer strips, SPAN - 2 more taps).
SPAN = 3
# Floats a strip is swept in multiples of (AVX-512's vectors: a scalar remainder of up to
# 15 columns cost a 127-column strip a third more than 128 columns).
VECTOR = 16
# Mirrored border (luma pixels) around the photo's planes: the kernels' reach may pass the
# photo's edge by a few pixels (the rolled window itself never does).
PAD = 16
# Pairs of rows around a pair plane (`pairsum.pair_plane`), for strips that start a few
# rows past the padded plane's edge (their weights there are zero).
MARGIN = 8


def _weights(phi: npt.NDArray[np.float64], scale: float) -> tuple[npt.NDArray[np.float64], float]:
    """Pillow's bicubic weights (taps + 1, len(phi)) at phases phi = q - base in [0, 2), where
    q = centre + 0.5 - support, Pillow's first tap is floor(q) and tap k reads base + k (one
    tap more than Pillow's, zero where floor(q) = base + 1); and the support."""
    widen = max(scale, 1.0)
    support = 2.0 * widen
    taps = 2 * math.ceil(support) + math.ceil(float(phi.max()))  # phases up to phi.max()
    k = np.arange(taps)[:, None]
    w = resample.bicubic((k - phi[None, :] - support + 1.0) / widen)
    w[k < np.floor(phi)[None, :]] = 0.0  # before Pillow's first tap
    w[k >= np.floor(phi + 2.0 * support)[None, :]] = 0.0  # Pillow's window end
    w /= w.sum(axis=0, keepdims=True)
    return w, support


def table(scale: float, gain: float = 1.0) -> tuple[FloatPlane, float]:
    """`_weights` (taps, 2 PHASES) at phases (p + 0.5) / PHASES, the taps that are ever
    nonzero, times `gain`; and the support."""
    w, support = _weights((np.arange(2 * PHASES) + 0.5) / PHASES, scale)
    used = int(np.nonzero(np.any(w != 0.0, axis=1))[0][-1]) + 1
    return np.ascontiguousarray(w[:used] * gain, dtype=np.float32), support


# Below this slope (offset change per column) the sloped table would be too long: the
# gathering pass instead.
MIN_SLOPE = 1.0 / 8192


def _sloped_fill(
    scale: float, slope: float, m: int, delta: float, gain: float, out: FloatPlane
) -> int:
    """`_weights` at `sloped_table`'s phases times `gain`, compiled, into out (taps, m,
    count // m) laid out as there; returns the number of taps that are ever nonzero."""
    taps, cols = out.shape[0], out.shape[1] * out.shape[2]
    widen = max(scale, 1.0)
    support = 2.0 * widen
    used = 1
    tmp = np.empty(taps, np.float64)
    for p in range(cols):
        phi = p * delta if slope > 0 else SPAN - p * delta
        phi = min(max(phi, 0.0), SPAN - 1e-9)
        lo, hi = math.floor(phi), math.floor(phi + 2.0 * support)
        total = 0.0
        for k in range(taps):
            v = resample.kernel_jit((k - phi - support + 1.0) / widen) if lo <= k < hi else 0.0
            tmp[k] = v
            total += v
        for k in range(taps):
            out[k, p % m, p // m] = tmp[k] / total * gain
            if tmp[k] != 0.0 and k >= used:
                used = k + 1
    return used


def sloped_table(
    scale: float, slope: float, gain: float = 1.0
) -> tuple[npt.NDArray[np.float32], float, float]:
    """Pillow's bicubic weights for offsets with `slope` per column, laid out so a strip's
    weights are slices: phase step delta = |slope| / m (m whole, delta <= 1 / PHASES),
    phase index p at phase p delta (slope > 0) or SPAN - p delta (slope < 0), so that the
    next column's index is p + m; stored as (taps, m, p // m) at [k, p % m, p // m]. Also
    the support and delta.

    A frame's three planes share their passes' scales and slopes, so the last few tables
    are kept, per render thread (a table costs ~0.1 ms to fill)."""
    key = (scale, slope, gain)
    tables: dict[tuple[float, float, float], Any] = _tables.__dict__.setdefault("last", {})
    if key in tables:
        return tables[key]  # type: ignore[no-any-return]
    if len(tables) >= 4:
        tables.clear()
    m = max(math.ceil(abs(slope) * PHASES), 1)
    delta = abs(slope) / m
    support = 2.0 * max(scale, 1.0)
    taps = max(2 * math.ceil(support) + SPAN, 8)
    tab = np.empty((taps, m, math.ceil(SPAN / abs(slope)) + 3 + VECTOR), np.float32)
    # At least eight taps (zero past the window): `_strip_store`'s one sweep costs less than
    # four taps, three single ones and a store.
    used = max(_sloped_fill_jit(scale, slope, m, delta, gain, tab), 8)
    tables[key] = found = (tab[:used], support, delta)
    return found


Pairs = tuple[npt.NDArray[np.int16], npt.NDArray[np.int16], int, float]


def pair_tables(scale: float, slope: float, gain: float) -> Pairs | None:
    """`sloped_table`'s weights for the pair kernels (`pairsum`): quantised, as the tables
    for strips from a row of even and of odd parity, with the shift that divides by 2^BITS
    and applies `gain` (a power of two); also delta. None where the kernels
    cannot sum them (too many taps, or a slope for the gathering pass). Kept as
    `sloped_table` keeps its tables."""
    if abs(slope) < MIN_SLOPE:
        return None
    key = ("pairs", scale, slope, gain)
    tables: dict[Any, Any] = _tables.__dict__.setdefault("pairs", {})
    if key in tables:
        return tables[key]  # type: ignore[no-any-return]
    if len(tables) >= 4:
        tables.clear()
    tab, _, delta = sloped_table(scale, slope, gain)
    found: Pairs | None = None
    if (tab.shape[0] + 2) // 2 <= pairsum.MAX_PAIRS:
        even, odd = pairsum.pair_tables(tab, gain)
        shift = pairsum.BITS - math.log2(gain)
        assert shift == int(shift), "the pair kernels apply powers of two only"
        found = (even, odd, int(shift), delta)
    tables[key] = found
    return found


def _strip_end(offsets: npt.NDArray[np.float64], j0: int, n: int) -> tuple[int, int]:
    """The end of the strip of columns from j0, whose offsets (from offsets[0]) lie in the
    same band of SPAN - 1 rows, and that band's first row d (inlined)."""
    o0 = offsets[0]
    d = math.floor((offsets[j0] - o0) / (SPAN - 1)) * (SPAN - 1)
    j1 = j0 + 1
    while j1 < n and math.floor((offsets[j1] - o0) / (SPAN - 1)) * (SPAN - 1) == d:
        j1 += 1
    return j1, d


def _phase(
    o0: float, step: float, i: int, fr0: float, rising: bool, delta: float
) -> tuple[int, int]:
    """Output row i of a strip whose first column is fr0 rows into its band: the strip's
    base row (before the band's d) and the phase index of its first column in the sloped
    table (inlined)."""
    q0 = o0 + step * (i + 0.5)
    base = math.floor(q0)
    phi = q0 - base + fr0
    return base, int((phi if rising else SPAN - phi) / delta + 0.5)


def _pass_sloped(
    src: SourcePlane,
    c0: int,
    offsets: npt.NDArray[np.float64],
    step: float,
    tab: npt.NDArray[np.float32],
    delta: float,
    out: OutPlane,
    store: Store,
) -> None:
    """`_pass` for offsets exactly linear in the column, with `sloped_table`'s weights:
    a strip's weights for one tap are one contiguous slice (no gather).

    Each strip is swept to a whole number of vectors where the plane and the table have the
    columns: sweeping up to 15 columns more costs less than the scalar remainder (a strip is
    60-600 columns)."""
    n = out.shape[1]
    m = tab.shape[1]
    acc = np.empty(n + VECTOR, np.float32)
    rising = offsets[n - 1] >= offsets[0]
    o0 = offsets[0]
    columns, phases = src.shape[1], tab.shape[2]
    fused = tab.shape[0] == 8
    j0 = 0
    while j0 < n:
        j1, d = _strip_end_jit(offsets, j0, n)
        fr0 = offsets[j0] - o0 - d
        wide = (j1 - j0 + VECTOR - 1) // VECTOR * VECTOR
        if c0 + j0 + wide > columns:
            wide = j1 - j0
        for i in range(out.shape[0]):
            base, p0 = _phase_jit(o0, step, i, fr0, rising, delta)
            t0 = p0 // m
            fits = t0 + wide <= phases
            if fused:  # summed and stored by the last sweep (where the output row has the columns)
                end = j0 + wide if fits and j0 + wide <= n else j1
                dst = out[i, j0:end]
                _strip_store_jit(src, base + d, c0 + j0, tab, p0 % m, t0, dst, store)
                continue
            a = acc[: wide if fits else j1 - j0]
            _strip_jit(src, base + d, c0 + j0, tab, p0 % m, t0, a)
            resample.store_jit(a[: j1 - j0], out[i, j0:j1], store)
        j0 = j1


def _pass_pairs(
    pairs: npt.NDArray[np.int16],
    c0: int,
    offsets: npt.NDArray[np.float64],
    step: float,
    even: npt.NDArray[np.int16],
    odd: npt.NDArray[np.int16],
    delta: float,
    out: FixedPlane | BytePlane,
    shift: int,
    low: int,
    high: int,
) -> None:
    """`_pass_sloped` by the pair kernels, from a pair plane (`MARGIN` pairs around it) and
    `pair_tables`' weights: the same strips, each row's strip summed LANES columns a call
    (past the strip's end where the plane, the table and the output row have the columns;
    the next strip writes those again). Where the row ends first, the strip's last call
    is moved back to end at its end (some columns summed twice, to the same values: the
    column-by-column rest had cost a rolled frame an eighth of its time); any rest (a strip
    narrower than LANES there) by `_pairs_tail`."""
    n = out.shape[1]
    m = even.shape[1]
    lanes = pairsum.LANES
    rising = offsets[n - 1] >= offsets[0]
    o0 = offsets[0]
    columns, phases = pairs.shape[1], even.shape[2]
    bits = out.itemsize * 8
    data, src_step, col_step = np.int64(pairs.ctypes.data), pairs.strides[0], pairs.strides[1]
    # The tables as addresses and pair counts: picking an array per row costs numba a
    # reference count each time (the two tables share their strides).
    tables = (np.int64(even.ctypes.data), np.int64(odd.ctypes.data))
    counts = (even.shape[0], odd.shape[0])
    w_step, w_row, w_col = even.strides[0], even.strides[1], even.strides[2]
    out_data, out_row, out_col = np.int64(out.ctypes.data), out.strides[0], out.strides[1]
    j0 = 0
    while j0 < n:
        j1, d = _strip_end_jit(offsets, j0, n)
        fr0 = offsets[j0] - o0 - d
        room = min((columns - c0 - j0) // lanes, (n - j0) // lanes)
        for i in range(out.shape[0]):
            base, p0 = _phase_jit(o0, step, i, fr0, rising, delta)
            t0, r = p0 // m, p0 % m
            row = base + d
            parity = row & 1
            count = counts[parity]
            q = (row >> 1) + MARGIN
            vectors = 0
            if q >= 0 and q + count <= pairs.shape[0]:
                vectors = min((j1 - j0 + lanes - 1) // lanes, room, (phases - t0) // lanes)
            src = data + q * src_step + (c0 + j0) * col_step
            w = tables[parity] + r * w_row + t0 * w_col
            dst = out_data + i * out_row + j0 * out_col
            for v in range(vectors):
                at = v * lanes
                pairsum.sums(
                    count, bits, src + at * col_step, src_step, w + at * w_col, w_step,
                    dst + at * out_col, shift, low, high,
                )  # fmt: skip
            done = min(vectors * lanes, j1 - j0)
            last = j1 - j0 - lanes  # a vector ending at the strip's end
            # A call of its own: folded into the loop above (a choice of offset per call),
            # the passes took a fifth longer.
            if 0 < done < j1 - j0 and c0 + j1 <= columns and t0 + last + lanes <= phases:
                pairsum.sums(
                    count, bits, src + last * col_step, src_step, w + last * w_col, w_step,
                    dst + last * out_col, shift, low, high,
                )  # fmt: skip
                done = j1 - j0
            if done < j1 - j0:
                tab, rest = odd if parity else even, out[i, j0 + done : j1]
                _pairs_tail_jit(pairs, q, c0 + j0 + done, tab, r, t0 + done, rest, shift, low, high)
        j0 = j1


def _pairs_tail(
    pairs: npt.NDArray[np.int16],
    q: int,
    col: int,
    tab: npt.NDArray[np.int16],
    r: int,
    t0: int,
    out: FixedPlane | BytePlane,
    shift: int,
    low: int,
    high: int,
) -> None:
    """The pair kernels' sums one column at a time, for a strip's last columns where no
    whole vector fits; pairs past the plane's edge (their weights zero) read its edge
    pair."""
    half, last = (1 << shift) >> 1, pairs.shape[0] - 1
    for x in range(out.shape[0]):
        total = 0
        for p in range(tab.shape[0]):
            at = min(max(q + p, 0), last)
            for e in range(2):
                total += int(pairs[at, col + x, e]) * int(tab[p, r, t0 + x, e])
        out[x] = min(max((total + half) >> shift, low), high)


def _rows8(src: SourcePlane, row: int, col: int, width: int) -> tuple[Any, ...]:
    """Eight source rows from `row` on, columns col to col + width (inlined). Rows past the
    padded plane's edge (their weights ~zero) read its edge row."""
    last, c1 = src.shape[0] - 1, col + width
    return (
        src[min(max(row, 0), last), col:c1],
        src[min(max(row + 1, 0), last), col:c1],
        src[min(max(row + 2, 0), last), col:c1],
        src[min(max(row + 3, 0), last), col:c1],
        src[min(max(row + 4, 0), last), col:c1],
        src[min(max(row + 5, 0), last), col:c1],
        src[min(max(row + 6, 0), last), col:c1],
        src[min(max(row + 7, 0), last), col:c1],
    )


def _weights8(tab: npt.NDArray[np.float32], r: int, t0: int, width: int) -> tuple[Any, ...]:
    """The first eight taps' weights of `width` columns from index t0 (inlined)."""
    t1 = t0 + width
    return (
        tab[0, r, t0:t1],
        tab[1, r, t0:t1],
        tab[2, r, t0:t1],
        tab[3, r, t0:t1],
        tab[4, r, t0:t1],
        tab[5, r, t0:t1],
        tab[6, r, t0:t1],
        tab[7, r, t0:t1],
    )


def _strip_store(
    src: SourcePlane,
    row: int,
    col: int,
    tab: npt.NDArray[np.float32],
    r: int,
    t0: int,
    out: OutPlane,
    store: Store,
) -> None:
    """`_strip` for exactly eight taps, rounded into `out` as `resample.store_jit` does in
    the same sweep. (Nine taps as four into a float row and then five, stored, was slower
    than eight, one and a store.)"""
    width = out.shape[0]
    bias, low, high = np.float32(store[0]), np.float32(store[1]), np.float32(store[2])
    s0, s1, s2, s3, s4, s5, s6, s7 = _rows8_jit(src, row, col, width)
    w0, w1, w2, w3, w4, w5, w6, w7 = _weights8_jit(tab, r, t0, width)
    for x in range(width):
        v = (w0[x] * s0[x] + w1[x] * s1[x] + w2[x] * s2[x] + w3[x] * s3[x]) + (
            w4[x] * s4[x] + w5[x] * s5[x] + w6[x] * s6[x] + w7[x] * s7[x]
        )
        out[x] = min(max(v + bias, low), high)


def _strip(
    src: SourcePlane,
    row: int,
    col: int,
    tab: npt.NDArray[np.float32],
    r: int,
    t0: int,
    out: FloatPlane,
) -> None:
    """out[x] = sum over k of tab[k, r, t0 + x] * src[row + k, col + x] for tables of more
    than eight taps (`sloped_table` makes at least eight; eight go to `_strip_store`): eight
    taps in one sweep, then four, then one (the accumulator stored once per group, as
    `resample._sweep`). Rows past the padded plane's edge (their weights ~zero) read its
    edge row."""
    width, taps, last = out.shape[0], tab.shape[0], src.shape[0] - 1
    c1, t1 = col + width, t0 + width
    s0, s1, s2, s3, s4, s5, s6, s7 = _rows8_jit(src, row, col, width)
    w0, w1, w2, w3, w4, w5, w6, w7 = _weights8_jit(tab, r, t0, width)
    for x in range(width):
        out[x] = (w0[x] * s0[x] + w1[x] * s1[x] + w2[x] * s2[x] + w3[x] * s3[x]) + (
            w4[x] * s4[x] + w5[x] * s5[x] + w6[x] * s6[x] + w7[x] * s7[x]
        )
    k = 8
    while k + 4 <= taps:
        s0 = src[min(max(row + k, 0), last), col:c1]
        s1 = src[min(max(row + k + 1, 0), last), col:c1]
        s2 = src[min(max(row + k + 2, 0), last), col:c1]
        s3 = src[min(max(row + k + 3, 0), last), col:c1]
        w0, w1 = tab[k, r, t0:t1], tab[k + 1, r, t0:t1]
        w2, w3 = tab[k + 2, r, t0:t1], tab[k + 3, r, t0:t1]
        for x in range(width):
            out[x] += (w0[x] * s0[x] + w1[x] * s1[x]) + (w2[x] * s2[x] + w3[x] * s3[x])
        k += 4
    while k < taps:
        s0, w0 = src[min(max(row + k, 0), last), col:c1], tab[k, r, t0:t1]
        for x in range(width):
            out[x] += w0[x] * s0[x]
        k += 1


def _pass(
    src: SourcePlane,
    c0: int,
    offsets: npt.NDArray[np.float64],
    step: float,
    tab: FloatPlane,
    out: OutPlane,
    store: Store,
) -> None:
    """out[i, j] = sum over k of Pillow's weights * src[floor(q) + k, c0 + j] with
    q = offsets[j] + step * (i + 0.5) (offsets nearly constant: a slight slope).

    Swept in strips of columns whose offsets have the same integer part d (a roll of a
    degree: ~57 columns), each strip row by row, so the source is read down contiguous
    columns; there floor(q) - (base + d) is 0 or 1 with base = floor(offsets[0] + step
    (i + 0.5)), so each column's weights come from `table`'s two-pixel phase range."""
    n = out.shape[1]
    taps = tab.shape[0]
    phases = tab.shape[1] // 2
    scale = float(phases)
    top = 2 * phases - 1
    rows = src.shape[0]
    o0 = offsets[0]
    acc = np.empty(n, np.float32)
    frac = np.empty(n, np.float64)
    phase = np.empty(n, np.int64)
    j0 = 0
    while j0 < n:
        d = math.floor(offsets[j0] - o0)
        j1 = j0 + 1
        while j1 < n and math.floor(offsets[j1] - o0) == d:
            j1 += 1
        m = j1 - j0
        fr = frac[j0:j1]
        for x in range(m):
            fr[x] = offsets[j0 + x] - o0 - d  # in [0, 1)
        ph = phase[j0:j1]
        a = acc[j0:j1]
        for i in range(out.shape[0]):
            q0 = o0 + step * (i + 0.5)
            base = math.floor(q0)
            rest = q0 - base
            for x in range(m):
                ph[x] = min(int((fr[x] + rest) * scale), top)
            r = base + d  # past the padded plane's edge (~zero weights) its edge row
            t = tab[0]
            s = src[min(max(r, 0), rows - 1), c0 + j0 : c0 + j1]
            for x in range(m):
                a[x] = t[ph[x]] * s[x]
            for k in range(1, taps):
                t = tab[k]
                s = src[min(max(r + k, 0), rows - 1), c0 + j0 : c0 + j1]
                for x in range(m):
                    a[x] += t[ph[x]] * s[x]
            resample.store_jit(a, out[i, j0:j1], store)
        j0 = j1


_tables = threading.local()
_strip_end_jit: Callable[..., tuple[int, int]] = numba.njit(inline="always")(_strip_end)
_phase_jit: Callable[..., tuple[int, int]] = numba.njit(inline="always")(_phase)
_rows8_jit: Callable[..., tuple[Any, ...]] = numba.njit(inline="always")(_rows8)
_weights8_jit: Callable[..., tuple[Any, ...]] = numba.njit(inline="always")(_weights8)
_jit: Any = numba.njit(nogil=True, cache=True, fastmath=True)
_strip_jit: Callable[..., None] = _jit(_strip)
_strip_store_jit: Callable[..., None] = _jit(_strip_store)
_pass_jit: Callable[..., None] = _jit(_pass)
_pass_sloped_jit: Callable[..., None] = _jit(_pass_sloped)
_pass_pairs_jit: Callable[..., None] = _jit(_pass_pairs)
_pairs_tail_jit: Callable[..., None] = _jit(_pairs_tail)
_sloped_fill_jit: Callable[..., int] = _jit(_sloped_fill)


def sweep(
    src: SourcePlane,
    c0: int,
    offsets: npt.NDArray[np.float64],
    slope: float,
    step: float,
    out: OutPlane,
    gain: float = 1.0,
    store: Store = (0.0, -math.inf, math.inf),
) -> float:
    """One pass (`_pass`), by the sloped tables where the slope allows, its weights times
    `gain`, stored as `resample.store_jit` does; returns the support."""
    if abs(slope) >= MIN_SLOPE:
        tab, support, delta = sloped_table(step, slope, gain)
        _pass_sloped_jit(src, c0, offsets, step, tab, delta, out, store)
    else:
        flat, support = table(step, gain)
        _pass_jit(src, c0, offsets, step, flat, out, store)
    return support


def rolled_plane(
    src: SourcePlane,
    pad: float,
    box: Box,
    angle: float,
    out: BytePlane,
    pairs: npt.NDArray[np.int16] | None = None,
) -> None:
    """The window `box` (in the unpadded plane's pixels) rolled by `angle` about its centre,
    from `src`, the plane with `pad` mirrored pixels around it, into `out`. With `pairs`,
    `src` as a pair plane (`MARGIN`), both passes go by the pair kernels where they can."""
    out_h, out_w = out.shape
    x0, y0, x1, y1 = box
    sx, sy = (x1 - x0) / out_w, (y1 - y0) / out_h
    cos, sin = math.cos(angle), math.sin(angle)
    # Edge coordinates of the padded plane: X = mx + A du + B dv, Y = my + D du + E dv, with
    # du, dv the output pixel's centre from the output's centre.
    a, b, d, e = cos * sx, -sin * sy, sin * sx, cos * sy
    mx, my = (x0 + x1) / 2 + pad, (y0 + y1) / 2 + pad
    e1 = e - d * b / a  # pass 1's step (source rows per output row), every column
    sup1, sup2 = 2.0 * max(e1, 1.0), 2.0 * max(a, 1.0)  # the kernels' reach, as `_weights`
    # The source columns pass 2 reads: the output's corners, and the kernel's reach.
    hw, hh = out_w / 2, out_h / 2
    xs = [mx + a * u + b * v for u in (-hw, hw) for v in (-hh, hh)]
    c0 = max(math.floor(min(xs) - sup2) - 1, 0)
    c1 = min(math.ceil(max(xs) + sup2) + SPAN + 1, src.shape[1])  # a strip's extra taps
    if (c1 - c0) % 2 and c1 < src.shape[1]:
        c1 += 1  # pass 2's pair plane pairs the intermediate's columns
    cols = np.arange(c0, c1, dtype=np.float64)
    # Pass 1: column j's centre X = j + 0.5 sits at output du = (X - mx - B dv) / A there.
    off1 = my + (d / a) * (cols + 0.5 - mx) - e1 * hh + 0.5 - sup1
    # The intermediate as int16 in 1/INTER of a level, as the upright frames' (`resample`).
    inter = resample.buffer("affine_inter", (out_h, c1 - c0), np.int16)
    gain = float(resample.gain(src)) * resample.INTER
    first = pair_tables(e1, d / a, gain) if pairs is not None else None
    if first is not None:
        even, odd, shift, delta = first
        _pass_pairs_jit(pairs, c0, off1, e1, even, odd, delta, inter, shift, -32768, 32767)
    else:
        sweep(src, c0, off1, d / a, e1, inter, gain, resample.WORDS)
    # Pass 2, on the transposed intermediate: row index = source column - c0; rounded into
    # bytes before the transpose back (a quarter of the bytes to move).
    dv = np.arange(out_h, dtype=np.float64) + 0.5 - hh
    off2 = mx - a * hw + b * dv + 0.5 - sup2 - c0
    done = resample.buffer("affine_done", (out_w, out_h), np.uint8)
    second = pair_tables(a, b, 1.0 / resample.INTER) if pairs is not None else None
    if second is not None and (c1 - c0) % 2 == 0:
        even, odd, shift, delta = second
        _pass_pairs_jit(_turned_pairs(inter), 0, off2, a, even, odd, delta, done, shift, 0, 255)
    else:
        turned = resample.buffer("affine_turned", (c1 - c0, out_h), np.int16)
        cv2.transpose(inter, turned)
        sweep(turned, 0, off2, b, a, done, 1.0 / resample.INTER, resample.BYTES)
    cv2.transpose(done, out)


def _turned_pairs(inter: FixedPlane) -> npt.NDArray[np.int16]:
    """The transposed intermediate (h, w) as a pair plane (`MARGIN` + w / 2 + `MARGIN`, h,
    2): its columns two by two are 32-bit elements, so one transpose of those makes it."""
    height, width = inter.shape
    rows = MARGIN + width // 2 + MARGIN
    planes = resample.buffer("affine_pairs", (rows, 2 * height), np.int16)
    cv2.transpose(inter.view(np.int32), planes[MARGIN : rows - MARGIN].view(np.int32))
    return planes.reshape(rows, height, 2)  # type: ignore[no-any-return]


class RolledSource:
    """A photo's YUV planes, mirrored past their edges, for rolled I420 frames."""

    def __init__(self, planes: resample.YUVSource) -> None:
        def padded(plane: FixedPlane, pad: int) -> FixedPlane:
            border = cv2.copyMakeBorder(plane, *(pad,) * 4, cv2.BORDER_REFLECT_101)
            return np.asarray(border, dtype=np.int16)

        self.chroma_scale = planes.chroma_scale
        self.pads = (PAD, PAD // 2, PAD // 2)
        luma, cb, cr = planes.luma, planes.cb, planes.cr
        self.planes = (padded(luma, PAD), padded(cb, PAD // 2), padded(cr, PAD // 2))
        self.pairs = tuple(pairsum.pair_plane(plane, MARGIN) for plane in self.planes)

    def frame(self, box: Box, angle: float, size: tuple[int, int]) -> BytePlane:
        """The I420 frame of `box` (photo pixels) rolled by `angle`, at `size` (even)."""

        def draw(i: int, plane_box: Box, out: BytePlane) -> None:
            rolled_plane(self.planes[i], self.pads[i], plane_box, angle, out, self.pairs[i])

        return resample.i420(box, size, self.chroma_scale, draw)


def warm() -> None:
    """Load (or compile) the float passes too: the fallback where the pair kernels cannot
    sum (a shrink past sixteen taps, an odd width at the plane's edge), which would
    otherwise compile in the middle of a clip, once per machine."""
    src = np.zeros((64, 64), np.int16)
    out = np.empty((8, 8), np.uint8)
    rolled_plane(src, PAD, (20.0, 20.0, 36.0, 36.0), 0.01, out)
