#!/usr/bin/env python
"""One job through the real service with the SVD renderer, as a user's install would run it.

1. Builds SVD-XT's architecture with seeded random weights (bench/svd_gpu.py's configs; on a
   GPU that takes seconds) and saves it in diffusers format as the `fp16` variant only
   (`*.fp16.safetensors`, the files the hub publishes), in a temporary folder.
2. Starts `python -m fanslymotion` on it (`FANSLYMOTION_RENDERER=svd`,
   `FANSLYMOTION_SVD_MODEL=<folder>`, `FANSLYMOTION_SVD_DEVICE=cuda`), waits for `/health` to
   say the renderer is ready.
3. Submits a 6 s 720p job over HTTP (`POST /job/create`, JSON with the photo in base64), polls
   `GET /job/status/{id}` and records the reported progress and ETA against the real time.
4. Downloads the MP4 (`GET /job/download/{id}`) and probes it: frames, size, fps.

Talks to the service through its public surface only (environment settings and HTTP).

    python3 bench/gpu_e2e.py --json e2e.json          # on the GPU machine (bench/gpu_run.sh)
    python3 bench/gpu_e2e.py --tiny --json e2e.json   # CPU rehearsal: the tiny model

With `--tiny` the model is tests/svd_tiny.py's size (6 frames a pass, working size 128), so
a clip is many more passes than with SVD-XT; the plumbing and the numbers' shapes are the same.
"""

from __future__ import annotations

import argparse
import base64
import importlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
EXPECTED_SIZE = {"360p": (640, 360), "480p": (854, 480), "720p": (1280, 720), "1080p": (1920, 1080)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def photo_jpeg(width: int = 1920, height: int = 1080) -> bytes:
    """A photo-like 16:9 JPEG: gradients and noise."""
    from PIL import Image

    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            128 + 100 * np.sin(x / 37.0),
            128 + 90 * np.cos(y / 29.0),
            128 + 80 * np.sin((x + y) / 53.0),
        ],
        axis=-1,
    )
    pixels = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


def svd_bench() -> Any:
    """bench/svd_gpu.py as a module: its model configs and builder."""
    if str(ROOT / "bench") not in sys.path:
        sys.path.insert(0, str(ROOT / "bench"))
    return importlib.import_module("svd_gpu")


def build_model(folder: Path, *, tiny: bool, device: str) -> dict[str, Any]:
    """Random-weight SVD-XT (or the tiny one) saved as the fp16 variant; timings and size."""
    import torch

    bench = svd_bench()
    started = time.perf_counter()
    pipe = bench.build_pipeline(tiny=tiny, device=device, dtype=torch.float16)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    build_s = time.perf_counter() - started
    started = time.perf_counter()
    pipe.save_pretrained(folder, variant="fp16")
    save_s = time.perf_counter() - started
    params = sum(bench.parameters(m) for m in (pipe.unet, pipe.vae, pipe.image_encoder))
    del pipe
    if device.startswith("cuda"):
        torch.cuda.empty_cache()  # the service is another process on the same GPU
    files = [p for p in folder.rglob("*") if p.is_file()]
    return {
        "build_s": build_s,
        "save_s": save_s,
        "params": params,
        "folder_gib": sum(p.stat().st_size for p in files) / 2**30,
        "weight_files": sorted(
            str(p.relative_to(folder)) for p in files if "safetensors" in p.name
        ),
    }


class Http:
    def __init__(self, base: str) -> None:
        self.base = base

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 30
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
                status = int(response.status)
                kind = response.headers.get_content_type()
        except urllib.error.HTTPError as exc:
            raw, status, kind = exc.read(), exc.code, exc.headers.get_content_type()
        return status, (json.loads(raw) if kind == "application/json" else raw)


def wait_ready(http: Http, child: subprocess.Popen[bytes], limit: float) -> dict[str, Any]:
    """Times to the first HTTP answer and to the renderer's `ready` (or the failure)."""
    started = time.monotonic()
    up: float | None = None
    while True:
        if child.poll() is not None:
            raise RuntimeError(f"the service exited with {child.returncode} while starting")
        try:
            status, health = http.call("GET", "/health", timeout=5)
        except (OSError, urllib.error.URLError):
            status, health = 0, None
        if status and up is None:
            up = time.monotonic() - started
        if isinstance(health, dict):
            renderer = health.get("renderer") or {}
            if renderer.get("status") in ("ready", "failed"):
                return {
                    "http_up_s": up,
                    "ready_s": time.monotonic() - started,
                    "renderer": renderer,
                }
        if time.monotonic() - started > limit:
            raise RuntimeError(f"the renderer was not ready after {limit:.0f} s")
        time.sleep(0.2)


def eta_report(samples: list[dict[str, Any]], done_t: float) -> dict[str, Any]:
    """The ETA the service reported against the time the job really took from then on."""
    rows = []
    for sample in samples:
        eta = sample.get("eta_seconds")
        if sample["status"] != "processing" or eta is None:
            continue
        actual = done_t - sample["t"]
        rows.append((sample["t"], sample["progress"], float(eta), actual))
    out: dict[str, Any] = {"samples_with_eta": len(rows)}
    if not rows:
        return out
    errors = [eta - actual for _, _, eta, actual in rows]
    out["mean_abs_error_s"] = float(np.mean(np.abs(errors)))
    out["max_abs_error_s"] = float(np.max(np.abs(errors)))
    relative = [
        abs(e) / max(actual, 1e-9) for e, (_, _, _, actual) in zip(errors, rows, strict=True)
    ]
    out["mean_relative_error"] = float(np.mean(relative))
    out["first_eta"] = {
        "t": rows[0][0],
        "progress": rows[0][1],
        "eta_s": rows[0][2],
        "actual_s": rows[0][3],
    }
    checkpoints = []
    for target in (5, 10, 25, 50, 75, 90):
        row = next((r for r in rows if r[1] >= target), None)
        if row is not None:
            checkpoints.append(
                {"progress": row[1], "t": row[0], "eta_s": row[2], "actual_s": row[3]}
            )
    out["at_progress"] = checkpoints
    return out


def thin(samples: list[dict[str, Any]], keep: int = 240) -> list[dict[str, Any]]:
    if len(samples) <= keep:
        return samples
    step = len(samples) / keep
    picked = [samples[int(i * step)] for i in range(keep)]
    return [*picked[:-1], samples[-1]]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="the tiny model on the CPU")
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    parser.add_argument("--duration", type=int, default=6)
    parser.add_argument("--resolution", default="720p", choices=sorted(EXPECTED_SIZE))
    parser.add_argument("--motion", default="pan_l")
    parser.add_argument(
        "--steps", type=int, default=None, help="default: the service's (25); tiny: 3"
    )
    parser.add_argument("--fps", type=int, default=12, help="FANSLYMOTION_FPS")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--compile", action="store_true", help="FANSLYMOTION_SVD_COMPILE=true")
    parser.add_argument("--poll", type=float, default=0.25, help="seconds between status polls")
    parser.add_argument("--limit", type=float, default=600, help="give up after this many s")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    if args.tiny and args.steps is None:
        args.steps = 3  # 18 passes of the tiny model's 6 frames for 6 s: keep them short
    deadline = time.monotonic() + args.limit
    results: dict[str, Any] = {
        "ok": False,
        "tiny": args.tiny,
        "device": device,
        "torch": torch.__version__,
        "job": {
            "duration": args.duration,
            "resolution": args.resolution,
            "motion_preset": args.motion,
            "steps": args.steps,
            "fps": args.fps,
            "seed": args.seed,
        },
    }
    if device.startswith("cuda"):
        results["card"] = torch.cuda.get_device_name(device)

    def save() -> None:
        if args.json is not None:
            args.json.write_text(json.dumps(results, indent=2) + "\n")

    work = args.workdir or Path(tempfile.mkdtemp(prefix="gpu-e2e-"))
    work.mkdir(parents=True, exist_ok=True)
    model = work / "svd-xt-random"
    data = work / "data"
    service_log = work / "service.log"
    child: subprocess.Popen[bytes] | None = None
    try:
        results["model"] = build_model(model, tiny=args.tiny, device=device)
        m = results["model"]
        print(
            f"model: {m['params'] / 1e9:.3f} B params built in {m['build_s']:.1f} s, saved as fp16"
            f" ({m['folder_gib']:.2f} GiB) in {m['save_s']:.1f} s",
            flush=True,
        )
        save()

        port = free_port()
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
            ),
            "PYTHONUNBUFFERED": "1",
            "HF_HUB_OFFLINE": "1",
            "FANSLYMOTION_RENDERER": "svd",
            "FANSLYMOTION_SVD_MODEL": str(model),
            "FANSLYMOTION_SVD_DEVICE": device,
            "FANSLYMOTION_SVD_COMPILE": "true" if args.compile else "false",
            "FANSLYMOTION_FPS": str(args.fps),
            "FANSLYMOTION_DATA_DIR": str(data),
            "FANSLYMOTION_HOST": "127.0.0.1",
            "FANSLYMOTION_PORT": str(port),
            "FANSLYMOTION_MIN_FREE_MB": "0",
            "FANSLYMOTION_LOG_LEVEL": "INFO",
        }
        if args.tiny:
            # tests/svd_tiny.py's working size. The dtype stays auto: fp32 on the CPU, read from
            # the fp16 files (fp16 arithmetic on the CPU is many times slower).
            env["FANSLYMOTION_SVD_SIZE"] = "128"
        for secret in ("FANSLYMOTION_API_TOKEN", "FANSLYMOTION_BOT_TOKEN"):
            env.pop(secret, None)
        # Started from the work folder: a .env in the checkout must not leak in.
        with open(service_log, "wb") as log_file:
            child = subprocess.Popen(
                [sys.executable, "-m", "fanslymotion"],
                cwd=work,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        http = Http(f"http://127.0.0.1:{port}")
        results["start"] = wait_ready(http, child, max(10.0, deadline - time.monotonic()))
        s = results["start"]
        print(
            f"service: HTTP up after {s['http_up_s']:.1f} s, renderer {s['renderer'].get('status')}"
            f" after {s['ready_s']:.1f} s: {s['renderer'].get('reason')}",
            flush=True,
        )
        save()
        if s["renderer"].get("status") != "ready" or s["renderer"].get("name") != "svd":
            raise RuntimeError(f"the SVD renderer is not ready: {s['renderer']}")

        body: dict[str, Any] = {
            "user_id": 1,
            "image_data": base64.b64encode(photo_jpeg()).decode(),
            "duration": args.duration,
            "resolution": args.resolution,
            "motion_preset": args.motion,
            "seed": args.seed,
        }
        if args.steps is not None:
            body["steps"] = args.steps
        submitted = time.monotonic()
        status, created = http.call("POST", "/job/create", body)
        if status != 201:
            raise RuntimeError(f"POST /job/create: {status} {created}")
        job_id = created["job_id"]
        results["created"] = {k: v for k, v in created.items() if k != "job_id"}
        samples: list[dict[str, Any]] = []
        final: dict[str, Any] = {}
        last_print = -10.0
        while True:
            status, body_status = http.call("GET", f"/job/status/{job_id}")
            t = time.monotonic() - submitted
            if status != 200:
                raise RuntimeError(f"GET /job/status: {status} {body_status}")
            samples.append(
                {
                    "t": round(t, 3),
                    "status": body_status["status"],
                    "progress": body_status["progress"],
                    "message": body_status["message"],
                    "eta_seconds": body_status["eta_seconds"],
                }
            )
            if t - last_print >= 5:
                last_print = t
                eta = body_status["eta_seconds"]
                print(
                    f"  t={t:6.1f} s {body_status['status']} {body_status['progress']:5.1f} %"
                    f" {body_status['message']!r} eta"
                    f" {'-' if eta is None else f'{eta:.1f} s'}",
                    flush=True,
                )
            if body_status["status"] in ("completed", "failed", "cancelled"):
                final = body_status
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the job did not finish in time")
            time.sleep(args.poll)
        done_t = samples[-1]["t"]
        first_processing = next((x["t"] for x in samples if x["status"] == "processing"), None)
        results["final_status"] = final
        results["job_s"] = done_t
        results["queued_s"] = first_processing
        results["eta"] = eta_report(samples, done_t)
        results["eta_estimate_at_submit_s"] = created.get("estimated_time")
        results["samples"] = thin(samples)
        save()
        if final["status"] != "completed":
            raise RuntimeError(f"the job ended {final['status']}: {final.get('error')}")

        _, result = http.call("GET", f"/job/result/{job_id}")
        results["result"] = result
        status, video_bytes = http.call("GET", f"/job/download/{job_id}", timeout=120)
        if status != 200 or not isinstance(video_bytes, bytes):
            raise RuntimeError(f"GET /job/download: {status}")
        mp4 = work / "e2e.mp4"
        mp4.write_bytes(video_bytes)
        from fanslymotion import video

        info = video.probe(mp4)
        # Counted twice: by the probe (ffmpeg's -progress over a stream copy) and by decoding
        # every frame. ffmpeg 7.0 reports no frames for a stream copy, so probe says 0 there.
        # NaN guard: random fp16 weights can overflow; a NaN frame comes out flat (one grey or
        # black level), so the spread of luma says whether real numbers went through.
        spreads = [float(frame.std()) for frame in video.read_frames(mp4, luma=True)]
        decoded = len(spreads)
        width, height = EXPECTED_SIZE[args.resolution]
        frames = args.duration * args.fps
        results["probe"] = {
            "bytes": len(video_bytes),
            "frames": decoded,
            "frames_probe": info.frames,
            "width": info.width,
            "height": info.height,
            "fps": info.fps,
            "duration": info.duration,
            "codec": info.codec,
            "pix_fmt": info.pix_fmt,
            "seed": info.metadata.get("fanslymotion_seed"),
            "renderer": info.metadata.get("fanslymotion_renderer"),
        }
        results["checks"] = {
            "frames": decoded == frames,
            "size": (info.width, info.height) == (width, height),
            "fps": abs(info.fps - args.fps) < 0.01,
            "renderer_svd": result.get("renderer") == "svd",
            "seed": info.metadata.get("fanslymotion_seed") == str(args.seed),
            "not_flat": bool(spreads) and min(spreads) > 0.5,
        }
        results["luma_std"] = {"min": min(spreads or [0.0]), "max": max(spreads or [0.0])}
        _, health = http.call("GET", "/health")
        results["health_after"] = health
        results["ok"] = all(results["checks"].values())
        e = results["eta"]
        print(
            f"job: {final['status']} in {done_t:.1f} s (queued {first_processing or 0:.2f} s,"
            f" render {result.get('render_seconds')} s); MP4 {decoded} frames (probe {info.frames})"
            f" {info.width}x{info.height} at {info.fps:g} fps, {len(video_bytes) / 1e6:.1f} MB;"
            f" checks {'ok' if results['ok'] else results['checks']}",
            flush=True,
        )
        if e.get("samples_with_eta"):
            print(
                f"ETA: estimate at submit {created.get('estimated_time')} s; first reported"
                f" {e['first_eta']['eta_s']:.1f} s at {e['first_eta']['progress']:.1f} %"
                f" (really {e['first_eta']['actual_s']:.1f} s left); mean |error|"
                f" {e['mean_abs_error_s']:.1f} s, mean relative {e['mean_relative_error']:.0%}",
                flush=True,
            )
            for row in e["at_progress"]:
                print(
                    f"  at {row['progress']:5.1f} % (t={row['t']:.1f} s): eta {row['eta_s']:.1f} s,"
                    f" really {row['actual_s']:.1f} s"
                )
    except Exception as exc:
        results["error"] = f"{type(exc).__name__}: {exc}"
        print(f"FAILED: {results['error']}", flush=True)
    finally:
        if child is not None:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            results["service_exit"] = child.returncode
        save()
        if service_log.exists():
            text = service_log.read_text(errors="replace")
            print(f"--- service log ({len(text.splitlines())} lines, last 60) ---")
            print("\n".join(text.splitlines()[-60:]), flush=True)
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    sys.exit(0 if main()["ok"] else 1)
