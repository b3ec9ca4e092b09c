"""Camera paths over frames that already move (SVD's): frame i cropped at its time on the
path and resized to the output. Pure engine, as `motion` is."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
from PIL import Image

from .errors import InvalidParams
from .motion import (
    FRAME_FILTER,
    CameraPath,
    FramePath,
    check_frames,
    check_preset,
    check_size,
    check_strength,
)


def apply_camera(
    frames: Iterable[np.ndarray | Image.Image],
    *,
    out_size: tuple[int, int],
    n_frames: int,
    preset: str,
    strength: float,
) -> Iterator[np.ndarray]:
    """Apply a camera path over a sequence of frames (e.g. SVD output): frame i is cropped at
    t = i / (n_frames - 1) and resized to `out_size` (enlarging when it must).

    All frames must have the same size, and there must be exactly `n_frames` of them.
    """
    n = check_frames(n_frames)
    check_preset(preset)
    s = check_strength(strength)
    size = check_size("output size", out_size)
    return _apply(iter(frames), size, n, lambda src: CameraPath(preset, s, src, size))


def apply_path(
    frames: Iterable[np.ndarray | Image.Image], path: FramePath, n_frames: int
) -> Iterator[np.ndarray]:
    """`apply_camera` with a path already fitted to the frames' size (e.g. SVD's working crop
    of an aimed or keyframed shot, `camera.svd_framing`)."""
    n = check_frames(n_frames)
    size = (path.out_w, path.out_h)

    def fitted(src: tuple[int, int]) -> FramePath:
        if src != (path.src_w, path.src_h):
            raise InvalidParams(
                f"frames are {src[0]}x{src[1]}, the path was fitted to {path.src_w}x{path.src_h}"
            )
        return path

    return _apply(iter(frames), size, n, fitted)


def _as_image(frame: np.ndarray | Image.Image) -> Image.Image:
    if isinstance(frame, Image.Image):
        return frame if frame.mode == "RGB" else frame.convert("RGB")
    array = np.asarray(frame)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise InvalidParams(
            f"frames must be RGB uint8 arrays of shape (h, w, 3), got {array.dtype} {array.shape}"
        )
    return Image.fromarray(array)


def _apply(
    frames: Iterator[np.ndarray | Image.Image],
    size: tuple[int, int],
    n_frames: int,
    fit: Callable[[tuple[int, int]], FramePath],
) -> Iterator[np.ndarray]:
    path: FramePath | None = None
    count = 0
    for frame in frames:
        image = _as_image(frame)
        if path is None:
            path = fit(image.size)
        elif image.size != (path.src_w, path.src_h):
            raise InvalidParams(
                f"frame {count} is {image.width}x{image.height},"
                f" the first was {path.src_w}x{path.src_h}"
            )
        if count >= n_frames:
            raise InvalidParams(f"more frames than the {n_frames} announced")
        box = path.box(count / (n_frames - 1) if n_frames > 1 else 0.0)
        yield np.asarray(image.resize(size, FRAME_FILTER, box=box))
        count += 1
    if count != n_frames:
        raise InvalidParams(f"got {count} frames, {n_frames} were announced")
