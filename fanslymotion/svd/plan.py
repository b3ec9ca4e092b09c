"""The plan of an SVD clip: working sizes, passes and their overlap, SVD's own conditioning per
preset, and one progress scale over all of it."""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import diffusers  # noqa: F401  (a lazy module: the pipeline classes load on first use)

from .. import motion
from ..renderer import (
    ProgressFn,
)
from ..vocabulary import Phase, Progress

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FrameArray = npt.NDArray[np.uint8]

log = logging.getLogger(__name__)


# --- Stable Video Diffusion ----------------------------------------------------------------------
#
# Method (docs/svd.md has the long version): the photo is centre-cropped to SVD's working size for
# the output's aspect; SVD-XT makes `frames_per_pass` (25) frames a pass, so a clip is a chain of
# passes, each conditioned on a frame of the one before; consecutive passes overlap by
# `overlap + 1` frames that are cross-faded; every pass after the first has its colour statistics
# matched to the first pass's; the camera path of the motion engine then crops and resizes every
# frame to the exact output size.

SVD_PASS_SEAM_FRACTION = 0.16
"""Overlap between passes as a fraction of the frames a pass makes (4 of SVD-XT's 25)."""

PROGRESS_WEIGHTS = (85.0, 10.0, 5.0)
"""Shares of the 0-100 scale: denoising, VAE decoding, camera path + encoding (an estimate of
their share of the time on a GPU at 1024x576; see docs/svd.md)."""

BYTES_PER_DECODED_PIXEL = 2048
"""Rough peak memory of the temporal VAE decoder per output pixel and frame in fp16 (the
full-resolution up-block holds several 128-channel activations); doubled in fp32."""


@dataclass(frozen=True)
class SVDMotion:
    """SVD's own conditioning for a preset: how much things move, how far from the photo; and
    for the passes that continue a clip (conditioned on a generated frame, their first frames
    pinned to the previous pass) a calmer bucket and a lower guidance ceiling, which is what
    keeps long SVD chains from over-sharpening and drifting (docs/svd.md, "Chaining passes")."""

    motion_bucket_id: int
    noise_aug_strength: float
    chain_bucket: int
    chain_max_guidance: float


SVD_PRESET_MOTION: dict[str, SVDMotion] = {
    # A living photo: the camera barely moves (a slow push-in of a few percent), SVD's own
    # motion carries the clip; little noise augmentation keeps it close to the photo.
    "micro": SVDMotion(90, 0.02, 60, 2.0),
    # Camera moves: the path supplies the travel, SVD adds life; enough noise augmentation that
    # SVD is free to move the scene, a moderate bucket so it does not pan on its own.
    "pan_l": SVDMotion(110, 0.05, 90, 2.5),
    "pan_r": SVDMotion(110, 0.05, 90, 2.5),
    "tilt_up": SVDMotion(110, 0.05, 90, 2.5),
    "tilt_down": SVDMotion(110, 0.05, 90, 2.5),
    "dolly_in": SVDMotion(120, 0.06, 100, 2.5),
}
_DEFAULT_SVD_MOTION = SVDMotion(110, 0.05, 90, 2.5)

FIRST_PASS_MAX_GUIDANCE = 3.0
"""diffusers' and Stability's default guidance ceiling (the ramp runs from 1.0 at frame 0)."""

SVD_GENERATION_FPS = 6.0
"""The rate SVD generates at: SVD-XT's tuned conditioning (Stability's sampling script uses
fps_id 6, diffusers' pipeline defaults to 7 and subtracts 1); the output rate is made by
motion-compensated interpolation (fanslymotion/interpolate.py)."""


def svd_motion(preset: str, strength: float) -> tuple[int, float]:
    """(motion_bucket_id, noise_aug_strength) for a preset; strength 0.5 is the preset's bucket,
    0 a quarter of it and 1 1.75 times it (capped at 255)."""
    params = SVD_PRESET_MOTION.get(preset, _DEFAULT_SVD_MOTION)
    scale = 0.25 + 1.5 * min(1.0, max(0.0, strength))
    bucket = max(1, min(255, round(params.motion_bucket_id * scale)))
    return bucket, params.noise_aug_strength


def svd_chain_motion(preset: str, strength: float) -> tuple[int, float]:
    """(motion_bucket_id, max guidance) of the passes after the first, scaled by strength as
    `svd_motion` scales the first pass's bucket."""
    params = SVD_PRESET_MOTION.get(preset, _DEFAULT_SVD_MOTION)
    scale = 0.25 + 1.5 * min(1.0, max(0.0, strength))
    return max(1, min(255, round(params.chain_bucket * scale))), params.chain_max_guidance


def svd_noise_aug(noise_aug: float, width: int, height: int) -> float:
    """Noise augmentation at a working size: SVD-XT saw 1024x576 (16:9) in training; the further
    a size's aspect is from it, the more noise the conditioning image gets, so the model leans
    less on an image it was not trained to continue (x1.25 for 1:1, x1.5 for 9:16). A heuristic
    to tune with the real weights; 16:9 sizes are unchanged."""
    # The aspect the size was made for (a small landscape size such as 128x64 is 16:9's).
    ratio = motion.aspect_ratio(motion.aspect_of(width, height))
    distance = abs(math.log(ratio / (16 / 9))) / math.log(16 / 9)
    return noise_aug * (1 + 0.25 * min(2.0, distance))


@dataclass(frozen=True)
class PassPlan:
    """How a clip of `frames` output frames at `fps` is made: SVD generates `generated` frames
    at `generation_fps` (conditioned on `conditioning_fps`) in `passes` chained passes (or one
    pass played forward and back when `loop`), interpolated by `factor` to the output rate."""

    frames: int
    fps: int
    factor: int
    generated: int
    passes: int
    loop: bool

    @property
    def generation_fps(self) -> float:
        return self.fps / self.factor

    @property
    def conditioning_fps(self) -> int:
        return max(1, round(self.generation_fps))


def svd_pass_plan(
    frames: int,
    fps: int,
    frames_per_pass: int,
    *,
    preset: str = "",
    generation_fps: float | None = None,
) -> PassPlan:
    """The plan of a clip: the whole interpolation factor that brings the output rate nearest
    `generation_fps` (SVD_GENERATION_FPS by default), the frames SVD must make for it and the
    passes. 12 s at 24 or 30 fps: 73 frames at 6 fps, 4 passes of SVD-XT. `micro` (a living
    photo, where a seam costs more than a repeat) loops one pass back and forth instead of
    chaining when the clip needs more than one."""
    target = generation_fps or SVD_GENERATION_FPS
    factor = max(1, min(16, round(fps / target)))
    generated = (frames - 1 + factor - 1) // factor + 1 if frames > 0 else 0
    passes = svd_segments(generated, frames_per_pass, svd_overlap(frames_per_pass))
    loop = preset == "micro" and passes > 1
    return PassPlan(frames, fps, factor, generated, 1 if loop else passes, loop)


def looped(n_frames: int, total: int) -> list[int]:
    """Indices of a pass of `n_frames` played forward and back (never repeating the turning
    frames) for `total` frames."""
    if n_frames <= 1:
        return [0] * total
    period = 2 * (n_frames - 1)
    return [i % period if i % period < n_frames else period - i % period for i in range(total)]


def svd_working_size(aspect: str, long_side: int) -> tuple[int, int]:
    """SVD's generation size for an aspect: sides multiples of 64 (latents are 1/8 of the image
    and the UNet halves them three times), at most `long_side`, and no more pixels than the
    landscape size `long_side` x (9/16 of it) that SVD-XT was trained at.

    The winner has the most useful pixels: the output's aspect is cropped out of the frame, so
    a size whose aspect is off by a factor q keeps its area divided by q. Ties go to the closer
    aspect. 1024 gives 1024x576, 576x1024, 768x768, 896x640 and 640x896.
    """
    ratio = motion.aspect_ratio(aspect)
    side = max(64, long_side - long_side % 64)
    budget = side * max(64, round(side * 9 / 16 / 64) * 64)
    best = (64, 64)
    best_key = (0.0, -math.inf)
    for w in range(64, side + 1, 64):
        for h in range(64, min(side, budget // w) + 1, 64):
            error = abs(math.log(w / h / ratio))
            key = (round(w * h * math.exp(-error), 6), -error)
            if key > best_key:
                best, best_key = (w, h), key
    return best


def svd_overlap(frames_per_pass: int) -> int:
    """Frames a pass shares with the next beyond the conditioning frame: 4 for SVD-XT's 25.

    The `overlap + 1` shared frames are at most half a pass, so the cross-faded head of a pass
    never reaches its own tail (which the next pass is blended into)."""
    if frames_per_pass < 4:
        raise ValueError(f"SVD needs at least 4 frames a pass to chain them, not {frames_per_pass}")
    return max(1, min(round(frames_per_pass * SVD_PASS_SEAM_FRACTION), frames_per_pass // 2 - 1))


def svd_segments(total: int, frames_per_pass: int, overlap: int) -> int:
    """Passes needed for `total` frames: the first gives `frames_per_pass`, each next one
    `frames_per_pass - 1 - overlap` new frames."""
    fresh = frames_per_pass - 1 - overlap
    return 1 + max(0, -(-(total - frames_per_pass) // fresh))


class _SVDProgress:
    """One 0-100 scale over every denoising step of every pass, the decodes and the encoding;
    the ETA uses measured times (step, decode, frame) once there are some.

    Thread-safe: the render thread reports steps and decodes while the encoding thread reports
    frames. Frames encoded while SVD still generates move the bar at the next step; the phase
    only turns to "encoding" once the last pass is decoded."""

    def __init__(
        self,
        report: ProgressFn,
        *,
        segments: int,
        steps: int,
        frames: int,
        step_seconds: float | None,
    ) -> None:
        self._report = report
        self.segments = segments
        self.steps = steps
        self.frames = frames
        self._steps_done = 0
        self._decoded = 0.0
        self._encoded = 0
        # Seconds a step takes: from the previous jobs until this one has measured its own.
        self._step_s = step_seconds or 0.0
        self._step_measured = step_seconds is not None
        self._decode_s: float | None = None
        self._frame_s: float | None = None
        self._clocks: dict[str, float] = {}
        self._percent = 0.0
        self._lock = threading.RLock()

    @staticmethod
    def _smooth(old: float | None, new: float) -> float:
        return new if old is None else 0.7 * old + 0.3 * new

    def _tick(self, kind: str) -> float:
        """Seconds since the last tick of this kind (-1 for the first one)."""
        now = time.monotonic()
        last = self._clocks.get(kind)
        self._clocks[kind] = now
        return -1.0 if last is None else now - last

    def resumed(self, passes_done: int) -> None:
        """A job that continues from a checkpoint: its finished passes count as done."""
        with self._lock:
            self._steps_done = passes_done * self.steps
            self._decoded = float(passes_done)
            # The pass it continues at (the last one when every pass is done: encoding only).
            self._emit(Phase.RESUMED, min(passes_done + 1, self.segments))

    def mark(self) -> None:
        """Restart the step clock (a new pass starts: image encoding is not a step)."""
        with self._lock:
            self._clocks.pop("step", None)

    def step(self, segment: int, index: int) -> None:
        with self._lock:
            elapsed = self._tick("step")
            if elapsed >= 0:
                old = self._step_s if self._step_measured else None
                self._step_s = self._smooth(old, elapsed)
                self._step_measured = True
            self._steps_done = max(self._steps_done, segment * self.steps + index + 1)
            self._emit(Phase.ANIMATING, segment + 1)

    def decoded(self, segment: int, fraction: float, seconds: float | None = None) -> None:
        with self._lock:
            if seconds is not None:
                self._decode_s = self._smooth(self._decode_s, seconds)
                self._clocks.pop("step", None)
            self._decoded = max(self._decoded, segment + fraction)
            self._emit(Phase.DECODING, segment + 1)

    def encoded(self, done: int) -> None:
        with self._lock:
            elapsed = self._tick("frame")
            if elapsed >= 0:
                self._frame_s = self._smooth(self._frame_s, elapsed)
            self._encoded = max(self._encoded, done)
            if self._decoded >= self.segments:
                self._emit(Phase.ENCODING)

    def eta(self) -> float | None:
        if not self._step_measured:
            return None
        steps_left = self.segments * self.steps - self._steps_done
        decode_s = self._decode_s if self._decode_s is not None else 2 * self._step_s
        frame_s = self._frame_s if self._frame_s is not None else 0.02
        return (
            steps_left * self._step_s
            + (self.segments - self._decoded) * decode_s
            + (self.frames - self._encoded) * frame_s
        )

    def _emit(self, phase: Phase, segment: int = 0) -> None:
        w_denoise, w_decode, w_encode = PROGRESS_WEIGHTS
        percent = (
            w_denoise * self._steps_done / (self.segments * self.steps)
            + w_decode * self._decoded / self.segments
            + w_encode * self._encoded / self.frames
        )
        # The last percent is the flush of the encoder and the move into place.
        self._percent = max(self._percent, min(99.0, percent))
        steps = self.segments if segment else 0
        self._report(Progress(self._percent, phase, segment, steps, self.eta()))


@dataclass
class MemoryFallback:
    """Where a job stands on the out-of-memory fallbacks: level 0 as planned, 1 half the decode
    chunk, 2 model CPU offload as well; one more OOM ends the job with `GPUOutOfMemory`."""

    level: int = 0
    chunk_cap: int | None = None
    last_chunk: int | None = None  # frames per VAE decode call, as last used
