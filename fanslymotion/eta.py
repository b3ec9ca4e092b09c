"""Render-time estimates learned from the renders the service has measured.

A render's time depends on the renderer, the output size, the frame count and (for SVD) the
denoising steps. The estimator keeps the last measured times of each such kind of job (loaded
from the database at start, so it survives a restart) and answers with their median. A kind
never measured is scaled from the nearest measured one of the same renderer, by pixels x frames
(x steps for SVD), and only when nothing of that renderer was measured does the renderer's own
first guess serve.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np

from . import motion
from .vocabulary import Progress

MAX_KINDS = 500
"""Kinds of job remembered (with photo sizes in them, kinds are many); the least recent go."""

KEEP = 20
"""Measured times kept per kind of job: enough for a stable median, recent enough to follow a
machine that got faster (a compiled model) or slower (a shared box)."""


@dataclass(frozen=True)
class Kind:
    """What decides a render's time."""

    renderer: str
    resolution: str
    frames: int
    steps: int
    photo_pixels: int = 0
    """The input photo's width x height (0: not known): its decode and shrink cost time too."""

    def work(self) -> float:
        """A size of the job in arbitrary units: output pixels x frames (x steps for SVD)."""
        short = motion.RESOLUTIONS.get(self.resolution, 720)
        pixels = short * short * 16 / 9
        return pixels * self.frames * (self.steps if self.renderer == "svd" else 1)


class Estimator:
    """Median of the measured render times per `Kind`, with the nearest neighbour as fallback."""

    def __init__(self) -> None:
        self._seconds: dict[Kind, deque[float]] = defaultdict(lambda: deque(maxlen=KEEP))
        # Answers per kind until the next measurement: every status poll of a waiting job asks
        # for each job ahead of it.
        self._answers: dict[Kind, float] = {}

    def learn(self, kind: Kind, seconds: float) -> None:
        if seconds > 0 and math.isfinite(seconds):
            times = self._seconds.pop(kind, deque(maxlen=KEEP))  # in the order last measured
            times.append(seconds)
            self._seconds[kind] = times
            while len(self._seconds) > MAX_KINDS:  # photo sizes are many: the oldest go
                del self._seconds[next(iter(self._seconds))]
            self._answers.clear()

    def _times(self, kind: Kind) -> list[float]:
        """The times kept of `kind`; with no photo size (0), of that kind with any photo."""
        if kind.photo_pixels:
            return list(self._seconds.get(kind, ()))
        anyone = replace(kind, photo_pixels=0)
        return [
            t for k, v in self._seconds.items() if replace(k, photo_pixels=0) == anyone for t in v
        ]

    def measured(self, kind: Kind) -> int:
        return len(self._times(kind))

    def estimate(self, kind: Kind, first_guess: float | Callable[[], float]) -> float:
        """Seconds `kind` is expected to take; `first_guess` (a value, or a function that gives
        it) when nothing comparable ran."""
        known = self._answers.get(kind)
        if known is not None:
            return known
        times = self._times(kind)
        alike = self._times(replace(kind, photo_pixels=0))
        neighbours = [k for k, v in self._seconds.items() if v and k.renderer == kind.renderer]
        model = _fit([k for k in neighbours if k.photo_pixels], self._seconds)
        if times:
            answer = statistics.median(times)
        elif model is not None and kind.photo_pixels:
            answer = model(kind)
        elif alike:  # the same job on other photos, while there is no model yet
            answer = statistics.median(alike)
        elif neighbours:
            # Nearest by the log of the work ratio: a 720p 6 s job is closer to 720p 8 s than to
            # 360p 6 s. Time scales about linearly with work for both renderers.
            nearest = min(neighbours, key=lambda k: abs(math.log(k.work() / kind.work())))
            answer = statistics.median(self._seconds[nearest]) * kind.work() / nearest.work()
        else:  # the renderer's own guess: not kept, it is no measurement
            return first_guess() if callable(first_guess) else first_guess
        self._answers[kind] = answer
        return answer


def _fit(kinds: list[Kind], seconds: dict[Kind, deque[float]]) -> Callable[[Kind], float] | None:
    """Seconds as a x work + b x photo pixels + c (each term >= 0), fitted by least squares to
    the median time of each measured kind; None until there are three kinds of at least two
    photo sizes and two amounts of work, which is what it takes to tell the terms apart."""
    if len(kinds) < 3 or len({k.photo_pixels for k in kinds}) < 2:
        return None
    if len({k.work() for k in kinds}) < 2:
        return None
    rows = np.array([[k.work(), float(k.photo_pixels), 1.0] for k in kinds])
    scale = rows.max(axis=0)  # columns of like size, for a well-conditioned solve
    y = np.array([statistics.median(seconds[k]) for k in kinds])
    best: tuple[float, np.ndarray] | None = None
    for used in itertools.chain.from_iterable(
        itertools.combinations(range(3), n) for n in (3, 2, 1)
    ):
        cols = list(used)
        coef = np.linalg.lstsq(rows[:, cols] / scale[cols], y, rcond=None)[0]
        if (coef < 0).any():
            continue
        residual = float(np.sum((rows[:, cols] / scale[cols] @ coef - y) ** 2))
        if best is None or residual < best[0]:
            full = np.zeros(3)
            full[cols] = coef / scale[cols]
            best = (residual, full)
    if best is None:
        return None
    a, b, c = (float(v) for v in best[1])
    return lambda k: a * k.work() + b * k.photo_pixels + c


def rest_of(report: Progress, elapsed: float, estimate: float | None) -> float | None:
    """Seconds a running render still needs: its own ETA when it gives one, else its measured
    rate once it has one, else the estimate less the time it ran; None when nothing is known."""
    if report.eta is not None:
        return max(0.0, report.eta)
    left = None if estimate is None else max(0.0, estimate - elapsed)
    if report.percent >= 5.0 and elapsed > 0.5:  # a measured rate beats any estimate
        rate = elapsed * (100.0 - report.percent) / report.percent
        if left is None:
            return rate
        # ...once it is worth something: from 5 % to 25 % it takes over from the estimate
        # bit by bit, so the first report (whose time is mostly the photo's decode) makes no jump.
        weight = min(1.0, (report.percent - 5.0) / 20.0)
        return weight * rate + (1.0 - weight) * left
    return left


def first_free(rests: list[float | None]) -> float | None:
    """Seconds until the first of the running renders ends (0 with none; None when one of them
    is unknown)."""
    known = [rest for rest in rests if rest is not None]
    return None if len(known) < len(rests) else min(known, default=0.0)


def finish_of(
    lanes: int, rests: list[float | None], queue: Iterable[tuple[float | None, float]]
) -> float | None:
    """Seconds until the last job of `queue` is done, the queue served in its order by `lanes`
    renderers (one on a single box, one per live worker in a cluster) busy for `rests` seconds.
    Each queued job is (its own estimate, seconds until its retry backoff ends) and starts when
    the first lane frees, or when its backoff ends. None when anything needed is unknown."""
    if lanes == 0 or None in rests:
        return None
    busy = sorted(rest for rest in rests if rest is not None)
    free = (busy + [0.0] * max(0, lanes - len(busy)))[:lanes]  # idle lanes are free now
    free.sort()
    finish = 0.0
    for own, backoff in queue:
        if own is None:
            return None
        finish = max(free.pop(0), backoff) + own
        free.append(finish)
        free.sort()
    return finish
