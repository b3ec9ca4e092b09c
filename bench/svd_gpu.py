#!/usr/bin/env python
"""SVD-XT speed on a GPU: the plain diffusers pipeline against FanslyMotion's SVD path.

Builds the full-size SVD-XT architecture with random weights (nothing is downloaded: the
default `UNetSpatioTemporalConditionModel` config is SVD-XT's, 1.52 B parameters; the temporal
VAE gets SVD's config explicitly; the image encoder is a CLIP ViT-H/14 vision tower, 632 M) and
times, in one process, on one set of weights:

* plain: `StableVideoDiffusionPipeline.__call__` in fp16, eager, `decode_chunk_size=8`;
* ours eager: the renderer's own pass (`SVDRenderer.working_frames`, one pass) after
  `optimize_pipeline` without compilation (SDPA attention), the decode chunk chosen from
  free GPU memory (the whole pass in one chunk on an H100 or H200);
* ours compiled: the same after `optimize_pipeline` with torch.compile of the UNet,
  channels-last convolutions and cuDNN autotuning (`FANSLYMOTION_SVD_COMPILE=true`);

at 1024x576, 25 frames, 25 steps, the same seed and conditioning: seconds per clip (frames
on the CPU as uint8, ready to encode), peak GPU memory, and how far the two outputs differ.
Random weights make noise, not video, but the arithmetic (and so the time) is the real one.

    .venv/bin/python bench/svd_gpu.py                # on a CUDA machine; ~4 min on an H200
    .venv/bin/python bench/svd_gpu.py --tiny         # CPU smoke run of the same code (a test)

`--plan` runs bench/svd_plan.py instead (its arguments follow): GPU-seconds per second of
output video for a whole 12 s clip, the old plan (7 passes at 12 fps) against the new one
(4 passes at 6 fps, interpolated to 24), eager and compiled, with a per-phase breakdown.

`--json FILE` writes the results, after every variant (a run stopped by a time limit keeps what
it measured; `complete` says whether it got to the end); docs/benchmarks.md records them.
bench/gpu_run.sh runs this with the end-to-end and out-of-memory checks in one command.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import numpy as np
import torch

from fanslymotion.config import Settings
from fanslymotion.renderer import RenderSpec
from fanslymotion.svd import SVDRenderer, optimize_pipeline, svd_motion

# diffusers 0.42's EulerDiscreteScheduler calls np.array() on a tensor (a numpy 2 warning).
warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)

# SVD's scheduler (stabilityai/stable-video-diffusion-img2vid-xt, scheduler_config.json).
SCHEDULER = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "v_prediction",
    "sigma_max": 700.0,
    "sigma_min": 0.002,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "timestep_type": "continuous",
    "use_karras_sigmas": True,
}
# SVD's temporal VAE (vae/config.json): 4 blocks, latents at 1/8 of the image.
VAE = {
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "sample_size": 768,
    "scaling_factor": 0.18215,
    "force_upcast": True,
}
# CLIP ViT-H/14 vision tower with its projection (image_encoder/config.json).
CLIP_VIT_H = {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 16,
    "patch_size": 14,
    "image_size": 224,
    "projection_dim": 1024,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,
}
# The tiny variant (CPU): the tests' sizes, 6 frames a pass.
TINY_UNET = {
    "block_out_channels": (32, 64),
    "layers_per_block": 2,
    "sample_size": 32,
    "in_channels": 8,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
    "up_block_types": ("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
    "cross_attention_dim": 32,
    "num_attention_heads": 8,
    "projection_class_embeddings_input_dim": 96,
    "addition_time_embed_dim": 32,
    "num_frames": 6,
}
TINY_VAE = {**VAE, "block_out_channels": (32, 32, 64, 64), "layers_per_block": 1}
TINY_CLIP = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "patch_size": 32,
    "image_size": 224,
    "projection_dim": 32,
}


def build_pipeline(*, tiny: bool, device: str, dtype: torch.dtype) -> Any:
    """SVD-XT's architecture (or the tiny one) with seeded random weights, on `device`."""
    import diffusers
    import transformers

    d: Any = diffusers
    t: Any = transformers
    d.utils.logging.set_verbosity_error()  # casting notes about keep-in-fp32 modules (there are none)
    t.utils.logging.set_verbosity_error()  # "CLIPImageProcessor requires torchvision": not needed
    torch.manual_seed(0)
    # Built on the device: initialising 2.2 B parameters on the CPU takes minutes.
    with torch.device(device):
        unet = (
            d.UNetSpatioTemporalConditionModel(**TINY_UNET)
            if tiny
            else d.UNetSpatioTemporalConditionModel()
        )
        vae = d.AutoencoderKLTemporalDecoder(**(TINY_VAE if tiny else VAE))
        encoder = t.CLIPVisionModelWithProjection(
            t.CLIPVisionConfig(**(TINY_CLIP if tiny else CLIP_VIT_H))
        )
    pipe = d.StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=encoder,
        unet=unet,
        scheduler=d.EulerDiscreteScheduler(**SCHEDULER),
        feature_extractor=t.CLIPImageProcessor(crop_size=224, size=224),
    )
    pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def parameters(module: Any) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def condition_image(width: int, height: int) -> Any:
    """A smooth, colourful test photo (no file needed)."""
    from PIL import Image

    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack(
        [
            128 + 100 * np.sin(x / 37.0) * np.cos(y / 23.0),
            128 + 90 * np.sin((x + y) / 51.0),
            128 + 80 * np.cos(x / 29.0 - y / 41.0),
        ],
        axis=-1,
    )
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(
    fn: Callable[[], np.ndarray], *, runs: int, device: str
) -> tuple[list[float], float | None, np.ndarray]:
    """Seconds of each run, peak GPU memory (GiB) over the runs, and the last output."""
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    seconds: list[float] = []
    out = np.empty(0)
    for _ in range(runs):
        sync(device)
        start = time.perf_counter()
        out = fn()
        sync(device)
        seconds.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
    return seconds, peak, out


def compare(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    mse = float(np.mean(diff.astype(np.float64) ** 2))
    return {
        "max_abs": float(diff.max()),
        "mean_abs": float(diff.mean()),
        "psnr_db": math.inf if mse == 0 else 10 * math.log10(255**2 / mse),
        "pixels_off_by_more_than_2": float(np.mean(diff > 2)),
    }


def environment(device: str) -> dict[str, Any]:
    """Versions and the card, for the record (docs/benchmarks.md wants card, driver, torch)."""
    import diffusers
    import transformers

    cudnn: Any = torch.backends.cudnn  # its functions are unannotated
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": cudnn.version() if cudnn.is_available() else None,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "cpu_threads": torch.get_num_threads(),
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(device)
        env["card"] = props.name
        env["memory_gib"] = props.total_memory / 2**30
        env["multiprocessors"] = props.multi_processor_count
        env["capability"] = f"{props.major}.{props.minor}"
        try:
            import subprocess

            env["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            env["driver"] = None
    return env


VARIANTS = ("plain", "eager", "compiled")


def summary(seconds: list[float], peak: float | None) -> dict[str, Any]:
    return {
        "seconds": seconds,
        "best_s": min(seconds),
        "median_s": statistics.median(seconds),
        "peak_gib": peak,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--plan"]:
        import importlib

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        svd_plan: Any = importlib.import_module("svd_plan")
        plan_results: dict[str, Any] = svd_plan.main(argv[1:])
        return plan_results
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--tiny", action="store_true", help="tiny random model on the CPU (smoke run)"
    )
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    parser.add_argument("--width", type=int, default=None, help="default 1024 (tiny: 128)")
    parser.add_argument("--height", type=int, default=None, help="default 576 (tiny: 64)")
    parser.add_argument("--steps", type=int, default=None, help="default 25 (tiny: 3)")
    parser.add_argument(
        "--runs", type=int, default=2, help="timed runs per variant (after a warm-up)"
    )
    parser.add_argument("--fps", type=int, default=12, help="fps conditioning")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--preset", default="pan_l", help="motion preset for the SVD conditioning")
    parser.add_argument(
        "--variants",
        default=None,
        help="comma-separated, in this order: plain, eager (ours, eager UNet), compiled (ours,"
        " torch.compile); default plain,eager,compiled on CUDA, plain,eager on the CPU",
    )
    parser.add_argument(
        "--compile",
        dest="compile",
        action="store_true",
        default=None,
        help="ours compiled only: --variants plain,compiled",
    )
    parser.add_argument(
        "--no-compile", dest="compile", action="store_false", help="--variants plain,eager"
    )
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=2,
        help="denoising steps of each variant's untimed first call (kernels, allocator,"
        " compilation: the shapes do not depend on the steps)",
    )
    parser.add_argument(
        "--compile-mode",
        default="default",
        help="torch.compile mode, e.g. max-autotune-no-cudagraphs",
    )
    parser.add_argument(
        "--compile-backend",
        default="inductor",
        help='torch.compile backend; "eager" traces without code generation (the CPU smoke run)',
    )
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    cuda = device.startswith("cuda")
    width = args.width or (128 if args.tiny else 1024)
    height = args.height or (64 if args.tiny else 576)
    steps = args.steps or (3 if args.tiny else 25)
    if args.variants is not None:
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    elif args.compile is not None:
        variants = ["plain", "compiled" if args.compile else "eager"]
    else:
        variants = ["plain", "eager", "compiled"] if cuda else ["plain", "eager"]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or variants != sorted(variants, key=VARIANTS.index) or "plain" not in variants:
        parser.error(f"--variants: plain first, then eager and/or compiled, not {args.variants!r}")
    dtype = torch.float16 if cuda else torch.float32

    results: dict[str, Any] = {"complete": False, "variants": variants}

    def save() -> None:
        # After every variant: a run cut short by its time limit keeps what it measured.
        if args.json is not None:
            args.json.write_text(json.dumps(results, indent=2) + "\n")

    started = time.perf_counter()
    pipe = build_pipeline(tiny=args.tiny, device=device, dtype=dtype)
    frames = int(pipe.unet.config.num_frames)
    build_s = time.perf_counter() - started
    image = condition_image(width, height)
    bucket, noise_aug = svd_motion(args.preset, 0.5)
    card = torch.cuda.get_device_name(device) if cuda else platform.processor() or "cpu"
    print(
        f"{card}: SVD{' (tiny)' if args.tiny else '-XT'} unet {parameters(pipe.unet) / 1e9:.3f} B,"
        f" vae {parameters(pipe.vae) / 1e6:.0f} M, image encoder"
        f" {parameters(pipe.image_encoder) / 1e6:.0f} M params, built in {build_s:.1f} s;"
        f" {width}x{height}, {frames} frames, {steps} steps, {dtype}; variants"
        f" {', '.join(variants)}",
        flush=True,
    )
    import importlib.util

    results.update(
        {
            # The plain pipeline normalises CLIP's input through this processor (torchvision's
            # back-end where installed); ours normalises it itself.
            "image_processor": type(pipe.feature_extractor).__name__,
            "torchvision": importlib.util.find_spec("torchvision") is not None,
            "card": card,
            "device": device,
            "tiny": args.tiny,
            "torch": torch.__version__,
            "env": environment(device),
            "size": f"{width}x{height}",
            "frames": frames,
            "steps": steps,
            "dtype": str(dtype).removeprefix("torch."),
            "build_s": build_s,
            "params": {
                "unet": parameters(pipe.unet),
                "vae": parameters(pipe.vae),
                "image_encoder": parameters(pipe.image_encoder),
            },
        }
    )
    save()

    def plain(decode_chunk: int = 8, n_steps: int = steps) -> np.ndarray:
        out = pipe(
            image,
            height=height,
            width=width,
            num_frames=frames,
            num_inference_steps=n_steps,
            fps=args.fps,
            motion_bucket_id=bucket,
            noise_aug_strength=noise_aug,
            decode_chunk_size=decode_chunk,
            generator=torch.Generator("cpu").manual_seed(args.seed),
            output_type="pt",
        ).frames[0]
        array: np.ndarray = (
            (out * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        )
        return array

    # Plain first: ours changes the modules in place (SDPA set explicitly, then channels-last
    # and the compiled UNet).
    plain(n_steps=args.warmup_steps)  # warm-up: CUDA context, kernels, allocator
    plain_s, plain_peak, plain_out = timed(plain, runs=args.runs, device=device)
    # The plain pipeline decoding the whole pass at once, as ours does when memory allows. The
    # temporal VAE mixes neighbouring frames, so the decode chunking alone changes the output;
    # this separates that from what the other speed-ups change. Timed once, for the record.
    whole_s, whole_peak, plain_whole = timed(lambda: plain(frames), runs=1, device=device)
    print(
        f"plain: {min(plain_s):.2f} s/clip (runs {', '.join(f'{s:.2f}' for s in plain_s)});"
        f" whole-pass decode {whole_s[0]:.2f} s",
        flush=True,
    )
    results["plain"] = {
        **summary(plain_s, plain_peak),
        "decode_chunk": 8,
        "whole_decode_s": whole_s[0],
        "whole_decode_peak_gib": whole_peak,
    }
    results["difference"] = {"plain_decode_8_vs_whole": compare(plain_out, plain_whole)}
    save()

    settings = Settings(
        _env_file=None,
        renderer="svd",
        svd_device=device,
        svd_size=max(64, max(width, height) // 64 * 64),
    )
    spec = RenderSpec(
        duration=1, resolution="720p", motion=args.preset, fps=args.fps, steps=steps, seed=args.seed
    )
    warm_spec = RenderSpec(
        duration=1,
        resolution="720p",
        motion=args.preset,
        fps=args.fps,
        steps=args.warmup_steps,
        seed=args.seed,
    )
    from torch._dynamo.utils import counters

    outputs: dict[str, np.ndarray] = {}
    for variant in variants[1:]:
        compile_unet = variant == "compiled"
        optimize_pipeline(
            pipe,
            compile_unet=compile_unet,
            compile_mode=args.compile_mode,
            compile_backend=args.compile_backend,
        )
        renderer = SVDRenderer.from_pipeline(
            settings, pipe, device=device, compile_unet=compile_unet
        )
        # The same fps conditioning as plain: one pass generated at the benchmark's rate.
        renderer.generation_fps = float(args.fps)

        def ours(r: SVDRenderer = renderer, s: RenderSpec = spec) -> np.ndarray:
            return np.stack(list(r.working_frames(image, s, n_frames=frames)))

        started = time.perf_counter()
        ours(s=warm_spec)  # warm-up; with torch.compile this is the compilation
        sync(device)
        warmup_s = time.perf_counter() - started
        # Graphs dynamo made of the UNet: 1 when it traces whole; more means graph breaks, and
        # growth during the timed runs would mean recompilations.
        graphs_after_warmup = int(counters["stats"]["unique_graphs"])
        ours_s, ours_peak, outputs[variant] = timed(ours, runs=args.runs, device=device)
        graphs = int(counters["stats"]["unique_graphs"])
        if compile_unet and not renderer.compiled:
            print("warning: torch.compile failed; ours ran the eager UNet (see the log above)")
        if compile_unet and graphs != graphs_after_warmup:
            print(
                f"warning: recompiled during the timed runs ({graphs_after_warmup} -> {graphs}"
                " graphs)"
            )
        print(
            f"ours: {variant} {min(ours_s):.2f} s/clip (runs"
            f" {', '.join(f'{s:.2f}' for s in ours_s)}; first call ({args.warmup_steps} steps)"
            f" {warmup_s:.1f} s{' incl. compilation' if compile_unet else ''})",
            flush=True,
        )
        results[f"ours_{variant}"] = {
            **summary(ours_s, ours_peak),
            "first_call_s": warmup_s,
            "first_call_steps": args.warmup_steps,
            # False when compilation failed and the renderer fell back to the eager UNet.
            "compiled": renderer.compiled,
            "compile_mode": args.compile_mode if compile_unet else None,
            "compile_backend": args.compile_backend if compile_unet else None,
            "graphs": graphs if compile_unet else None,
            "decode_chunk": renderer.last_fallback.last_chunk,
            "speedup": min(plain_s) / min(ours_s),
        }
        # "ours" is the fastest configuration measured: compiled when it ran.
        results["ours"] = results[f"ours_{variant}"]
        results["speedup"] = results["ours"]["speedup"]
        results["difference"]["ours_vs_plain"] = compare(plain_out, outputs[variant])
        results["difference"]["ours_vs_plain_whole_decode"] = compare(plain_whole, outputs[variant])
        results["difference"][f"ours_{variant}_vs_plain_whole_decode"] = compare(
            plain_whole, outputs[variant]
        )
        if variant == "compiled" and "eager" in outputs:
            results["difference"]["ours_compiled_vs_ours_eager"] = compare(
                outputs["eager"], outputs["compiled"]
            )
            results["compile_gain"] = (
                results["ours_eager"]["best_s"] / results["ours_compiled"]["best_s"]
            )
        save()

    ours_best = results["ours"]
    speedup = results["speedup"]
    diff = results["difference"]["ours_vs_plain"]
    peaks = ""
    if plain_peak is not None and ours_best["peak_gib"] is not None:
        peaks = (
            f"; peak GPU memory plain {plain_peak:.1f} GiB, ours {ours_best['peak_gib']:.1f} GiB"
        )
    print(
        f"speed-up {speedup:.2f}x{peaks}; difference on the same seed: max {diff['max_abs']:.0f},"
        f" mean {diff['mean_abs']:.3f} (of 255), PSNR {diff['psnr_db']:.1f} dB",
        flush=True,
    )
    for name, d in results["difference"].items():
        if name == "ours_vs_plain":
            continue
        print(
            f"  {name}: max {d['max_abs']:.0f}, mean {d['mean_abs']:.3f}, PSNR {d['psnr_db']:.1f} dB"
        )
    if "compile_gain" in results:
        print(f"  torch.compile gain over ours eager: {results['compile_gain']:.2f}x")
    if cuda and not args.tiny:
        target = speedup >= 2.0 and ours_best["best_s"] <= 11.0
        results["target_met"] = target
        print(f"target (>= 2x plain and <= 11 s/clip): {'met' if target else 'NOT met'}")
    results["complete"] = True
    save()
    return results


if __name__ == "__main__":
    main()
