"""Camera paths over a still photo, and the sub-pixel frame renderer that follows them.

Directions are the camera's: `pan_l` turns the camera left, so the window moves left over the
photo and the content slides right across the frame (`pan_r` the opposite); `tilt_up` looks up,
so the content slides down; `dolly_in` and `micro` move toward the photo, so the content grows.

A path is normalised (`camera_window`): at time t in [0, 1] it gives the window's centre as an
offset from the path's anchor, in units of the base window (the window at zoom 1), and its zoom.
`CameraPath` fits that path into a given photo: it picks the largest base window with the
output's aspect for which every window of the clip stays inside the photo, and centres the
whole movement. Frames are then resampled from float crop boxes, never snapped to whole pixels.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

import numpy as np
from PIL import Image

from . import drift, rolling
from .errors import InvalidParams

log = logging.getLogger(__name__)

# The product's choices, declared once: the API models, the bot and the CLI derive theirs.
Preset = Literal["micro", "pan_l", "pan_r", "tilt_up", "tilt_down", "dolly_in"]
Resolution = Literal["360p", "480p", "720p", "1080p"]
Aspect = Literal["auto", "16:9", "9:16", "1:1", "4:3", "3:4"]
Duration = Literal[3, 6, 8, 10, 12]

PRESETS: tuple[Preset, ...] = get_args(Preset)
ASPECTS: tuple[Aspect, ...] = get_args(Aspect)
DURATIONS: tuple[Duration, ...] = get_args(Duration)
RESOLUTIONS: dict[str, int] = {r: int(r.removesuffix("p")) for r in get_args(Resolution)}

# Amplitudes at strength 1, in base-window units. Strength scales them linearly, so strength 0
# is a still frame. At the default strength 0.5 a pan travels 15 % of the frame's width.
PAN_TRAVEL = 0.30
TILT_TRAVEL = 0.30
DOLLY_ZOOM = 0.60
MICRO_ZOOM = 0.10
MICRO_DRIFT_X = 0.04
MICRO_DRIFT_Y = 0.02

# Auto aspect: photos within this ratio of square get a square video.
SQUARE_TOLERANCE = 1.15

_ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "16:9": (16, 9),
    "9:16": (9, 16),
    "1:1": (1, 1),
    "4:3": (4, 3),
    "3:4": (3, 4),
}

# Resampling filter for the per-frame step: PIL's `resize(box=...)` takes float boxes exactly
# and filters over the area it shrinks. Measured on a photo-like texture (docs/benchmarks.md):
# bicubic from the oversampled source keeps the sharpness constant across sub-pixel phases
# (0.01 % variation); bilinear costs ~40 % less but is ~20 % softer and breathes; an affine
# `Image.transform` is 2x slower with 3x the jitter (no area filter when shrinking).
FRAME_FILTER = Image.Resampling.BICUBIC
# The shrunk photo keeps this much more resolution than the closest frame needs. Resampling at
# 1:1 shifts fine detail by a phase-dependent amount (0.03-0.05 px of jitter, and a 7 %
# sharpness pulse from frame to frame); from a 1.25x larger source the frame filter is a real
# low-pass and the jitter drops to ~0.002 px.
OVERSAMPLE = 1.25
# Samples of t used to find the extent of a path; the error at an interior extremum is ~1e-9
# of the window, far below anything visible, and `box` nudges the last bit of float error.
_EXTENT_SAMPLES = 4097


@dataclass(frozen=True)
class Window:
    """The camera at one instant: centre offset (base-window units, +x right, +y down) and zoom."""

    cx: float
    cy: float
    zoom: float


def check_preset(preset: str) -> None:
    if preset not in PRESETS:
        raise InvalidParams(f"unknown motion {preset!r}: choose one of {', '.join(PRESETS)}")


def check_strength(strength: float) -> float:
    try:
        value = float(strength)
    except (TypeError, ValueError):
        raise InvalidParams("strength must be a number between 0 and 1") from None
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise InvalidParams("strength must be between 0 and 1")
    return value


def check_size(name: str, size: tuple[int, int]) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise InvalidParams(f"{name} must be a (width, height) pair") from None
    if width <= 0 or height <= 0 or (width, height) != tuple(size):
        raise InvalidParams(f"{name} must be positive whole numbers, got {size!r}")
    return width, height


def _ease(t: np.ndarray) -> np.ndarray:
    """Cosine ease-in-out: starts and stops at rest, smooth everywhere in between."""
    return 0.5 - 0.5 * np.cos(np.pi * t)


def _path(preset: str, t: np.ndarray, strength: float) -> tuple[np.ndarray, ...]:
    """Vectorised path: (cx, cy, zoom) arrays for the times `t`. Arguments already checked."""
    e = _ease(t)
    zero = np.zeros_like(t)
    one = np.ones_like(t)
    s = strength
    if preset == "pan_l":
        return PAN_TRAVEL * s * (0.5 - e), zero, one
    if preset == "pan_r":
        return PAN_TRAVEL * s * (e - 0.5), zero, one
    if preset == "tilt_up":
        return zero, TILT_TRAVEL * s * (0.5 - e), one
    if preset == "tilt_down":
        return zero, TILT_TRAVEL * s * (e - 0.5), one
    if preset == "dolly_in":
        return zero, zero, 1.0 + DOLLY_ZOOM * s * e
    # micro: a push-in plus a drift to the right and slightly up.
    return (
        MICRO_DRIFT_X * s * (e - 0.5),
        MICRO_DRIFT_Y * s * (0.5 - e),
        1.0 + MICRO_ZOOM * s * e,
    )


def _loop_time(t: np.ndarray) -> np.ndarray:
    """A loop goes out and back: 0 -> 1 -> 0 over the clip, easing at the turn."""
    return 1.0 - np.abs(1.0 - 2.0 * t)


def camera_window(preset: str, t: float, strength: float) -> Window:
    """The normalised camera of `preset` at time t in [0, 1]; strength in [0, 1] scales it."""
    check_preset(preset)
    s = check_strength(strength)
    if not (isinstance(t, int | float) and 0.0 <= t <= 1.0):
        raise InvalidParams("t must be between 0 and 1")
    cx, cy, zoom = _path(preset, np.array([float(t)]), s)
    return Window(float(cx[0]), float(cy[0]), float(zoom[0]))


def resolve_aspect(aspect: str, photo_w: int, photo_h: int) -> str:
    """`auto` becomes 16:9 for landscape, 9:16 for portrait and 1:1 for near-square photos."""
    if aspect not in ASPECTS:
        raise InvalidParams(f"unknown aspect {aspect!r}: choose one of {', '.join(ASPECTS)}")
    if aspect != "auto":
        return aspect
    check_size("photo size", (photo_w, photo_h))
    ratio = photo_w / photo_h
    if ratio > SQUARE_TOLERANCE:
        return "16:9"
    if ratio < 1.0 / SQUARE_TOLERANCE:
        return "9:16"
    return "1:1"


def aspect_of(width: int, height: int) -> str:
    """The named aspect of an output size (the nearest, as sizes are rounded to even pixels)."""
    check_size("size", (width, height))
    return min(_ASPECT_RATIOS, key=lambda name: abs(math.log(width / height * _ratio(name))))


def _ratio(name: str) -> float:
    a, b = _ASPECT_RATIOS[name]
    return b / a


def aspect_ratio(name: str) -> float:
    """Width over height of a named aspect ("16:9" -> 1.78); `InvalidParams` for another name."""
    if name not in _ASPECT_RATIOS:
        raise InvalidParams(f"unknown aspect {name!r}")
    return 1.0 / _ratio(name)


def _round_even(value: float) -> int:
    return max(2, 2 * round(value / 2))


def output_size(resolution: str, aspect: str, photo_w: int, photo_h: int) -> tuple[int, int]:
    """(width, height) of the video: the resolution names the short side; both are even."""
    if resolution not in RESOLUTIONS:
        raise InvalidParams(
            f"unknown resolution {resolution!r}: choose one of {', '.join(RESOLUTIONS)}"
        )
    short = RESOLUTIONS[resolution]
    a, b = _ASPECT_RATIOS[resolve_aspect(aspect, photo_w, photo_h)]
    if a >= b:
        return _round_even(short * a / b), short
    return short, _round_even(short * b / a)


Box = tuple[float, float, float, float]


class FramePath(Protocol):
    """What the frame renderer needs of a path: sizes, float crop boxes, the closest window."""

    src_w: int
    src_h: int
    out_w: int
    out_h: int

    @property
    def min_box_width(self) -> float: ...

    def box(self, t: float) -> Box: ...

    def boxes(self, n_frames: int) -> Iterator[Box]: ...

    def roll(self, t: float) -> float: ...


class CameraPath:
    """A preset fitted into one photo: float crop boxes in source pixels, for any t in [0, 1].

    Box coordinates treat pixels as unit squares: (0, 0, w, h) is the whole photo, which is the
    convention of PIL's `resize(box=...)`, so a box maps onto the output with no half-pixel slip.

    Without a `subject` the movement is centred in the photo. With one (x, y in photo fractions)
    the path aims at it: a path that only translates ends with the subject as near the centre
    of the frame as the photo allows; one that zooms also leans toward it as it pushes in, from
    the start window nearest to it to the end window centred on it. `loop` sends the camera out
    and back (0 -> 1 -> 0 in the preset's time, at rest at the turn and at both ends). `seed`
    adds its hand-held variation (`drift`), and with `roll` a slight roll about the window's
    centre (`drift.drift_roll`); the fit keeps every window, rolled, inside the photo.
    """

    def __init__(
        self,
        preset: str,
        strength: float,
        src_size: tuple[int, int],
        out_size: tuple[int, int],
        *,
        subject: tuple[float, float] | None = None,
        loop: bool = False,
        seed: int | None = None,
        roll: bool = False,
    ) -> None:
        check_preset(preset)
        self.preset = preset
        self.strength = check_strength(strength)
        self.src_w, self.src_h = check_size("photo size", src_size)
        self.out_w, self.out_h = check_size("output size", out_size)
        self.loop = bool(loop)
        self.seed = seed
        self.rolls = bool(roll) and seed is not None
        self.lean = (0.0, 0.0)
        self.drift_scale = 1.0
        self.aspect = aspect = self.out_w / self.out_h

        ts = np.linspace(0.0, 1.0, _EXTENT_SAMPLES)
        cx, cy, zoom = self.windows(ts)
        angle = self.angles(ts)
        if subject is not None and seed is not None:
            # Aiming may turn the drift down (see _aim): the base window fits without it too.
            self.drift_scale = 0.0
            still = (*self.windows(ts), self.angles(ts))
            self.drift_scale = 1.0
            cx, cy, zoom, angle = (
                np.concatenate(pair) for pair in zip((cx, cy, zoom, angle), still, strict=True)
            )
        half_x, half_y = self._halves(zoom, angle)
        # Extent of all windows in base-window units; the base window must fit it into the photo.
        left, right = float(np.min(cx - half_x)), float(np.max(cx + half_x))
        top, bottom = float(np.min(cy - half_y)), float(np.max(cy + half_y))
        base_w = min(self.src_w / (right - left), self.src_h * aspect / (bottom - top))
        self.base_w = base_w
        self.base_h = base_w / aspect
        # Centre the whole movement in the photo.
        self.anchor_x = self.src_w / 2 - base_w * (left + right) / 2
        self.anchor_y = self.src_h / 2 - self.base_h * (top + bottom) / 2
        self.max_zoom = float(np.max(zoom))
        if subject is not None:
            self._aim(subject, ts)
            self.max_zoom = float(np.max(self.windows(ts)[2]))

    def progress(self, t: np.ndarray) -> np.ndarray:
        """How far along the preset the camera is at times `t` (0 at rest, 1 at its far end)."""
        return _loop_time(t) if self.loop else t

    def windows(self, t: np.ndarray) -> tuple[np.ndarray, ...]:
        """The normalised path (cx, cy, zoom arrays) at times `t`; a subclass may replace it."""
        u = self.progress(t)
        cx, cy, zoom = _path(self.preset, u, self.strength)
        if self.seed is not None and self.strength > 0:
            dx, dy, dz = drift.drift(self.seed, self.strength * self.drift_scale, t)
            cx, cy, zoom = cx + dx, cy + dy, zoom * dz
        if self.lean != (0.0, 0.0):
            e = _ease(u)
            cx, cy = cx + self.lean[0] * e, cy + self.lean[1] * e
        return cx, cy, zoom

    def angles(self, t: np.ndarray) -> np.ndarray:
        """The window's roll at times `t`, in radians: + turns the window clockwise over the
        photo, so the content turns the other way."""
        if not self.rolls or self.seed is None or self.strength <= 0:
            return np.zeros_like(t)
        return drift.drift_roll(self.seed, self.strength * self.drift_scale, t)

    def _halves(self, zoom: np.ndarray, angle: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Half the width and height (base-window units) of the upright box around each window
        as it is rolled: what must stay inside the photo."""
        c, s = np.cos(angle), np.abs(np.sin(angle))
        return (c + s / self.aspect) * 0.5 / zoom, (c + s * self.aspect) * 0.5 / zoom

    def roll(self, t: float) -> float:
        """The roll at time t (radians): 0 unless the path was made with `roll`."""
        return float(self.angles(np.array([float(t)]))[0])

    def _aim(self, subject: tuple[float, float], ts: np.ndarray) -> None:
        """Place the movement (anchor, and lean for a zoom) toward the subject; see the class.
        The subject comes first: the drift is left out while aiming, then kept as large as the
        aimed path leaves room for (the fit gave it room around a centred path)."""
        self.drift_scale = 0.0
        cx, cy, zoom = self.windows(ts)
        far = int(np.argmax(_ease(self.progress(ts))))
        zooms = float(np.max(zoom) - np.min(zoom)) > 1e-9
        leans = []
        anchors = []
        for c, base, size, s in (
            (cx, self.base_w, self.src_w, subject[0]),
            (cy, self.base_h, self.src_h, subject[1]),
        ):
            half = 0.5 / zoom
            low, high = -float(np.min(c - half)) * base, size - float(np.max(c + half)) * base
            target = min(max(s, 0.0), 1.0) * size
            anchor = min(max(target - float(c[0 if zooms else far]) * base, low), high)
            lean = 0.0
            if zooms:  # the end window alone may go nearer the subject than the whole path
                h_end = float(half[far]) * base
                end = min(max(target, h_end), size - h_end) - float(c[far]) * base
                lean = (end - anchor) / base
            anchors.append(anchor)
            leans.append(lean)
        self.anchor_x, self.anchor_y = anchors
        full = (leans[0], leans[1])

        def set_lean(k: float) -> None:
            self.lean = (full[0] * k, full[1] * k)

        def set_drift(k: float) -> None:
            self.drift_scale = k

        self._largest(ts, set_lean)
        self._largest(ts, set_drift)

    def _largest(self, ts: np.ndarray, set_scale: Callable[[float], None]) -> float:
        """The largest scale in [0, 1] of a part of the path (set by `set_scale`) for which
        every window of the clip is inside the photo (bisection); the part is left at it."""
        set_scale(1.0)
        if self._inside(ts):
            return 1.0
        low, high = 0.0, 1.0
        for _ in range(30):
            mid = (low + high) / 2
            set_scale(mid)
            if self._inside(ts):
                low = mid
            else:
                high = mid
        set_scale(low)
        return low

    def _inside(self, ts: np.ndarray) -> bool:
        cx, cy, zoom = self.windows(ts)
        half_x, half_y = self._halves(zoom, self.angles(ts))
        x0 = self.anchor_x + (cx - half_x) * self.base_w
        x1 = self.anchor_x + (cx + half_x) * self.base_w
        y0 = self.anchor_y + (cy - half_y) * self.base_h
        y1 = self.anchor_y + (cy + half_y) * self.base_h
        eps = 1e-6
        return bool(
            x0.min() >= -eps
            and y0.min() >= -eps
            and x1.max() <= self.src_w + eps
            and y1.max() <= self.src_h + eps
        )

    @property
    def min_box_width(self) -> float:
        """Width of the smallest window of the clip (the closest the camera gets)."""
        return self.base_w / self.max_zoom

    def box(self, t: float) -> Box:
        """The crop box (x0, y0, x1, y1) at time t, in source pixels; always inside the photo."""
        if not 0.0 <= t <= 1.0:
            raise InvalidParams("t must be between 0 and 1")
        cx, cy, zoom = (float(v[0]) for v in self.windows(np.array([float(t)])))
        w = self.base_w / zoom
        h = self.base_h / zoom
        x0 = self.anchor_x + cx * self.base_w - w / 2
        y0 = self.anchor_y + cy * self.base_h - h / 2
        # Float rounding (or an extremum between the extent samples) may leave a box a hair
        # outside; shift, never shrink, so the aspect stays exact.
        x0 = min(max(x0, 0.0), self.src_w - w)
        y0 = min(max(y0, 0.0), self.src_h - h)
        # (a - w) + w may come out one ulp above a.
        return (x0, y0, min(x0 + w, float(self.src_w)), min(y0 + h, float(self.src_h)))

    def boxes(self, n_frames: int) -> Iterator[Box]:
        """Boxes of `n_frames` frames evenly spread over the path, first and last included."""
        for i in range(n_frames):
            yield self.box(i / (n_frames - 1) if n_frames > 1 else 0.0)


def centre_crop(src_size: tuple[int, int], crop_size: tuple[int, int]) -> tuple[float, ...]:
    """The largest box of `crop_size`'s aspect centred in the photo, as `ImageOps.fit` cuts it."""
    src_w, src_h = check_size("photo size", src_size)
    crop_w, crop_h = check_size("crop size", crop_size)
    aspect = crop_w / crop_h
    if src_w / src_h > aspect:
        width, height = src_h * aspect, float(src_h)
    else:
        width, height = float(src_w), src_w / aspect
    x0, y0 = (src_w - width) / 2, (src_h - height) / 2
    return (x0, y0, x0 + width, y0 + height)


def camera_boxes(
    preset: str,
    strength: float,
    src_size: tuple[int, int],
    out_size: tuple[int, int],
    n_frames: int,
    *,
    crop_size: tuple[int, int] | None = None,
) -> list[tuple[float, float, float, float]]:
    """The crop box of every frame of a clip, in the photo's pixels: what a preview shows.

    The motion renderer fits the path into the whole photo (`CameraPath`). The SVD renderer
    first cuts the photo to its working size (`crop_size`, centred) and fits the path into
    that; the boxes are then mapped back onto the photo.
    """
    n = check_frames(n_frames)
    if crop_size is None:
        return list(CameraPath(preset, strength, src_size, out_size).boxes(n))
    cx0, cy0, cx1, _ = centre_crop(src_size, crop_size)
    path = CameraPath(preset, strength, crop_size, out_size)
    scale = (cx1 - cx0) / path.src_w
    return [
        (cx0 + x0 * scale, cy0 + y0 * scale, cx0 + x1 * scale, cy0 + y1 * scale)
        for x0, y0, x1, y1 in path.boxes(n)
    ]


def check_frames(n_frames: int) -> int:
    if not isinstance(n_frames, int) or isinstance(n_frames, bool) or n_frames < 1:
        raise InvalidParams("the number of frames must be a whole number of at least 1")
    return n_frames


def shrink_for_path(
    image: Image.Image, path: FramePath, margin: float | None = None
) -> tuple[Image.Image, float, float]:
    """The photo shrunk once to the largest scale the clip needs, with its x and y scale factors.

    Every frame is then a downscale (by at least OVERSAMPLE when the photo is large enough) or
    1:1 from this image. Sampling straight from a large photo aliases (fine detail flickers from
    frame to frame); shrinking first with Lanczos removes the detail no frame can show. Never
    enlarges: a photo smaller than that stays as it is. `margin` replaces OVERSAMPLE (Pillow's
    rolled frames are resampled at OVERSAMPLE times the output's scale first, and need it
    squared).
    """
    width, height = shrunk_size(image.size, path, margin)
    if (width, height) == image.size:
        return image, 1.0, 1.0
    small = image.resize((width, height), Image.Resampling.LANCZOS)
    log.debug("shrunk %sx%s to %sx%s for the clip", image.width, image.height, width, height)
    return small, width / image.width, height / image.height


def shrunk_size(
    size: tuple[int, int], path: FramePath, margin: float | None = None
) -> tuple[int, int]:
    """The size `shrink_for_path` shrinks a photo of `size` to (the size itself when the
    photo is not larger than the clip needs)."""
    # Source pixels per output pixel at the closest frame, with the oversampling margin.
    needed = (OVERSAMPLE if margin is None else margin) * path.out_w / path.min_box_width
    if needed >= 1.0:
        return size
    width = min(size[0], math.ceil(size[0] * needed - 1e-9))
    height = min(size[1], math.ceil(size[1] * needed - 1e-9))
    return width, height


def motion_frames(
    image: Image.Image,
    *,
    out_size: tuple[int, int],
    n_frames: int,
    preset: str,
    strength: float,
) -> Iterator[np.ndarray]:
    """Lazily render the clip: `n_frames` RGB uint8 arrays of shape (height, width, 3).

    Arguments are checked at the call, before the first frame is asked for.
    """
    if not isinstance(image, Image.Image):
        raise InvalidParams("image must be a PIL image")
    n = check_frames(n_frames)
    return render_path(image, CameraPath(preset, strength, image.size, out_size), n)


def render_threads() -> int:
    """Worker threads for `render_path` by default: one per core, up to four.

    One thread resamples a 720p frame in ~24 ms, slower than x264 encodes it (~12 ms on two
    cores), so a single renderer leaves the encoder waiting; on two cores two workers cut the
    wall time of a clip by a fifth (docs/benchmarks.md). Beyond four, x264 is the limit.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return 0 if cores <= 1 else min(4, cores)


def render_path(
    image: Image.Image,
    path: FramePath,
    n_frames: int,
    *,
    threads: int | None = None,
    compiled: bool = False,
) -> Generator[np.ndarray, None, None]:
    """Lazily render `n_frames` frames of `path` (fitted to this image's size) over `image`.

    With `threads` > 0 (default: `render_threads()`), that many workers render ahead of the
    consumer, in order, below the caller's CPU priority (`WORKER_NICENESS`); Pillow releases
    the GIL while it resamples, so they run in parallel. At most max(`threads`, `AHEAD`) + 1
    frames are in memory at once. `compiled` resamples upright frames
    with the compiled `resample` module instead of Pillow: the same geometry and filter, to
    within a level, for about 2.5x less CPU.
    """
    if image.size != (path.src_w, path.src_h):
        raise InvalidParams("the camera path was fitted to another image size")
    n = check_frames(n_frames)
    workers = render_threads() if threads is None else max(0, int(threads))
    return _render(image, path, n, workers, rgb=compiled)


def warm(*, roll: bool = True) -> None:
    """Compile (the first time on a machine: seconds, more on a busy one) or load the compiled
    kernels of `render_path_yuv` now, upright and rolled, so a first clip does not pay it."""
    image = Image.new("RGB", (64, 48))
    for rolled in {False, roll}:  # an upright clip's passes differ from a rolled one's
        path = CameraPath("micro", 1.0, image.size, (16, 12), seed=1, roll=rolled)
        for _ in render_path_yuv(image, path, 2, threads=0):
            pass
    if roll:
        from . import affine

        affine.warm()


def render_path_yuv(
    image: Image.Image, path: FramePath, n_frames: int, *, threads: int | None = None
) -> Generator[np.ndarray, None, None]:
    """`render_path` in the encoder's own format: I420 frames, (h * 3 / 2, w) uint8 arrays of
    BT.709 TV-range Y, Cb and Cr planes, for `video.encode(..., pix_fmt="yuv420p")`.

    Resampled by the compiled `resample` module rather than Pillow: the same geometry and
    filter, in float, on 1.5 planes instead of 4 channels: about 5x less CPU per frame, which
    on a machine x264 keeps busy is most of a clip's time (docs/benchmarks.md)."""
    if image.size != (path.src_w, path.src_h):
        raise InvalidParams("the camera path was fitted to another image size")
    if path.out_w % 2 or path.out_h % 2:
        raise InvalidParams("YUV 4:2:0 frames need an even width and height")
    n = check_frames(n_frames)
    workers = render_threads() if threads is None else max(0, int(threads))
    return _render(image, path, n, workers, yuv=True)


def _render(
    image: Image.Image,
    path: FramePath,
    n_frames: int,
    threads: int,
    *,
    yuv: bool = False,
    rgb: bool = False,
) -> Generator[np.ndarray, None, None]:
    source = image if image.mode == "RGB" else image.convert("RGB")
    times = [i / (n_frames - 1) if n_frames > 1 else 0.0 for i in range(n_frames)]
    angles = [path.roll(t) for t in times]
    # Pillow's rolled frames are resampled at OVERSAMPLE times the output's scale before they
    # turn, so they need the margin squared; `affine`'s two passes resample straight to it.
    rolled_pillow = any(angles) and not yuv
    if yuv:  # the compiled resampler shrinks the photo's planes itself, at a third of the CPU
        shrunk = shrunk_size(source.size, path)
        small, sx, sy = source, shrunk[0] / source.width, shrunk[1] / source.height
    else:
        small, sx, sy = shrink_for_path(source, path, OVERSAMPLE**2 if rolled_pillow else None)
        shrunk = small.size
    kind = "yuv" if yuv else "rgb" if rgb and not any(angles) else "pillow"
    out = (path.out_w, path.out_h)
    frame = _framer(small, shrunk, (sx, sy), out, rolls=any(angles), kind=kind)
    shots = zip(path.boxes(n_frames), angles, strict=True)
    if threads <= 0:
        for box, angle in shots:
            yield frame(box, angle)
        return
    ahead = max(threads, AHEAD)
    # Leaving the `with` (end, error, or the consumer closing us) waits for the running frames.
    with ThreadPoolExecutor(
        threads, thread_name_prefix="motion-frame", initializer=_below_the_encoder
    ) as pool:
        pending: deque[Future[np.ndarray]] = deque()
        try:
            for box, angle in shots:
                pending.append(pool.submit(frame, box, angle))
                if len(pending) > ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


WORKER_NICENESS = 10
"""How far below the caller's CPU priority the frame workers run. The encoder fed by the
caller is a clip's critical path, and it leaves gaps (its frame threads wait on each other:
x264 keeps two cores about 85 % busy); workers that yield to it, with `AHEAD` frames of room,
render in those gaps rather than in its time: a 720p rolled clip on two cores 4 % sooner
(docs/benchmarks.md)."""

AHEAD = 8
"""Frames the workers may render ahead of the consumer (a 720p I420 frame is 1.4 MB)."""


def _below_the_encoder() -> None:
    """A frame worker's start: its niceness `WORKER_NICENESS` above its creator's (Linux keeps
    niceness per thread; raising it needs no privilege). Elsewhere nothing changes."""
    with contextlib.suppress(OSError, AttributeError):
        me = threading.get_native_id()
        nice = os.getpriority(os.PRIO_PROCESS, me) + WORKER_NICENESS
        os.setpriority(os.PRIO_PROCESS, me, min(nice, 19))


def _framer(
    small: Image.Image,
    shrunk: tuple[int, int],
    scale: tuple[float, float],
    size: tuple[int, int],
    *,
    rolls: bool,
    kind: str,
) -> Callable[[Box, float], np.ndarray]:
    """Frame i from its box (source pixels) and roll: Pillow's RGB ("pillow"), the compiled
    resampler's RGB ("rgb", upright paths) or its I420 ("yuv", rolled ones by `affine`).
    `small` is the photo shrunk for the clip, except for "yuv", whose planes are shrunk to
    `shrunk` from the photo itself."""
    sx, sy = scale
    padded = rolling.padded(small) if rolls and kind != "yuv" else small
    planes = turning = colours = None
    if kind == "yuv":
        from . import affine, resample  # numba: loaded only by the renderer that needs it

        planes = resample.YUVSource(small, shrunk)
        turning = affine.RolledSource(planes) if rolls else None
    elif kind == "rgb":
        from . import resample

        colours = resample.RGBSource(small)

    def frame(box: Box, angle: float) -> np.ndarray:
        x0, y0, x1, y1 = box
        scaled = (x0 * sx, y0 * sy, x1 * sx, y1 * sy)
        if angle and turning is not None:
            return turning.frame(scaled, angle, size)
        if angle:  # Pillow's RGB frames ("yuv" frames that roll have `turning`)
            return rolling.rolled(padded, scaled, angle, size, OVERSAMPLE, FRAME_FILTER)
        if planes is not None:
            return planes.frame(scaled, size)
        if colours is not None:
            return colours.frame(scaled, size)
        return np.asarray(small.resize(size, FRAME_FILTER, box=scaled))

    return frame
