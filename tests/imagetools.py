"""Test helpers: synthetic textured photos and sub-pixel motion measurement.

`displacement(a, b)` measures how far the content moved from frame `a` to frame `b`, to about a
thousandth of a pixel on textured frames (see test_motion's self-check): an integer estimate by
phase correlation, then Lucas-Kanade refinement where `b` is shifted back by the current
estimate in the Fourier domain (mirror-padded, so the frame's edges do not ring).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

FloatArray = np.ndarray


def texture(width: int, height: int, *, seed: int = 0, scale: float = 2.0) -> FloatArray:
    """Band-limited noise in [0, 1], shaped like a photo's spectrum (1/f) with a soft cutoff.

    `scale` is the size of the finest detail in pixels. The texture wraps around exactly, so a
    Fourier shift of it is an exact sub-pixel translation (ground truth for the estimator).
    """
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((height, width))
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    radius = np.hypot(fx, fy)
    radius[0, 0] = 1.0
    spectrum = np.exp(-((radius * scale * 2.0) ** 2)) / radius
    spectrum[0, 0] = 0.0
    field = np.fft.irfft2(np.fft.rfft2(noise) * spectrum, s=(height, width))
    field -= field.min()
    peak = field.max()
    return field / peak if peak > 0 else field


def textured_rgb(
    width: int, height: int, *, seed: int = 0, scale: float = 2.0, border: int = 0
) -> np.ndarray:
    """A colourful textured photo as an RGB uint8 array; `border` px of pure magenta frame it."""
    channels = [texture(width, height, seed=seed + k, scale=scale) for k in range(3)]
    mix = np.stack(
        [
            0.7 * channels[0] + 0.3 * channels[1],
            0.6 * channels[1] + 0.4 * channels[2],
            0.5 * channels[2] + 0.5 * channels[0],
        ],
        axis=-1,
    )
    pixels = np.clip(20 + 215 * mix, 0, 255).round().astype(np.uint8)
    if border:
        pixels[:border] = pixels[-border:] = MAGENTA
        pixels[:, :border] = pixels[:, -border:] = MAGENTA
    return pixels


MAGENTA = (255, 0, 255)


def textured_photo(
    width: int, height: int, *, seed: int = 0, scale: float = 2.0, border: int = 0
) -> Image.Image:
    return Image.fromarray(textured_rgb(width, height, seed=seed, scale=scale, border=border))


def encoded(image: Image.Image, fmt: str = "JPEG", **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **params)
    return out.getvalue()


def gray(frame: np.ndarray) -> FloatArray:
    """BT.709 luma of an RGB frame (the video's Y), or the frame itself if already 2-D."""
    values = np.asarray(frame, dtype=np.float64)
    if values.ndim == 2:
        return values
    luma: np.ndarray = values @ np.array([0.2126, 0.7152, 0.0722])
    return luma


def _hann(height: int, width: int) -> FloatArray:
    return np.outer(np.hanning(height), np.hanning(width))


def _integer_shift(a: FloatArray, b: FloatArray) -> tuple[int, int]:
    window = _hann(*a.shape)
    fa = np.fft.fft2((a - a.mean()) * window)
    fb = np.fft.fft2((b - b.mean()) * window)
    cross = np.conj(fa) * fb
    cross /= np.abs(cross) + 1e-12
    corr = np.fft.ifft2(cross).real
    iy, ix = np.unravel_index(int(np.argmax(corr)), corr.shape)
    height, width = a.shape
    return (int(ix) - width if ix > width // 2 else int(ix)), (
        int(iy) - height if iy > height // 2 else int(iy)
    )


class _Shifter:
    """Sub-pixel shifts of one image by Fourier phase ramps, mirror-padded so that the
    wrap-around is continuous (no ringing from the frame's edges)."""

    def __init__(self, image: FloatArray) -> None:
        self.height, self.width = image.shape
        padded = np.pad(image, ((0, self.height), (0, self.width)), mode="symmetric")
        self.spectrum = np.fft.fft2(padded)
        self.fy = np.fft.fftfreq(2 * self.height)[:, None]
        self.fx = np.fft.fftfreq(2 * self.width)[None, :]

    def __call__(self, dx: float, dy: float) -> FloatArray:
        """image(x + dx, y + dy)."""
        phase = np.exp(2j * np.pi * self.fx * dx) * np.exp(2j * np.pi * self.fy * dy)
        # The Nyquist bins of an even-length axis have no defined sub-pixel phase; drop them.
        phase[self.height, :] = 0.0
        phase[:, self.width] = 0.0
        shifted = np.fft.ifft2(self.spectrum * phase).real
        return shifted[: self.height, : self.width]


def blur(image: FloatArray, sigma: float) -> FloatArray:
    """Gaussian blur (mirror-padded FFT): measuring on it ignores compression noise, which
    lives in the fine detail, while the motion of the coarser detail stays exact."""
    if sigma <= 0:
        return image
    height, width = image.shape
    padded = np.pad(image, ((0, height), (0, width)), mode="symmetric")
    fy = np.fft.fftfreq(2 * height)[:, None]
    fx = np.fft.fftfreq(2 * width)[None, :]
    gain = np.exp(-2 * (np.pi * sigma) ** 2 * (fx * fx + fy * fy))
    return np.fft.ifft2(np.fft.fft2(padded) * gain).real[:height, :width]


def displacement(
    a: np.ndarray, b: np.ndarray, *, sigma: float = 0.0, iterations: int = 8
) -> tuple[float, float]:
    """(dx, dy) such that b(x) ≈ a(x - d): how far the content moved from `a` to `b`, in px."""
    dx, dy, _, _ = measure(a, b, sigma=sigma, iterations=iterations)
    return dx, dy


def measure(
    a: np.ndarray,
    b: np.ndarray,
    *,
    sigma: float = 0.0,
    iterations: int = 8,
    tolerance: float = 1e-5,
) -> tuple[float, float, float, float]:
    """(dx, dy, px, py): the displacement and the point (x, y) of `a` it is exact for.

    Under a pure translation the point does not matter. Under a zoom the motion differs across
    the frame, and a translation estimate is, to first order, the motion at the texture's
    gradient-weighted centroid (px, py), not at the frame's centre: compare it there. Points use
    edge-aligned coordinates: (0, 0) is the top-left corner of the first pixel.
    """
    if np.shape(a) != np.shape(b):
        raise ValueError("frames differ in size")
    fa, fb = blur(gray(a), sigma), blur(gray(b), sigma)
    dx, dy = (float(v) for v in _integer_shift(fa, fb))
    height, width = fa.shape
    # Weights vanish at the edges, where content enters or leaves the frame.
    weight = _hann(height, width) ** 2
    gy, gx = np.gradient(fa)
    wxx = float(np.sum(weight * gx * gx))
    wxy = float(np.sum(weight * gx * gy))
    wyy = float(np.sum(weight * gy * gy))
    det = wxx * wyy - wxy * wxy
    if det <= 0:
        raise ValueError("no texture to measure motion on")

    def solve(bx: float, by: float) -> tuple[float, float]:
        return (wyy * bx - wxy * by) / det, (wxx * by - wxy * bx) / det

    shift = _Shifter(fb)
    for _ in range(iterations):
        diff = fa - shift(dx, dy)  # ≈ residual · ∇a
        step_x, step_y = solve(float(np.sum(weight * gx * diff)), float(np.sum(weight * gy * diff)))
        dx += step_x
        dy += step_y
        if abs(step_x) < tolerance and abs(step_y) < tolerance:
            break
    # The structure-tensor-weighted centroid: where a linear motion field equals the estimate.
    rx = np.arange(width)[None, :] + 0.5 - width / 2
    ry = np.arange(height)[:, None] + 0.5 - height / 2
    ox, oy = solve(
        float(np.sum(weight * (gx * gx * rx + gx * gy * ry))),
        float(np.sum(weight * (gx * gy * rx + gy * gy * ry))),
    )
    return dx, dy, width / 2 + ox, height / 2 + oy


def patch_motion(
    a: np.ndarray,
    b: np.ndarray,
    centres: Sequence[tuple[int, int]],
    size: int,
    *,
    sigma: float = 0.0,
) -> list[tuple[float, float, float, float]]:
    """`measure` in square patches of `size` px centred on `centres` (x, y): for each patch,
    (dx, dy, px, py) with the point in whole-frame edge-aligned coordinates."""
    half = size // 2
    out = []
    for cx, cy in centres:
        sl = (slice(cy - half, cy - half + size), slice(cx - half, cx - half + size))
        dx, dy, px, py = measure(a[sl], b[sl], sigma=sigma)
        out.append((dx, dy, cx - half + px, cy - half + py))
    return out


def box_displacement(
    box_a: tuple[float, float, float, float],
    box_b: tuple[float, float, float, float],
    out_size: tuple[int, int],
    point: tuple[float, float] | None = None,
) -> tuple[float, float]:
    """Ideal motion, in output px, of the content at output `point` (default: the centre)
    between a frame cropped at `box_a` and one cropped at `box_b` (edge-aligned coordinates)."""
    out_w, out_h = out_size
    px, py = point if point is not None else (out_w / 2, out_h / 2)
    sx_a = (box_a[2] - box_a[0]) / out_w
    sy_a = (box_a[3] - box_a[1]) / out_h
    sx_b = (box_b[2] - box_b[0]) / out_w
    sy_b = (box_b[3] - box_b[1]) / out_h
    src_x = box_a[0] + px * sx_a
    src_y = box_a[1] + py * sy_a
    return (src_x - box_b[0]) / sx_b - px, (src_y - box_b[1]) / sy_b - py
