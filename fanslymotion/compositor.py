"""The story compositor: each shot's frames in, the story's frames out, in one stream.

Shot i's frames come from `open_shot(i)` (any renderer's), asked for only when the shot
begins, so at most two shots are open at once (during a transition) and memory does not grow
with the number of shots. Each shot's frames get the look and its caption (faded in and out
with the shot); transitions blend the end of one shot with the start of the next; the
watermark goes over the result. `write` streams them into one encoder with the music muxed in
the same ffmpeg run. Pure engine.

The story is composed in I420 (`ycbcr`), the encoder's own format: the camera-motion engine
gives its shots so (`motion.render_path_yuv`), RGB shots (SVD's clips, stills) are converted
as they come, after their look, and the captions and watermark are converted once each. An
I420 frame is half the bytes of RGB to blend and to pipe, and ffmpeg converts nothing. The
RGB composition (`i420=False`) stays for comparison: the same story, up to rounding.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from . import looks, overlay, video, ycbcr
from .errors import RenderError
from .story import Story, Timeline, TransitionKind

log = logging.getLogger(__name__)

Frame = npt.NDArray[np.uint8]
"""RGB (h, w, 3) or I420 (h * 3 / 2, w), uint8."""
OpenShot = Callable[[int], Iterable[Frame]]
Drawing = overlay.Patch | overlay.PlanePatch

CAPTION_FADE = 0.35
"""Seconds over which a caption fades in at its shot's start and out at its end."""


def weight(j: int, k: int) -> float:
    """How far transition frame j (0..k-1) of k is from the old shot (0) to the new (1)."""
    return (j + 1) / (k + 1)


def blend(kind: TransitionKind, old: Frame, new: Frame, p: float) -> Frame:
    """One frame of a transition at p (0: all old, 1: all new), RGB or I420."""
    if kind == "crossfade":
        return np.asarray(cv2.addWeighted(old, 1.0 - p, new, p, 0.0), dtype=np.uint8)
    if kind == "fade":  # through black: the old shot darkens to black, the new one rises
        source, gain = (old, 1.0 - 2.0 * p) if p < 0.5 else (new, 2.0 * p - 1.0)
        return darker(source, gain)
    if kind == "slide":  # the new shot enters from the right and pushes the old one out left
        return _slide(old, new, p)
    return new


def darker(frame: Frame, gain: float) -> Frame:
    """`frame` toward black by `gain` (1: as it is, 0: black). In I420 that is video black,
    Y 16 and Cb, Cr 128, which each plane nears as RGB nears zero."""
    if frame.ndim == 3:
        return np.asarray(cv2.convertScaleAbs(frame, alpha=gain), dtype=np.uint8)
    height = frame.shape[0] * 2 // 3  # Cb and Cr (both black at 128) are the rows below Y
    luma_black, chroma_black = ycbcr.BLACK[0], ycbcr.BLACK[1]
    out = np.empty_like(frame)
    for rows, black in ((slice(0, height), luma_black), (slice(height, None), chroma_black)):
        out[rows] = cv2.convertScaleAbs(frame[rows], alpha=gain, beta=black * (1.0 - gain))
    return out


def _slide(old: Frame, new: Frame, p: float) -> Frame:
    """The old frame pushed left by p of its width, the new one following it. In I420 the
    luma moves by an even shift and Cb and Cr by half of it, so the planes stay aligned."""
    out = np.empty_like(old)
    if old.ndim == 3:
        _shifted(old, new, out, round(p * old.shape[1]))
        return out
    shift = 2 * round(p * old.shape[1] / 2)
    steps = (shift, shift // 2, shift // 2)
    for o, n, dst, step in zip(
        ycbcr.planes(old), ycbcr.planes(new), ycbcr.planes(out), steps, strict=True
    ):
        _shifted(o, n, dst, step)
    return out


def _shifted(old: Frame, new: Frame, out: Frame, shift: int) -> None:
    width = old.shape[1]
    shift = min(width, max(0, shift))
    out[:, : width - shift] = old[:, shift:]
    out[:, width - shift :] = new[:, :shift]


class _Shots:
    """The shots' frames with the look and captions applied, opened one after another, in
    the story's format (RGB frames converted to I420 for an I420 story)."""

    def __init__(
        self,
        story: Story,
        line: Timeline,
        size: tuple[int, int],
        open_shot: OpenShot,
        look: str,
        i420: bool,
    ):
        self.story = story
        self.line = line
        self.open_shot = open_shot
        self.look = look
        self.i420 = i420
        self.captions = [_drawn(overlay.caption(s.caption, size), i420) for s in story.shots]
        self.fade = max(1, round(CAPTION_FADE * line.fps))

    def frames(self, i: int) -> Iterator[Frame]:
        n = self.line.shot_frames[i]
        patch = self.captions[i]
        count = 0
        for frame in self.open_shot(i):
            if count >= n:
                raise RenderError(f"shot {i + 1} gave more than its {n} frames")
            out = self.prepared(frame)
            if patch is not None:
                edge = min(count + 1, n - count)
                out = patch.blend(out, min(1.0, edge / self.fade))
            yield out
            count += 1
        if count != n:
            raise RenderError(f"shot {i + 1} gave {count} frames, not {n}")

    def prepared(self, frame: Frame) -> Frame:
        """A shot's frame in the look and the story's format."""
        if frame.ndim == 3:
            frame = looks.apply(frame, self.look)
            return ycbcr.from_rgb(frame) if self.i420 else frame
        if not self.i420:
            raise ValueError("I420 shot frames need an I420 story")
        if self.look != "natural":
            raise ValueError("I420 shot frames come in their look (shots_looked)")
        return frame


def _drawn(patch: overlay.Patch | None, i420: bool) -> Drawing | None:
    """A caption or watermark in the story's format: converted once, not per frame."""
    return patch.i420() if patch is not None and i420 else patch


def compose(
    story: Story,
    size: tuple[int, int],
    fps: int,
    open_shot: OpenShot,
    *,
    shots_looked: bool = False,
    i420: bool = True,
) -> Iterator[Frame]:
    """The story's frames, `story.timeline(fps).frames` of them, of `size` (width, height):
    I420 frames, or RGB ones with `i420=False`. Shots give RGB frames, or I420 ones to an I420
    story with `shots_looked`: the shots' frames come with the story's look (the camera-motion
    engine gives it to each shot's photo, once, rather than to each of its frames)."""
    line = story.timeline(fps)
    look = "natural" if shots_looked else story.look
    shots = _Shots(story, line, size, open_shot, look, i420)
    mark = story.watermark
    patch = None if mark is None else overlay.watermark(mark.text, mark.png, mark.corner, size)
    drawn = _drawn(patch, i420)
    opacity = 0.0 if mark is None else mark.opacity
    for frame in _sequence(story, line, shots):
        yield frame if drawn is None else drawn.blend(frame, opacity)


def _sequence(story: Story, line: Timeline, shots: _Shots) -> Iterator[Frame]:
    current = shots.frames(0)
    entered = 0  # frames of the current shot already used by the transition into it
    for i, n in enumerate(line.shot_frames):
        leaving = line.overlaps[i] if i < len(line.overlaps) else 0
        for _ in range(n - entered - leaving):
            yield next(current)
        if leaving == 0:
            if i + 1 < len(line.shot_frames):
                _close(current)
                current = shots.frames(i + 1)
            entered = 0
            continue
        following = shots.frames(i + 1)
        kind = story.transition(i).kind
        for j in range(leaving):
            yield blend(kind, next(current), next(following), weight(j, leaving))
        _close(current)
        current, entered = following, leaving
    # The last shot must end exactly here; a longer one is an error of its renderer.
    for extra in current:
        del extra
    _close(current)


def _close(frames: Iterator[Frame]) -> None:
    close = getattr(frames, "close", None)
    if close is not None:
        close()


def write(
    story: Story,
    open_shot: OpenShot,
    path: Path,
    *,
    size: tuple[int, int],
    fps: int,
    music: video.AudioTrack | None = None,
    crf: int = 20,
    preset: str = "veryfast",
    metadata: Mapping[str, str] | None = None,
    on_frame: Callable[[int], None] | None = None,
    check: Callable[[], None] | None = None,
    shots_looked: bool = False,
    i420: bool = True,
) -> int:
    """Compose the story and encode it to `path` (with `music` muxed in); returns the frames.
    I420 frames go to x264 as they are; RGB ones (`i420=False`) are converted by ffmpeg."""
    width, height = size
    return video.encode(
        compose(story, size, fps, open_shot, shots_looked=shots_looked, i420=i420),
        path,
        width=width,
        height=height,
        fps=fps,
        crf=crf,
        preset=preset,
        metadata=metadata,
        on_frame=on_frame,
        check=check,
        audio=music,
        pix_fmt="yuv420p" if i420 else "rgb24",
    )
