"""How one clip is aimed: the shot options of a job, keyframed camera paths, and the warnings a
path earns (a window so small that the photo must be enlarged).

A job's `Shot` holds what the client asked beyond the preset (a `focus` point, a keyframed
`camera`, `loop`) and, once the photo has been looked at, the `Subject` that aims the path.
`plan` turns it into the path the renderer follows: a `KeyframePath` for a keyframed camera,
else the preset's `motion.CameraPath` aimed at the subject, with the seed's hand-held drift.
Pure engine: nothing of the service.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
from PIL import Image

from . import motion
from .errors import InvalidParams
from .subject import Subject, find_subject

Ease = Literal["smooth", "linear"]
EASES: tuple[Ease, ...] = ("smooth", "linear")
MIN_KEYFRAMES = 2
MAX_KEYFRAMES = 8
MAX_ZOOM = 3.0
# The tightest window may enlarge the photo this much before the job carries a warning.
UPSCALE_LIMIT = 1.5
# Float slack when a keyframe's window touches the photo's edge exactly.
_EDGE = 1e-9


@dataclass(frozen=True)
class Keyframe:
    """The window at time t (0-1): its centre in photo fractions and its zoom relative to the
    largest window of the output's aspect that fits the photo."""

    t: float
    x: float
    y: float
    zoom: float = 1.0


@dataclass(frozen=True)
class Shot:
    """A job's aim: the request's options and, once resolved, the subject that was used."""

    focus: tuple[float, float] | None = None
    keyframes: tuple[Keyframe, ...] = ()
    ease: Ease = "smooth"
    loop: bool = False
    subject: Subject | None = None
    warnings: tuple[Mapping[str, Any], ...] = field(default=())

    @property
    def framing(self) -> str | None:
        return self.subject.framing if self.subject is not None else None

    def camera_dict(self) -> dict[str, Any] | None:
        if not self.keyframes:
            return None
        return {
            "keyframes": [{"t": k.t, "x": k.x, "y": k.y, "zoom": k.zoom} for k in self.keyframes],
            "ease": self.ease,
        }

    def to_json(self) -> str:
        """The row's `shot` column."""
        body: dict[str, Any] = {
            "focus": None if self.focus is None else {"x": self.focus[0], "y": self.focus[1]},
            "camera": self.camera_dict(),
            "loop": self.loop,
            "subject": None if self.subject is None else self.subject.as_dict(),
            "warnings": [dict(w) for w in self.warnings],
        }
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> Shot:
        """A row's `shot` column (None or '' for rows made before it existed)."""
        if not text:
            return cls()
        data = json.loads(text)
        shot = make_shot(focus=data.get("focus"), camera=data.get("camera"), loop=data.get("loop"))
        found = data.get("subject")
        if found:
            faces = tuple(tuple(float(v) for v in box) for box in found.get("faces", ()))
            subject = Subject(found["framing"], float(found["x"]), float(found["y"]), faces)  # type: ignore[arg-type]
            shot = replace(shot, subject=subject)
        return replace(shot, warnings=tuple(data.get("warnings") or ()))


def _fraction(value: Any, where: str, low: float = 0.0, high: float = 1.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise InvalidParams(f"{where} must be a number from {low:g} to {high:g}")
    if not low <= float(value) <= high:
        raise InvalidParams(f"{where} must be from {low:g} to {high:g}, got {value:g}")
    return float(value)


def parse_focus(value: Any) -> tuple[float, float] | None:
    """`{"x": 0-1, "y": 0-1}` (photo fractions) or None."""
    if value is None:
        return None
    if not isinstance(value, Mapping) or set(value) != {"x", "y"}:
        raise InvalidParams('focus must be an object {"x": 0-1, "y": 0-1}')
    return _fraction(value["x"], "focus.x"), _fraction(value["y"], "focus.y")


def parse_camera(value: Any) -> tuple[tuple[Keyframe, ...], Ease]:
    """`{"keyframes": [{t, x, y, zoom}, ...], "ease": "smooth" | "linear"}`, checked alone
    (whether each window fits the photo is `check_keyframes`, once the photo's size is known)."""
    if value is None:
        return (), "smooth"
    if not isinstance(value, Mapping) or not set(value) <= {"keyframes", "ease"}:
        raise InvalidParams('camera must be an object {"keyframes": [...], "ease": "smooth"}')
    ease = value.get("ease", "smooth")
    if ease not in EASES:
        raise InvalidParams(f"camera.ease must be one of {', '.join(EASES)}")
    raw = value.get("keyframes")
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        raise InvalidParams("camera.keyframes must be a list")
    if not MIN_KEYFRAMES <= len(raw) <= MAX_KEYFRAMES:
        raise InvalidParams(
            f"camera.keyframes must have {MIN_KEYFRAMES} to {MAX_KEYFRAMES} keyframes,"
            f" got {len(raw)}"
        )
    keyframes = []
    for i, item in enumerate(raw):
        where = f"camera.keyframes[{i}]"
        if not isinstance(item, Mapping) or not {"t", "x", "y"} <= set(item) <= {
            "t",
            "x",
            "y",
            "zoom",
        }:
            raise InvalidParams(f'{where} must be an object {{"t", "x", "y", "zoom"}}')
        keyframes.append(
            Keyframe(
                _fraction(item["t"], f"{where}.t"),
                _fraction(item["x"], f"{where}.x"),
                _fraction(item["y"], f"{where}.y"),
                _fraction(item.get("zoom", 1.0), f"{where}.zoom", 1.0, MAX_ZOOM),
            )
        )
    for i in range(1, len(keyframes)):
        if keyframes[i].t <= keyframes[i - 1].t:
            raise InvalidParams(
                f"camera.keyframes[{i}].t must be later than keyframe {i - 1}'s"
                f" ({keyframes[i].t:g} <= {keyframes[i - 1].t:g})"
            )
    return tuple(keyframes), ease


def make_shot(*, focus: Any = None, camera: Any = None, loop: Any = None) -> Shot:
    """The request's options checked; InvalidParams (422) names what is wrong."""
    if loop is not None and not isinstance(loop, bool):
        raise InvalidParams("loop must be true or false")
    keyframes, ease = parse_camera(camera)
    return Shot(parse_focus(focus), keyframes, ease, bool(loop))


def fit_window(src_size: tuple[int, int], out_size: tuple[int, int]) -> tuple[float, float]:
    """(width, height) of the largest window of the output's aspect inside the photo (zoom 1)."""
    aspect = out_size[0] / out_size[1]
    width = min(float(src_size[0]), src_size[1] * aspect)
    return width, width / aspect


def check_keyframes(
    keyframes: Sequence[Keyframe], src_size: tuple[int, int], out_size: tuple[int, int]
) -> None:
    """Every keyframe's window inside the photo, else a 422 naming the keyframe, the side and
    by how much (in photo fractions), so a client can move it back."""
    fit_w, fit_h = fit_window(src_size, out_size)
    src_w, src_h = src_size
    for i, k in enumerate(keyframes):
        half_w, half_h = fit_w / k.zoom / 2, fit_h / k.zoom / 2
        cx, cy = k.x * src_w, k.y * src_h
        overflow = {
            "left": (half_w - cx) / src_w,
            "right": (cx + half_w - src_w) / src_w,
            "top": (half_h - cy) / src_h,
            "bottom": (cy + half_h - src_h) / src_h,
        }
        side, by = max(overflow.items(), key=lambda item: item[1])
        if by > _EDGE:
            axis = "width" if side in ("left", "right") else "height"
            raise InvalidParams(
                f"camera.keyframes[{i}]: the window leaves the photo at the {side} by"
                f" {by:.4f} of the photo's {axis} ({by * 100:.1f} %); move it {_BACK[side]}"
                " or zoom in"
            )


_BACK = {"left": "right", "right": "left", "top": "down", "bottom": "up"}


def _smooth(u: np.ndarray) -> np.ndarray:
    return 0.5 - 0.5 * np.cos(np.pi * u)


class KeyframePath:
    """A keyframed camera fitted into one photo: the window glides from keyframe to keyframe
    (its centre in straight lines, its zoom geometrically, so a push in looks steady), eased in
    and out at each keyframe (`smooth`) or at constant speed (`linear`). Every window between
    two that fit the photo fits too (an edge is a line minus a convex curve), so checked
    keyframes give a path that never leaves the photo. `loop` plays it out and back."""

    def __init__(
        self,
        keyframes: Sequence[Keyframe],
        ease: str,
        src_size: tuple[int, int],
        out_size: tuple[int, int],
        *,
        loop: bool = False,
    ) -> None:
        self.src_w, self.src_h = src_size
        self.out_w, self.out_h = out_size
        check_keyframes(keyframes, src_size, out_size)
        self.keyframes = tuple(keyframes)
        self.ease = ease
        self.loop = loop
        self.fit_w, self.fit_h = fit_window(src_size, out_size)
        self._t = np.array([k.t for k in keyframes])
        self._x = np.array([k.x * self.src_w for k in keyframes])
        self._y = np.array([k.y * self.src_h for k in keyframes])
        self._log_zoom = np.log(np.array([k.zoom for k in keyframes]))

    @property
    def min_box_width(self) -> float:
        return self.fit_w / float(np.exp(self._log_zoom.max()))

    def _time(self, t: float) -> tuple[int, float]:
        """The segment (index of its first keyframe) and the eased position in it."""
        if self.loop:
            t = 1.0 - abs(1.0 - 2.0 * t)
            if self.ease == "linear":  # a loop turns at rest, whatever the ease between
                t = float(_smooth(np.array(t)))
        ts = self._t
        if t <= ts[0]:
            return 0, 0.0
        if t >= ts[-1]:
            return len(ts) - 2, 1.0
        i = int(np.searchsorted(ts, t, side="right")) - 1
        u = (t - ts[i]) / (ts[i + 1] - ts[i])
        return i, float(_smooth(np.array(u))) if self.ease == "smooth" else u

    def box(self, t: float) -> motion.Box:
        if not 0.0 <= t <= 1.0:
            raise InvalidParams("t must be between 0 and 1")
        i, u = self._time(t)
        cx = self._x[i] + (self._x[i + 1] - self._x[i]) * u
        cy = self._y[i] + (self._y[i + 1] - self._y[i]) * u
        zoom = math.exp(self._log_zoom[i] + (self._log_zoom[i + 1] - self._log_zoom[i]) * u)
        w, h = self.fit_w / zoom, self.fit_h / zoom
        x0 = min(max(float(cx) - w / 2, 0.0), self.src_w - w)
        y0 = min(max(float(cy) - h / 2, 0.0), self.src_h - h)
        return (x0, y0, min(x0 + w, float(self.src_w)), min(y0 + h, float(self.src_h)))

    def boxes(self, n_frames: int) -> Iterator[motion.Box]:
        for i in range(n_frames):
            yield self.box(i / (n_frames - 1) if n_frames > 1 else 0.0)

    def roll(self, t: float) -> float:
        """A keyframed camera does not roll: it goes exactly where it was put."""
        return 0.0


def aim(shot: Shot, found: Subject | None) -> Shot:
    """The shot with its subject: the camera's own aim, the focus asked for, else `found`
    (what the detector saw; the centre when it was not asked)."""
    if shot.keyframes:
        first = shot.keyframes[0]
        return replace(shot, subject=Subject("camera", first.x, first.y))
    if shot.focus is not None:
        return replace(shot, subject=Subject("focus", *shot.focus))
    return replace(shot, subject=found or Subject("centre", 0.5, 0.5))


def plan(
    preset: str,
    strength: float,
    src_size: tuple[int, int],
    out_size: tuple[int, int],
    *,
    shot: Shot,
    seed: int | None = None,
    roll: bool = False,
) -> motion.FramePath:
    """The path a clip follows over a source of `src_size` (the photo, or SVD's frames).

    `roll` adds the seed's slight roll: the camera-motion renderer asks for it (its compiled
    YUV frames roll for about 2x an upright frame's CPU, `affine`); the Pillow frames (SVD's
    camera, stories) leave it off, a rolled Pillow frame costing about 7x, docs/benchmarks.md."""
    if shot.keyframes:
        return KeyframePath(shot.keyframes, shot.ease, src_size, out_size, loop=shot.loop)
    subject = shot.subject
    point = None if subject is None or subject.framing == "centre" else (subject.x, subject.y)
    return motion.CameraPath(
        preset, strength, src_size, out_size, subject=point, loop=shot.loop, seed=seed, roll=roll
    )


def prepare(
    image: Image.Image,
    shot: Shot,
    *,
    preset: str,
    strength: float,
    resolution: str,
    aspect: str,
    renderer: str = "motion",
) -> Shot:
    """A request's shot made ready for the photo: keyframes checked against it (422), the
    subject found (faces, saliency) unless focus or keyframes say where, and the warnings it
    earns. CPU work (face detection takes ~0.3 s on a large photo): call it off the loop."""
    out = motion.output_size(resolution, aspect, *image.size)
    if shot.keyframes:
        check_keyframes(shot.keyframes, image.size, out)
    found = None if shot.focus is not None or shot.keyframes else find_subject(image)
    shot = aim(shot, found)
    warnings = prepare_warnings(shot, preset, strength, image.size, out, resolution, renderer)
    return replace(shot, warnings=tuple(warnings))


def prepare_warnings(
    shot: Shot,
    preset: str,
    strength: float,
    src_size: tuple[int, int],
    out_size: tuple[int, int],
    resolution: str,
    renderer: str = "motion",
) -> list[dict[str, Any]]:
    """What a job with this aim earns: `upscale` when its tightest window enlarges the photo
    more than UPSCALE_LIMIT, `svd_no_loop` when SVD is asked for a loop."""
    path = plan(preset, strength, src_size, out_size, shot=shot)
    warnings: list[dict[str, Any]] = []
    upscale = upscale_warning(path, resolution)
    if upscale is not None:
        warnings.append(upscale)
    if shot.loop and renderer == "svd":
        warnings.append(
            {
                "code": "svd_no_loop",
                "message": "the camera returns to its start, but what SVD animates in the"
                " photo does not: the clip will not loop seamlessly",
            }
        )
    return warnings


def working_crop(
    src_size: tuple[int, int], crop_size: tuple[int, int], subject: Subject | None
) -> motion.Box:
    """The largest box of `crop_size`'s aspect in the photo, centred on the subject as far as
    the photo allows (centred without one): the cut SVD makes before it animates, so the
    subject it animates is the one the camera then aims at."""
    x0, y0, x1, y1 = motion.centre_crop(src_size, crop_size)
    if subject is None:
        return (x0, y0, x1, y1)
    w, h = x1 - x0, y1 - y0
    left = min(max(subject.x * src_size[0] - w / 2, 0.0), src_size[0] - w)
    top = min(max(subject.y * src_size[1] - h / 2, 0.0), src_size[1] - h)
    return (left, top, left + w, top + h)


def svd_framing(
    preset: str,
    strength: float,
    src_size: tuple[int, int],
    out_size: tuple[int, int],
    crop_size: tuple[int, int],
    *,
    shot: Shot,
    seed: int | None = None,
) -> tuple[motion.Box, motion.FramePath]:
    """SVD's framing of a shot: the box of the photo it animates (of `crop_size`'s aspect) and
    the path its frames (at `crop_size`) then follow, so an aimed or keyframed shot frames the
    same subject on SVD as on the camera-motion renderer.

    A preset is fitted inside the working crop, which is centred on the subject as far as the
    photo allows (`working_crop`), aimed at the subject's place in it. A keyframed camera keeps
    its windows exactly where they were put: the crop is the smallest box of the working
    aspect around all of them (the largest the photo holds, centred on them, if they span
    more; windows are then shrunk into it about their centres).
    """
    if shot.keyframes:
        whole = KeyframePath(shot.keyframes, shot.ease, src_size, out_size, loop=shot.loop)
        crop = _crop_around(whole, src_size, crop_size)
        return crop, MappedPath(whole, crop, crop_size)
    found = shot.subject
    aimed = found is not None and found.framing != "centre"
    crop = working_crop(src_size, crop_size, found if aimed else None)
    inner = shot
    if found is not None and aimed:
        x0, y0, x1, y1 = crop
        fx = (found.x * src_size[0] - x0) / (x1 - x0)
        fy = (found.y * src_size[1] - y0) / (y1 - y0)
        inner = replace(shot, subject=Subject(found.framing, _unit(fx), _unit(fy)))
    return crop, plan(preset, strength, crop_size, out_size, shot=inner, seed=seed)


def _unit(value: float) -> float:
    return min(max(value, 0.0), 1.0)


def _crop_around(
    path: motion.FramePath, src_size: tuple[int, int], crop_size: tuple[int, int]
) -> motion.Box:
    """The smallest box of `crop_size`'s aspect around every window of `path`, in the photo."""
    boxes = np.array(list(path.boxes(257)))
    left, top = float(boxes[:, 0].min()), float(boxes[:, 1].min())
    right, bottom = float(boxes[:, 2].max()), float(boxes[:, 3].max())
    aspect = crop_size[0] / crop_size[1]
    largest_w, _ = fit_window(src_size, crop_size)
    width = min(max(right - left, (bottom - top) * aspect), largest_w)
    height = width / aspect
    x0 = min(max((left + right - width) / 2, 0.0), src_size[0] - width)
    y0 = min(max((top + bottom - height) / 2, 0.0), src_size[1] - height)
    return (x0, y0, x0 + width, y0 + height)


class MappedPath:
    """A path over the photo seen in a crop of it resized to `crop_size` (SVD's frames)."""

    def __init__(
        self, whole: motion.FramePath, crop: motion.Box, crop_size: tuple[int, int]
    ) -> None:
        self.whole = whole
        self.crop = crop
        self.src_w, self.src_h = crop_size
        self.out_w, self.out_h = whole.out_w, whole.out_h
        self.scale = crop_size[0] / (crop[2] - crop[0])  # frame px per photo px

    @property
    def min_box_width(self) -> float:
        return min(self.whole.min_box_width * self.scale, float(self.src_w))

    def box(self, t: float) -> motion.Box:
        x0, y0, x1, y1 = self.whole.box(t)
        cx0, cy0 = self.crop[0], self.crop[1]
        s = self.scale
        x0, y0, x1, y1 = (x0 - cx0) * s, (y0 - cy0) * s, (x1 - cx0) * s, (y1 - cy0) * s
        # A window larger than the crop shrinks about its centre; any then shifts inside.
        k = min(1.0, self.src_w / (x1 - x0), self.src_h / (y1 - y0))
        w, h = (x1 - x0) * k, (y1 - y0) * k
        left = min(max((x0 + x1 - w) / 2, 0.0), self.src_w - w)
        top = min(max((y0 + y1 - h) / 2, 0.0), self.src_h - h)
        return (left, top, min(left + w, float(self.src_w)), min(top + h, float(self.src_h)))

    def boxes(self, n_frames: int) -> Iterator[motion.Box]:
        for i in range(n_frames):
            yield self.box(i / (n_frames - 1) if n_frames > 1 else 0.0)

    def roll(self, t: float) -> float:
        return self.whole.roll(t)


class PreviewPath:
    """A path over SVD's working frames, seen on the live preview: the same windows scaled to
    the preview's small frames and output, at the generation rate. Generated frame i becomes
    output frame i * `stride` of `frames` once interpolated, so the preview's clip of
    `generated` frames follows the output's camera, not a centred one."""

    def __init__(
        self,
        path: motion.FramePath,
        src_size: tuple[int, int],
        out_size: tuple[int, int],
        *,
        stride: int,
        generated: int,
        frames: int,
    ) -> None:
        self.path = path
        self.src_w, self.src_h = src_size
        self.out_w, self.out_h = out_size
        self._sx = self.src_w / path.src_w
        self._sy = self.src_h / path.src_h
        # Preview time t (frame t * (generated - 1)) -> the output's time of that frame.
        self._speed = (generated - 1) * stride / (frames - 1) if frames > 1 else 0.0

    @property
    def min_box_width(self) -> float:
        return self.path.min_box_width * self._sx

    def _time(self, t: float) -> float:
        return min(1.0, t * self._speed)

    def box(self, t: float) -> motion.Box:
        x0, y0, x1, y1 = self.path.box(self._time(t))
        sx, sy = self._sx, self._sy
        return (x0 * sx, y0 * sy, min(x1 * sx, float(self.src_w)), min(y1 * sy, float(self.src_h)))

    def boxes(self, n_frames: int) -> Iterator[motion.Box]:
        for i in range(n_frames):
            yield self.box(i / (n_frames - 1) if n_frames > 1 else 0.0)

    def roll(self, t: float) -> float:
        return self.path.roll(self._time(t))


def upscale_warning(
    path: motion.FramePath, resolution: str, scale: float = 1.0
) -> dict[str, Any] | None:
    """A warning when the path's tightest window must be enlarged more than UPSCALE_LIMIT for
    `resolution`: the factor and the largest resolution that needs no enlarging (None when even
    the smallest does). `scale` converts the path's source pixels into photo pixels (SVD works
    on a resized copy)."""
    window = path.min_box_width * scale
    factor = path.out_w / window
    if factor <= UPSCALE_LIMIT:
        return None
    aspect = motion.aspect_of(path.out_w, path.out_h)
    fitting = [
        name
        for name in motion.RESOLUTIONS
        if motion.output_size(name, aspect, path.out_w, path.out_h)[0] <= window * (1 + 1e-9)
    ]
    best = fitting[-1] if fitting else None
    advice = f"; {best} needs none" if best else "; even 360p enlarges it"
    return {
        "code": "upscale",
        "factor": round(factor, 2),
        "max_resolution": best,
        "message": (
            f"the photo is small for {resolution}: its closest frame is enlarged"
            f" {factor:.1f}x and will look soft{advice}"
        ),
    }
