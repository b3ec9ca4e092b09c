"""One rolled 720p I420 frame on one thread against the upright frame (the baseline): the
two passes of `affine`, CPU ms, median of --repeat runs, interleaved. (The three shears that
rendered rolled frames before, `rotation.py`, were 1.7x the two passes: docs/roll-two-pass.md.)

The photo: scikit-image's astronaut upscaled to 2086x1390 (Lanczos), a 1800x1013 box, a roll
of --degrees. Accuracy against the exact rolled window: tests/test_affine.py.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fanslymotion import affine, resample  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--degrees", type=float, default=0.8)
    parser.add_argument(
        "--moving", action="store_true", help="a box that pans and zooms from run to run"
    )
    args = parser.parse_args()
    from skimage import data

    cv2.setNumThreads(1)
    astronaut = np.asarray(data.astronaut())  # type: ignore[no-untyped-call]
    photo = Image.fromarray(astronaut).resize((2086, 1390), Image.Resampling.LANCZOS)
    planes = resample.YUVSource(photo)
    two = affine.RolledSource(planes)
    size = (1280, 720)
    angle = math.radians(args.degrees)

    def box_at(i: int) -> tuple[float, float, float, float]:
        step = i if args.moving else 0  # a clip's box moves: the intermediates' sizes change
        x0, y0, width = 143.2 + 0.37 * step, 188.6 + 0.21 * step, 1800.0 - 1.3 * step
        return (x0, y0, x0 + width, y0 + width * 720 / 1280)

    cases: dict[str, Callable[[int], np.ndarray]] = {
        "upright": lambda i: planes.frame(box_at(i), size),
        "rolled, two-pass (affine)": lambda i: two.frame(box_at(i), angle, size),
    }
    for run in cases.values():  # compile, and the per-thread buffers
        run(0)
        run(0)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(args.repeat):
        for name, run in cases.items():
            start = time.thread_time()
            run(i)
            times[name].append((time.thread_time() - start) * 1e3)
    for name, values in times.items():
        print(f"{name:28s} {statistics.median(values):6.2f} ms CPU (min {min(values):.2f})")
    ratio = statistics.median(times["rolled, two-pass (affine)"]) / statistics.median(
        times["upright"]
    )
    print(f"rolled / upright: {ratio:.2f}x")


if __name__ == "__main__":
    main()
