"""Interpolation quality where the truth is known: a 24 fps render with every other frame dropped.

The camera-motion engine renders a clip at 24 fps; the even frames (12 fps) go through
`fanslymotion.interpolate` at factor 2, and each made frame is compared with the odd frame it
replaces (PSNR over the whole frame, in dB, mean over the clip's made frames), against the two
baselines: plain blending (the average of the neighbours) and repeating the previous frame.
Photos: scikit-image's astronaut, coffee, chelsea and rocket (upscaled 3x with Lanczos so the
360p frames are downscales, as from a real photo) and a synthetic 3000x2000 photo-like texture.

    .venv/bin/python bench/interpolate.py            # the table in docs/benchmarks.md
    .venv/bin/python bench/interpolate.py --quick    # one photo, two presets (a smoke run)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fanslymotion import interpolate, motion  # noqa: E402
from tests.imagetools import textured_photo  # noqa: E402

PRESETS = ("pan_l", "tilt_up", "dolly_in", "micro")


def photos(quick: bool) -> dict[str, Image.Image]:
    from skimage import data

    names = ("astronaut",) if quick else ("astronaut", "coffee", "chelsea", "rocket")
    out = {}
    for name in names:
        image = Image.fromarray(np.asarray(getattr(data, name)())).convert("RGB")
        out[name] = image.resize((image.width * 3, image.height * 3), Image.Resampling.LANCZOS)
    if not quick:
        out["texture"] = textured_photo(3000, 2000, seed=1, scale=1.5)
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    err = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float(10 * np.log10(255.0**2 / max(err, 1e-12)))


def measure(
    image: Image.Image, preset: str, strength: float, resolution: str, seconds: int
) -> tuple[float, float, float, float]:
    """(made, blended, repeated) mean PSNR over the dropped frames, and ms per made frame."""
    size = motion.output_size(resolution, "16:9", *image.size)
    frames = list(
        motion.motion_frames(
            image, out_size=size, n_frames=seconds * 24 + 1, preset=preset, strength=strength
        )
    )
    kept = frames[::2]
    started = time.perf_counter()
    made = list(interpolate.interpolate(kept, 2))
    per_frame = (time.perf_counter() - started) / (len(kept) - 1) * 1000
    blended = list(interpolate.blend(kept, 2))
    dropped = range(1, len(frames), 2)
    return (
        float(np.mean([psnr(made[i], frames[i]) for i in dropped])),
        float(np.mean([psnr(blended[i], frames[i]) for i in dropped])),
        float(np.mean([psnr(frames[i - 1], frames[i]) for i in dropped])),
        per_frame,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one photo, two presets")
    parser.add_argument("--resolution", default="360p", choices=list(motion.RESOLUTIONS))
    args = parser.parse_args()
    presets = PRESETS[::2] if args.quick else PRESETS
    strengths = (1.0,) if args.quick else (0.5, 1.0)
    seconds = 1 if args.quick else 2
    print(
        f"{args.resolution} 16:9, {seconds} s at 24 fps; every other frame dropped and made again"
        " at factor 2 from the 12 fps that remain; PSNR dB of the made frames against the"
        " dropped ones (mean over the clip)"
    )
    print()
    print("| photo | preset | strength | motion-compensated | blend | repeat | ms / made frame |")
    print("|---|---|---:|---:|---:|---:|---:|")
    totals: list[tuple[float, float, float]] = []
    for name, image in photos(args.quick).items():
        for preset in presets:
            for strength in strengths:
                made, blended, repeated, ms = measure(
                    image, preset, strength, args.resolution, seconds
                )
                totals.append((made, blended, repeated))
                print(
                    f"| {name} | {preset} | {strength:g} | {made:.2f} | {blended:.2f} |"
                    f" {repeated:.2f} | {ms:.0f} |"
                )
    made, blended, repeated = (float(np.mean(column)) for column in zip(*totals, strict=True))
    print(f"| **mean** | | | **{made:.2f}** | {blended:.2f} | {repeated:.2f} | |")
    print()
    print(
        f"motion-compensated beats blending by {made - blended:.1f} dB and repeating by"
        f" {made - repeated:.1f} dB on average"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
