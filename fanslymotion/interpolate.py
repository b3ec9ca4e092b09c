"""Motion-compensated frame interpolation: more frames per second from fewer.

For each pair of neighbouring frames, dense optical flow is measured both ways (OpenCV's DIS
flow). A frame at time t in (0, 1) between them is made by following the flow back to each
neighbour (a fixed-point search for the source point of every output pixel, exact for smooth
flows such as a zoom, not only for a constant shift), sampling both neighbours there, and
blending them by time and by how well each neighbour's flow is confirmed by the other's
(forward/backward consistency): a region that one frame hides is taken from the frame that
shows it.

`interpolate(frames, factor)` streams: it holds two source frames (and their flows) at a time.
From n frames it yields (n - 1) * factor + 1: every source frame, with factor - 1 made frames
between each pair. Pure engine: numpy and OpenCV, nothing of the service.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from .errors import InvalidParams

log = logging.getLogger(__name__)

Frame = npt.NDArray[np.uint8]
Flow = npt.NDArray[np.float32]

MAX_FACTOR = 16
# Flow is measured on frames no wider than this (and scaled back up): DIS's cost grows with
# pixels while the motion it must find grows only with width; a smooth camera motion loses
# nothing measurable at half of 1080p.
FLOW_MAX_WIDTH = 960
# Forward/backward disagreement (in pixels of the full frame) at which a neighbour's weight
# falls to 1/e: below it the flow is trusted, well above it the region is occluded.
CONSISTENCY_PX = 1.0
# Fixed-point steps when following the flow back from the in-between time; each step halves the
# error for flows whose gradient is below one half per pixel (any sensible camera motion).
_SEARCH_STEPS = 3
# Keeps the blend defined where both neighbours disagree (both weights near zero).
_FLOOR = 1e-4


def check_factor(factor: int) -> int:
    """A whole factor from 1 (no frames made) to `MAX_FACTOR`."""
    if isinstance(factor, bool) or not isinstance(factor, int) or not 1 <= factor <= MAX_FACTOR:
        raise InvalidParams(
            f"the interpolation factor must be a whole number from 1 to {MAX_FACTOR}"
        )
    return factor


def output_count(n_frames: int, factor: int) -> int:
    """How many frames `interpolate` yields from `n_frames` at `factor`."""
    return 0 if n_frames <= 0 else (n_frames - 1) * check_factor(factor) + 1


def rate_plan(fps: int, near: float) -> tuple[int, int]:
    """(made fps, factor) with made * factor == fps: the whole divisor of `fps` nearest `near`
    (ties go to the higher rate), e.g. (24, 12) -> (12, 2), (30, 12) -> (10, 3). For a
    renderer that makes frames at about `near` fps and interpolates up to `fps`."""
    if isinstance(fps, bool) or not isinstance(fps, int) or fps < 1:
        raise InvalidParams("fps must be a whole number of at least 1")
    rates = [r for r in range(1, fps + 1) if fps % r == 0 and fps // r <= MAX_FACTOR]
    made = min(rates, key=lambda r: (abs(r - near), -r))
    return made, fps // made


def interpolate(frames: Iterable[npt.ArrayLike], factor: int) -> Iterator[Frame]:
    """Yield the source frames with `factor - 1` motion-compensated frames between each pair.

    Frames are RGB (or any 3-channel) uint8 arrays of shape (h, w, 3), all the same size.
    Arguments are checked at the call; frames as they arrive.
    """
    return _interpolate(iter(frames), check_factor(factor))


def _interpolate(frames: Iterator[npt.ArrayLike], factor: int) -> Iterator[Frame]:
    previous: _Source | None = None
    for index, raw in enumerate(frames):
        current = _Source.of(_check_frame(raw, index, None if previous is None else previous.frame))
        if previous is not None and factor > 1:
            pair = Pair.measure(previous, current)
            for k in range(1, factor):
                yield pair.at(k / factor)
        yield current.frame
        previous = current


def _check_frame(raw: npt.ArrayLike, index: int, previous: Frame | None) -> Frame:
    frame = np.asarray(raw)
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise InvalidParams(
            f"frame {index}: frames must be uint8 arrays of shape (h, w, 3),"
            f" got {frame.dtype} {frame.shape}"
        )
    if previous is not None and frame.shape != previous.shape:
        raise InvalidParams(
            f"frame {index} is {frame.shape[1]}x{frame.shape[0]}, the first was"
            f" {previous.shape[1]}x{previous.shape[0]}"
        )
    return frame


@dataclass(frozen=True)
class _Source:
    """A source frame with the grey image its flow is measured on (possibly smaller)."""

    frame: Frame
    grey: Frame

    @classmethod
    def of(cls, frame: Frame) -> _Source:
        grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        width = frame.shape[1]
        if width > FLOW_MAX_WIDTH:
            height = max(1, round(frame.shape[0] * FLOW_MAX_WIDTH / width))
            grey = cv2.resize(grey, (FLOW_MAX_WIDTH, height), interpolation=cv2.INTER_AREA)
        return cls(frame, np.ascontiguousarray(grey))


def dense_flow(a: Frame, b: Frame) -> Flow:
    """DIS optical flow from grey image `a` to `b`: (h, w, 2) float32, a(p) ~ b(p + flow(p))."""
    dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    # The output array is only filled (DIS starts from zero unless told to use it).
    flow = np.zeros((*a.shape[:2], 2), np.float32)
    return np.asarray(dis.calc(a, b, flow), dtype=np.float32)


class Pair:
    """Two neighbouring frames with their flows both ways and each one's trust map."""

    def __init__(self, first: Frame, second: Frame, flow01: Flow, flow10: Flow) -> None:
        self.first = first
        self.second = second
        h, w = first.shape[:2]
        self.flow01 = _to_size(flow01, w, h)
        self.flow10 = _to_size(flow10, w, h)
        xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        self.grid = np.dstack([xs, ys])
        self.trust0 = self._trust(self.flow01, self.flow10)
        self.trust1 = self._trust(self.flow10, self.flow01)

    @classmethod
    def measure(cls, first: _Source, second: _Source) -> Pair:
        return cls(
            first.frame,
            second.frame,
            dense_flow(first.grey, second.grey),
            dense_flow(second.grey, first.grey),
        )

    def _trust(self, there: Flow, back: Flow) -> npt.NDArray[np.float32]:
        """How far following `there` then `back` lands from the start: near 0 where the pixel
        is seen in both frames, large where the other frame hides it. As a weight in (0, 1]."""
        returned = self._sample(back, self.grid + there)
        miss = np.sum((there + returned) ** 2, axis=2)
        trust: npt.NDArray[np.float32] = np.exp(-miss / CONSISTENCY_PX**2).astype(np.float32)
        return trust

    def _sample(self, image: npt.NDArray[Any], where: Flow) -> npt.NDArray[Any]:
        return np.asarray(
            cv2.remap(
                image,
                where[..., 0],
                where[..., 1],
                cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_REPLICATE,
            )
        )

    def _source_points(self, flow: Flow, t: float) -> Flow:
        """For every output pixel x, the point p of the frame with `flow` where p + t*flow(p) = x."""
        points = self.grid - t * flow
        for _ in range(_SEARCH_STEPS):
            points = self.grid - t * self._sample(flow, points)
        return points

    def at(self, t: float) -> Frame:
        """The frame at time t in (0, 1) between the two."""
        p0 = self._source_points(self.flow01, t)
        p1 = self._source_points(self.flow10, 1.0 - t)
        w0 = (1.0 - t) * self._sample(self.trust0, p0) + _FLOOR * (1.0 - t)
        w1 = t * self._sample(self.trust1, p1) + _FLOOR * t
        warped0 = self._sample(self.first, p0).astype(np.float32)
        warped1 = self._sample(self.second, p1).astype(np.float32)
        total = w0 + w1
        blend = (warped0 * w0[..., None] + warped1 * w1[..., None]) / total[..., None]
        made: Frame = np.clip(blend + 0.5, 0, 255).astype(np.uint8)
        return made


def _to_size(flow: Flow, width: int, height: int) -> Flow:
    """A flow measured on a smaller image, resized (and its vectors scaled) to width x height."""
    fh, fw = flow.shape[:2]
    if (fw, fh) == (width, height):
        return flow
    resized = cv2.resize(flow, (width, height), interpolation=cv2.INTER_LINEAR)
    resized[..., 0] *= width / fw
    resized[..., 1] *= height / fh
    return np.asarray(resized, dtype=np.float32)


def blend(frames: Iterable[npt.ArrayLike], factor: int) -> Iterator[Frame]:
    """The plain cross-fade baseline (no motion): for comparisons in bench/interpolate.py."""
    f = check_factor(factor)
    previous: Frame | None = None
    for index, raw in enumerate(frames):
        current = _check_frame(raw, index, previous)
        if previous is not None:
            a, b = previous.astype(np.float32), current.astype(np.float32)
            for k in range(1, f):
                t = k / f
                yield np.clip(a * (1 - t) + b * t + 0.5, 0, 255).astype(np.uint8)
        yield current
        previous = current
