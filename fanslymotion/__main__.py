"""Command line: `python -m fanslymotion [serve]` runs the service; `worker` renders a
cluster's jobs on one GPU; `render` makes one video."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from . import __version__, motion
from .config import Settings
from .errors import Cancelled, FanslyError

log = logging.getLogger("fanslymotion")


class OneLineFormatter(logging.Formatter):
    """Every record on one line: an exception shows as `[Type: message]`, never a traceback
    (tracebacks carry server paths). LOG_LEVEL=DEBUG brings the full tracebacks back."""

    def formatException(self, ei: Any) -> str:
        return f"[{ei[0].__name__}: {ei[1]}]" if ei and ei[0] is not None else ""

    def formatStack(self, stack_info: str) -> str:
        return ""

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).replace("\n[", " [", 1)


def _setup_logging(level: str) -> None:
    numeric = getattr(logging, level.upper(), logging.INFO)
    handler = logging.StreamHandler()
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    handler.setFormatter(
        logging.Formatter(fmt) if numeric <= logging.DEBUG else OneLineFormatter(fmt)
    )
    logging.basicConfig(level=numeric, handlers=[handler])
    # aiogram logs every update at INFO; our own lines say what matters.
    logging.getLogger("aiogram.event").setLevel(logging.WARNING)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fanslymotion", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fanslymotion {__version__}")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the HTTP API, the queue and the bot (the default)")
    worker = sub.add_parser(
        "worker", help="render a cluster's jobs on this GPU (needs DATABASE_URL, FRONT_URL)"
    )
    worker.add_argument(
        "--name", default=None, help="unique name of this worker (default: host-gpuN)"
    )
    render = sub.add_parser(
        "render", help="render one photo to an MP4 with the camera-motion engine"
    )
    render.add_argument("photo", type=Path)
    render.add_argument("-o", "--output", type=Path, required=True)
    render.add_argument("--duration", type=int, default=6, choices=motion.DURATIONS)
    render.add_argument("--resolution", default="720p", choices=list(motion.RESOLUTIONS))
    render.add_argument("--motion", default="dolly_in", choices=motion.PRESETS)
    render.add_argument("--aspect", default="auto", choices=motion.ASPECTS)
    render.add_argument("--strength", type=float, default=0.5)
    render.add_argument(
        "--fps", type=int, default=None, help="frames per second (default: FPS, 24)"
    )
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def render_command(args: argparse.Namespace, settings: Settings) -> int:
    from .renderer import MotionRenderer, RenderSpec, RenderTask
    from .vocabulary import Progress

    if not 0.0 <= args.strength <= 1.0:
        print("error: --strength must be between 0 and 1", file=sys.stderr)
        return 2
    fps = args.fps if args.fps is not None else settings.fps
    if not 1 <= fps <= 60:
        print("error: --fps must be between 1 and 60", file=sys.stderr)
        return 2
    if not args.photo.is_file():
        print(f"error: no such file: {args.photo}", file=sys.stderr)
        return 2
    spec = RenderSpec(
        duration=args.duration,
        resolution=args.resolution,
        motion=args.motion,
        aspect=args.aspect,
        strength=args.strength,
        seed=args.seed,
        fps=fps,
    )
    output: Path = args.output
    if output.is_dir():
        print(f"error: {output} is a folder: give the video's file name", file=sys.stderr)
        return 2
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: cannot create {output.parent}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    partial = output.with_name(f".{output.stem}.partial.mp4")
    task = RenderTask("cli", spec, args.photo, partial)  # the renderer writes the tags
    renderer = MotionRenderer(settings, "render command")
    renderer.load()
    started = time.monotonic()
    bar_shown = not args.quiet and sys.stderr.isatty()

    def progress(report: Progress) -> None:
        if not bar_shown:
            return
        filled = int(report.percent / 100 * 30)
        eta_text = f" eta {report.eta:4.1f}s" if report.eta is not None else ""
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (30 - filled)}] {report.percent:5.1f}%"
            f" {report.message}{eta_text}  "
        )
        sys.stderr.flush()

    try:
        result = renderer.render(task, progress, threading.Event())
    except FanslyError as exc:
        partial.unlink(missing_ok=True)
        if bar_shown:
            sys.stderr.write("\n")
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, Cancelled):
        partial.unlink(missing_ok=True)
        print("\ninterrupted", file=sys.stderr)
        return 130
    try:
        partial.replace(output)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        print(f"\nerror: cannot write {output}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    if bar_shown:
        sys.stderr.write("\n")
    print(
        f"{output}: {result.width}x{result.height}, {result.frames} frames at {result.fps} fps,"
        f" {time.monotonic() - started:.1f} s"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        # One line naming the variables, e.g. "FANSLYMOTION_PORT: Input should be ... 65535".
        problems = "; ".join(
            f"FANSLYMOTION_{'_'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        print(f"error: invalid settings: {problems}", file=sys.stderr)
        return 2
    except Exception as exc:  # e.g. an unreadable .env file
        print(f"error: invalid settings: {exc}", file=sys.stderr)
        return 2
    _setup_logging(settings.log_level)
    if args.command == "render":
        return render_command(args, settings)
    if args.command == "worker":
        from .cluster.worker import run_worker

        return asyncio.run(run_worker(settings, args.name))
    from .app import serve

    return asyncio.run(serve(settings))


if __name__ == "__main__":
    sys.exit(main())
