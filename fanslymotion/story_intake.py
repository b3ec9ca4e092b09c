"""Taking in a story job: its photos, music and logo checked before it is queued, and written
to the job's story folder (`inputs/<job_id>.story/`) once it has an id.

Every photo is decoded and aimed (the subject found, keyframes checked against it) at the
story's one output size, which the first photo decides; the music is probed and measured over
the part the story uses (silence refused); the logo must be a small PNG. An error names the
shot and field at fault. Blocking work: the job service runs it in an executor.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from . import camera, motion, music, overlay, photo
from .config import Settings
from .datadir import story_inputs, write_atomic
from .errors import FanslyError, PayloadTooLarge
from .story import Story
from .story_render import LOGO_NAME, MUSIC_NAME, shot_photo_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoryFiles:
    """What comes with a story besides its first photo (the job's own `image`)."""

    images: tuple[bytes, ...] = ()
    """Shots 1.. in order (shot 0's photo is the request's image)."""
    audio: bytes = b""
    logo: bytes = b""


def _named(exc: FanslyError, where: str) -> FanslyError:
    """The same refusal (class, status, code) with the shot and field in front."""
    exc.message = f"{where}: {exc.message}"
    exc.args = (exc.message,)
    exc.details = {**exc.details, "shot": where}
    return exc


def _aim(
    settings: Settings,
    data: bytes,
    story: Story,
    i: int,
    resolution: str,
    aspect: str,
    renderer: str,
) -> tuple[camera.Shot, tuple[int, int]]:
    if len(data) > settings.max_upload_bytes:
        raise PayloadTooLarge(f"the photo is larger than {settings.max_upload_mb:g} MB")
    shot = story.shots[i]
    with photo.load_photo(data, max_pixels=settings.max_pixels, min_side=settings.min_side) as img:
        aim = camera.prepare(
            img,
            shot.aim,
            preset=shot.motion,
            strength=shot.strength,
            resolution=resolution,
            aspect=aspect,
            renderer=renderer,
        )
        return aim, img.size


def check(
    settings: Settings,
    story: Story,
    first: bytes,
    files: StoryFiles,
    *,
    resolution: str,
    aspect: str,
    fps: int,
    renderer: str,
) -> Story:
    """The story with every shot aimed at its photo; raises what is wrong, naming the shot."""
    images = (first, *files.images)
    if len(images) != len(story.shots):
        raise FanslyError("shots and photos differ in number")
    shots = list(story.shots)
    for i, data in enumerate(images):
        try:
            aim, size = _aim(settings, data, story, i, resolution, aspect, renderer)
        except FanslyError as exc:
            raise _named(exc, f"shots[{i}].image") from None
        if i == 0:
            aspect = motion.aspect_of(*motion.output_size(resolution, aspect, *size))
        shots[i] = replace(shots[i], aim=aim)
    story = replace(story, shots=tuple(shots), music=bool(files.audio))
    if files.logo:
        overlay.read_logo(files.logo)
    if files.audio:
        _check_audio(files.audio, story, fps)
    return story


def _check_audio(data: bytes, story: Story, fps: int) -> None:
    if len(data) > music.MAX_AUDIO_BYTES:
        raise PayloadTooLarge(
            f"the audio file is {len(data) / 1e6:.1f} MB; at most"
            f" {music.MAX_AUDIO_BYTES // 1_000_000} MB",
            code="audio_too_large",
        )
    handle, name = tempfile.mkstemp(prefix="fanslymotion-audio-")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        music.check(Path(name), story.music_start, story.timeline(fps).seconds)
    finally:
        Path(name).unlink(missing_ok=True)


def write(data_dir: Path, job_id: str, files: StoryFiles) -> Path:
    """The story's other photos, music and logo in its folder; returns the folder."""
    folder = story_inputs(data_dir, job_id)
    folder.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(files.images, start=1):
        write_atomic(folder / shot_photo_name(i), data)
    if files.audio:
        write_atomic(folder / MUSIC_NAME, files.audio)
    if files.logo:
        write_atomic(folder / LOGO_NAME, files.logo)
    return folder
