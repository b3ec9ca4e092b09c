"""Test helpers for stories: real photos (scikit-image's bundled ones), still shots, and music
made with numpy and written as WAV (or transcoded by ffmpeg)."""

from __future__ import annotations

import io
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from fanslymotion.video import ffmpeg_exe

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def photo(name: str) -> Image.Image:
    return Image.fromarray(getattr(data, name)())


def photo_jpeg(name: str) -> bytes:
    buffer = io.BytesIO()
    photo(name).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def still(name: str, size: tuple[int, int]) -> np.ndarray:
    """The photo centre-cropped and resized to `size` (width, height): a shot that holds still."""
    image = photo(name)
    width, height = size
    scale = max(width / image.width, height / image.height)
    w, h = width / scale, height / scale
    box = (
        (image.width - w) / 2,
        (image.height - h) / 2,
        (image.width + w) / 2,
        (image.height + h) / 2,
    )
    return np.asarray(image.resize(size, Image.Resampling.BICUBIC, box=box))


def repeat(frame: np.ndarray, n: int) -> Iterator[np.ndarray]:
    for _ in range(n):
        yield frame


def tune(seconds: float, *, rate: int = 44_100, level: float = 0.05, seed: int = 0) -> np.ndarray:
    """A few bars of chords with an envelope and a little noise, mono float in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    notes = (220.0, 277.2, 329.6, 440.0, 293.7, 370.0)
    signal = np.zeros_like(t)
    for i, f in enumerate(notes):
        beat = 0.5 + 0.5 * np.sin(2 * np.pi * (0.5 + 0.1 * i) * t + i)
        signal += np.sin(2 * np.pi * f * t) * beat
    signal = signal / np.abs(signal).max() + 0.05 * rng.standard_normal(t.size)
    out: np.ndarray = np.clip(signal * level / np.sqrt(np.mean(signal**2)), -1.0, 1.0)
    return out


def write_wav(path: Path, samples: np.ndarray, rate: int = 44_100) -> Path:
    pcm = np.rint(np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path


def transcode(source: Path, target: Path, *args: str) -> Path:
    command = [ffmpeg_exe(), "-v", "error", "-y", "-i", str(source), *args, str(target)]
    subprocess.run(command, check=True, capture_output=True)
    return target
