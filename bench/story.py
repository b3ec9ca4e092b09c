"""A story's render time against the encode-only floor of the same frames and audio.

    .venv/bin/python bench/story.py            # 6 shots, 30 s, 1080p, 24 fps (issue 25's case)
    .venv/bin/python bench/story.py --quick    # 3 shots, 6 s, 360p (the test's smoke run)

The story: six photos (scikit-image's own), crossfades of 0.6 s, a caption on every shot, a
text watermark, the `film` look and music (a synthesised tune, normalised, faded, muxed as AAC).
Four runs, side by side in one process:

- `floor`: the encoder alone: ffmpeg re-encodes the story's own output (the same frames, decoded
  in ffmpeg, which costs little beside x264) with the same music track and x264 settings; run
  twice (before and after `compose`), the faster counts;
- `compose`: the compositor over still shots (I420 photos in the look; captions, transitions,
  watermark, music): the compositor's own cost and the encode of frames that do not move;
- `story`: the whole story job's work: every shot rendered by the camera-motion engine in I420
  (`motion.render_path_yuv` over the photo in the story's look) and streamed through the
  compositor, in I420, into the encoder (`compositor.write`), as `story_render` does;
- `story, RGB shots (baseline)`: the previous way: the compiled resampler's RGB frames,
  composed in RGB and converted to I420 by ffmpeg (`i420=False`).

The target is `story` within 1.3x of `floor`. Peak memory: the compositor's traced peak (numpy
reports its buffers to tracemalloc) for a story of half the shots and of all of them; it must
not grow with the number of shots.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from fanslymotion import camera, compositor, looks, motion, music, video, ycbcr
from fanslymotion.story import Story, StoryShot, Transition, Watermark

TARGET = 1.3
MOTIONS = ("dolly_in", "pan_l", "micro", "pan_r", "tilt_up", "dolly_in")
CAPTIONS = (
    "Morning light over the bay",
    "Кофе перед дорогой",
    "The cat who runs the house",
    "Launch day",
    "Ещё один вид на залив",
    "Home again",
)


def photos() -> list[Image.Image]:
    from skimage import data

    base = [
        Image.fromarray(getattr(data, n)()) for n in ("astronaut", "coffee", "chelsea", "rocket")
    ]
    return [*base, ImageOps.mirror(base[1]), ImageOps.mirror(base[0])]


def tune_wav(path: Path, seconds: float, rate: int = 44_100) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    signal = sum(
        np.sin(2 * np.pi * f * t) * (0.6 + 0.4 * np.sin(t + i))
        for i, f in enumerate((220, 277.2, 329.6, 440))
    )
    pcm = np.rint(signal / np.abs(signal).max() * 0.3 * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path


def story_of(shots: int, seconds: float) -> Story:
    return Story(
        tuple(StoryShot(seconds, MOTIONS[i], 0.5, caption=CAPTIONS[i]) for i in range(shots)),
        (Transition("crossfade", 0.6),) * (shots - 1),
        look="film",
        watermark=Watermark(text="@fanslymotion", corner="bottom_right", opacity=0.8),
    )


def size_of(resolution: str) -> tuple[int, int]:
    return motion.output_size(resolution, "16:9", 1600, 900)


def rendered(
    story: Story,
    images: list[Image.Image],
    size: tuple[int, int],
    fps: int,
    *,
    i420: bool = True,
) -> Any:
    """Shot i's frames as the story job makes them: the compiled resampler over the photo
    already in the story's look, in I420 (as story_render does) or in RGB (the baseline)."""

    def open_shot(i: int) -> Iterator[np.ndarray]:
        shot = story.shots[i]
        image = looks.apply_image(images[i], story.look)
        aim = camera.aim(shot.aim, None)
        path = camera.plan(shot.motion, shot.strength, image.size, size, shot=aim, seed=i)
        if i420:
            yield from motion.render_path_yuv(image, path, shot.frames(fps))
        else:
            yield from motion.render_path(image, path, shot.frames(fps), compiled=True)

    return open_shot


def stills(story: Story, images: list[Image.Image], size: tuple[int, int], fps: int) -> Any:
    """Each shot's photo fitted to the frame, held still: I420 frames in the story's look, as
    the camera-motion engine gives them (read-only: the compositor draws on copies)."""
    frames = []
    for image in images:
        fitted = np.asarray(ImageOps.fit(image, size, Image.Resampling.BICUBIC))
        frame = ycbcr.from_rgb(looks.apply(fitted, story.look))
        frame.flags.writeable = False
        frames.append(frame)

    def open_shot(i: int) -> Iterator[np.ndarray]:
        for _ in range(story.shots[i].frames(fps)):
            yield frames[i]

    return open_shot


def load_average() -> str:
    """The machine's load (1, 5, 15 minutes): the runs share it with whatever else runs."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def timed(run: Any) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def cpu_seconds() -> float:
    """CPU seconds of this process and its waited-for children (ffmpeg)."""
    own, children = (
        resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def cpu_timed(run: Any) -> tuple[float, float]:
    """(wall, CPU) seconds of `run`."""
    cpu = cpu_seconds()
    wall = timed(run)
    return wall, cpu_seconds() - cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    shots, seconds, resolution = (3, 2.4, "360p") if args.quick else (6, 5.5, "1080p")
    fps = 24
    size = size_of(resolution)
    load_before = load_average()
    images = photos()
    story = story_of(shots, seconds)
    line = story.timeline(fps)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        tune = tune_wav(work / "tune.wav", line.seconds + 5)
        track = music.prepare(tune, 2.0, line.seconds)
        width, height = size

        def floor() -> None:
            """ffmpeg re-encodes the story's own frames with the same music and x264 settings."""
            command = [video.ffmpeg_exe(), "-v", "error", "-y", "-i", str(work / "story.mp4")]
            command += [*track.input_args, "-map", "0:v:0", "-map", "1:a:0", "-af", track.filter]
            command += ["-c:a", "aac", "-b:a", track.bitrate, "-ar", str(track.rate)]
            command += video.x264_args(20, "veryfast", width, height, fps)
            command += ["-movflags", "+faststart", str(work / "floor.mp4")]
            subprocess.run(command, check=True)

        def compose_only() -> None:
            compositor.write(
                story,
                stills(story, images, size, fps),
                work / "compose.mp4",
                size=size,
                fps=fps,
                music=track,
                shots_looked=True,
            )

        def whole(i420: bool = True) -> None:
            compositor.write(
                story,
                rendered(story, images, size, fps, i420=i420),
                work / ("story.mp4" if i420 else "story-rgb.mp4"),
                size=size,
                fps=fps,
                music=track,
                shots_looked=True,
                i420=i420,
            )

        motion.warm(roll=False)  # the compiled kernels loaded before any run is timed
        story_run = cpu_timed(whole)
        floors = [cpu_timed(floor)]
        compose_run = cpu_timed(compose_only)
        rgb_run = cpu_timed(lambda: whole(i420=False))
        floors.append(cpu_timed(floor))
        runs = {
            "floor": min(floors),
            "compose": compose_run,
            "story, RGB shots (baseline)": rgb_run,
            "story": story_run,
        }
        results = {name: wall for name, (wall, _) in runs.items()}
        cpu = {name: used for name, (_, used) in runs.items()}
        info = video.probe(work / "story.mp4")
        assert info.frames == line.frames, (info.frames, line.frames)
        audio = music.audio_seconds(work / "story.mp4")
        loudness = music.integrated_loudness(work / "story.mp4")
        peaks = {}
        for count in (max(2, shots // 2), shots):
            small = story_of(count, seconds)
            tracemalloc.start()
            still_shots = stills(small, images, size, fps)
            for _ in compositor.compose(small, size, fps, still_shots, shots_looked=True):
                pass
            peaks[count] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
    ratio = results["story"] / results["floor"]
    print(f"load average before: {load_before}, after: {load_average()}")
    print(
        f"story: {shots} shots, {line.seconds:.2f} s, {line.frames} frames, {width}x{height} @ {fps} fps"
    )
    print("| run | seconds | x floor | frames/s | CPU s | CPU x floor |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, took in results.items():
        used = cpu[name]
        print(
            f"| {name} | {took:.2f} | {took / results['floor']:.2f} | {line.frames / took:.1f}"
            f" | {used:.2f} | {used / cpu['floor']:.2f} |"
        )
    cpu_ratio = cpu["story"] / cpu["floor"]
    print(
        f"target story <= {TARGET}x floor: {ratio:.2f}x wall"
        f" ({'met' if ratio <= TARGET else 'missed'}), {cpu_ratio:.2f}x CPU"
        f" ({'met' if cpu_ratio <= TARGET else 'missed'})"
    )
    print(f"audio {audio:.3f} s for {line.seconds:.3f} s of video; loudness {loudness:.1f} LUFS")
    print(
        "compositor peak (traced MiB) by shots: "
        + ", ".join(f"{k}: {v:.1f}" for k, v in peaks.items())
    )
    print(
        json.dumps(
            {
                "results": results,
                "cpu": cpu,
                "ratio": ratio,
                "cpu_ratio": cpu_ratio,
                "load_average": load_average(),
                "peaks_mib": peaks,
                "loudness": loudness,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
