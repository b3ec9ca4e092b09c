"""The pair kernels (fanslymotion/pairsum.py) against numpy's integer sums, and the rolled
frames they make against the float passes."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import pytest

from fanslymotion import affine, pairsum, resample

from .imagetools import textured_photo


def driver(sums: Callable[..., None]) -> Any:
    """A compiled loop calling kernel `sums` for every LANES columns of `out`, from pair
    row q of `plane` and the pair table `tab` (pairs, columns, 2)."""

    def run(plane: Any, q: int, tab: Any, out: Any, shift: int, low: int, high: int) -> None:
        src, w = np.int64(plane.ctypes.data), np.int64(tab.ctypes.data)
        dst = np.int64(out.ctypes.data)
        for v in range(out.shape[0] // pairsum.LANES):
            at = v * pairsum.LANES
            sums(
                tab.shape[0], src + q * plane.strides[0] + at * plane.strides[1], plane.strides[0],
                w + at * tab.strides[1], tab.strides[0], dst + at * out.strides[0],
                shift, low, high,
            )  # fmt: skip

    return numba.njit(run)


@pytest.mark.parametrize("width", [512, 256, 0])
@pytest.mark.parametrize("pairs", [4, 5, 6, 7, 8])
@pytest.mark.parametrize("bits", [8, 16])
def test_kernels_are_numpys_integer_sums(width: int, pairs: int, bits: int) -> None:
    if width > pairsum.WIDTH:
        pytest.skip(f"this CPU has no {width}-bit pmaddwd")
    rng = np.random.default_rng(pairs * bits + width)
    # Levels as the passes have them: 1/128 of a level into int16, 1/64 of a level into bytes.
    top = 30720 if bits == 16 else 16320
    rows = rng.integers(0, top, (2 * pairs + 4, 64)).astype(np.int16)
    plane = pairsum.pair_plane(rows, 1)
    weights = rng.uniform(-0.1, 1.0, (2 * pairs, 64))
    weights /= weights.sum(axis=0)
    tab = np.zeros((pairs, 64, 2), np.int16)
    for k in range(2 * pairs):
        tab[k // 2, :, k % 2] = np.rint(weights[k] * 2**pairsum.BITS)
    # Columns 0-7 overshoot (the brightest under the positive weights, black under the
    # negative ones), columns 8-15 undershoot: into bytes they clamp.
    taps = rows[2 : 2 + 2 * pairs]
    taps[:, :8] = np.where(weights[:, :8] > 0, top, 0)
    taps[:, 8:16] = np.where(weights[:, 8:16] < 0, top, 0)
    plane = pairsum.pair_plane(rows, 1)
    shift, (low, high) = (20, (0, 255)) if bits == 8 else (15, (-32768, 32767))
    out = np.zeros(64, np.uint8 if bits == 8 else np.int16)
    # From row 2: pair 1 of the rows, pair 2 with the plane's margin of one.
    driver(pairsum.kernel(bits, width))(plane, 2, tab, out, shift, low, high)
    exact = (_taps(tab) * rows[2 : 2 + 2 * pairs]).sum(axis=0)
    expected = np.clip((exact + (1 << (shift - 1))) >> shift, low, high)
    np.testing.assert_array_equal(out, expected)
    if bits == 8:
        assert (expected[:8] == high).all() and (expected[8:16] == low).all()


def _taps(tab: np.ndarray) -> np.ndarray:
    """A pair table (pairs, columns, 2) as int64 weights (taps, columns)."""
    return np.asarray(tab.transpose(0, 2, 1).reshape(-1, tab.shape[1]), dtype=np.int64)


def test_pair_planes_interleave_rows_two_by_two() -> None:
    rows = np.arange(7 * 5, dtype=np.int16).reshape(7, 5)
    plane = pairsum.pair_plane(rows, 2)
    assert plane.shape == (2 + 4 + 2, 5, 2)
    for r in range(7):
        np.testing.assert_array_equal(plane[r // 2 + 2, :, r % 2], rows[r])
    np.testing.assert_array_equal(plane[2 + 3, :, 1], rows[6])  # the odd last row, twice


def test_pair_tables_sum_to_one_exactly_in_either_parity() -> None:
    tab, _, _ = affine.sloped_table(1.37, 0.0123, 0.5)
    even, odd = pairsum.pair_tables(tab, 0.5)
    assert (even.sum(axis=(0, 3)) == 2**pairsum.BITS).all()
    assert (odd.sum(axis=(0, 3)) == 2**pairsum.BITS).all()
    taps = tab.shape[0]
    for k in range(taps):  # tap k where each parity puts it, to within the rounding
        w = tab[k] / 0.5 * 2**pairsum.BITS
        # Each column's rounding residue (under half a unit per tap) goes to one weight.
        assert np.abs(even[k // 2, :, :, k % 2] - w).max() <= taps / 2
        assert np.abs(odd[(k + 1) // 2, :, :, (k + 1) % 2] - w).max() <= taps / 2
    assert (odd[0, :, :, 0] == 0).all()


@pytest.mark.parametrize("degrees", [0.05, 0.4, 0.9, -0.7])
def test_rolled_planes_by_pairs_are_the_float_passes(degrees: float) -> None:
    """Both passes by the pair kernels (`pairs` given) against the float passes: the same
    picture to within a level, where the tables allow the kernels."""
    planes = resample.YUVSource(textured_photo(900, 600, seed=3, scale=1.5))
    source = affine.RolledSource(planes)
    angle = math.radians(degrees)
    assert affine.pair_tables(1.4, math.tan(angle), 0.5) is not None
    for box in (
        (100.3, 80.7, 100.3 + 448.0, 80.7 + 252.0),
        (60.0, 50.0, 60.0 + 720.1, 50.0 + 405.3),
    ):
        by_pairs = np.empty((180, 320), np.uint8)
        by_floats = np.empty_like(by_pairs)
        padded = source.planes[0]
        affine.rolled_plane(padded, affine.PAD, box, angle, by_pairs, source.pairs[0])
        affine.rolled_plane(padded, affine.PAD, box, angle, by_floats)
        difference = np.abs(by_pairs.astype(int) - by_floats)
        assert difference.max() <= 1 and difference.mean() < 0.05, difference.mean()
