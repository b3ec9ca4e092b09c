"""A story: 1-10 shots of one photo each, joined by transitions, with captions, a watermark, a
colour look and optional music; and its timeline (how many frames each part takes).

The timeline is exact: shot i lasts `round(seconds * fps)` frames, and the transition after it
overlaps the next shot by `round(seconds * fps)` frames (none for a cut), so the story has
`sum(shots) - sum(overlaps)` frames and lasts that many over fps. Pure engine: the parsing here
checks a client's `story` object and names the shot and field at fault (InvalidParams, 422).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, get_args

from . import motion
from .camera import Shot, make_shot
from .errors import InvalidParams

TransitionKind = Literal["cut", "crossfade", "fade", "slide"]
TRANSITIONS: tuple[TransitionKind, ...] = get_args(TransitionKind)
Look = Literal["natural", "warm", "cool", "vivid", "mono", "film"]
LOOKS: tuple[Look, ...] = get_args(Look)
Corner = Literal["top_left", "top_right", "bottom_left", "bottom_right"]
CORNERS: tuple[Corner, ...] = get_args(Corner)

MAX_SHOTS = 10
SHOT_SECONDS = (2.0, 12.0)
TRANSITION_SECONDS = (0.3, 1.5)
DEFAULT_TRANSITION_SECONDS = 0.6
MAX_STORY_SECONDS = 60.0
MAX_CAPTION = 120
MAX_WATERMARK_TEXT = 40
MAX_MUSIC_START = 600.0


@dataclass(frozen=True)
class Transition:
    """How shot i hands over to shot i + 1."""

    kind: TransitionKind = "cut"
    seconds: float = 0.0

    def frames(self, fps: int) -> int:
        """Frames of overlap; a fade's count is odd, so its middle frame is all black."""
        if self.kind == "cut":
            return 0
        n = max(1, round(self.seconds * fps))
        return n + 1 if self.kind == "fade" and n % 2 == 0 else n


@dataclass(frozen=True)
class StoryShot:
    """One photo's part: how long, how the camera moves over it, and its caption."""

    seconds: float
    motion: str = "micro"
    strength: float = 0.5
    aim: Shot = field(default_factory=Shot)
    caption: str = ""

    def frames(self, fps: int) -> int:
        return round(self.seconds * fps)


@dataclass(frozen=True)
class Watermark:
    """A short text or a small PNG logo (its bytes), in a corner, at an opacity."""

    text: str = ""
    png: bytes = b""
    corner: Corner = "bottom_right"
    opacity: float = 0.7


@dataclass(frozen=True)
class Story:
    shots: tuple[StoryShot, ...]
    transitions: tuple[Transition, ...] = ()
    """One per cut (len(shots) - 1); a missing one is a cut."""
    look: Look = "natural"
    watermark: Watermark | None = None
    music_start: float = 0.0
    music: bool = False
    """Whether music came with it (the file itself lies beside the photos)."""

    def transition(self, i: int) -> Transition:
        return self.transitions[i] if i < len(self.transitions) else Transition()

    def timeline(self, fps: int) -> Timeline:
        return Timeline(
            fps,
            tuple(s.frames(fps) for s in self.shots),
            tuple(self.transition(i).frames(fps) for i in range(len(self.shots) - 1)),
        )

    def to_json(self, fps: int | None = None) -> str:
        """The job row's `story` column (the watermark's PNG is kept apart, as a file); with
        `fps`, the exact length is written too, for the API's views."""
        body: dict[str, Any] = {
            "shots": [
                {
                    "seconds": s.seconds,
                    "motion": s.motion,
                    "strength": s.strength,
                    "caption": s.caption,
                    "aim": json.loads(s.aim.to_json()),
                }
                for s in self.shots
            ],
            "transitions": [{"kind": t.kind, "seconds": t.seconds} for t in self.transitions],
            "look": self.look,
            "watermark": None
            if self.watermark is None
            else {
                "text": self.watermark.text,
                "logo": bool(self.watermark.png),
                "corner": self.watermark.corner,
                "opacity": self.watermark.opacity,
            },
            "music_start": self.music_start,
            "music": self.music,
        }
        if fps is not None:
            line = self.timeline(fps)
            body.update(fps=fps, frames=line.frames, seconds=round(line.seconds, 4))
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str, *, logo: bytes = b"") -> Story:
        data = json.loads(text)
        shots = tuple(
            StoryShot(
                float(s["seconds"]),
                s["motion"],
                float(s["strength"]),
                Shot.from_json(json.dumps(s["aim"])),
                s["caption"],
            )
            for s in data["shots"]
        )
        transitions = tuple(Transition(t["kind"], float(t["seconds"])) for t in data["transitions"])
        mark = data.get("watermark")
        watermark = None
        if mark is not None:
            png = logo if mark.get("logo") else b""
            watermark = Watermark(mark["text"], png, mark["corner"], float(mark["opacity"]))
        music_start = float(data["music_start"])
        return cls(
            shots, transitions, data["look"], watermark, music_start, bool(data.get("music"))
        )


@dataclass(frozen=True)
class Timeline:
    """Frame counts: each shot's own, and each transition's overlap with the next shot."""

    fps: int
    shot_frames: tuple[int, ...]
    overlaps: tuple[int, ...]

    @property
    def frames(self) -> int:
        return sum(self.shot_frames) - sum(self.overlaps)

    @property
    def seconds(self) -> float:
        return self.frames / self.fps

    def starts(self) -> tuple[int, ...]:
        """The output frame at which each shot begins (inside the transition into it)."""
        starts = [0]
        for n, k in zip(self.shot_frames, self.overlaps, strict=False):
            starts.append(starts[-1] + n - k)
        return tuple(starts)

    def shot_at(self, frame: int) -> int:
        """The shot that owns output frame `frame` (the later one inside a transition)."""
        current = 0
        for i, start in enumerate(self.starts()):
            if frame >= start:
                current = i
        return current


# -- parsing a client's story --


def _number(value: Any, where: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise InvalidParams(f"{where} must be a number from {low:g} to {high:g}")
    if not low <= float(value) <= high:
        raise InvalidParams(f"{where} must be from {low:g} to {high:g}, got {value:g}")
    return float(value)


def _choice(value: Any, where: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise InvalidParams(f"{where} must be one of {', '.join(choices)}")
    return str(value)


def _text(value: Any, where: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidParams(f"{where} must be a string")
    text = " ".join(value.split())
    if len(text) > limit:
        raise InvalidParams(f"{where} must be at most {limit} characters, got {len(text)}")
    return text


def _object(value: Any, where: str, keys: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidParams(f"{where} must be an object")
    extra = sorted(set(value) - keys)
    if extra:
        raise InvalidParams(f"{where}: unknown field {extra[0]!r}")
    return value


def parse_transition(value: Any, where: str) -> Transition:
    """`"crossfade"` or `{"kind": "crossfade", "seconds": 0.6}`."""
    if isinstance(value, str):
        value = {"kind": value}
    data = _object(value, where, {"kind", "seconds"})
    kind = _choice(data.get("kind"), f"{where}.kind", TRANSITIONS)
    if kind == "cut":
        return Transition()
    low, high = TRANSITION_SECONDS
    seconds = _number(
        data.get("seconds", DEFAULT_TRANSITION_SECONDS), f"{where}.seconds", low, high
    )
    return Transition(kind, seconds)  # type: ignore[arg-type]


_SHOT_KEYS = {"duration", "motion_preset", "strength", "focus", "camera", "caption", "transition"}


def parse_shot(value: Any, i: int, default_motion: str) -> tuple[StoryShot, Transition | None]:
    where = f"shots[{i}]"
    data = _object(value, where, _SHOT_KEYS | {"image_data"})
    low, high = SHOT_SECONDS
    seconds = _number(data.get("duration", 4), f"{where}.duration", low, high)
    if seconds != int(seconds):  # each shot is a whole clip of its renderer's
        raise InvalidParams(f"{where}.duration must be whole seconds, got {seconds:g}")
    preset = _choice(
        data.get("motion_preset", default_motion), f"{where}.motion_preset", motion.PRESETS
    )
    strength = _number(data.get("strength", 0.5), f"{where}.strength", 0.0, 1.0)
    try:
        aim = make_shot(focus=data.get("focus"), camera=data.get("camera"))
    except InvalidParams as exc:
        raise InvalidParams(f"{where}.{exc.message}") from None
    caption = _text(data.get("caption"), f"{where}.caption", MAX_CAPTION)
    after = data.get("transition")
    transition = None if after is None else parse_transition(after, f"{where}.transition")
    return StoryShot(seconds, preset, strength, aim, caption), transition


def parse_watermark(value: Any, logo: bytes = b"") -> Watermark | None:
    if value is None and not logo:
        return None
    data = _object(value or {}, "watermark", {"text", "corner", "opacity", "logo_data"})
    text = _text(data.get("text"), "watermark.text", MAX_WATERMARK_TEXT)
    if not text and not logo:
        raise InvalidParams("watermark needs a text or a logo (a small PNG)")
    corner = _choice(data.get("corner", "bottom_right"), "watermark.corner", CORNERS)
    opacity = _number(data.get("opacity", 0.7), "watermark.opacity", 0.1, 1.0)
    return Watermark(text, logo, corner, opacity)  # type: ignore[arg-type]


def parse_story(
    value: Any, *, default_motion: str = "micro", logo: bytes = b"", images: int | None = None
) -> Story:
    """A client's `story` object checked: InvalidParams names the shot and field at fault.
    `images`, when given, is how many photos came with it (one per shot)."""
    keys = {"shots", "transition", "look", "watermark", "music_start"}
    data = _object(value, "story", keys)
    raw = data.get("shots")
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_SHOTS:
        raise InvalidParams(f"story.shots must be a list of 1 to {MAX_SHOTS} shots")
    if images is not None and images != len(raw):
        raise InvalidParams(f"story.shots has {len(raw)} shots but {images} photos came with it")
    default = Transition()
    if data.get("transition") is not None:
        default = parse_transition(data["transition"], "story.transition")
    shots, transitions = [], []
    for i, item in enumerate(raw):
        shot, after = parse_shot(item, i, default_motion)
        shots.append(shot)
        if i < len(raw) - 1:
            transitions.append(after or default)
        elif after is not None and after.kind != "cut":
            raise InvalidParams(f"shots[{i}].transition: the last shot has no next shot")
    look = _choice(data.get("look", "natural"), "story.look", LOOKS)
    story = Story(
        tuple(shots),
        tuple(transitions),
        look,  # type: ignore[arg-type]
        parse_watermark(data.get("watermark"), logo),
        _number(data.get("music_start", 0), "story.music_start", 0.0, MAX_MUSIC_START),
    )
    check_story(story)
    return story


def check_story(story: Story, fps: int = 24) -> None:
    """Transitions fit their shots and the whole lasts at most `MAX_STORY_SECONDS`."""
    line = story.timeline(fps)
    for i, n in enumerate(line.shot_frames):
        before = line.overlaps[i - 1] if i > 0 else 0
        after = line.overlaps[i] if i < len(line.overlaps) else 0
        if before + after > n:
            raise InvalidParams(
                f"shots[{i}].duration: {story.shots[i].seconds:g} s is too short for the"
                f" transitions into and out of it ({(before + after) / fps:.2f} s)"
            )
    total = sum(s.seconds for s in story.shots) - sum(
        t.seconds for t in story.transitions if t.kind != "cut"
    )
    if total > MAX_STORY_SECONDS + 1e-9:
        raise InvalidParams(
            f"story lasts {total:.1f} s; at most {MAX_STORY_SECONDS:g} s in all",
            code="story_too_long",
        )


def single(spec_seconds: float, preset: str, strength: float, aim: Shot) -> Story:
    """The one-shot story a single-photo job is."""
    return Story((StoryShot(spec_seconds, preset, strength, aim),))


def with_aim(story: Story, i: int, aim: Shot) -> Story:
    """The story with shot i's aim resolved (the subject found in its photo)."""
    shots = list(story.shots)
    shots[i] = replace(shots[i], aim=aim)
    return replace(story, shots=tuple(shots))
