"""The two-pass rolled frames (`affine`): the rolled window's motion, closer than the
0.02 px the rolled Pillow frames hold, and the upright frame at no roll."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from fanslymotion import affine, motion, resample

from .imagetools import textured_photo
from .test_camera import rolled_errors

OUT = (320, 180)


def frames(
    photo: Image.Image,
    path: motion.CameraPath,
    n: int,
    roller: Callable[[resample.YUVSource], Any],
) -> list[np.ndarray]:
    """The luma of `path`'s frames rolled by `roller` (a `frame(box, angle, size)` source),
    from the photo as `motion.render_path_yuv` shrinks it."""
    times = [i / (n - 1) for i in range(n)]
    width, height = motion.shrunk_size(photo.size, path)
    sx, sy = width / photo.width, height / photo.height
    source = roller(resample.YUVSource(photo, (width, height)))
    shots = []
    for box, t in zip(path.boxes(n), times, strict=True):
        x0, y0, x1, y1 = box
        shots.append(source.frame((x0 * sx, y0 * sy, x1 * sx, y1 * sy), path.roll(t), OUT))
    return [f[: OUT[1]] for f in shots]


def test_two_pass_rolled_frames_follow_the_rolled_window() -> None:
    photo = textured_photo(1200, 800, seed=1, scale=1.5)
    path = motion.CameraPath("micro", 0.5, photo.size, OUT, seed=11, roll=True)
    ours = frames(photo, path, 16, affine.RolledSource)
    errors = rolled_errors(ours, path, OUT)
    # 0.0117 px measured (0.0141 by the float strips); the shears before held 0.0191.
    assert max(errors) <= 0.016, max(errors)
    # The frames here are the renderer's.
    rendered = motion.render_path_yuv(photo, path, 16, threads=0)
    assert all(np.array_equal(a, b[: OUT[1]]) for a, b in zip(ours, rendered, strict=True))


def test_two_pass_at_no_roll_is_the_upright_frame() -> None:
    planes = resample.YUVSource(textured_photo(600, 400, seed=2, scale=1.5))
    box = (50.3, 40.7, 50.3 + 480.4, 40.7 + 270.225)
    upright = planes.frame(box, OUT)
    level = affine.RolledSource(planes).frame(box, 0.0, OUT)
    difference = np.abs(upright.astype(int) - level)
    assert difference.max() <= 1 and (difference == 0).mean() > 0.99


def test_a_frames_planes_share_their_sloped_tables() -> None:
    # The luma and both chroma planes of a rolled frame ask for the same two tables: filled
    # once, and equal to a table filled afresh; another scale gets its own.
    first = affine.sloped_table(1.21, 0.0123, 0.5)
    again = affine.sloped_table(1.21, 0.0123, 0.5)
    assert again[0] is first[0]
    other = affine.sloped_table(1.22, 0.0123, 0.5)
    assert other[0] is not first[0]
    for k in range(4):  # more keys than are kept: the first is filled again, the same
        affine.sloped_table(1.0 + k / 10, -0.02)
    refilled = affine.sloped_table(1.21, 0.0123, 0.5)
    assert refilled[0] is not first[0]
    np.testing.assert_array_equal(refilled[0], first[0])
    assert refilled[1:] == first[1:]
