#!/usr/bin/env python
"""GPU-seconds per second of output video for a whole SVD clip: the old plan against the new.

One set of random SVD-XT weights (bench/svd_gpu.py's builder), one process, the renderer's real
`render` (photo in, MP4 out, through interpolation, the camera path and x264 in the encoding
thread), for a clip of `--duration` seconds (12 by default):

* baseline: the old plan, every output frame generated (12 fps; 7 passes for 12 s), kept
  runnable by setting the renderer's generation rate to the output rate;
* plan: the new plan, 24 fps out of 6 generated (4 passes for 12 s), interpolated x4;

each eager and compiled (`--modes`). Per run: wall seconds, GPU-seconds (UNet steps, VAE decodes
and the conditioning encodes, timed with CUDA events around each model call), and the
per-phase breakdown (UNet, decode, CLIP + VAE encode, and the encoding thread's interpolation +
camera path + x264 on the CPU, which overlaps the GPU), GPU-seconds per output second, and the
plan's gain over the baseline. Also which SDPA back-ends can run SVD's attention shape.

    python3 bench/svd_plan.py --json plan.json             # CUDA (bench/gpu_run.sh)
    python3 bench/svd_plan.py --tiny --json plan.json      # CPU rehearsal, tiny model

Target on an H100: at most 5 GPU-seconds per output second with the plan, and at least 1.8x
fewer than the baseline, in the same run.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch

from fanslymotion.config import Settings
from fanslymotion.renderer import RenderSpec, RenderTask
from fanslymotion.svd import SVDRenderer, optimize_pipeline, svd_working_size

warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)


def cuda_event() -> Any:
    event: Any = torch.cuda.Event  # unannotated in torch's stubs
    return event(enable_timing=True)


class ModelClock:
    """Time spent inside chosen models' forward calls: CUDA events on a GPU (what the GPU
    really spent, queued work included), the wall clock on the CPU."""

    def __init__(self, device: str) -> None:
        self.cuda = device.startswith("cuda")
        self.events: dict[str, list[tuple[Any, Any]]] = {}
        self.cpu: dict[str, float] = {}
        self._open: dict[str, Any] = {}
        self._handles: list[Any] = []

    def watch(self, name: str, module: Any) -> None:
        def before(mod: Any, args: Any) -> None:
            if self.cuda:
                start = cuda_event()
                start.record()
                self._open[name] = start
            else:
                self._open[name] = time.perf_counter()

        def after(mod: Any, args: Any, out: Any) -> None:
            start = self._open.pop(name)
            if self.cuda:
                end = cuda_event()
                end.record()
                self.events.setdefault(name, []).append((start, end))
            else:
                self.cpu[name] = self.cpu.get(name, 0.0) + time.perf_counter() - start

        self._handles += [
            module.register_forward_pre_hook(before),
            module.register_forward_hook(after),
        ]

    def seconds(self) -> dict[str, float]:
        if not self.cuda:
            return dict(self.cpu)
        torch.cuda.synchronize()
        return {
            name: sum(s.elapsed_time(e) for s, e in pairs) / 1000
            for name, pairs in self.events.items()
        }

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()


def sdpa_backends(device: str, dtype: torch.dtype) -> dict[str, str]:
    """Which SDPA back-ends run SVD-XT's spatial attention shape (50 frames x 5 heads, 2304
    tokens of 64 at 1024x576's first level); torch picks the first that runs, in its order."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q = torch.randn(50, 5, 2304 if device.startswith("cuda") else 64, 64, device=device)
    q = q.to(dtype)
    found: dict[str, str] = {}
    for backend in (
        SDPBackend.CUDNN_ATTENTION,
        SDPBackend.FLASH_ATTENTION,
        SDPBackend.EFFICIENT_ATTENTION,
        SDPBackend.MATH,
    ):
        try:
            with sdpa_kernel([backend]):
                torch.nn.functional.scaled_dot_product_attention(q, q, q)
            found[backend.name] = "runs"
        except RuntimeError as exc:
            found[backend.name] = f"unavailable: {str(exc).splitlines()[0][:120]}"
    return found


def photo(width: int = 1920, height: int = 1080) -> bytes:
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack(
        [128 + 100 * np.sin(x / 37), 128 + 90 * np.cos(y / 29), 128 + 80 * np.sin((x + y) / 53)],
        axis=-1,
    )
    out = io.BytesIO()
    Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(out, format="JPEG", quality=90)
    return out.getvalue()


def render_once(
    renderer: SVDRenderer,
    spec: RenderSpec,
    folder: Path,
    generation_fps: float | None,
) -> dict[str, Any]:
    """One clip through `render`, timed by phase."""
    pipe = renderer.pipeline
    clock = ModelClock(renderer.device)
    clock.watch("unet", pipe.unet)
    clock.watch("decode", pipe.vae.decoder)
    clock.watch("vae_encode", pipe.vae.encoder)
    clock.watch("clip", pipe.image_encoder)
    renderer.generation_fps = generation_fps
    source = folder / "photo.jpg"
    source.write_bytes(photo())
    out = folder / f"{spec.fps}-{generation_fps}.mp4"
    encode_s = [0.0]
    encoding_started: list[float] = []

    def progress(report: Any) -> None:
        if report.message == "encoding" and not encoding_started:
            encoding_started.append(time.perf_counter())

    if renderer.device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = renderer.render(
        RenderTask("bench", spec, source, out, {}), progress, threading.Event()
    )
    wall = time.perf_counter() - started
    if encoding_started:
        encode_s[0] = time.perf_counter() - encoding_started[0]
    phases = clock.seconds()
    clock.close()
    plan = renderer.last_plan
    assert plan is not None
    gpu = sum(phases.get(k, 0.0) for k in ("unet", "decode", "vae_encode", "clip"))
    return {
        "output": f"{spec.duration} s at {spec.fps} fps, {result.width}x{result.height}",
        "frames": result.frames,
        "generated": plan.generated,
        "generation_fps": plan.generation_fps,
        "factor": plan.factor,
        "passes": plan.passes,
        "wall_s": wall,
        "gpu_s": gpu,
        "phases_s": {**phases, "encoding_tail_after_last_decode_s": encode_s[0]},
        "gpu_s_per_output_s": gpu / spec.duration,
        "wall_s_per_output_s": wall / spec.duration,
        "peak_gib": (
            torch.cuda.max_memory_allocated() / 2**30
            if renderer.device.startswith("cuda")
            else None
        ),
        "mp4_bytes": out.stat().st_size,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="tiny random model on the CPU")
    parser.add_argument("--device", default=None)
    parser.add_argument("--duration", type=int, default=12)
    parser.add_argument("--steps", type=int, default=None, help="default 25 (tiny: 2)")
    parser.add_argument("--resolution", default="720p")
    parser.add_argument("--modes", default=None, help="eager,compiled (CPU default: eager)")
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    svd_gpu: Any = importlib.import_module("svd_gpu")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    cuda = device.startswith("cuda")
    dtype = torch.float16 if cuda else torch.float32
    steps = args.steps or (2 if args.tiny else 25)
    modes = (args.modes or ("eager,compiled" if cuda else "eager")).split(",")
    results: dict[str, Any] = {"complete": False, "device": device, "runs": {}}

    def save() -> None:
        if args.json is not None:
            args.json.write_text(json.dumps(results, indent=2) + "\n")

    pipe = svd_gpu.build_pipeline(tiny=args.tiny, device=device, dtype=dtype)
    for model in (pipe.unet, pipe.vae, pipe.image_encoder):
        model.eval()  # built, not loaded: switch off training mode as from_pretrained does
    results["env"] = svd_gpu.environment(device)
    results["sdpa"] = sdpa_backends(device, dtype)
    save()
    settings = Settings(
        _env_file=None, renderer="svd", svd_device=device, svd_size=128 if args.tiny else 1024
    )
    plans: list[tuple[str, int, float | None]] = [("baseline", 12, 12.0), ("plan", 24, None)]
    with tempfile.TemporaryDirectory() as tmp:
        for mode in modes:
            compile_unet = mode == "compiled"
            optimize_pipeline(pipe, compile_unet=compile_unet, compile_backend=args.compile_backend)
            renderer = SVDRenderer.from_pipeline(
                settings, pipe, device=device, compile_unet=compile_unet
            )
            if compile_unet:
                started = time.perf_counter()
                # The landscape size only (the clips here are 16:9); a service compiles every
                # working size at load.
                from PIL import Image

                width, height = svd_working_size("16:9", settings.svd_size)
                renderer._warm_size(Image.new("RGB", (width, height), (128, 128, 128)))
                results[f"compile_{mode}_s"] = time.perf_counter() - started
            for name, fps, generation in plans:
                spec = RenderSpec(
                    duration=args.duration,
                    resolution=args.resolution,
                    motion="pan_l",
                    fps=fps,
                    steps=steps,
                    seed=1234,
                )
                run = render_once(renderer, spec, Path(tmp), generation)
                run["compiled"] = renderer.compiled
                results["runs"][f"{name}_{mode}"] = run
                print(
                    f"{name} {mode}: {run['passes']} passes, {run['gpu_s']:.1f} GPU-s"
                    f" ({run['gpu_s_per_output_s']:.2f} per output s), wall {run['wall_s']:.1f} s",
                    flush=True,
                )
                save()
            base, new = results["runs"][f"baseline_{mode}"], results["runs"][f"plan_{mode}"]
            gain = base["gpu_s"] / max(new["gpu_s"], 1e-9)
            results[f"gain_{mode}"] = gain
            if cuda and not args.tiny:
                results[f"target_met_{mode}"] = new["gpu_s_per_output_s"] <= 5.0 and gain >= 1.8
            print(f"{mode}: the plan takes {gain:.2f}x fewer GPU-seconds", flush=True)
    results["complete"] = True
    save()
    return results


if __name__ == "__main__":
    main()
