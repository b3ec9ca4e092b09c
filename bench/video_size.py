"""Size and bitrate of a 12 s clip at each resolution, for the worst photo and a typical one.

    .venv/bin/python bench/video_size.py            # 12 s at 12 fps, every resolution
    .venv/bin/python bench/video_size.py --quick    # 3 s, 360p and 1080p (the test's smoke run)

The worst case for the encoder is white noise: every pixel new in every frame, which CRF alone
would encode at ~30 Mbit/s at 1080p. A test chart (bars, gradients, fine lines, text-like
detail) stands for a photo. Each clip is a real render (`MotionRenderer`, `dolly_in`, the
service's settings), so the numbers include the camera path. The table says, per clip: bytes,
average Mbit/s, the busiest second's Mbit/s, the VBV ceiling, and the H.264 level declared.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from fanslymotion import video
from fanslymotion.config import Settings
from fanslymotion.renderer import MotionRenderer, RenderSpec, RenderTask

RESOLUTIONS = ("360p", "480p", "720p", "1080p")


def noise_photo(width: int = 2400, height: int = 1600) -> bytes:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def chart_photo(width: int = 2400, height: int = 1600) -> bytes:
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    colours = ["#ffffff", "#ffff00", "#00ffff", "#00ff00", "#ff00ff", "#ff0000", "#0000ff", "#000"]
    bar = width // len(colours)
    for i, colour in enumerate(colours):
        draw.rectangle([i * bar, 0, (i + 1) * bar, height // 3], fill=colour)
    ramp = np.tile(np.linspace(0, 255, width, dtype=np.uint8), (height // 3, 1))
    image.paste(Image.fromarray(ramp).convert("RGB"), (0, height // 3))
    for x in range(0, width, 6):  # fine lines: the detail a camera move shows off
        draw.line([x, 2 * height // 3, x + 40, height], fill="black", width=1)
    for y in range(2 * height // 3, height, 24):
        draw.text((20, y), "FanslyMotion 0123456789 " * 12, fill="#333")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def busiest_second(path: Path, fps: int) -> float:
    """Mbit/s of the densest second: the packet sizes, summed over each run of `fps` frames."""
    sizes = video.packet_sizes(path)
    windows = [sum(sizes[i : i + fps]) for i in range(max(1, len(sizes) - fps + 1))]
    return max(windows) * 8 / 1e6


def measure(photo: bytes, resolution: str, seconds: int, folder: Path) -> dict[str, Any]:
    settings = Settings(_env_file=None, fps=12)
    source = folder / "photo.png"
    source.write_bytes(photo)
    out = folder / f"{resolution}.mp4"
    spec = RenderSpec(duration=seconds, resolution=resolution, motion="dolly_in", fps=settings.fps)
    renderer = MotionRenderer(settings)
    renderer.load()
    result = renderer.render(
        RenderTask("bench", spec, source, out), lambda _: None, threading.Event()
    )
    size = out.stat().st_size
    maxrate, _ = video.vbv(result.width, result.height)
    return {
        "resolution": resolution,
        "size": f"{result.width}x{result.height}",
        "bytes": size,
        "mbit_s": round(size * 8 / seconds / 1e6, 2),
        "busiest_second_mbit_s": round(busiest_second(out, settings.fps), 2),
        "ceiling_mbit_s": maxrate / 1000,
        "level": video.h264_level(result.width, result.height, settings.fps),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    seconds = 3 if args.quick else 12
    resolutions = ("360p", "1080p") if args.quick else RESOLUTIONS
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, photo in (("noise", noise_photo()), ("chart", chart_photo())):
            for resolution in resolutions:
                row = {"photo": name, **measure(photo, resolution, seconds, Path(tmp))}
                rows.append(row)
                print(
                    f"{name:6} {row['size']:>10} {row['bytes'] / 1e6:7.2f} MB"
                    f" {row['mbit_s']:6.2f} Mbit/s avg {row['busiest_second_mbit_s']:6.2f} peak 1 s"
                    f" (ceiling {row['ceiling_mbit_s']:g}, level {row['level']})",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps({"seconds": seconds, "clips": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
