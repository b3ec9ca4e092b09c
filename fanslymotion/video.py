"""H.264 encoding and probing over imageio-ffmpeg's bundled ffmpeg (there is no ffprobe).

`encode` streams raw RGB frames into ffmpeg's stdin as the generator yields them, so rendering
(in this process) and x264 (in ffmpeg's) run at the same time, and only a frame or two is ever
held in memory. The output is what every player expects: H.264 High, yuv420p in TV range with
BT.709 tags, square pixels, the index at the front (`+faststart`), exactly the asked size and
frame rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from .errors import BadRequest, RenderError

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
FLUSH_POLL = 0.1
"""Seconds between two looks at `check` while ffmpeg finishes the file (a cancel's delay)."""


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that has the kernel SIGKILL the child when the thread that started it
    ends, the whole process's SIGKILL included, so no ffmpeg ever runs on alone (Linux; None
    elsewhere). The child stays in our process group on purpose: a Ctrl-C reaches it as
    before, and no encoder is kept out of a group-wide signal."""
    libc = _LIBC
    if libc is None:
        return None
    parent = os.getpid()

    def in_child() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above: go with it
            os._exit(1)

    return in_child


X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
)
_METADATA_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
_STDERR_TAIL = 2000


@dataclass(frozen=True)
class VideoInfo:
    """What `probe` reads back from a video file."""

    frames: int
    fps: float
    width: int
    height: int
    duration: float
    metadata: dict[str, str]
    codec: str = ""
    pix_fmt: str = ""
    color: str = ""  # e.g. "tv, bt709, progressive"
    sar: str = ""  # e.g. "1:1"; empty when ffmpeg does not print it


@dataclass(frozen=True)
class AudioTrack:
    """A sound track to mux in the encoder's run: ffmpeg's options for its input (e.g. a start
    offset and length, then `-i file`) and the audio filter that shapes it; encoded as AAC."""

    input_args: tuple[str, ...]
    filter: str
    bitrate: str = "160k"
    rate: int = 48_000


def ffmpeg_exe() -> str:
    """Path of the bundled ffmpeg binary."""
    # Imported here: what only decodes with SVD (bench/svd_gpu.py on a GPU machine, where the
    # 68 MB wheel cannot travel) never needs it.
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())


# H.264 levels the encoder may declare: (name, macroblocks per second, macroblocks per frame,
# max bitrate in kbit/s, max VBV buffer in kbit) for the High profile (Annex A, table A-1, with
# the High profile's 1.25 factor on bitrate and buffer).
_LEVELS = (
    ("3.0", 40_500, 1_620, 12_500, 12_500),
    ("3.1", 108_000, 3_600, 17_500, 17_500),
    ("3.2", 216_000, 5_120, 25_000, 25_000),
    ("4.0", 245_760, 8_192, 25_000, 31_250),
    ("4.1", 245_760, 8_192, 62_500, 78_125),
    ("4.2", 522_240, 8_704, 62_500, 78_125),
    ("5.0", 589_824, 22_080, 168_750, 168_750),
    ("5.1", 983_040, 36_864, 300_000, 300_000),
)

KEYFRAME_SECONDS = 2
"""A keyframe at least this often: a player seeks to any second without decoding the clip."""


def vbv(width: int, height: int) -> tuple[int, int]:
    """(maxrate kbit/s, VBV buffer kbit) for an output size: a ceiling on the bitrate that CRF
    alone does not give (a noisy photo at CRF 20 runs to 30 Mbit/s at 1080p). 1080p keeps within
    level 4.0 and under 40 MB for 12 s; the smaller sizes scale down with their pixels."""
    short = min(width, height)
    if short <= 360:
        return 2_500, 4_000
    if short <= 480:
        return 5_000, 8_000
    if short <= 720:
        return 10_000, 14_000
    return 20_000, 25_000


def h264_level(width: int, height: int, fps: int) -> str:
    """The lowest level that holds this size, frame rate and our VBV ceiling."""
    mbs = ((width + 15) // 16) * ((height + 15) // 16)
    maxrate, bufsize = vbv(width, height)
    for name, mb_rate, frame_mbs, max_br, max_cpb in _LEVELS:
        if mbs <= frame_mbs and mbs * fps <= mb_rate and maxrate <= max_br and bufsize <= max_cpb:
            return name
    return _LEVELS[-1][0]


def x264_args(crf: int, preset: str, width: int, height: int, fps: int) -> list[str]:
    """The encoder's options: H.264 in yuv420p, BT.709 TV range, tagged as such; CRF quality
    under a VBV ceiling that keeps the stream within the level it declares; a keyframe every
    `KEYFRAME_SECONDS`.

    bench/motion.py gives the same options to ffmpeg's zoompan, so that only the frames differ.
    """
    maxrate, bufsize = vbv(width, height)
    # CRF 0 is lossless (tests and benchmarks only): High 4:4:4 with no bitrate ceiling.
    ceiling = ["-maxrate", f"{maxrate}k", "-bufsize", f"{bufsize}k", "-profile:v", "high"]
    return [
        "-c:v",
        "libx264",
        "-preset",
        preset,
        "-crf",
        str(crf),
        *(ceiling if crf > 0 else []),
        "-level:v",
        h264_level(width, height, fps),
        "-g",
        str(max(1, KEYFRAME_SECONDS * fps)),
        "-pix_fmt",
        "yuv420p",
        "-color_range",
        "tv",
        "-colorspace",
        "bt709",
        "-color_primaries",
        "bt709",
        "-color_trc",
        "bt709",
    ]


def _encode_command(
    path: Path,
    width: int,
    height: int,
    fps: int,
    crf: int,
    preset: str,
    metadata: Mapping[str, str],
    audio: AudioTrack | None = None,
    pix_fmt: str = "rgb24",
) -> list[str]:
    # Explicit BT.709 TV-range conversion of RGB, so the pixels match the tags written below;
    # yuv420p frames come converted already (motion.render_path_yuv), and are only tagged.
    convert = (
        "scale=out_color_matrix=bt709:out_range=tv,format=yuv420p," if pix_fmt == "rgb24" else ""
    )
    command = [
        ffmpeg_exe(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "rawvideo",
        "-pix_fmt",
        pix_fmt,
        "-video_size",
        f"{width}x{height}",
        "-framerate",
        str(fps),
        "-i",
        "pipe:0",
        *_audio_args(audio),
        "-vf",
        f"{convert}setsar=1,"
        "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv",
        *x264_args(crf, preset, width, height, fps),
        "-fps_mode",
        "passthrough",
        # use_metadata_tags keeps arbitrary keys (MP4 otherwise drops all but a fixed list).
        "-movflags",
        "+faststart+use_metadata_tags",
    ]
    for key, value in metadata.items():
        command += ["-metadata", f"{key}={value}"]
    command += ["-f", "mp4", str(path)]
    return command


def _audio_args(audio: AudioTrack | None) -> list[str]:
    """No audio stream, or the track's input and its AAC encoding (both streams mapped)."""
    if audio is None:
        return ["-an"]
    return [
        *audio.input_args,
        "-map",
        "0:v:0",
        "-map",
        "1:a:0",
        "-af",
        audio.filter,
        "-c:a",
        "aac",
        "-b:a",
        audio.bitrate,
        "-ar",
        str(audio.rate),
    ]


def _check_encode_args(
    width: int, height: int, fps: int, crf: int, preset: str, metadata: Mapping[str, str]
) -> None:
    for name, value in (("width", width), ("height", height)):
        if not isinstance(value, int) or value < 2 or value % 2:
            raise ValueError(f"{name} must be an even number of pixels, got {value!r}")
    if not isinstance(fps, int) or not 1 <= fps <= 240:
        raise ValueError(f"fps must be a whole number from 1 to 240, got {fps!r}")
    if not isinstance(crf, int) or not 0 <= crf <= 51:
        raise ValueError(f"crf must be from 0 to 51, got {crf!r}")
    if preset not in X264_PRESETS:
        raise ValueError(f"unknown x264 preset {preset!r}")
    for key, text in metadata.items():
        if not _METADATA_KEY.match(key):
            raise ValueError(f"metadata key {key!r}: letters, digits and _ only")
        if not isinstance(text, str) or "\0" in text:
            raise ValueError(f"metadata {key!r} must be a string without NUL")


def _tail(stream: IO[bytes]) -> str:
    stream.seek(0)
    text = stream.read().decode("utf-8", "replace").strip()
    return text[-_STDERR_TAIL:]


def encode(
    frames: Iterable[np.ndarray],
    path: Path,
    *,
    width: int,
    height: int,
    fps: int,
    crf: int = 20,
    preset: str = "veryfast",
    metadata: Mapping[str, str] | None = None,
    on_frame: Callable[[int], None] | None = None,
    check: Callable[[], None] | None = None,
    audio: AudioTrack | None = None,
    pix_fmt: str = "rgb24",
) -> int:
    """Encode RGB uint8 frames of shape (height, width, 3) to an MP4 at `path`; returns the count.
    With `pix_fmt="yuv420p"` the frames are I420 instead, (height * 3 / 2, width), BT.709 TV
    range (`motion.render_path_yuv`), and go to x264 without a conversion.

    `on_frame(n)` runs after the n-th frame went to the encoder, and `check()` every
    `FLUSH_POLL` seconds while ffmpeg finishes the file after the last one; whatever either
    raises (e.g. `Cancelled`) aborts the encode: ffmpeg is killed, the partial file removed,
    and the exception propagates. An encoder failure raises `RenderError`; a frame of the
    wrong shape or type raises `ValueError`. `audio`, when given, is muxed in the same run.
    """
    tags = dict(metadata or {})
    _check_encode_args(width, height, fps, crf, preset, tags)
    path = Path(path)
    if pix_fmt not in ("rgb24", "yuv420p"):
        raise ValueError(f"pix_fmt must be rgb24 or yuv420p, got {pix_fmt!r}")
    command = _encode_command(path, width, height, fps, crf, preset, tags, audio, pix_fmt)
    expected = (height, width, 3) if pix_fmt == "rgb24" else (height * 3 // 2, width)
    count = 0
    with tempfile.TemporaryFile() as stderr:
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                preexec_fn=die_with_parent(),  # never outlives us
            )
        except OSError as exc:
            log.error("cannot start ffmpeg: %s", exc)
            raise RenderError("the video encoder could not be started") from None
        assert process.stdin is not None
        try:
            for frame in frames:
                if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
                    raise ValueError(f"frame {count}: expected a uint8 numpy array")
                if frame.shape != expected:
                    raise ValueError(f"frame {count} has shape {frame.shape}, expected {expected}")
                try:
                    process.stdin.write(np.ascontiguousarray(frame).data.cast("B"))
                except BrokenPipeError:
                    break  # ffmpeg died: its exit status and stderr say why, below
                count += 1
                if on_frame is not None:
                    on_frame(count)
            with contextlib.suppress(BrokenPipeError):
                process.stdin.close()
            code = _flushed(process, check)
        except BaseException:
            _abort(process, path)
            raise
        if code != 0 or count == 0:
            path.unlink(missing_ok=True)
            if code != 0:
                log.error("ffmpeg exited with %s: %s", code, _tail(stderr))
                raise RenderError("the video encoder failed")
            raise RenderError("no frames to encode", retryable=False)
    log.debug("encoded %d frames %dx%d at %d fps into %s", count, width, height, fps, path.name)
    return count


def _flushed(process: subprocess.Popen[bytes], check: Callable[[], None] | None) -> int:
    """ffmpeg's exit status once it wrote the file (x264 flushes its lookahead: seconds at
    1080p), with a look at `check` every `FLUSH_POLL` seconds meanwhile."""
    while True:
        try:
            return process.wait(timeout=None if check is None else FLUSH_POLL)
        except subprocess.TimeoutExpired:
            assert check is not None
            check()


def _abort(process: subprocess.Popen[bytes], path: Path) -> None:
    """Kill ffmpeg, reap it, close its pipe and remove what it wrote."""
    process.kill()
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
    process.wait()
    path.unlink(missing_ok=True)


_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_VIDEO_STREAM = re.compile(r"^\s*Stream #\d+:\d+.*?: Video: (.*)$", re.MULTILINE)
_SIZE = re.compile(r", (\d+)x(\d+)[ ,]")
_FPS = re.compile(r", ([\d.]+)(k?) fps")
_TBR = re.compile(r", ([\d.]+)(k?) tbr")
_PIX_FMT = re.compile(r"\), ([a-z0-9_]+)(?:\(([^)]*)\))?, \d+x\d+")
_SAR = re.compile(r"\[SAR (\d+:\d+) DAR")
_FRAME = re.compile(r"^frame=(\d+)$", re.MULTILINE)


def check_video(path: Path, *, frames: int, fps: int, width: int, height: int) -> str | None:
    """Why `path` is not the video asked for (None when it is): it must decode to its end
    without an error and hold exactly `frames` frames of `width`x`height`, lasting
    `frames / fps` seconds (within a frame)."""
    try:
        info = probe(path)
    except BadRequest as exc:
        return exc.message
    if (info.width, info.height) != (width, height):
        return f"it is {info.width}x{info.height}, not {width}x{height}"
    if info.frames != frames:
        return f"it has {info.frames} frames, not {frames}"
    if abs(info.duration - frames / fps) > 1.0 / fps:
        return f"it lasts {info.duration:.2f}s, not {frames / fps:.2f}s"
    command = [ffmpeg_exe(), "-v", "error", "-nostdin", "-xerror", "-i", str(path)]
    command += ["-map", "0:v:0", "-f", "null", "-"]
    try:  # a file built to stall the decoder must not hold an executor thread for good
        result = subprocess.run(command, capture_output=True, check=False, timeout=300)
    except subprocess.TimeoutExpired:
        return "it does not decode within 300 s"
    errors = result.stderr.decode("utf-8", "replace").strip()
    if result.returncode != 0 or errors:
        return f"it does not decode: {errors.splitlines()[-1] if errors else result.returncode}"
    return None


def _rate(match: re.Match[str] | None) -> float:
    if match is None:
        return 0.0
    return float(match.group(1)) * (1000.0 if match.group(2) else 1.0)


def _container_metadata(header: str) -> dict[str, str]:
    """The `Metadata:` block of `Input #0`, before its `Duration:` line."""
    metadata: dict[str, str] = {}
    lines = header.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.startswith("Input #0"))
    except StopIteration:
        return metadata
    inside = False
    last = ""
    for line in lines[start + 1 :]:
        if line.startswith("  Metadata:"):
            inside = True
            continue
        if not line.startswith("    "):
            if inside or line.startswith("  Duration"):
                break
            continue
        if not inside:
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        value = value[1:] if value.startswith(" ") else value
        if key:
            metadata[key] = value
            last = key
        elif last:  # a continuation line of a multi-line value
            metadata[last] += "\n" + value
    return metadata


def probe(path: Path) -> VideoInfo:
    """Frames (counted exactly), fps, size, duration and container metadata of a video file."""
    path = Path(path)
    if not path.is_file():
        raise BadRequest("the video file is missing")
    command = [
        ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-i",
        str(path),
        "-map",
        "0:v:0",
        "-c",
        "copy",
        "-f",
        "null",
        "-nostats",
        "-progress",
        "pipe:1",
        "-",
    ]
    result = subprocess.run(command, capture_output=True, check=False)
    header = result.stderr.decode("utf-8", "replace")
    progress = result.stdout.decode("utf-8", "replace")
    stream = _VIDEO_STREAM.search(header)
    if result.returncode != 0 or stream is None:
        log.info("probe failed (%s): %s", result.returncode, header[-_STDERR_TAIL:])
        raise BadRequest("the file is not a readable video")
    description = stream.group(1)
    size = _SIZE.search(description)
    if size is None:
        raise BadRequest("the file is not a readable video")
    fps = _rate(_FPS.search(description)) or _rate(_TBR.search(description))
    frames = [int(n) for n in _FRAME.findall(progress)]
    duration = _DURATION.search(header)
    seconds = 0.0
    if duration is not None:
        hours, minutes, secs = duration.groups()
        seconds = int(hours) * 3600 + int(minutes) * 60 + float(secs)
    codec = description.split(" ", 1)[0].rstrip(",")
    pix = _PIX_FMT.search(description)
    sar = _SAR.search(description)
    return VideoInfo(
        frames=frames[-1] if frames else 0,
        fps=fps,
        width=int(size.group(1)),
        height=int(size.group(2)),
        duration=seconds,
        metadata=_container_metadata(header),
        codec=codec,
        pix_fmt=pix.group(1) if pix else "",
        color=(pix.group(2) or "") if pix else "",
        sar=sar.group(1) if sar else "",
    )


def packet_sizes(path: Path) -> list[int]:
    """The byte size of each video packet (frame) in decoding order: for bitrate over time."""
    command = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path)]
    command += ["-map", "0:v:0", "-c", "copy", "-f", "framecrc", "-"]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        raise BadRequest("the file is not a readable video")
    sizes = []
    for line in result.stdout.decode("utf-8", "replace").splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) >= 6 and not line.startswith("#") and fields[4].isdigit():
            sizes.append(int(fields[4]))
    return sizes


def read_frames(path: Path, *, luma: bool = False) -> Generator[np.ndarray, None, None]:
    """Decode a video into RGB uint8 arrays of shape (height, width, 3), one at a time.

    With `luma`, frames are the coded Y plane alone, shape (height, width), in TV range
    (16-235): the plane that carries the detail, untouched by chroma subsampling and colour
    conversion (the frame's height and width must then be even, as ours are). Closing the
    generator early stops ffmpeg.
    """
    info = probe(path)
    return _read(Path(path), info.width, info.height, "yuv420p" if luma else "rgb24")


def _read(path: Path, width: int, height: int, pix_fmt: str) -> Generator[np.ndarray, None, None]:
    command = [
        ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-i",
        str(path),
        "-map",
        "0:v:0",
        "-f",
        "rawvideo",
        "-pix_fmt",
        pix_fmt,
        "pipe:1",
    ]
    plane = width * height
    # yuv420p: the Y plane comes first, keep it alone.
    size = plane * 3 if pix_fmt == "rgb24" else plane * 3 // 2
    shape: tuple[int, ...] = (height, width, 3) if pix_fmt == "rgb24" else (height, width)
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=stderr,
            preexec_fn=die_with_parent(),  # never outlives us
        )
        assert process.stdout is not None
        try:
            while True:
                buffer = bytearray(size)
                got = process.stdout.readinto(buffer)  # type: ignore[attr-defined]
                if not got:
                    break
                if got != size:
                    raise RenderError("the video ended in the middle of a frame")
                count = plane * 3 if pix_fmt == "rgb24" else plane
                yield np.frombuffer(buffer, dtype=np.uint8, count=count).reshape(shape)
            process.stdout.close()
            if process.wait() != 0:
                log.error("ffmpeg decode failed: %s", _tail(stderr))
                raise RenderError("the video could not be decoded")
        finally:
            if process.poll() is None:
                process.kill()
            process.stdout.close()
            process.wait()


async def reencode(
    source: Path, target: Path, *, width: int, height: int, seconds: float, max_bytes: int
) -> int:
    """Re-encode `source` into `target` at `width`x`height`, aiming at `max_bytes`.

    Bitrate-capped H.264, no audio, the index at the front. Async (ffmpeg in a subprocess, so
    the caller's event loop keeps running; a cancelled call kills ffmpeg). Returns the new size
    in bytes; raises OSError when ffmpeg fails.
    """
    # 4 % for the MP4 container; never below a bitrate x264 can honour.
    kbps = max(50, int(max_bytes * 8 * 0.96 / max(1.0, seconds) / 1000))
    rate = f"{kbps}k"
    command = [
        ffmpeg_exe(),
        "-y",
        "-v",
        "error",
        "-i",
        str(source),
        "-vf",
        f"scale={width}:{height}",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-b:v",
        rate,
        "-maxrate",
        rate,
        "-bufsize",
        rate,
        "-pix_fmt",
        "yuv420p",
        "-movflags",
        "+faststart",
        "-an",
        "-f",
        "mp4",
        str(target),
    ]
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=die_with_parent(),  # never outlives us
    )
    try:
        _, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode != 0:
        tail = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise OSError(f"ffmpeg exited with {process.returncode}: {tail[0]}")
    return (await asyncio.to_thread(target.stat)).st_size


def first_frame_jpeg(video: Path, output: Path, *, quality: int = 3, timeout: float = 60) -> None:
    """Write the first frame of `video` to `output` as a JPEG (`quality`: ffmpeg's -q:v, 2 is
    best). The caller picks `output`: write to a temporary name and rename it."""
    command = [
        ffmpeg_exe(),
        "-hide_banner",
        "-nostdin",
        "-v",
        "error",
        "-i",
        str(video),
        "-frames:v",
        "1",
        # Our videos are BT.709 TV range; a JPEG is read as BT.601 full range, and ffmpeg's
        # default conversion would shift the colours (greens by about 10 levels).
        "-vf",
        "scale=in_color_matrix=bt709:in_range=tv:out_color_matrix=bt601:out_range=pc,"
        "format=yuvj420p",
        "-q:v",
        str(quality),
        "-f",
        "mjpeg",  # one frame of MJPEG is a JPEG file
        "-y",
        str(output),
    ]
    result = subprocess.run(command, capture_output=True, check=False, timeout=timeout)
    if result.returncode != 0 or not output.is_file() or output.stat().st_size == 0:
        log.info("poster failed (%s): %s", result.returncode, result.stderr[-_STDERR_TAIL:])
        raise RenderError("the poster could not be made from the video", retryable=False)
