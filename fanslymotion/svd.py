"""Stable Video Diffusion (SVD-XT) behind the renderer interface.

With `svd_chain.py`, the only modules that import torch, diffusers, transformers and accelerate;
`renderer.py` imports this one lazily, so a service running the camera-motion renderer never loads
them. Pass checkpoints and the live preview are written by `checkpoints.py`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import diffusers  # noqa: F401  (a lazy module: the pipeline classes load on first use)
import torch
import torch._dynamo.exc

from . import checkpoints, motion
from .checkpoints import PassStore, PreviewPlan
from .config import Settings
from .errors import Cancelled, FanslyError, GPUOutOfMemory, InvalidParams, RenderError, Unavailable
from .models import Phase, Progress
from .renderer import (
    ProgressFn,
    Renderer,
    RendererState,
    RenderResult,
    RenderSpec,
    RenderTask,
    check_cancel,
)
from .svd_chain import Chain

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from PIL.Image import Image as PILImage

    FrameArray = npt.NDArray[np.uint8]

log = logging.getLogger(__name__)


# --- Stable Video Diffusion ----------------------------------------------------------------------
#
# Method (docs/svd.md has the long version): the photo is centre-cropped to SVD's working size for
# the output's aspect; SVD-XT makes `frames_per_pass` (25) frames a pass, so a clip is a chain of
# passes, each conditioned on a frame of the one before; consecutive passes overlap by
# `overlap + 1` frames that are cross-faded; every pass after the first has its colour statistics
# matched to the first pass's; the camera path of the motion engine then crops and resizes every
# frame to the exact output size.

SVD_PASS_SEAM_FRACTION = 0.16
"""Overlap between passes as a fraction of the frames a pass makes (4 of SVD-XT's 25)."""

PROGRESS_WEIGHTS = (85.0, 10.0, 5.0)
"""Shares of the 0-100 scale: denoising, VAE decoding, camera path + encoding (an estimate of
their share of the time on a GPU at 1024x576; see docs/svd.md)."""

BYTES_PER_DECODED_PIXEL = 2048
"""Rough peak memory of the temporal VAE decoder per output pixel and frame in fp16 (the
full-resolution up-block holds several 128-channel activations); doubled in fp32."""


@dataclass(frozen=True)
class SVDMotion:
    """SVD's own conditioning for a preset: how much things move, how far from the photo."""

    motion_bucket_id: int
    noise_aug_strength: float


SVD_PRESET_MOTION: dict[str, SVDMotion] = {
    # A living photo: the camera barely moves (a slow push-in of a few percent), SVD's own
    # motion carries the clip; little noise augmentation keeps it close to the photo.
    "micro": SVDMotion(90, 0.02),
    # Camera moves: the path supplies the travel, SVD adds life; enough noise augmentation that
    # SVD is free to move the scene, a moderate bucket so it does not pan on its own.
    "pan_l": SVDMotion(110, 0.05),
    "pan_r": SVDMotion(110, 0.05),
    "tilt_up": SVDMotion(110, 0.05),
    "tilt_down": SVDMotion(110, 0.05),
    "dolly_in": SVDMotion(120, 0.06),
}
_DEFAULT_SVD_MOTION = SVDMotion(110, 0.05)

_ASPECT_RATIOS: dict[str, float] = {
    "16:9": 16 / 9,
    "9:16": 9 / 16,
    "1:1": 1.0,
    "4:3": 4 / 3,
    "3:4": 3 / 4,
}


def svd_motion(preset: str, strength: float) -> tuple[int, float]:
    """(motion_bucket_id, noise_aug_strength) for a preset; strength 0.5 is the preset's bucket,
    0 a quarter of it and 1 1.75 times it (capped at 255)."""
    params = SVD_PRESET_MOTION.get(preset, _DEFAULT_SVD_MOTION)
    scale = 0.25 + 1.5 * min(1.0, max(0.0, strength))
    bucket = max(1, min(255, round(params.motion_bucket_id * scale)))
    return bucket, params.noise_aug_strength


def svd_working_size(aspect: str, long_side: int) -> tuple[int, int]:
    """SVD's generation size for an aspect: sides multiples of 64 (latents are 1/8 of the image
    and the UNet halves them three times), at most `long_side`, and no more pixels than the
    landscape size `long_side` x (9/16 of it) that SVD-XT was trained at.

    The winner has the most useful pixels: the output's aspect is cropped out of the frame, so
    a size whose aspect is off by a factor q keeps its area divided by q. Ties go to the closer
    aspect. 1024 gives 1024x576, 576x1024, 768x768, 896x640 and 640x896.
    """
    ratio = _ASPECT_RATIOS.get(aspect)
    if ratio is None:
        raise InvalidParams(f"unknown aspect {aspect!r}")
    side = max(64, long_side - long_side % 64)
    budget = side * max(64, round(side * 9 / 16 / 64) * 64)
    best = (64, 64)
    best_key = (0.0, -math.inf)
    for w in range(64, side + 1, 64):
        for h in range(64, min(side, budget // w) + 1, 64):
            error = abs(math.log(w / h / ratio))
            key = (round(w * h * math.exp(-error), 6), -error)
            if key > best_key:
                best, best_key = (w, h), key
    return best


def svd_overlap(frames_per_pass: int) -> int:
    """Frames a pass shares with the next beyond the conditioning frame: 4 for SVD-XT's 25.

    The `overlap + 1` shared frames are at most half a pass, so the cross-faded head of a pass
    never reaches its own tail (which the next pass is blended into)."""
    if frames_per_pass < 4:
        raise ValueError(f"SVD needs at least 4 frames a pass to chain them, not {frames_per_pass}")
    return max(1, min(round(frames_per_pass * SVD_PASS_SEAM_FRACTION), frames_per_pass // 2 - 1))


def svd_segments(total: int, frames_per_pass: int, overlap: int) -> int:
    """Passes needed for `total` frames: the first gives `frames_per_pass`, each next one
    `frames_per_pass - 1 - overlap` new frames."""
    fresh = frames_per_pass - 1 - overlap
    return 1 + max(0, -(-(total - frames_per_pass) // fresh))


def svd_device(settings: Settings) -> tuple[str | None, str]:
    """(device, reason): the device SVD would run on, or None and why not.

    CUDA when available unless FANSLYMOTION_SVD_DEVICE names one; the CPU only when named
    explicitly (tests and experiments: it is far too slow for the service)."""
    wanted = settings.svd_device.strip().lower()
    if wanted == "cpu":
        return "cpu", "FANSLYMOTION_SVD_DEVICE=cpu"
    if wanted and not wanted.startswith("cuda"):
        return None, f"unsupported SVD device {wanted!r} (cuda or cpu)"

    if not torch.cuda.is_available():
        return None, "no CUDA device"
    return (wanted or "cuda"), "CUDA available"


def find_svd_weights(model: str, *, cache_dir: Path | None = None) -> Path | None:
    """The folder holding the pipeline (its model_index.json), without downloading anything:
    `model` is a local folder, or a hub id looked up in the Hugging Face cache (`cache_dir`,
    by default the one huggingface_hub uses: HF_HUB_CACHE, HF_HOME/hub, ~/.cache/...)."""
    local = Path(model).expanduser()
    if local.is_dir():
        return local if (local / "model_index.json").is_file() else None
    if model.count("/") != 1 or model.startswith((".", "/", "~")):
        return None
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(model, "model_index.json", cache_dir=cache_dir)
    except Exception:  # an id the hub library rejects: not in the cache
        return None
    if isinstance(cached, str):
        return Path(cached).parent
    return None


_WEIGHT_COMPONENTS = ("unet", "vae", "image_encoder")


def _fp16_variant_present(folder: Path) -> bool:
    """Whether every component with weights has an fp16 variant file (`*.fp16.safetensors`)."""
    for component in _WEIGHT_COMPONENTS:
        sub = folder / component
        if not any(sub.glob("*.fp16.safetensors")) and not any(sub.glob("*.fp16.bin")):
            return False
    return True


def _full_precision_present(folder: Path) -> bool:
    for component in _WEIGHT_COMPONENTS:
        names = [p.name for p in (folder / component).glob("*.safetensors")]
        names += [p.name for p in (folder / component).glob("*.bin")]
        if not any(".fp16." not in name for name in names):
            return False
    return True


def optimize_pipeline(
    pipe: Any,
    *,
    compile_unet: bool,
    compile_mode: str = "default",
    compile_backend: str | Callable[..., Any] = "inductor",
) -> None:
    """Speed-ups that keep the output. Always: SDPA attention in the UNet and the VAE (diffusers'
    default with torch 2, made explicit). With `compile_unet`: channels-last weights, cuDNN
    autotuning on CUDA and `torch.compile` of the UNet (static shapes: one graph per working
    size, compiled on its first call, which takes minutes with inductor; `bench/svd_gpu.py`
    measures the gain). `compile_mode` applies to inductor only."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    if hasattr(pipe.unet, "_orig_mod"):  # compiled already
        return
    sdpa: Any = AttnProcessor2_0  # diffusers' annotations are partial: keep mypy out of them
    pipe.unet.set_attn_processor(sdpa())
    pipe.vae.set_attn_processor(sdpa())
    if not compile_unet:
        return
    if pipe.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    # Channels-last for the 2-D convolutions only: `Module.to(memory_format=...)` on the whole
    # UNet or VAE fails on their temporal layers' 5-D Conv3d weights.
    for module in (*pipe.unet.modules(), *pipe.vae.modules()):
        if isinstance(module, torch.nn.Conv2d):
            conv: Any = module  # torch's stubs for Module.to lack `memory_format`
            conv.to(memory_format=torch.channels_last)
    mode = compile_mode if compile_backend == "inductor" else None
    pipe.unet = torch.compile(
        pipe.unet, backend=compile_backend, mode=mode, fullgraph=False, dynamic=False
    )


def _is_compile_error(exc: BaseException) -> bool:
    """Whether `exc` comes from torch.compile (tracing or code generation), not from the model."""

    return isinstance(exc, torch._dynamo.exc.TorchDynamoException)


class _SVDProgress:
    """One 0-100 scale over every denoising step of every pass, the decodes and the encoding;
    the ETA uses measured times (step, decode, frame) once there are some."""

    def __init__(
        self,
        report: ProgressFn,
        *,
        segments: int,
        steps: int,
        frames: int,
        step_seconds: float | None,
    ) -> None:
        self._report = report
        self.segments = segments
        self.steps = steps
        self.frames = frames
        self._steps_done = 0
        self._decoded = 0.0
        self._encoded = 0
        # Seconds a step takes: from the previous jobs until this one has measured its own.
        self._step_s = step_seconds or 0.0
        self._step_measured = step_seconds is not None
        self._decode_s: float | None = None
        self._frame_s: float | None = None
        self._last = time.monotonic()
        self._last_kind = ""
        self._percent = 0.0

    @staticmethod
    def _smooth(old: float | None, new: float) -> float:
        return new if old is None else 0.7 * old + 0.3 * new

    def _tick(self, kind: str) -> float:
        now = time.monotonic()
        elapsed, self._last = now - self._last, now
        previous, self._last_kind = self._last_kind, kind
        return elapsed if previous == kind else -1.0

    def resumed(self, passes_done: int) -> None:
        """A job that continues from a checkpoint: its finished passes count as done."""
        self._steps_done = passes_done * self.steps
        self._decoded = float(passes_done)
        # The pass it continues at (the last one when every pass is done: encoding only).
        self._emit(Phase.RESUMED, min(passes_done + 1, self.segments))

    def mark(self) -> None:
        """Restart the clock (a new pass starts: image encoding is not a step)."""
        self._last = time.monotonic()
        self._last_kind = ""

    def step(self, segment: int, index: int) -> None:
        elapsed = self._tick("step")
        if elapsed >= 0:
            self._step_s = self._smooth(self._step_s if self._step_measured else None, elapsed)
            self._step_measured = True
        self._steps_done = max(self._steps_done, segment * self.steps + index + 1)
        self._emit(Phase.ANIMATING, segment + 1)

    def decoded(self, segment: int, fraction: float, seconds: float | None = None) -> None:
        if seconds is not None:
            self._decode_s = self._smooth(self._decode_s, seconds)
            self._last_kind = ""
        self._decoded = max(self._decoded, segment + fraction)
        self._emit(Phase.DECODING, segment + 1)

    def encoded(self, done: int) -> None:
        elapsed = self._tick("frame")
        if elapsed >= 0:
            self._frame_s = self._smooth(self._frame_s, elapsed)
        self._encoded = max(self._encoded, done)
        self._emit(Phase.ENCODING)

    def eta(self) -> float | None:
        if not self._step_measured:
            return None
        steps_left = self.segments * self.steps - self._steps_done
        decode_s = self._decode_s if self._decode_s is not None else 2 * self._step_s
        frame_s = self._frame_s if self._frame_s is not None else 0.02
        return (
            steps_left * self._step_s
            + (self.segments - self._decoded) * decode_s
            + (self.frames - self._encoded) * frame_s
        )

    def _emit(self, phase: Phase, segment: int = 0) -> None:
        w_denoise, w_decode, w_encode = PROGRESS_WEIGHTS
        percent = (
            w_denoise * self._steps_done / (self.segments * self.steps)
            + w_decode * self._decoded / self.segments
            + w_encode * self._encoded / self.frames
        )
        # The last percent is the flush of the encoder and the move into place.
        self._percent = max(self._percent, min(99.0, percent))
        steps = self.segments if segment else 0
        self._report(Progress(self._percent, phase, segment, steps, self.eta()))


@dataclass
class MemoryFallback:
    """Where a job stands on the out-of-memory fallbacks: level 0 as planned, 1 half the decode
    chunk, 2 model CPU offload as well; one more OOM ends the job with `GPUOutOfMemory`."""

    level: int = 0
    chunk_cap: int | None = None
    last_chunk: int | None = None  # frames per VAE decode call, as last used


class SVDRenderer(Renderer):
    """Stable Video Diffusion (SVD-XT): chained passes, the motion engine's camera path on top."""

    name = "svd"

    def __init__(self, settings: Settings, *, device: str, weights: Path | None) -> None:
        super().__init__(settings)
        self.device = device
        self.weights = weights
        self.state = RendererState(self.name, "loading", "SVD not loaded yet", device=device)
        self.fault_injector: Callable[[str], None] | None = None
        """Test seam: called with "denoise" or "decode" before each model call; raising
        `torch.cuda.OutOfMemoryError` from it exercises the OOM fallbacks on any device."""
        self.last_fallback = MemoryFallback()
        """The memory fallbacks the last job needed (for the log and tests)."""
        self.compile_backend: str | Callable[..., Any] = "inductor"
        """torch.compile's backend when `SVD_COMPILE` is on. Test seam: "eager" runs dynamo's
        tracing and guards without code generation, so the CPU tests see the same graphs
        (and graph breaks, and recompilations) as CUDA, in seconds rather than minutes."""
        self._pipe: Any = None
        self._frames_per_pass = 25
        self._offloaded = False
        self._step_seconds: float | None = None
        self._decode_seconds: float | None = None

    # -- life cycle --

    @classmethod
    def from_pipeline(
        cls, settings: Settings, pipe: Any, *, device: str, compile_unet: bool | None = None
    ) -> SVDRenderer:
        """A ready renderer around a pipeline built elsewhere (the GPU benchmark);
        `compile_unet` overrides the setting, on any device."""
        renderer = cls(settings, device=device, weights=None)
        renderer._adopt(pipe, "pipeline given", compile_unet=compile_unet)
        return renderer

    def load(self) -> None:
        model = self.settings.svd_model
        self.state.status, self.state.reason = "loading", f"loading {model}"
        try:
            pipe, how = self._load_pipeline()
            self._adopt(pipe, how)
            if self.compiled:
                ready_reason = self.state.reason
                self._warm_up()
                self.state.status, self.state.reason = "ready", ready_reason
        except Exception as exc:
            reason = f"SVD failed to load {model}: {type(exc).__name__}: {exc}"
            log.exception("%s", reason)
            self._pipe = None
            self.state.status, self.state.reason = "failed", reason
            # Whether the service then falls back to the motion renderer is the worker's call.
            raise Unavailable(reason) from exc

    def _load_pipeline(self) -> tuple[Any, str]:
        if self.weights is None:
            raise RenderError("no SVD weights folder", retryable=False)
        # Never reach the network: the weights are local or already in the cache.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")

        _route_library_logs()  # before the pipeline's import, which has things to say
        from diffusers import StableVideoDiffusionPipeline

        if self.settings.torch_threads:
            torch.set_num_threads(self.settings.torch_threads)
        wanted = self.settings.svd_dtype
        if wanted == "auto":
            wanted = "float16" if self.device.startswith("cuda") else "float32"
        dtype: torch.dtype = getattr(torch, wanted)
        # The fp16 files are half the bytes to read; they serve every half-precision dtype, and
        # fp32 too when they are all there is.
        variant: str | None = None
        if _fp16_variant_present(self.weights) and (
            dtype != torch.float32 or not _full_precision_present(self.weights)
        ):
            variant = "fp16"
        kwargs: dict[str, Any] = {"local_files_only": True, "variant": variant}
        kwargs[_dtype_keyword()] = dtype
        loader: Any = StableVideoDiffusionPipeline.from_pretrained
        pipe = loader(str(self.weights), **kwargs)
        pipe.to(self.device)
        how = f"{str(dtype).removeprefix('torch.')}{', fp16 weights' if variant else ''}"
        return pipe, how

    def _adopt(self, pipe: Any, how: str, *, compile_unet: bool | None = None) -> None:
        pipe.set_progress_bar_config(disable=True)
        if compile_unet is None:
            compile_unet = self.settings.svd_compile
        optimize_pipeline(pipe, compile_unet=compile_unet, compile_backend=self.compile_backend)
        frames_per_pass = int(pipe.unet.config.num_frames)
        svd_overlap(frames_per_pass)  # rejects a model that makes too few frames to chain
        self._pipe = pipe
        self._frames_per_pass = frames_per_pass
        landscape = svd_working_size("16:9", self.settings.svd_size)
        self.state.status = "ready"
        self.state.reason = f"{self.settings.svd_model} on {self.device} ({how})"
        self.state.extra = {
            "frames_per_pass": self._frames_per_pass,
            "working_size": f"{landscape[0]}x{landscape[1]}",
            "compiled": hasattr(pipe.unet, "_orig_mod"),
        }
        log.info("SVD ready: %s", self.state.reason)

    @property
    def pipeline(self) -> Any:
        """The loaded diffusers pipeline (None before `load`)."""
        return self._pipe

    @property
    def compiled(self) -> bool:
        """Whether the UNet runs through torch.compile."""
        return self._pipe is not None and hasattr(self._pipe.unet, "_orig_mod")

    def _warm_up(self) -> None:
        """Compile the UNet now, at the landscape working size, rather than in the first job
        (the state stays "loading" meanwhile). Other sizes compile on their first job. If the
        compilation fails, the UNet runs eagerly: slower, never broken."""
        from PIL import Image

        width, height = svd_working_size("16:9", self.settings.svd_size)
        self.state.status, self.state.reason = "loading", "compiling the UNet (one-time warm-up)"
        started = time.monotonic()
        try:
            self._pipe(
                Image.new("RGB", (width, height), (128, 128, 128)),
                height=height,
                width=width,
                num_frames=self._frames_per_pass,
                num_inference_steps=2,
                output_type="latent",
            )
        except Exception as exc:
            self._drop_compiled(exc)
        else:
            log.info("SVD UNet compiled in %.0f s", time.monotonic() - started)

    def _drop_compiled(self, exc: BaseException) -> None:
        """Go back to the eager UNet after torch.compile failed."""
        # dynamo wraps the compiler's own error; that one says what went wrong.
        cause: BaseException = getattr(exc, "inner_exception", None) or exc
        log.warning(
            "torch.compile of the SVD UNet failed; running it eagerly from now on [%s: %s]",
            type(cause).__name__,
            " ".join(str(cause).split())[:300],
        )
        self._pipe.unet = self._pipe.unet._orig_mod
        self.state.extra["compiled"] = False

    def close(self) -> None:
        self._pipe = None
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def memory_stats(self) -> dict[str, float]:
        if not self.device.startswith("cuda"):
            return {}

        return {
            "allocated": float(torch.cuda.memory_allocated(self.device)),
            "reserved": float(torch.cuda.memory_reserved(self.device)),
        }

    def estimate_seconds(self, spec: RenderSpec) -> float:
        per_pass = self._frames_per_pass
        segments = svd_segments(spec.frames, per_pass, svd_overlap(per_pass))
        step = self._step_seconds
        if step is None:
            # SVD-XT at 1024x576 on a current datacentre GPU, scaled by the working area.
            w, h = svd_working_size("16:9", self.settings.svd_size)
            step = 0.45 * (w * h) / (1024 * 576) * per_pass / 25
            if not self.device.startswith("cuda"):
                step *= 100
        decode = self._decode_seconds if self._decode_seconds is not None else 2 * step
        return 2.0 + segments * (spec.steps * step + decode) + spec.frames * 0.02

    def scratch_bytes(self, spec: RenderSpec) -> int:
        """The checkpoints' bound: every kept frame and one tail, raw, at the largest working
        size (the landscape one: no other has more pixels), plus the preview. Lossless WebP
        makes them about half of that on photos."""
        per_pass = self._frames_per_pass
        overlap = svd_overlap(per_pass)
        segments = svd_segments(spec.frames, per_pass, overlap)
        kept = segments * (per_pass - 1 - overlap) + 2 * (overlap + 1)
        width, height = svd_working_size("16:9", self.settings.svd_size)
        return kept * width * height * 3 + (1 << 20)

    # -- rendering --

    def render(
        self, task: RenderTask, progress: ProgressFn, cancel: threading.Event
    ) -> RenderResult:
        if self._pipe is None:
            raise RenderError("the video model is not loaded", retryable=False)

        try:
            return self._render(task, progress, cancel)
        except BaseException as exc:
            task.output_path.unlink(missing_ok=True)
            if isinstance(exc, FanslyError | Cancelled) or not isinstance(exc, Exception):
                raise
            if isinstance(exc, torch.cuda.OutOfMemoryError):
                raise GPUOutOfMemory(_oom_message(task.spec)) from exc
            log.exception("svd job %s failed", task.job_id)
            raise RenderError("the video model failed on this job") from exc
        finally:
            self._end_job()

    def _render(
        self, task: RenderTask, progress: ProgressFn, cancel: threading.Event
    ) -> RenderResult:
        from PIL import Image, ImageOps

        spec = task.spec
        progress(Progress(0.0, Phase.PREPARING))
        image, (out_w, out_h) = self._open_photo(task)
        aspect = motion.resolve_aspect(spec.aspect, image.width, image.height)
        work_w, work_h = svd_working_size(aspect, self.settings.svd_size)
        # Centre crop to the working aspect, never a stretch.
        first = ImageOps.fit(image, (work_w, work_h), method=Image.Resampling.LANCZOS)
        per_pass = self._frames_per_pass
        overlap = svd_overlap(per_pass)
        segments = svd_segments(spec.frames, per_pass, overlap)
        tracker = _SVDProgress(
            progress,
            segments=segments,
            steps=spec.steps,
            frames=spec.frames,
            step_seconds=self._step_seconds,
        )
        log.info(
            "svd job %s: %d frames in %d passes of %d at %dx%d, output %dx%d",
            task.job_id,
            spec.frames,
            segments,
            per_pass,
            work_w,
            work_h,
            out_w,
            out_h,
        )
        passes = self._pass_store(task, (work_w, work_h), (out_w, out_h), segments)
        try:
            working = self.working_frames(
                first, spec, cancel=cancel, tracker=tracker, passes=passes
            )
            frames = motion.apply_camera(
                working,
                out_size=(out_w, out_h),
                n_frames=spec.frames,
                preset=spec.motion,
                strength=spec.strength,
            )

            def on_frame(done: int) -> None:
                check_cancel(cancel)
                tracker.encoded(done)

            return self._encode(task, frames, (out_w, out_h), on_frame, progress)
        finally:
            if passes is not None:
                passes.close()  # the passes finished so far are on disk before the job stops

    def _pass_store(
        self,
        task: RenderTask,
        work_size: tuple[int, int],
        out_size: tuple[int, int],
        segments: int,
    ) -> PassStore | None:
        """The job's checkpoints, keyed by everything a pass's pixels depend on."""
        if task.work_dir is None:
            return None
        spec = task.spec
        params = {
            "photo": hashlib.sha256(task.input_path.read_bytes()).hexdigest(),
            "seed": spec.seed,
            "steps": spec.steps,
            "fps": spec.fps,
            "motion": spec.motion,
            "strength": spec.strength,
            "passes": segments,
            "working_size": list(work_size),
            "frames_per_pass": self._frames_per_pass,
            "model": self.settings.svd_model,
            "dtype": str(self._pipe.unet.dtype),
            "device": self.device,
        }
        plan = PreviewPlan(
            size=checkpoints.preview_size(*out_size),
            n_frames=spec.frames,
            fps=spec.fps,
            preset=spec.motion,
            strength=spec.strength,
            passes=segments,
        )
        return PassStore(
            task.work_dir,
            params,
            min_free_bytes=self.settings.min_free_mb << 20,
            preview=plan,
            on_preview=task.on_preview,
        )

    def working_frames(
        self,
        first: PILImage,
        spec: RenderSpec,
        *,
        cancel: threading.Event | None = None,
        tracker: _SVDProgress | None = None,
        n_frames: int | None = None,
        passes: PassStore | None = None,
    ) -> Iterator[FrameArray]:
        """`n_frames` (default `spec.frames`) frames, HxWx3 uint8 at the size of `first`, SVD's
        working size: chained passes, seams cross-faded, colour held to the first pass. With
        `passes`, each pass is checkpointed, and a matching checkpoint is continued from."""
        cancel = cancel or threading.Event()
        total = spec.frames if n_frames is None else n_frames
        per_pass = self._frames_per_pass
        overlap = svd_overlap(per_pass)
        segments = svd_segments(total, per_pass, overlap)
        bucket, noise_aug = svd_motion(spec.motion, spec.strength)
        ladder = MemoryFallback()
        self.last_fallback = ladder
        chain = Chain(first, per_pass, overlap + 1)
        start = 0
        resumed = passes.load() if passes is not None else None
        if resumed is not None:
            assert passes is not None
            start = chain.restore(resumed)
            if start < segments:
                log.info(
                    "svd job %s: resuming from pass %d/%d (checkpoint)",
                    passes.folder.name,
                    start + 1,
                    segments,
                )
            else:
                log.info("svd job %s: all %d passes checkpointed", passes.folder.name, segments)
            if tracker is not None:
                tracker.resumed(start)
        emitted = 0
        for k in range(segments):
            if k < start:
                assert passes is not None
                out = passes.kept(k)
                if k == start - 1:
                    passes.preview_now(start)
            else:
                check_cancel(cancel)
                clip = self._segment(
                    chain.condition,
                    spec,
                    k,
                    bucket,
                    noise_aug,
                    ladder=ladder,
                    cancel=cancel,
                    tracker=tracker,
                )
                out = chain.link(clip, last=k == segments - 1)
                if passes is not None:
                    passes.save(k, out, chain.tail, chain.reference_arrays())
            for frame in out:
                if emitted == total:
                    return
                yield frame
                emitted += 1

    def _segment(
        self,
        condition: PILImage,
        spec: RenderSpec,
        k: int,
        bucket: int,
        noise_aug: float,
        *,
        ladder: MemoryFallback,
        cancel: threading.Event,
        tracker: _SVDProgress | None,
    ) -> torch.Tensor:
        """One pass: (frames, 3, H, W) float in [-1, 1] on the device; OOM walks the ladder."""

        latents: torch.Tensor | None = None
        while True:
            try:
                if latents is None:
                    latents = self._denoise(
                        condition, spec, k, bucket, noise_aug, cancel=cancel, tracker=tracker
                    )
                return self._decode(latents, k, ladder=ladder, cancel=cancel, tracker=tracker)
            except torch.cuda.OutOfMemoryError as exc:
                self._climb(ladder, spec, exc)

    def _denoise(
        self,
        condition: PILImage,
        spec: RenderSpec,
        k: int,
        bucket: int,
        noise_aug: float,
        *,
        cancel: threading.Event,
        tracker: _SVDProgress | None,
    ) -> torch.Tensor:

        if tracker is not None:
            tracker.mark()
        started = time.monotonic()

        def on_step(
            pipe: object, index: int, timestep: object, kwargs: dict[str, Any]
        ) -> dict[str, Any]:
            # The SVD pipeline has no `_interrupt`: raising is the only way out of its loop.
            check_cancel(cancel)
            if tracker is not None:
                tracker.step(k, index)
            return kwargs

        if self.fault_injector is not None:
            self.fault_injector("denoise")
        # Seeded per pass on the CPU: the same noise whatever the device (and attempt).
        seed = (spec.seed + k) & 0xFFFF_FFFF_FFFF_FFFF
        while True:
            try:
                result = self._pipe(
                    condition,
                    height=condition.height,
                    width=condition.width,
                    num_frames=self._frames_per_pass,
                    num_inference_steps=spec.steps,
                    fps=spec.fps,
                    motion_bucket_id=bucket,
                    noise_aug_strength=noise_aug,
                    generator=torch.Generator("cpu").manual_seed(seed),
                    output_type="latent",
                    callback_on_step_end=on_step,
                    callback_on_step_end_tensor_inputs=["latents"],
                )
                break
            except Exception as exc:
                # A working size compiles on its first call; if that fails, this pass and
                # every later one run eagerly rather than fail the job.
                if not (self.compiled and _is_compile_error(exc)):
                    raise
                self._drop_compiled(exc)
                started = time.monotonic()
                if tracker is not None:
                    tracker.mark()
        seconds = (time.monotonic() - started) / max(1, spec.steps)
        self._step_seconds = (
            seconds if self._step_seconds is None else 0.7 * self._step_seconds + 0.3 * seconds
        )
        latents: torch.Tensor = result.frames
        return latents

    def _decode_chunk(self, width: int, height: int, frames: int) -> int:
        """Frames per VAE decode: as many as fit in the free GPU memory (all of them on the CPU)."""
        if not self.device.startswith("cuda"):
            return frames

        device = torch.device(self.device)
        free, _total = torch.cuda.mem_get_info(device)
        # What torch's caching allocator holds but does not use is free to us too (the driver
        # counts it as taken): after denoising that is often several GiB.
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        per_frame = (
            width
            * height
            * BYTES_PER_DECODED_PIXEL
            * (2 if self._pipe.vae.dtype == torch.float32 else 1)
        )
        return max(1, min(frames, int(free * 0.8) // per_frame))

    def _decode(
        self,
        latents: torch.Tensor,
        k: int,
        *,
        ladder: MemoryFallback,
        cancel: threading.Event,
        tracker: _SVDProgress | None,
    ) -> torch.Tensor:

        started = time.monotonic()
        vae = self._pipe.vae
        scale = self._pipe.vae_scale_factor
        count = latents.shape[1]
        width, height = latents.shape[-1] * scale, latents.shape[-2] * scale
        chunk = self._decode_chunk(width, height, count)
        if ladder.chunk_cap is not None:
            chunk = min(chunk, ladder.chunk_cap)
        ladder.last_chunk = chunk
        flat = latents.flatten(0, 1) / vae.config.scaling_factor
        parts: list[torch.Tensor] = []
        with torch.inference_mode():
            for start in range(0, count, chunk):
                check_cancel(cancel)
                if self.fault_injector is not None:
                    self.fault_injector("decode")
                piece = flat[start : start + chunk]
                parts.append(vae.decode(piece, num_frames=piece.shape[0]).sample.float())
                if tracker is not None:
                    done = min(count, start + chunk) / count
                    seconds = time.monotonic() - started if done >= 1 else None
                    tracker.decoded(k, done, seconds)
        decode_s = time.monotonic() - started
        self._decode_seconds = (
            decode_s
            if self._decode_seconds is None
            else 0.7 * self._decode_seconds + 0.3 * decode_s
        )
        return torch.cat(parts)

    def _climb(self, ladder: MemoryFallback, spec: RenderSpec, exc: BaseException) -> None:
        """One step down the memory fallbacks, or `GPUOutOfMemory` when none is left."""

        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
        ladder.level += 1
        if ladder.level == 1:
            ladder.chunk_cap = max(1, (ladder.last_chunk or self._frames_per_pass) // 2)
            log.warning(
                "SVD out of GPU memory; retrying the pass with decode chunks of %d",
                ladder.chunk_cap,
            )
        elif ladder.level == 2:
            log.warning("SVD out of GPU memory again; retrying the pass with model CPU offload")
            self._enable_offload()
        else:
            raise GPUOutOfMemory(_oom_message(spec)) from exc

    def _enable_offload(self) -> None:
        if self._offloaded:
            return
        self._offloaded = True
        # On the CPU this saves nothing, but it installs the very hooks it installs on CUDA
        # (accelerate's, moving each model to `device` for its call): the tests run through them.
        self._pipe.enable_model_cpu_offload(device=self.device)

    def _end_job(self) -> None:
        """Back to full speed after a job that needed the CPU offload."""
        if not self._offloaded:
            return
        self._offloaded = False
        self._pipe.remove_all_hooks()
        self._pipe.to(self.device)
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()


class _DropFalseAlarms(logging.Filter):
    """Library warnings that are noise here. diffusers warns on every dtype cast of a model
    about "modules that should be kept in float32" even when there are none, and the SVD
    pipeline in fp16 casts its VAE to fp32 and back on every call: two lines per pass.
    transformers says once that it uses the PIL image processor because torchvision is not
    installed: we leave torchvision out on purpose, and the PIL one is what SVD needs."""

    NOISE = ("should be kept in float32: []", "requires torchvision (not installed)")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in self.NOISE)


def _route_library_logs() -> None:
    """diffusers and transformers print through stderr handlers of their own, and draw
    progress bars while loading: send their records through the service's logging instead
    (one format, one place), minus false alarms, and draw no bars."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for library in (diffusers_logging, transformers_logging):
        library.disable_default_handler()
        library.enable_propagation()
        library.disable_progress_bar()
    for name in ("diffusers.models.modeling_utils", "transformers.utils.import_utils"):
        noisy = logging.getLogger(name)
        if not any(isinstance(f, _DropFalseAlarms) for f in noisy.filters):
            noisy.addFilter(_DropFalseAlarms())


def _oom_message(spec: RenderSpec) -> str:
    return (
        f"not enough GPU memory for {spec.resolution}, {spec.duration} s, even with the"
        " memory-saving fallbacks: the GPU is busy or too small; try again in a few minutes"
    )


def _dtype_keyword() -> str:
    """`dtype` since diffusers deprecated `torch_dtype`; older versions only know the latter."""
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"
