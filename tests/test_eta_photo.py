"""ETA from the work (issue 24, item 8): real renders on the camera-motion engine of photos of
several sizes at small output sizes. The estimate learned from some of them, counting the photo's
pixels (decode and shrink) besides output pixels and frames, is within 25 % of the measured time
of the others; and a running render's rest makes no jump at its first progress report."""

from __future__ import annotations

import io
import statistics
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from fanslymotion import camera, subject
from fanslymotion.eta import Estimator, Kind, rest_of
from fanslymotion.renderer import MotionRenderer, RenderSpec, RenderTask
from fanslymotion.vocabulary import Phase, Progress

from .conftest import make_settings, photo_bytes

# Serial: the ETA is held to a quarter of the measured render, learnt from renders that need
# the CPU to themselves (a busy neighbour made one 40 % off).
pytestmark = pytest.mark.serial

Report = tuple[float, Progress]  # seconds since the render began, the report
_SHOTS: dict[Path, camera.Shot] = {}  # each test photo's aimed shot, by its path


def _render(
    renderer: MotionRenderer, tmp_path: Path, size: tuple[int, int], fps: int
) -> tuple[float, list[Report]]:
    """Seconds the render of a `size` photo took (as the queue measures it) and its reports."""
    name = f"{size[0]}x{size[1]}-{fps}"
    source = tmp_path / f"{size[0]}x{size[1]}.jpg"
    if source not in _SHOTS:  # a textured photo blown up: quick to make, real to decode
        image = Image.open(io.BytesIO(photo_bytes(400, 300))).resize(size)
        image.save(source, quality=90)
        # Aimed as the service aims a job, at its create and off the render's clock: a render
        # without a subject would look for one itself, and only the first time for each photo
        # (the subject memo), so that render would stand apart from the rest.
        _SHOTS[source] = camera.aim(camera.Shot(), subject.find_subject(image))
    spec = RenderSpec(3, "360p", "pan_l", fps=fps, seed=1, shot=_SHOTS[source])
    task = RenderTask(name, spec, source, tmp_path / f"{name}.mp4")
    reports: list[Report] = []
    began = time.monotonic()
    result = renderer.render(
        task, lambda p: reports.append((time.monotonic() - began, p)), threading.Event()
    )
    seconds = time.monotonic() - began
    assert result.frames == 3 * fps and (tmp_path / f"{name}.mp4").stat().st_size > 0
    return seconds, reports


def _kind(size: tuple[int, int], fps: int) -> Kind:
    return Kind("motion", "360p", 3 * fps, 25, size[0] * size[1])


def test_a_queue_of_mixed_photo_sizes_is_estimated_within_a_quarter(tmp_path: Path) -> None:
    renderer = MotionRenderer(make_settings(tmp_path / "data"), "test")
    renderer.load()
    learned = [((1000, 750), 1), ((8000, 6000), 1), ((1000, 750), 4), ((6000, 4500), 4)]
    queue = [((3000, 2250), 4), ((6000, 4500), 1), ((8000, 6000), 4), ((2000, 1500), 2)]
    for size, fps in learned:  # off the clock: a process's first renders were up to 30 % slower
        _render(renderer, tmp_path, size, fps)
    estimator = Estimator()
    # Each learned kind three times, as a service sees kinds again: a median, not a fluke.
    # A render's own time swings by 15 % either way on a shared machine (a plain decode of
    # the 8000x6000 photo does too) and drifts with the machine's load, so each queued job's
    # time is the mean of two renders, taken in the rounds between the learned ones.
    times: dict[tuple[tuple[int, int], int], list[float]] = {job: [] for job in queue}
    for round_ in range(3):
        for size, fps in learned:
            estimator.learn(_kind(size, fps), _render(renderer, tmp_path, size, fps)[0])
        if round_:  # after the first round: each learned kind is known by then
            for job in queue:
                times[job].append(_render(renderer, tmp_path, *job)[0])
    measured = {job: statistics.fmean(seconds) for job, seconds in times.items()}
    for (size, fps), seconds in measured.items():
        estimate = estimator.estimate(_kind(size, fps), 0.0)
        assert abs(estimate - seconds) <= 0.25 * seconds, (size, fps, estimate, seconds)
    # The same kinds without the photo's size cannot tell these jobs apart: one guess for all.
    blind = Estimator()
    for size, fps in learned:
        blind.learn(Kind("motion", "360p", 3 * fps, 25), estimator.estimate(_kind(size, fps), 0))
    assert len({blind.estimate(Kind("motion", "360p", 12, 25), 0.0) for _ in queue}) == 1
    spread = [estimator.estimate(_kind(size, 4), 0.0) for size in ((1000, 750), (8000, 6000))]
    assert spread[1] > 1.3 * spread[0]  # the photo's pixels count


def test_the_rest_of_a_render_does_not_jump_at_its_first_progress_report(
    tmp_path: Path,
) -> None:
    """A big photo at a small output: most of the first report's time is the photo's decode
    and shrink, which a rate taken from it would count again for every frame."""
    renderer = MotionRenderer(make_settings(tmp_path / "data"), "test")
    renderer.load()
    _render(renderer, tmp_path, (640, 480), 1)
    size = (8000, 6000)
    # What the estimator learns of this kind on this machine: the median of several renders, as
    # the service keeps, taken around the one watched so that a drift in the machine's load
    # (CI's) counts on both sides. One render alone was once 25 % slower than the next.
    estimator = Estimator()
    for _ in range(2):
        estimator.learn(_kind(size, 2), _render(renderer, tmp_path, size, 2)[0])
    seconds, reports = _render(renderer, tmp_path, size, 2)
    for _ in range(2):
        estimator.learn(_kind(size, 2), _render(renderer, tmp_path, size, 2)[0])
    estimate = estimator.estimate(_kind(size, 2), 0.0)
    rendering = [(at, p) for at, p in reports if p.phase == Phase.RENDERING]
    assert len(rendering) >= 3
    before = rest_of(Progress(0.0, Phase.PREPARING), rendering[0][0], estimate)
    assert before is not None
    finishes = [at + (rest_of(p, at, estimate) or 0.0) for at, p in rendering]
    # Each report's idea of the end, against the one just before it and the real end.
    previous = rendering[0][0] + before
    for finish in finishes:
        assert abs(finish - previous) <= 0.25 * seconds, (finishes, seconds)
        assert abs(finish - seconds) <= 0.35 * seconds, (finishes, seconds)
        previous = finish
