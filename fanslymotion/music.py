"""A story's music: checking the file, measuring its loudness, and the track the encoder muxes.

The audio is cut from `start` to the video's length, normalised to -14 LUFS integrated (EBU
R128) by ffmpeg's `loudnorm` in two passes (the first measures the part that will be used, the
second applies that measurement linearly where it can), faded in and out, padded with silence
when it is shorter than the video, and encoded as AAC in the video's own ffmpeg run. Pure
engine: ffmpeg (imageio-ffmpeg's) in subprocesses.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import BadRequest, InvalidParams, PayloadTooLarge
from .video import AudioTrack, ffmpeg_exe

log = logging.getLogger(__name__)

MAX_AUDIO_BYTES = 20_000_000
MAX_AUDIO_SECONDS = 600.0
TARGET_LUFS = -14.0
TRUE_PEAK = -1.5
LOUDNESS_RANGE = 11.0
FADE_IN = 0.5
FADE_OUT = 1.5
SILENT_LUFS = -60.0
"""Music measured quieter than this (or not at all: digital silence) is refused."""
FORMATS = {"mp3", "mov", "mp4", "m4a", "aac", "wav", "ogg", "flac", "matroska", "webm"}
"""ffmpeg's demuxer names we take: MP3, AAC/M4A, WAV, OGG (Vorbis/Opus), FLAC."""
SUPPORTED_TEXT = "MP3, AAC/M4A, WAV, OGG/Opus or FLAC"
RATE = 48_000
_TIMEOUT = 120

_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_INPUT = re.compile(r"^Input #0, ([^ ]+), from", re.MULTILINE)
_AUDIO = re.compile(r"^\s*Stream #0:\d+.*?: Audio: (\w+)", re.MULTILINE)
_SUMMARY_I = re.compile(r"Integrated loudness:\s+I:\s+(-?[\d.]+|-inf) LUFS")


@dataclass(frozen=True)
class AudioInfo:
    seconds: float
    codec: str
    container: str


@dataclass(frozen=True)
class Loudness:
    """loudnorm's first-pass measurement of the part used."""

    input_i: float
    input_tp: float
    input_lra: float
    input_thresh: float
    target_offset: float


def _run(command: list[str]) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(command, capture_output=True, check=False, timeout=_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BadRequest(
            "the audio file could not be read in time", code="audio_unreadable"
        ) from None


def probe_audio(path: Path) -> AudioInfo:
    """Container, codec and length of an audio file; BadRequest when it has no audio we read,
    PayloadTooLarge over `MAX_AUDIO_BYTES`, InvalidParams over `MAX_AUDIO_SECONDS`."""
    path = Path(path)
    size = path.stat().st_size
    if size > MAX_AUDIO_BYTES:
        raise PayloadTooLarge(
            f"the audio file is {size / 1e6:.1f} MB; at most {MAX_AUDIO_BYTES // 1_000_000} MB",
            code="audio_too_large",
        )
    if size == 0:
        raise BadRequest("the audio file is empty", code="audio_unreadable")
    result = _run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)])
    header = result.stderr.decode("utf-8", "replace")
    container = _INPUT.search(header)
    stream = _AUDIO.search(header)
    names = set(container.group(1).split(",")) if container else set()
    if stream is None or not names & FORMATS:
        raise BadRequest(
            f"the audio could not be read: send {SUPPORTED_TEXT}", code="audio_unreadable"
        )
    duration = _DURATION.search(header)
    seconds = 0.0
    if duration is not None:
        hours, minutes, secs = duration.groups()
        seconds = int(hours) * 3600 + int(minutes) * 60 + float(secs)
    if seconds <= 0:
        raise BadRequest("the audio has no length", code="audio_unreadable")
    if seconds > MAX_AUDIO_SECONDS + 0.5:
        raise InvalidParams(
            f"the audio lasts {seconds / 60:.1f} min; at most {MAX_AUDIO_SECONDS / 60:g} min",
            code="audio_too_long",
        )
    return AudioInfo(seconds, stream.group(1), container.group(1) if container else "")


def _window(start: float, seconds: float) -> list[str]:
    return ["-ss", f"{start:.3f}", "-t", f"{seconds:.3f}"]


def _fades(seconds: float) -> str:
    """The fades of a `seconds`-long track. Both passes apply them before loudnorm, so the
    loudness measured and set is that of the faded track (on a short story the fades
    otherwise take over a decibel off the integrated loudness)."""
    fade_in, fade_out = min(FADE_IN, seconds / 4), min(FADE_OUT, seconds / 4)
    return (
        f"afade=t=in:st=0:d={fade_in:.3f},"
        f"afade=t=out:st={max(0.0, seconds - fade_out):.3f}:d={fade_out:.3f}"
    )


def measure(path: Path, start: float, seconds: float) -> Loudness:
    """loudnorm's first pass over [start, start + seconds]; InvalidParams for silence."""
    target = f"I={TARGET_LUFS:g}:TP={TRUE_PEAK:g}:LRA={LOUDNESS_RANGE:g}"
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", *_window(start, seconds), "-i", str(path)]
    shaped = f"{_fades(seconds)},loudnorm={target}:print_format=json"
    command += ["-map", "0:a:0", "-af", shaped, "-f", "null", "-"]
    result = _run(command)
    text = result.stderr.decode("utf-8", "replace")
    begin, end = text.rfind("{"), text.rfind("}")
    if result.returncode != 0 or begin < 0 or end < begin:
        log.info("loudness measure failed (%s): %s", result.returncode, text[-1500:])
        raise BadRequest("the audio could not be decoded", code="audio_unreadable")
    data = json.loads(text[begin : end + 1])
    try:
        values = [float(data[k]) for k in ("input_i", "input_tp", "input_lra", "input_thresh")]
        offset = float(data["target_offset"])
    except (KeyError, ValueError):
        values, offset = [float("-inf")] * 4, 0.0
    if not values[0] > SILENT_LUFS:  # -inf (digital silence) or nan included
        raise InvalidParams("the audio is silent where the story uses it", code="audio_silent")
    return Loudness(values[0], values[1], values[2], values[3], offset)


def check(path: Path, start: float = 0.0, seconds: float = 60.0) -> tuple[AudioInfo, Loudness]:
    """The whole check before a job is queued: readable, within the caps, `start` inside it,
    and not silent over the part a `seconds`-long story would use."""
    info = probe_audio(path)
    if start >= info.seconds:
        raise InvalidParams(
            f"music_start is {start:g} s but the audio lasts {info.seconds:.1f} s",
            code="audio_start",
        )
    return info, measure(path, start, min(seconds, info.seconds - start))


def track(path: Path, start: float, seconds: float, loudness: Loudness) -> AudioTrack:
    """The encoder's audio input: [start, start + seconds] normalised, faded, exactly
    `seconds` long."""
    normalise = (
        f"loudnorm=I={TARGET_LUFS:g}:TP={TRUE_PEAK:g}:LRA={LOUDNESS_RANGE:g}"
        f":measured_I={loudness.input_i:.2f}:measured_TP={loudness.input_tp:.2f}"
        f":measured_LRA={loudness.input_lra:.2f}:measured_thresh={loudness.input_thresh:.2f}"
        f":offset={loudness.target_offset:.2f}:linear=true"
    )
    chain = [
        _fades(seconds),
        normalise,
        f"aresample={RATE}",  # loudnorm's dynamic mode works at 192 kHz
        f"apad=whole_dur={seconds:.6f}",
        f"atrim=end={seconds:.6f}",
    ]
    return AudioTrack((*_window(start, seconds), "-i", str(path)), ",".join(chain), rate=RATE)


def prepare(path: Path, start: float, seconds: float) -> AudioTrack:
    """`check` then `track`: what a render does with the story's music."""
    _, loudness = check(path, start, seconds)
    return track(path, start, seconds, loudness)


def integrated_loudness(path: Path) -> float:
    """The integrated loudness (LUFS) of a file's first audio stream, by ffmpeg's ebur128."""
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:a:0"]
    command += ["-af", "ebur128=framelog=quiet", "-f", "null", "-"]
    result = _run(command)
    found = _SUMMARY_I.findall(result.stderr.decode("utf-8", "replace"))
    if result.returncode != 0 or not found:
        raise BadRequest("the file has no readable audio", code="audio_unreadable")
    return float(found[-1])


def audio_seconds(path: Path) -> float:
    """The exact length of a file's first audio stream: its decoded samples over the rate."""
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-v", "error", "-i", str(path)]
    command += ["-map", "0:a:0", "-ac", "1", "-ar", str(RATE), "-f", "s16le", "pipe:1"]
    result = _run(command)
    if result.returncode != 0:
        raise BadRequest("the file has no readable audio", code="audio_unreadable")
    return len(result.stdout) / 2 / RATE
