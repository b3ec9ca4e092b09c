"""Benchmark of the camera-motion engine against ffmpeg's zoompan and the encode-only floor.

One synthetic photo-like 3000x2000 photo, one dolly-in + pan path, 720p (`--resolution`), 6 s at
24 fps (`--fps`):

  ours       load the JPEG, shrink once, resample float boxes, stream to x264 (fanslymotion)
  zoompan    ffmpeg's zoompan filter alone, following the same path
  zoompan8k  the usual anti-jitter trick: zoompan after `scale=8000:-2`
  floor      the same frames, rendered beforehand, piped from memory to the same encoder

Each case runs in a child process; the parent polls the child's process tree in /proc for the
peak RSS (ffmpeg included). Wall and CPU seconds (the child's own plus its ffmpeg's) cover the
work only, not the interpreter start. Jitter is measured on the decoded MP4: between every pair
of consecutive frames, the motion of nine patches (sub-pixel phase correlation, see
tests/imagetools.py) against the motion the ideal path asks for; RMS and worst case in px.

    python bench/motion.py            # full run (a few minutes on two cores)
    python bench/motion.py --quick    # smoke run for CI: smaller, < 60 s, same table
    python bench/motion.py --speed [--roll] [--base COMMIT]   # ours against the floor (and
                                      # ours at COMMIT), alternating run by run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# A child that times another commit's engine (`--base`) imports that commit's package: its
# worktree goes first on the path.
if "--tree" in sys.argv:
    sys.path.insert(0, sys.argv[sys.argv.index("--tree") + 1])

from fanslymotion import motion, photo, video  # noqa: E402
from tests.imagetools import box_displacement, patch_motion, textured_rgb  # noqa: E402

CASES = ("ours", "zoompan", "zoompan8k", "floor")
UPSCALE_WIDTH = 8000


@dataclass(frozen=True)
class Setup:
    photo_w: int
    photo_h: int
    resolution: str
    duration: int
    fps: int
    patch: int  # side of the square patches jitter is measured in
    pair_step: int = 1  # measure every n-th pair of consecutive frames
    roll: bool = False  # the seed's slight roll on top (the service's camera-motion clips)

    @property
    def out_size(self) -> tuple[int, int]:
        return motion.output_size(self.resolution, "16:9", self.photo_w, self.photo_h)

    @property
    def frames(self) -> int:
        return self.duration * self.fps


FULL = Setup(3000, 2000, "720p", 6, 24, 160)
# Smoke run: 12 fps halves every render, and every 6th pair of its frames is enough to show
# zoompan's whole-pixel jitter against ours.
QUICK = Setup(1500, 1000, "360p", 3, 12, 96, pair_step=6)


def region_16_9(photo_w: int, photo_h: int, out_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The largest centred region with exactly the output's aspect and whole-pixel corners.

    zoompan keeps the aspect of its input; cropping the photo to this region first lets it
    follow the same path as ours without stretching.
    """
    out_w, out_h = out_size
    g = math.gcd(out_w, out_h)
    step_w, step_h = out_w // g, out_h // g
    k = min(photo_w // step_w, photo_h // step_h)
    w, h = k * step_w, k * step_h
    return (photo_w - w) // 2, (photo_h - h) // 2, w, h


class BenchPath(motion.CameraPath):
    """Dolly in to 1.3x while panning left by 20 % of the frame, fitted into a 16:9 region."""

    ZOOM = 0.3
    PAN = 0.2

    def __init__(self, setup: Setup) -> None:
        ox, oy, w, h = region_16_9(setup.photo_w, setup.photo_h, setup.out_size)
        seed = 1 if setup.roll else None
        super().__init__("dolly_in", 1.0, (w, h), setup.out_size, seed=seed, roll=setup.roll)
        self.offset = (ox, oy)
        self.region = (w, h)
        self.src_w, self.src_h = setup.photo_w, setup.photo_h

    def windows(self, t: np.ndarray) -> tuple[np.ndarray, ...]:
        e = 0.5 - 0.5 * np.cos(np.pi * t)
        return self.PAN * (0.5 - e), np.zeros_like(t), 1.0 + self.ZOOM * e

    def box(self, t: float) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = super().box(t)
        ox, oy = self.offset
        return x0 + ox, y0 + oy, x1 + ox, y1 + oy

    def zoompan_filter(self, setup: Setup, scale: float) -> str:
        """zoompan expressions for the same path on the region, enlarged `scale` times."""
        n = setup.frames
        region_w = self.region[0]
        # Within the region (before the offset): box(t) = anchor + cx*base - size/2.
        e = f"(0.5-0.5*cos(PI*on/{n - 1}))"
        z = f"(1+{self.ZOOM}*{e})"
        zoom = f"{region_w}*{z}/{self.base_w!r}"
        x = f"({self.anchor_x!r}+{self.PAN}*(0.5-{e})*{self.base_w!r}-{self.base_w!r}/{z}/2)*{scale!r}"
        y = f"({self.anchor_y!r}-{self.base_h!r}/{z}/2)*{scale!r}"
        out_w, out_h = setup.out_size
        return f"zoompan=z='{zoom}':x='{x}':y='{y}':d={n}:s={out_w}x{out_h}:fps={setup.fps}"


def make_photo(setup: Setup, path: Path) -> None:
    """A photo-like texture (natural 1/f spectrum) plus hard-edged shapes, saved as JPEG."""
    from PIL import Image, ImageDraw

    pixels = textured_rgb(setup.photo_w, setup.photo_h, seed=7, scale=1.5)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    rng = np.random.default_rng(7)
    for _ in range(40):
        x, y = rng.uniform(0, setup.photo_w), rng.uniform(0, setup.photo_h)
        r = rng.uniform(20, setup.photo_w / 15)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.ellipse((x - r, y - r, x + r, y + r), outline=colour, width=max(2, int(r / 10)))
    image.save(path, quality=92)


def _encoder_args(crf: int, width: int, height: int, fps: int) -> list[str]:
    # Exactly the service's encoder options (see video.x264_args), for zoompan too.
    return [*video.x264_args(crf, "veryfast", width, height, fps), "-movflags", "+faststart"]


# --- child side -------------------------------------------------------------------------


def _system_busy() -> float:
    """CPU seconds all processes on the machine have used since boot (from /proc/stat)."""
    with open("/proc/stat") as fh:
        values = [int(v) for v in fh.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_case(
    case: str, setup: Setup, photo_path: Path, out: Path, *, crf: int = 20, variant: str = ""
) -> dict[str, float]:
    """One case, timed from the photo on disk to the finished MP4."""
    threads = apply_variant(variant)
    # As a running service is: its renderer imported Pillow's plugins and loaded numba's
    # kernels when it started (a base commit from before `photo.warm` gets the same import).
    getattr(photo, "warm", Image.init)()
    if ENGINE == "yuv":
        motion.warm()
    path = BenchPath(setup)
    out_w, out_h = setup.out_size
    n = setup.frames
    if case == "floor":
        image = photo.load_photo(photo_path)
        frames = list(our_frames(image, path, n))
        del image
    wall0, cpu0, busy0 = time.perf_counter(), _cpu(), _system_busy()
    if case in ("ours", "floor"):
        source: Iterator[np.ndarray]
        if case == "ours":
            image = photo.load_photo(photo_path)
            source = our_frames(image, path, n, threads=threads)
        else:
            source = iter(frames)
        pix_fmt = "yuv420p" if ENGINE == "yuv" else "rgb24"
        video.encode(
            source, out, width=out_w, height=out_h, fps=setup.fps, crf=crf, pix_fmt=pix_fmt
        )
    else:
        ox, oy, w, h = region_16_9(setup.photo_w, setup.photo_h, setup.out_size)
        chain = f"crop={w}:{h}:{ox}:{oy}"
        scale = 1.0
        if case == "zoompan8k":
            chain += f",scale={UPSCALE_WIDTH}:-2"
            scale = UPSCALE_WIDTH / w
        chain += "," + path.zoompan_filter(setup, scale)
        command = [video.ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y"]
        command += ["-i", str(photo_path), "-vf", chain, "-frames:v", str(n)]
        command += [*_encoder_args(crf, out_w, out_h, setup.fps), "-f", "mp4", str(out)]
        subprocess.run(command, check=True)
    wall, cpu = time.perf_counter() - wall0, _cpu() - cpu0
    # What the rest of the machine ran meanwhile, in cores: shared machines are noisy.
    others = max(0.0, _system_busy() - busy0 - cpu) / wall
    return {"wall": wall, "cpu": cpu, "others": others}


# The frame renderer: "yuv" (motion.render_path_yuv, the service's: I420 frames from the
# compiled resampler, piped as yuv420p) or "pillow" (motion.render_path: RGB frames from Pillow,
# piped as rgb24 and converted by ffmpeg, the renderer before issue 21). The floor is fed the
# same frames in the same format, so each ratio compares like with like.
ENGINE = "yuv"


def our_frames(
    image: Image.Image, path: motion.FramePath, n: int, threads: int | None = None
) -> Iterator[np.ndarray]:
    if ENGINE == "yuv":
        return motion.render_path_yuv(image, path, n, threads=threads)
    return motion.render_path(image, path, n, threads=threads)


def luma(frames: Iterable[np.ndarray], height: int) -> Iterator[np.ndarray]:
    """What jitter is measured on: the Y plane of I420 frames (RGB frames as they are)."""
    for frame in frames:
        yield frame[:height] if frame.ndim == 2 else frame


# Alternatives to the engine's defaults, measured with --variants (see docs/benchmarks.md).
VARIANTS = {
    "Pillow RGB frames (the renderer before)": "engine=pillow",
    "no worker thread": "threads=0",
    "1 worker thread": "threads=1",
    "3 worker threads": "threads=3",
    "bilinear": "filter=bilinear",
    "no oversampling": "oversample=1.0",
}


def apply_variant(variant: str) -> int | None:
    """Set the engine's knobs for a variant ("key=value,..."); returns the thread count."""
    global ENGINE
    threads = None
    for item in filter(None, variant.split(",")):
        key, value = item.split("=")
        if key == "engine":
            ENGINE = value
        elif key == "threads":
            threads = int(value)
        elif key == "filter":
            motion.FRAME_FILTER = getattr(Image.Resampling, value.upper())
        elif key == "oversample":
            motion.OVERSAMPLE = float(value)
    return threads


# --- parent side ------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                found += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return found


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def tree_rss(pid: int) -> int:
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += _rss(current)
        stack += _children(current)
    return total


def measure_child(args: list[str]) -> tuple[dict[str, float], int]:
    """Run this script as a child with `args`; its JSON result and the tree's peak RSS."""
    process = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE)
    peak = 0
    done = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_rss(process.pid))
            done.wait(0.01)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    stdout, _ = process.communicate()
    done.set()
    poller.join()
    if process.returncode != 0:
        raise SystemExit(f"benchmark case failed: {' '.join(args)}")
    return json.loads(stdout), peak


def jitter(frames: Iterable[np.ndarray], setup: Setup, path: BenchPath) -> tuple[float, float]:
    """RMS and worst deviation (px) of the measured frame-to-frame motion from the ideal."""
    out_w, out_h = setup.out_size
    centres = [
        (int(out_w * fx), int(out_h * fy)) for fy in (0.25, 0.5, 0.75) for fx in (0.2, 0.5, 0.8)
    ]
    boxes = list(path.boxes(setup.frames))
    errors: list[float] = []
    previous: np.ndarray | None = None
    for i, frame in enumerate(frames):
        if previous is not None and i % setup.pair_step == 0:
            for dx, dy, px, py in patch_motion(previous, frame, centres, setup.patch):
                ex, ey = box_displacement(boxes[i - 1], boxes[i], (out_w, out_h), (px, py))
                errors.append(math.hypot(dx - ex, dy - ey))
        previous = frame
    values = np.array(errors)
    return float(np.sqrt(np.mean(values**2))), float(values.max())


def video_jitter(out: Path, setup: Setup, path: BenchPath) -> str:
    rms, worst = jitter(video.read_frames(out, luma=True), setup, path)
    return f"{rms:.4f} / {worst:.4f}"


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in text.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs, {model}, Python {platform.python_version()}"


def timed(
    case: str,
    setup: Setup,
    photo_path: Path,
    out: Path,
    repeat: int,
    variant: str = "",
    tree: Path | None = None,
) -> tuple[float, float, int, float]:
    """Median wall and CPU seconds over `repeat` runs, the highest peak RSS, and the highest
    load (in cores) that other processes put on the machine meanwhile. With `tree`, the
    case runs that worktree's engine."""
    runs = []
    for _ in range(repeat):
        child = ["--case", case, "--photo", str(photo_path), "--out", str(out)]
        child += ["--setup", json.dumps(setup.__dict__), "--variant", f"engine={ENGINE},{variant}"]
        child += ["--tree", str(tree)] if tree else []
        runs.append(measure_child(child))
    walls = sorted(r["wall"] for r, _ in runs)
    cpus = sorted(r["cpu"] for r, _ in runs)
    others = max(r["others"] for r, _ in runs)
    BACKGROUND.append(others)
    return walls[len(walls) // 2], cpus[len(cpus) // 2], max(peak for _, peak in runs), others


BACKGROUND: list[float] = []  # other processes' load during each timed case, in cores


def speed_only(
    setup: Setup,
    photo_path: Path,
    work: Path,
    repeat: int,
    path: BenchPath,
    base: tuple[str, Path] | None = None,
) -> int:
    """The speed target alone: ours and the floor timed, ours' frames measured for jitter;
    with `base` (a commit and its worktree), ours at that commit too."""
    # Ours and the floor alternate, run by run, so a change in the machine's load between
    # runs falls on both sides rather than on one.
    runs: dict[str, list[tuple[float, float, int, float]]] = {"ours": [], "floor": []}
    trees: dict[str, Path | None] = {"ours": None, "floor": None}
    if base:
        runs[f"ours at {base[0]}"] = []
        trees[f"ours at {base[0]}"] = base[1]
    for _ in range(repeat):
        for case in runs:
            kind = "floor" if case == "floor" else "ours"
            out = work / f"{case}.mp4".replace(" ", "-")
            runs[case].append(timed(kind, setup, photo_path, out, 1, tree=trees[case]))
    walls = {}
    print()
    print("| case | wall s | CPU s | peak RSS MiB | other load |")
    print("|---|---:|---:|---:|---:|")
    for case, timings in runs.items():
        wall = float(np.median([t[0] for t in timings]))
        cpu = float(np.median([t[1] for t in timings]))
        peak, others = max(t[2] for t in timings), max(t[3] for t in timings)
        walls[case] = (wall, cpu)
        print(f"| {case} | {wall:.2f} | {cpu:.2f} | {peak / 2**20:.0f} | {others:.2f} |")
    ratio = walls["ours"][0] / walls["floor"][0]
    cpu_ratio = walls["ours"][1] / walls["floor"][1]
    # Each round's own ratio (ours over the floor run right after it): the host's drift from
    # minute to minute shows here as the spread, and mostly cancels within a round.
    rounds = sorted(o[0] / f[0] for o, f in zip(runs["ours"], runs["floor"], strict=True))
    print()
    print(
        f"rounds' own wall ratios: median {float(np.median(rounds)):.2f}x,"
        f" {rounds[0]:.2f}-{rounds[-1]:.2f}x over {len(rounds)}"
    )
    if setup.roll:  # the upright model does not describe rolled frames (tests measure them)
        print("jitter: not measured for rolled frames here (tests/test_resample.py does)")
    else:
        image = photo.load_photo(photo_path)
        frames = luma(our_frames(image, path, setup.frames), setup.out_size[1])
        rms, worst = jitter(frames, setup, path)
        print(f"jitter of our frames before encoding, RMS / max: {rms:.4f} / {worst:.4f} px")
    print(
        f"target wall <= 1.3x floor: {ratio:.2f}x (CPU {cpu_ratio:.2f}x),"
        f" {'met' if ratio <= 1.3 else 'NOT met'}"
    )
    if base:
        then = walls[f"ours at {base[0]}"]
        print(
            f"at {base[0]}: {then[0] / walls['floor'][0]:.2f}x the floor"
            f" (CPU {then[1] / walls['floor'][1]:.2f}x); ours now / then:"
            f" wall {walls['ours'][0] / then[0]:.2f}x, CPU {walls['ours'][1] / then[1]:.2f}x"
        )
    return 0


@contextlib.contextmanager
def worktree(commit: str | None) -> Iterator[tuple[str, Path] | None]:
    """A detached git worktree of `commit` for the span of the block (None without one)."""
    if not commit:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="bench-base-") as tmp:
        tree = Path(tmp) / "tree"
        command = ["git", "worktree", "add", "--detach", str(tree), commit]
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        try:
            yield commit, tree
        finally:
            remove = ["git", "worktree", "remove", "--force", str(tree)]
            subprocess.run(remove, cwd=ROOT, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (< 60 s)")
    parser.add_argument("--variants", action="store_true", help="also time engine alternatives")
    parser.add_argument("--repeat", type=int, help="timed runs per case (median; default 3, 1)")
    parser.add_argument("--fps", type=int, help="frames per second (default 24, the service's)")
    parser.add_argument("--resolution", choices=list(motion.RESOLUTIONS), help="default 720p")
    parser.add_argument(
        "--speed", action="store_true", help="only ours against the floor, and ours' jitter"
    )
    parser.add_argument(
        "--roll", action="store_true", help="with the seed's slight roll, as the service renders"
    )
    parser.add_argument(
        "--base", help="with --speed: ours at this commit too (a git worktree), alternating"
    )
    parser.add_argument("--tree", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    parser.add_argument("--photo", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--setup", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="", help=argparse.SUPPRESS)
    parser.add_argument(
        "--engine",
        choices=("yuv", "pillow"),
        default="yuv",
        help="frame renderer: yuv (the service's) or pillow (RGB, the one before)",
    )
    args = parser.parse_args()

    apply_variant(f"engine={args.engine}")
    if args.case:  # child
        setup = Setup(**json.loads(args.setup))
        result = run_case(args.case, setup, args.photo, args.out, variant=args.variant)
        print(json.dumps(result))
        return 0

    setup = QUICK if args.quick else FULL
    if args.fps or args.resolution:
        setup = replace(
            setup, fps=args.fps or setup.fps, resolution=args.resolution or setup.resolution
        )
    if args.roll:
        setup = replace(setup, roll=True)
    repeat = args.repeat or (1 if args.quick else 3)
    started = time.perf_counter()
    out_w, out_h = setup.out_size
    print(f"machine: {machine()}; frame renderer: {ENGINE}")
    print(
        f"photo {setup.photo_w}x{setup.photo_h} JPEG, video {out_w}x{out_h}, {setup.duration} s at"
        f" {setup.fps} fps ({setup.frames} frames), dolly in 1.3x + pan left 20 %"
        f"{' + the seed-1 roll' if setup.roll else ''}, x264 veryfast CRF 20;"
        f" median of {repeat} run(s)"
    )
    with tempfile.TemporaryDirectory(prefix="bench-motion-") as tmp:
        work = Path(tmp)
        photo_path = work / "photo.jpg"
        make_photo(setup, photo_path)
        path = BenchPath(setup)
        if args.speed:
            with worktree(args.base) as base:
                return speed_only(setup, photo_path, work, repeat, path, base)

        rows: dict[str, tuple[float, float, int, float, str, str]] = {}
        for case in CASES:
            out = work / f"{case}.mp4"
            wall, cpu, peak, others = timed(case, setup, photo_path, out, repeat)
            info = video.probe(out)
            assert (info.width, info.height, info.frames) == (out_w, out_h, setup.frames), info
            if case == "floor":
                lossy = lossless = "(the frames of ours)"
            else:
                lossy = video_jitter(out, setup, path)
                # The same pipeline encoded losslessly: the geometry alone, without H.264's
                # quarter-pel motion compensation (which snaps slow motion at any normal CRF).
                exact = work / f"{case}-lossless.mp4"
                run_case(case, setup, photo_path, exact, crf=0)
                lossless = video_jitter(exact, setup, path)
            rows[case] = (wall, cpu, peak, others, lossless, lossy)
        floor_wall, floor_cpu = rows["floor"][:2]

        image = photo.load_photo(photo_path)
        frames = luma(our_frames(image, path, setup.frames), out_h)
        rms, worst = jitter(frames, setup, path)
        # The instrument itself: frames resampled independently (Lanczos, straight from the
        # full photo), measured the same way.
        size = setup.out_size
        reference = (
            np.asarray(image.resize(size, Image.Resampling.LANCZOS, box=box))
            for box in path.boxes(setup.frames)
        )
        ref_rms, ref_worst = jitter(reference, setup, path)
        del image

        print()
        print(
            "| case | wall s | CPU s | peak RSS MiB | wall / floor | CPU / floor |"
            " jitter px, lossless (RMS / max) | jitter px, CRF 20 (RMS / max) | other load |"
        )
        print("|---|---:|---:|---:|---:|---:|---|---|---:|")
        for case, (wall, cpu, peak, others, lossless, lossy) in rows.items():
            print(
                f"| {case} | {wall:.2f} | {cpu:.2f} | {peak / 2**20:.0f} | {wall / floor_wall:.2f} |"
                f" {cpu / floor_cpu:.2f} | {lossless} | {lossy} | {others:.2f} |"
            )
        print()
        print(f"jitter of our frames before encoding, RMS / max: {rms:.4f} / {worst:.4f} px")
        print(
            f"jitter of independent Lanczos reference frames (the instrument's floor):"
            f" {ref_rms:.4f} / {ref_worst:.4f} px"
        )

        if args.variants:
            print()
            print(
                "| ours, variant | wall s | CPU s | wall / floor | jitter px before encoding"
                " (RMS / max) | other load |"
            )
            print("|---|---:|---:|---:|---|---:|")
            default = f"default ({motion.render_threads()} worker threads)"
            for name, variant in {default: "", **VARIANTS}.items():
                out = work / "variant.mp4"
                wall, cpu, _, others = timed("ours", setup, photo_path, out, repeat, variant)
                threads = apply_variant(variant)
                image = photo.load_photo(photo_path)
                frames = our_frames(image, path, setup.frames, threads=threads)
                v_rms, v_worst = jitter(luma(frames, out_h), setup, path)
                apply_variant(f"filter=bicubic,oversample=1.25,engine={args.engine}")
                print(
                    f"| {name} | {wall:.2f} | {cpu:.2f} | {wall / floor_wall:.2f} |"
                    f" {v_rms:.4f} / {v_worst:.4f} | {others:.2f} |"
                )

        # Memory against clip length: frames are streamed, so it should not grow.
        print()
        lengths = (3, 6) if args.quick else (3, 12)
        peaks = []
        for duration in lengths:
            s = Setup(
                setup.photo_w,
                setup.photo_h,
                "480p" if args.quick else "1080p",
                duration,
                setup.fps,
                0,
            )
            wall, _, peak, _ = timed("ours", s, photo_path, work / "rss.mp4", 1)
            peaks.append(peak)
            w, h = s.out_size
            print(
                f"ours {w}x{h}, {duration:2d} s ({s.frames} frames): peak RSS of the process tree"
                f" {peak / 2**20:.0f} MiB, wall {wall:.2f} s"
            )

        ratio = rows["ours"][0] / floor_wall
        worst_lossless = float(rows["ours"][4].split(" / ")[1])
        grow = peaks[1] / peaks[0]
        print()
        print(f"target wall <= 1.3x floor: {ratio:.2f}x, {'met' if ratio <= 1.3 else 'NOT met'}")
        print(
            f"target wall <= 1.15x floor (the first target, at 12 fps): {ratio:.2f}x,"
            f" {'met' if ratio <= 1.15 else 'NOT met'}"
        )
        print(
            f"target jitter <= 0.01 px: max {worst:.4f} before encoding,"
            f" {worst_lossless:.4f} after a lossless encode"
            f" (the instrument's own floor: {ref_worst:.4f}),"
            f" {'met' if max(worst, worst_lossless) <= 0.01 else 'NOT met'}"
        )
        print(f"target RSS long <= 1.2x short: {grow:.2f}x, {'met' if grow <= 1.2 else 'NOT met'}")
    print(
        f"other load: what other processes ran during a timed case, in cores (up to"
        f" {max(BACKGROUND):.2f}); timings are only comparable where it is near 0"
    )
    print(f"benchmark took {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
