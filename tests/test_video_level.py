"""The encoder keeps every stream within the H.264 level it declares, with a keyframe every 2 s.

A noisy photo is the worst case for the bitrate: CRF alone would let it run far past the
level's ceiling. The VBV model guarantees that the bits of any stretch of t seconds stay under
maxrate x t + bufsize; the test checks that bound on the whole file and reads the level back
from the stream's own header (avcC).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from fanslymotion import video


def _avc_level(path: Path) -> str:
    data = path.read_bytes()
    box = data.index(b"avcC")
    level = data[box + 4 + 3]  # version, profile, compatibility, level
    return f"{level // 10}.{level % 10}"


def _keyframes(path: Path) -> list[int]:
    """Indexes of the frames a decoder can start from."""
    command = [video.ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path)]
    command += ["-vf", "showinfo", "-f", "null", "-"]
    out = subprocess.run(command, capture_output=True, check=True).stderr.decode()
    lines = (re.search(r" n: *(\d+) .* iskey:1 ", line) for line in out.splitlines())
    return [int(found.group(1)) for found in lines if found]


def _noise(width: int, height: int, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


@pytest.mark.parametrize(
    ("width", "height", "level"),
    [(640, 360, "3.0"), (854, 480, "3.0"), (1280, 720, "3.1"), (1920, 1080, "4.0")],
)
def test_noise_stays_under_the_ceiling_of_its_level(
    tmp_path: Path, width: int, height: int, level: str
) -> None:
    fps, seconds = 4, 3
    out = tmp_path / "noise.mp4"
    video.encode(_noise(width, height, fps * seconds), out, width=width, height=height, fps=fps)
    maxrate, bufsize = video.vbv(width, height)
    bits = out.stat().st_size * 8
    # The container adds a few kB of boxes around the stream.
    assert bits <= (maxrate * seconds + bufsize) * 1000 + 64_000
    assert _avc_level(out) == level == video.h264_level(width, height, fps)


def test_a_keyframe_every_two_seconds(tmp_path: Path) -> None:
    """A slow pan over a gradient: no scene cut, so the keyframes are the fixed interval's."""
    fps, seconds, width, height = 6, 5, 320, 180
    x = np.arange(width * 2, dtype=np.float32)
    row = (127 + 100 * np.sin(x / 23.0)).astype(np.uint8)
    frames = [
        np.repeat(np.repeat(row[i : i + width][None, :, None], height, 0), 3, 2)
        for i in range(fps * seconds)
    ]
    out = tmp_path / "pan.mp4"
    video.encode(frames, out, width=width, height=height, fps=fps)
    keys = _keyframes(out)
    gaps = [b - a for a, b in zip(keys, [*keys[1:], fps * seconds], strict=True)]
    assert keys[0] == 0 and len(keys) >= 3 and max(gaps) <= 2 * fps, keys


def test_a_12_s_1080p_clip_fits_40_mb_at_any_frame_rate_the_level_allows() -> None:
    maxrate, bufsize = video.vbv(1920, 1080)
    worst_bytes = (maxrate * 12 + bufsize) * 1000 / 8
    assert worst_bytes < 40e6
    assert video.h264_level(1920, 1080, 12) == "4.0"
    assert video.h264_level(1080, 1920, 30) == "4.0"  # portrait: the same macroblocks
