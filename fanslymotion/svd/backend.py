"""`SVDRenderer`: Stable Video Diffusion behind the renderer interface: chained passes,
checkpoints and previews, memory fallbacks, and the motion engine's camera path on top."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import diffusers  # noqa: F401  (a lazy module: the pipeline classes load on first use)
import torch
import torch._dynamo.exc

from .. import checkpoints, motion
from ..checkpoints import PassStore, PreviewPlan
from ..config import Settings
from ..errors import Cancelled, FanslyError, GPUOutOfMemory, RenderError, Unavailable
from ..renderer import (
    ProgressFn,
    Renderer,
    RendererState,
    RenderResult,
    RenderSpec,
    RenderTask,
    check_cancel,
)
from ..vocabulary import Phase, Progress
from .chain import Chain
from .load import (
    _dtype_keyword,
    _fp16_variant_present,
    _full_precision_present,
    _is_compile_error,
    _route_library_logs,
    optimize_pipeline,
)
from .plan import (
    BYTES_PER_DECODED_PIXEL,
    MemoryFallback,
    _SVDProgress,
    svd_motion,
    svd_overlap,
    svd_segments,
    svd_working_size,
)

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from PIL.Image import Image as PILImage

    FrameArray = npt.NDArray[np.uint8]

log = logging.getLogger(__name__)


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

            return self._encode(task, frames, (out_w, out_h), on_frame, progress, cancel)
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


def _oom_message(spec: RenderSpec) -> str:
    return (
        f"not enough GPU memory for {spec.resolution}, {spec.duration} s, even with the"
        " memory-saving fallbacks: the GPU is busy or too small; try again in a few minutes"
    )
