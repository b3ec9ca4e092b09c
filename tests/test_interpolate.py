"""Motion-compensated interpolation: counts, streaming, accuracy where the truth is known."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image

from fanslymotion import interpolate as ip
from fanslymotion import motion
from fanslymotion.errors import InvalidParams

from .imagetools import textured_rgb


def psnr(a: np.ndarray, b: np.ndarray, margin: int = 8) -> float:
    """PSNR in dB over the frame less `margin` px at each edge (content enters there)."""
    crop = (slice(margin, -margin), slice(margin, -margin))
    err = float(np.mean((a[crop].astype(np.float64) - b[crop].astype(np.float64)) ** 2))
    return float(10 * np.log10(255.0**2 / max(err, 1e-12)))


def shifted(base: np.ndarray, dx: float, dy: float, size: tuple[int, int]) -> np.ndarray:
    """A window of `size` cut from `base` at offset (16 + dx, 16 + dy), sub-pixel exact."""
    w, h = size
    box = (16 + dx, 16 + dy, 16 + dx + w, 16 + dy + h)
    return np.asarray(Image.fromarray(base).resize(size, Image.Resampling.BICUBIC, box=box))


@pytest.fixture(scope="module")
def base() -> np.ndarray:
    return textured_rgb(256, 200, seed=3, scale=3.0)


def test_counts_and_source_frames_pass_through(base: np.ndarray) -> None:
    frames = [shifted(base, 2.0 * i, 0.0, (160, 120)) for i in range(4)]
    for factor in (1, 2, 3, 5):
        out = list(ip.interpolate(frames, factor))
        assert len(out) == ip.output_count(4, factor) == 3 * factor + 1
        for i, frame in enumerate(frames):
            assert np.array_equal(out[i * factor], frame)
            assert out[i * factor + 0].shape == (120, 160, 3)
    assert list(ip.interpolate([frames[0]], 2)) == [frames[0]]
    assert list(ip.interpolate([], 2)) == []


@pytest.mark.parametrize(("dx", "dy"), [(6.0, 0.0), (-3.5, 4.25), (0.0, -7.0)])
def test_a_shift_is_made_to_the_true_in_between(base: np.ndarray, dx: float, dy: float) -> None:
    size = (160, 120)
    a, b = shifted(base, 0, 0, size), shifted(base, dx, dy, size)
    out = list(ip.interpolate([a, b], 4))
    for k in (1, 2, 3):
        truth = shifted(base, dx * k / 4, dy * k / 4, size)
        made = psnr(out[k], truth)
        blended = psnr(np.clip(a * (1 - k / 4) + b * (k / 4) + 0.5, 0, 255).astype(np.uint8), truth)
        assert made > 34.0, (k, made)
        assert made > blended + 8.0, (k, made, blended)


def test_a_zoom_is_followed(base: np.ndarray) -> None:
    """Not only shifts: a camera push (flow growing from the centre) is made exactly too."""
    photo = Image.fromarray(base)
    frames = list(
        motion.motion_frames(photo, out_size=(160, 90), n_frames=9, preset="dolly_in", strength=1)
    )
    made = list(ip.interpolate(frames[::2], 2))
    blended = list(ip.blend(frames[::2], 2))
    for i in (1, 3, 5, 7):
        # The eased ends barely move (blending is nearly right there); the middle moves most.
        assert psnr(made[i], frames[i]) > max(32.0, psnr(blended[i], frames[i])), i
    for i in (3, 5):
        assert psnr(made[i], frames[i]) > psnr(blended[i], frames[i]) + 10.0, i


def test_an_occluding_object_takes_the_revealed_side_from_the_frame_that_shows_it() -> None:
    """A square moves over a still background: behind it, the made frame uses the neighbour
    where that background is visible instead of smearing the square over it."""
    background = textured_rgb(200, 140, seed=7, scale=3.0)
    square = textured_rgb(40, 40, seed=9, scale=2.0)

    def scene(x: int) -> np.ndarray:
        frame = background.copy()
        frame[50:90, x : x + 40] = square
        return frame

    a, b, truth = scene(60), scene(68), scene(64)
    made = list(ip.interpolate([a, b], 2))[1]
    blended = list(ip.blend([a, b], 2))[1]
    assert psnr(made, truth) > psnr(blended, truth) + 8.0
    assert psnr(made, truth) > 36.0


def test_it_streams_holding_two_source_frames(base: np.ndarray) -> None:
    pulled: list[int] = []

    def source() -> Iterator[np.ndarray]:
        for i in range(5):
            pulled.append(i)
            yield shifted(base, float(i), 0.0, (96, 64))

    out = ip.interpolate(source(), 3)
    assert pulled == []  # lazy
    next(out)
    assert pulled == [0]
    next(out)  # the first made frame needs the second source frame, not more
    assert pulled == [0, 1]
    assert len(list(out)) == 4 * 3 - 1


def test_large_frames_measure_flow_smaller_and_still_follow(base: np.ndarray) -> None:
    big = np.asarray(Image.fromarray(base).resize((2048, 1600), Image.Resampling.BICUBIC))
    size = (1200, 700)
    a, b = shifted(big, 0, 0, size), shifted(big, 12, 4, size)
    made = list(ip.interpolate([a, b], 2))[1]
    assert psnr(made, shifted(big, 6, 2, size)) > 36.0


def test_bad_input_is_refused(base: np.ndarray) -> None:
    for factor in (0, -1, 17, 2.0, True):
        with pytest.raises(InvalidParams):
            ip.interpolate([], factor)  # type: ignore[arg-type]
    with pytest.raises(InvalidParams, match="frame 0"):
        list(ip.interpolate([np.zeros((4, 4), np.uint8)], 2))
    with pytest.raises(InvalidParams, match="frame 1 is 8x4"):
        list(ip.interpolate([np.zeros((4, 4, 3), np.uint8), np.zeros((4, 8, 3), np.uint8)], 2))


def test_rate_plan_picks_a_whole_factor_near_the_made_rate() -> None:
    assert ip.rate_plan(24, 12) == (12, 2)
    assert ip.rate_plan(30, 12) == (10, 3)
    assert ip.rate_plan(30, 14) == (15, 2)
    assert ip.rate_plan(24, 24) == (24, 1)
    assert ip.rate_plan(7, 5) == (7, 1)  # a prime: nothing between 1 and itself
    with pytest.raises(InvalidParams):
        ip.rate_plan(0, 12)
