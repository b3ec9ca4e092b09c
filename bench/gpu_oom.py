#!/usr/bin/env python
"""The SVD renderer's out-of-memory ladder on a real CUDA out-of-memory error.

Builds SVD-XT's architecture with random weights on the GPU (bench/svd_gpu.py's configs),
wraps it in `SVDRenderer.from_pipeline` (eager UNet) and renders 1080p jobs through
`SVDRenderer.render` (photo file in, MP4 out), each under a cap on the process's GPU memory
(`torch.cuda.set_per_process_memory_fraction`):

1. baseline, no cap: the whole 25-frame pass decoded at once (ladder level 0);
2. a cap under which the whole-pass decode cannot fit but half of it can: the pass is retried
   with half the decode chunk (level 1);
3. a cap under which the half-pass decode fits only with the other models off the GPU: model
   CPU offload (level 2);
4. a cap under which no decode fits even offloaded: the job fails with `GPUOutOfMemory` and
   its clear message, and leaves no file;
5. no cap again: the next job renders normally (level 0, no offload hooks left, every weight
   back on the GPU).

The caps come from a calibration first: the memory the weights take, the peak of a denoising
call and the peak of decoding a whole and a half pass (which also measures the decoder's bytes
per output pixel against the renderer's estimate, `BYTES_PER_DECODED_PIXEL`).

On the CPU (`--tiny`, the rehearsal) there is no CUDA memory to exhaust: the same jobs run
through the same ladder with `torch.cuda.OutOfMemoryError` raised by the renderer's fault
injector (what tests/test_svd.py uses) where the cap would have struck. The JSON says which
(`mode`: "cuda-cap" or "injected (CPU rehearsal)").

    python3 bench/gpu_oom.py --json oom.json           # on the GPU machine (bench/gpu_run.sh)
    python3 bench/gpu_oom.py --tiny --json oom.json    # CPU rehearsal
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import torch

from fanslymotion import video
from fanslymotion.config import Settings
from fanslymotion.errors import GPUOutOfMemory
from fanslymotion.renderer import RenderSpec, RenderTask
from fanslymotion.svd import BYTES_PER_DECODED_PIXEL, SVDRenderer, svd_working_size

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30


def bench_module(name: str) -> Any:
    """A sibling bench script as a module (svd_gpu: the model configs; gpu_e2e: the photo)."""
    if str(ROOT / "bench") not in sys.path:
        sys.path.insert(0, str(ROOT / "bench"))
    return importlib.import_module(name)


def weight_bytes(module: Any) -> int:
    return int(sum(p.numel() * p.element_size() for p in module.parameters()))


class Warnings(logging.Handler):
    """The renderer's log lines during a job (the ladder announces each step)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage()[:300])


def calibrate(pipe: Any, device: str, size: tuple[int, int]) -> dict[str, Any]:
    """Bytes: weights, peak of one denoising call, peak of decoding a whole and a half pass."""
    from PIL import Image

    frames = int(pipe.unet.config.num_frames)
    half = max(1, frames // 2)
    width, height = size
    gc.collect()
    torch.cuda.empty_cache()
    weights = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    latents = pipe(
        Image.new("RGB", (width, height), (120, 130, 140)),
        height=height,
        width=width,
        num_frames=frames,
        num_inference_steps=1,
        output_type="latent",
        generator=torch.Generator("cpu").manual_seed(0),
    ).frames
    torch.cuda.synchronize(device)
    denoise_peak = torch.cuda.max_memory_allocated(device)
    vae = pipe.vae
    flat = latents.flatten(0, 1) / vae.config.scaling_factor
    decode_peak: dict[int, int] = {}
    decode_s: dict[int, float] = {}
    for n in (frames, half):
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        started = time.perf_counter()
        with torch.inference_mode():
            out = vae.decode(flat[:n], num_frames=n).sample
        torch.cuda.synchronize(device)
        decode_s[n] = time.perf_counter() - started
        decode_peak[n] = torch.cuda.max_memory_allocated(device)
        del out
    del latents, flat
    gc.collect()
    torch.cuda.empty_cache()
    w = {
        "unet": weight_bytes(pipe.unet),
        "image_encoder": weight_bytes(pipe.image_encoder),
        "vae": weight_bytes(pipe.vae),
    }
    per_pixel = (decode_peak[frames] - decode_peak[half]) / ((frames - half) * width * height)
    return {
        "frames": frames,
        "half": half,
        "weights": weights,
        "weights_by_model": w,
        "denoise_peak": denoise_peak,
        "decode_peak": {str(k): v for k, v in decode_peak.items()},
        "decode_s": {str(k): v for k, v in decode_s.items()},
        # Under model CPU offload only the VAE is on the GPU while it decodes.
        "decode_peak_offloaded_half": decode_peak[half] - w["unet"] - w["image_encoder"],
        "decoder_bytes_per_pixel_frame": per_pixel,
        "renderer_estimate_bytes_per_pixel_frame": BYTES_PER_DECODED_PIXEL,
    }


def choose_caps(cal: dict[str, Any], margin: int) -> dict[str, dict[str, Any]]:
    """The cap (bytes) of each capped scenario, or why it cannot be set."""
    frames, half = cal["frames"], cal["half"]
    denoise = cal["denoise_peak"]
    whole, halfp = cal["decode_peak"][str(frames)], cal["decode_peak"][str(half)]
    offloaded = cal["decode_peak_offloaded_half"]
    caps: dict[str, dict[str, Any]] = {}

    def window(name: str, low: int, high: int, rule: str) -> None:
        if high - low > 2 * margin:
            caps[name] = {"cap": (low + high) // 2, "rule": rule}
        else:
            caps[name] = {
                "cap": None,
                "rule": rule,
                "skipped": f"no room: {low / GIB:.2f}..{high / GIB:.2f} GiB",
            }

    window("half_chunk", max(denoise, halfp), whole, "between max(denoise, half decode) and whole")
    window(
        "offload", max(denoise, offloaded), halfp, "between max(denoise, offloaded half) and half"
    )
    if offloaded - denoise > 2 * margin:
        caps["fail"] = {
            "cap": (denoise + offloaded) // 2,
            "rule": "denoising fits, no decode does, even offloaded",
        }
    else:
        caps["fail"] = {
            "cap": cal["weights"] + margin,
            "rule": "the weights and little more: nothing fits, even offloaded",
        }
    return caps


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="CPU rehearsal, the tiny model")
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    parser.add_argument("--resolution", default="1080p")
    parser.add_argument("--duration", type=int, default=3)
    parser.add_argument("--steps", type=int, default=2, help="denoising steps of every job")
    parser.add_argument("--fps", type=int, default=12)
    parser.add_argument("--margin-gib", type=float, default=0.75, help="room kept around caps")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("diffusers", "transformers", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    cuda = device.startswith("cuda")
    mode = "cuda-cap" if cuda else "injected (CPU rehearsal)"
    results: dict[str, Any] = {
        "ok": False,
        "mode": mode,
        "device": device,
        "tiny": args.tiny,
        "torch": torch.__version__,
    }

    def save() -> None:
        if args.json is not None:
            args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")

    work = Path(tempfile.mkdtemp(prefix="gpu-oom-"))
    try:
        started = time.perf_counter()
        svd_gpu = bench_module("svd_gpu")
        pipe = svd_gpu.build_pipeline(
            tiny=args.tiny, device=device, dtype=torch.float16 if cuda else torch.float32
        )
        results["build_s"] = time.perf_counter() - started
        settings = Settings(
            _env_file=None,
            renderer="svd",
            svd_device=device,
            svd_size=128 if args.tiny else 1024,
            data_dir=work / "data",
        )
        renderer = SVDRenderer.from_pipeline(settings, pipe, device=device, compile_unet=False)
        size = svd_working_size("16:9", settings.svd_size)
        photo = work / "photo.jpg"
        photo.write_bytes(bench_module("gpu_e2e").photo_jpeg())
        spec = RenderSpec(
            duration=args.duration,
            resolution=args.resolution,
            motion="pan_l",
            fps=args.fps,
            steps=args.steps,
            seed=7,
        )
        models = (pipe.unet, pipe.vae, pipe.image_encoder)
        home = str(next(pipe.unet.parameters()).device)  # "cuda:0": where every weight belongs
        total = torch.cuda.get_device_properties(device).total_memory if cuda else 0
        if cuda:
            results["card"] = torch.cuda.get_device_name(device)
            results["total_gib"] = total / GIB
            cal = calibrate(pipe, device, size)
            results["calibration"] = cal
            caps = choose_caps(cal, int(args.margin_gib * GIB))
            print(
                f"calibration at {size[0]}x{size[1]}: weights {cal['weights'] / GIB:.2f} GiB,"
                f" denoise peak {cal['denoise_peak'] / GIB:.2f} GiB, decode peak"
                f" {cal['frames']} frames {cal['decode_peak'][str(cal['frames'])] / GIB:.2f} GiB,"
                f" {cal['half']} frames {cal['decode_peak'][str(cal['half'])] / GIB:.2f} GiB"
                f" ({cal['half']} offloaded ~{cal['decode_peak_offloaded_half'] / GIB:.2f} GiB);"
                f" decoder {cal['decoder_bytes_per_pixel_frame']:.0f} B per pixel and frame"
                f" (renderer's estimate {BYTES_PER_DECODED_PIXEL})",
                flush=True,
            )
        else:
            caps = {
                name: {"cap": None, "rule": "injected"}
                for name in ("half_chunk", "offload", "fail")
            }
        results["caps"] = {
            k: {**v, "cap_gib": None if v["cap"] is None else v["cap"] / GIB}
            for k, v in caps.items()
        }
        save()

        def injector(until_level: int | None) -> Callable[[str], None]:
            """CPU stand-in for the cap: OOM on every decode below `until_level` (None: always)."""

            def inject(stage: str) -> None:
                level = renderer.last_fallback.level
                if until_level is None or (stage == "decode" and level < until_level):
                    raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected: rehearsal)")

            return inject

        plan: list[tuple[str, str | None, Callable[[str], None] | None, dict[str, Any]]] = [
            ("baseline", None, None, {"outcome": "completed", "level": 0}),
            ("half_chunk", "half_chunk", injector(1), {"outcome": "completed", "level": 1}),
            ("offload", "offload", injector(2), {"outcome": "completed", "level": 2}),
            ("fail", "fail", injector(None), {"outcome": "GPUOutOfMemory"}),
            ("after", None, None, {"outcome": "completed", "level": 0}),
        ]
        svd_log = logging.getLogger("fanslymotion.svd")
        scenarios: list[dict[str, Any]] = []
        results["scenarios"] = scenarios
        for name, cap_name, inject, expect in plan:
            cap = caps[cap_name]["cap"] if cap_name else None
            row: dict[str, Any] = {"name": name, "expect": expect}
            if cap_name and cuda and cap is None:
                row.update(outcome="skipped", ok=None, why=caps[cap_name].get("skipped"))
                scenarios.append(row)
                print(f"{name}: skipped ({row['why']})", flush=True)
                continue
            out = work / f"{name}.mp4"
            task = RenderTask(f"oom-{name}", spec, photo, out, {"fanslymotion_seed": "7"})
            handler = Warnings()
            svd_log.addHandler(handler)
            gc.collect()
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
                fraction = 1.0 if cap is None else cap / total
                torch.cuda.set_per_process_memory_fraction(fraction, device)
                row["cap_gib"] = None if cap is None else cap / GIB
            elif cap_name:
                renderer.fault_injector = inject
            started = time.perf_counter()
            try:
                result = renderer.render(task, lambda *_: None, threading.Event())
                row["outcome"] = "completed"
                row["frames"] = result.frames
            except GPUOutOfMemory as exc:
                row.update(outcome="GPUOutOfMemory", message=exc.message, retryable=exc.retryable)
            except Exception as exc:
                row.update(outcome=type(exc).__name__, message=str(exc)[:500])
            finally:
                renderer.fault_injector = None
                svd_log.removeHandler(handler)
                if cuda:
                    torch.cuda.set_per_process_memory_fraction(1.0, device)
            row["seconds"] = time.perf_counter() - started
            ladder = renderer.last_fallback
            row.update(level=ladder.level, chunk_cap=ladder.chunk_cap, last_chunk=ladder.last_chunk)
            row["warnings"] = handler.lines
            if cuda:
                row["peak_allocated_gib"] = torch.cuda.max_memory_allocated(device) / GIB
                row["peak_reserved_gib"] = torch.cuda.max_memory_reserved(device) / GIB
            row["hooks_left"] = any(hasattr(m, "_hf_hook") for m in models)
            devices = {str(p.device) for m in models for p in m.parameters()}
            row["weights_on"] = sorted(devices)
            row["file_left"] = out.exists()
            checks = {"outcome": row["outcome"] == expect["outcome"]}
            if "level" in expect:
                checks["level"] = row["level"] == expect["level"]
            if row["outcome"] == "completed":
                # Decoded, not probed: ffmpeg 7.0's probe counts no frames (see gpu_e2e.py).
                row["frames_decoded"] = sum(1 for _ in video.read_frames(out, luma=True))
                checks["frames"] = row["frames_decoded"] == spec.frames
            if expect["outcome"] == "GPUOutOfMemory":
                prefix = f"not enough GPU memory for {spec.resolution}, {spec.duration} s"
                checks["message"] = str(row.get("message", "")).startswith(prefix)
                checks["no_file"] = not row["file_left"]
            checks["no_hooks_left"] = not row["hooks_left"]
            checks["weights_back_on_device"] = devices == {home}
            row["checks"] = checks
            row["ok"] = all(checks.values())
            out.unlink(missing_ok=True)
            scenarios.append(row)
            cap_text = "" if row.get("cap_gib") is None else f" cap {row['cap_gib']:.2f} GiB,"
            peak = row.get("peak_allocated_gib")
            print(
                f"{name}:{cap_text} {row['outcome']} in {row['seconds']:.1f} s, ladder level"
                f" {row['level']}, decode chunk {row['last_chunk']}"
                f"{'' if peak is None else f', peak {peak:.2f} GiB'};"
                f" {'ok' if row['ok'] else f'NOT as expected: {checks}'}"
                + (f"; {row['message']}" if "message" in row else ""),
                flush=True,
            )
            save()
        ran = [s for s in scenarios if s["outcome"] != "skipped"]
        results["ok"] = all(s["ok"] for s in ran) and len(ran) == len(plan)
    except Exception as exc:
        results["error"] = f"{type(exc).__name__}: {exc}"
        print(f"FAILED: {results['error']}", flush=True)
    finally:
        save()
        shutil.rmtree(work, ignore_errors=True)
    print(f"OOM ladder ({mode}): {'all as expected' if results['ok'] else 'NOT all as expected'}")
    return results


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
