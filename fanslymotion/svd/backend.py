"""`SVDRenderer`: Stable Video Diffusion behind the renderer interface: chained passes,
checkpoints and previews, memory fallbacks, and the motion engine's camera path on top."""

from __future__ import annotations

import hashlib
import itertools
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

from .. import camera, checkpoints, motion, reframe, subject
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
from .handoff import Handoff
from .load import (
    _dtype_keyword,
    _fp16_variant_present,
    _full_precision_present,
    _is_compile_error,
    _route_library_logs,
    optimize_pipeline,
    own_storage,
)
from .memory import Memory, is_out_of_memory, oom_message
from .plan import (
    FIRST_PASS_MAX_GUIDANCE,
    MemoryFallback,
    PassPlan,
    _SVDProgress,
    looped,
    svd_chain_motion,
    svd_motion,
    svd_noise_aug,
    svd_overlap,
    svd_pass_plan,
    svd_segments,
    svd_working_size,
)
from .sampler import Conditioning, Sampler

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from PIL.Image import Image as PILImage

    FrameArray = npt.NDArray[np.uint8]

log = logging.getLogger(__name__)


class SVDRenderer(Renderer):
    """Stable Video Diffusion (SVD-XT): anchored passes sharing latents across their seams,
    interpolated to the output rate, the motion engine's camera path on top."""

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
        self.generation_fps: float | None = None
        """The rate SVD generates at (None: the plan's, SVD_GENERATION_FPS); the benchmark sets
        the output rate to run the old plan (every output frame generated) as its baseline."""
        self.last_plan: PassPlan | None = None
        self._pipe: Any = None
        self._sampler: Sampler | None = None
        self._memory: Memory | None = None
        self._frames_per_pass = 25
        self._threads = 0
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
        if not hasattr(pipe.unet, "_orig_mod"):
            own_storage(pipe)
        optimize_pipeline(pipe, compile_unet=compile_unet, compile_backend=self.compile_backend)
        frames_per_pass = int(pipe.unet.config.num_frames)
        svd_overlap(frames_per_pass)  # rejects a model that makes too few frames to chain
        self._pipe = pipe
        self._sampler = Sampler(pipe)
        self._memory = Memory(pipe, lambda: self.device, frames_per_pass)
        self._frames_per_pass = frames_per_pass
        # Every job runs with this many CPU threads: float reductions split by thread count,
        # and random weights (or a long chain) turn a last-bit difference into other frames.
        self._threads = self.settings.torch_threads or torch.get_num_threads()
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

    def working_sizes(self) -> list[tuple[int, int]]:
        """Every size a job can generate at (one per aspect), landscape first."""
        sizes: list[tuple[int, int]] = []
        for aspect in (a for a in motion.ASPECTS if a != "auto"):  # 16:9 first
            size = svd_working_size(aspect, self.settings.svd_size)
            if size not in sizes:
                sizes.append(size)
        return sizes

    def _warm_up(self) -> None:
        """Compile the UNet now, at every working size, rather than in a user's job: the state
        stays "loading" and `/health` counts the sizes (`compiling`: "2/5"). With inductor's
        cache (TORCHINDUCTOR_CACHE_DIR) a restart reuses the kernels. If a compilation fails,
        the UNet runs eagerly: slower, never broken."""
        from PIL import Image

        sizes = self.working_sizes()
        started = time.monotonic()
        for done, (width, height) in enumerate(sizes):
            self.state.status = "loading"
            self.state.reason = (
                f"compiling the UNet for {width}x{height} ({done + 1}/{len(sizes)}, one-time)"
            )
            self.state.extra["compiling"] = f"{done}/{len(sizes)}"
            try:
                self._warm_size(Image.new("RGB", (width, height), (128, 128, 128)))
            except Exception as exc:
                self._drop_compiled(exc)
                break
        self.state.extra.pop("compiling", None)
        if self.compiled:
            log.info(
                "SVD UNet compiled for %d working sizes in %.0f s",
                len(sizes),
                time.monotonic() - started,
            )

    def _warm_size(self, image: PILImage) -> None:
        assert self._sampler is not None
        embeddings = self._sampler.anchor(image)
        self._sampler.denoise(
            embeddings,
            image,
            frames=self._frames_per_pass,
            steps=2,
            cond=Conditioning(6, 100, 0.02),
            generator=torch.Generator("cpu").manual_seed(0),
        )

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
        self._pipe = self._sampler = self._memory = None
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()

    def memory_stats(self) -> dict[str, float]:
        if not self.device.startswith("cuda"):
            return {}

        return {
            "allocated": float(torch.cuda.memory_allocated(self.device)),
            "reserved": float(torch.cuda.memory_reserved(self.device)),
        }

    def plan(self, spec: RenderSpec) -> PassPlan:
        """How `spec` is made: generation rate, interpolation factor, passes."""
        return svd_pass_plan(
            spec.frames,
            spec.fps,
            self._frames_per_pass,
            preset=spec.motion,
            generation_fps=self.generation_fps,
        )

    def estimate_seconds(self, spec: RenderSpec) -> float:
        per_pass = self._frames_per_pass
        segments = self.plan(spec).passes
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
        size (the landscape one: no other has more pixels), plus the preview and the shared
        latents (a few MB). Lossless WebP makes them about half of that on photos."""
        per_pass = self._frames_per_pass
        overlap = svd_overlap(per_pass)
        segments = self.plan(spec).passes
        kept = segments * (per_pass - 1 - overlap) + 2 * (overlap + 1)
        width, height = svd_working_size("16:9", self.settings.svd_size)
        return kept * width * height * 3 + (1 << 20)

    # -- rendering --

    def render(
        self, task: RenderTask, progress: ProgressFn, cancel: threading.Event
    ) -> RenderResult:
        if self._pipe is None:
            raise RenderError("the video model is not loaded", retryable=False)

        torch.set_num_threads(self._threads)
        try:
            return self._render(task, progress, cancel)
        except BaseException as exc:
            task.output_path.unlink(missing_ok=True)
            if isinstance(exc, FanslyError | Cancelled) or not isinstance(exc, Exception):
                raise
            if is_out_of_memory(exc):
                raise GPUOutOfMemory(oom_message(task.spec)) from exc
            log.exception("svd job %s failed", task.job_id)
            raise RenderError("the video model failed on this job") from exc
        finally:
            assert self._memory is not None
            self._memory.end_job()

    def _render(
        self, task: RenderTask, progress: ProgressFn, cancel: threading.Event
    ) -> RenderResult:
        from PIL import Image

        spec = task.spec
        progress(Progress(0.0, Phase.PREPARING))
        image, (out_w, out_h) = self._open_photo(task)
        aspect = motion.resolve_aspect(spec.aspect, image.width, image.height)
        work_w, work_h = svd_working_size(aspect, self.settings.svd_size)
        shot = spec.shot
        if shot.subject is None:  # a job made without one (the CLI, an older row): look now
            found = None if shot.focus or shot.keyframes else subject.find_subject(image)
            shot = camera.aim(shot, found)
        # The part of the photo the shot needs, at the working aspect (never a stretch), and
        # the path over SVD's frames that frames it as the camera-motion renderer would.
        crop, path = camera.svd_framing(
            spec.motion,
            spec.strength,
            image.size,
            (out_w, out_h),
            (work_w, work_h),
            shot=shot,
            seed=spec.seed,
        )
        first = image.resize((work_w, work_h), Image.Resampling.LANCZOS, box=crop)
        plan = self.plan(spec)
        tracker = _SVDProgress(
            progress,
            segments=plan.passes,
            steps=spec.steps,
            frames=spec.frames,
            step_seconds=self._step_seconds,
        )
        log.info(
            "svd job %s: %d frames at %d fps from %d generated at %.3g fps (x%d%s) in %d passes"
            " of %d at %dx%d, output %dx%d",
            task.job_id,
            spec.frames,
            spec.fps,
            plan.generated,
            plan.generation_fps,
            plan.factor,
            ", looped" if plan.loop else "",
            plan.passes,
            self._frames_per_pass,
            work_w,
            work_h,
            out_w,
            out_h,
        )
        passes = self._pass_store(task, (work_w, work_h), (out_w, out_h), plan, crop, path)
        try:
            generated = self.working_frames(
                first, spec, cancel=cancel, tracker=tracker, passes=passes
            )

            def on_frame(done: int) -> None:
                check_cancel(cancel)
                tracker.encoded(done)

            def finish(frames: Iterator[FrameArray]) -> RenderResult:
                # In its own thread: interpolation, camera path and x264 of pass n run while
                # the GPU generates pass n+1.
                output = reframe.apply_path(
                    itertools.islice(_to_output_rate(frames, plan), spec.frames), path, spec.frames
                )
                return self._encode(task, output, (out_w, out_h), on_frame, progress, cancel)

            handoff: Handoff[FrameArray, RenderResult] = Handoff(2 * self._frames_per_pass)
            return handoff.run(generated, finish)
        finally:
            if passes is not None:
                passes.close()  # the passes finished so far are on disk before the job stops

    def _pass_store(
        self,
        task: RenderTask,
        work_size: tuple[int, int],
        out_size: tuple[int, int],
        plan: PassPlan,
        crop: motion.Box,
        path: motion.FramePath,
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
            "generation_fps": plan.generation_fps,
            "motion": spec.motion,
            "strength": spec.strength,
            "passes": plan.passes,
            "working_size": list(work_size),
            "crop": [round(v, 4) for v in crop],
            "frames_per_pass": self._frames_per_pass,
            "model": self.settings.svd_model,
            "dtype": str(self._pipe.unet.dtype),
            "device": self.device,
        }
        preview = PreviewPlan(
            size=checkpoints.preview_size(*out_size),
            n_frames=plan.generated,
            fps=max(1, round(plan.generation_fps)),
            path=path,
            stride=plan.factor,
            frames=spec.frames,
            passes=plan.passes,
        )
        return PassStore(
            task.work_dir,
            params,
            min_free_bytes=self.settings.min_free_mb << 20,
            preview=preview,
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
        """`n_frames` (default: the plan's) generated frames, HxWx3 uint8 at the size of
        `first`, SVD's working size, at the plan's generation rate: passes anchored to `first`
        and sharing latents across their seams. With `passes`, each pass is checkpointed, and
        a matching checkpoint is continued from."""
        assert self._sampler is not None
        cancel = cancel or threading.Event()
        plan = self.plan(spec)
        self.last_plan = plan
        total = plan.generated if n_frames is None else n_frames
        per_pass = self._frames_per_pass
        overlap = svd_overlap(per_pass)
        segments = plan.passes if n_frames is None else self._segments_for(total, plan)
        ladder = MemoryFallback()
        self.last_fallback = ladder
        chain = Chain(first, per_pass, overlap + 1)
        start = self._resume(chain, passes, segments, tracker)
        # The photo's CLIP embedding, once per job: every pass is anchored to the photo.
        embeddings = self._sampler.anchor(first)
        kept: list[FrameArray] = []  # a looped clip's one pass
        emitted = 0
        for k in range(segments):
            if k < start:
                assert passes is not None
                out = passes.kept(k)
                if k == start - 1:
                    passes.preview_now(start)
            else:
                check_cancel(cancel)
                latents, clip = self._segment(
                    embeddings, chain, spec, plan, k, ladder=ladder, cancel=cancel, tracker=tracker
                )
                out = chain.link(clip, latents, last=k == segments - 1)
                if passes is not None:
                    passes.save(k, out, chain.tail, chain.reference_arrays(), chain.shared_array())
            if plan.loop:
                kept.extend(out)
                continue
            for frame in out:
                if emitted == total:
                    return
                yield frame
                emitted += 1
        if plan.loop:
            for index in looped(len(kept), total):
                yield kept[index]

    def _segments_for(self, total: int, plan: PassPlan) -> int:
        if plan.loop:
            return 1
        return svd_segments(total, self._frames_per_pass, svd_overlap(self._frames_per_pass))

    def _resume(
        self,
        chain: Chain,
        passes: PassStore | None,
        segments: int,
        tracker: _SVDProgress | None,
    ) -> int:
        """The passes a matching checkpoint already holds (0 without one)."""
        resumed = passes.load() if passes is not None else None
        if resumed is None or passes is None:
            return 0
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
        return start

    def _segment(
        self,
        embeddings: torch.Tensor,
        chain: Chain,
        spec: RenderSpec,
        plan: PassPlan,
        k: int,
        *,
        ladder: MemoryFallback,
        cancel: threading.Event,
        tracker: _SVDProgress | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One pass: its final latents and its frames, (F, 3, H, W) float in [-1, 1]; an
        out-of-memory error walks the ladder."""
        assert self._memory is not None
        latents: torch.Tensor | None = None
        while True:
            try:
                if latents is None:
                    latents = self._denoise(
                        embeddings, chain, spec, plan, k, cancel=cancel, tracker=tracker
                    )
                decoded = self._memory.decode(
                    latents,
                    ladder=ladder,
                    cancel=cancel,
                    on_chunk=None if tracker is None else lambda done: tracker.decoded(k, done),
                    inject=self.fault_injector,
                )
            except Exception as exc:
                self._memory.restore_dtypes()
                if not is_out_of_memory(exc):
                    raise
                self._memory.climb(ladder, spec, exc)
                continue
            if tracker is not None:
                tracker.decoded(k, 1.0, decoded.seconds)
            self._decode_seconds = _smooth(self._decode_seconds, decoded.seconds)
            return latents, decoded.frames

    def _conditioning(self, spec: RenderSpec, plan: PassPlan, k: int, size: Any) -> Conditioning:
        bucket, noise_aug = svd_motion(spec.motion, spec.strength)
        guidance = FIRST_PASS_MAX_GUIDANCE
        if k > 0:
            bucket, guidance = svd_chain_motion(spec.motion, spec.strength)
        return Conditioning(
            fps=plan.conditioning_fps,
            motion_bucket_id=bucket,
            noise_aug_strength=svd_noise_aug(noise_aug, *size),
            max_guidance=guidance,
        )

    def _denoise(
        self,
        embeddings: torch.Tensor,
        chain: Chain,
        spec: RenderSpec,
        plan: PassPlan,
        k: int,
        *,
        cancel: threading.Event,
        tracker: _SVDProgress | None,
    ) -> torch.Tensor:
        assert self._sampler is not None
        if tracker is not None:
            tracker.mark()
        started = time.monotonic()

        def on_step(index: int) -> None:
            check_cancel(cancel)
            if tracker is not None:
                tracker.step(k, index)

        if self.fault_injector is not None:
            self.fault_injector("denoise")
        condition = chain.condition
        cond = self._conditioning(spec, plan, k, condition.size)
        while True:
            # Seeded per pass on the CPU: the same noise whatever the device (and attempt).
            generator = torch.Generator("cpu").manual_seed((spec.seed + k) & 0xFFFF_FFFF_FFFF_FFFF)
            try:
                latents = self._sampler.denoise(
                    embeddings,
                    condition,
                    frames=self._frames_per_pass,
                    steps=spec.steps,
                    cond=cond,
                    generator=generator,
                    shared=chain.shared,
                    on_step=on_step,
                )
                break
            except Exception as exc:
                # A compiled UNet that fails (it never compiles in a job: every working size
                # is compiled at load, but a guard may still miss) runs eagerly from then on.
                if not (self.compiled and _is_compile_error(exc)):
                    raise
                self._drop_compiled(exc)
                started = time.monotonic()
                if tracker is not None:
                    tracker.mark()
        seconds = (time.monotonic() - started) / max(1, spec.steps)
        self._step_seconds = _smooth(self._step_seconds, seconds)
        if not bool(torch.isfinite(latents).all()):
            # fp16 overflow: decoding would make flat frames and the job would "succeed".
            raise RenderError("the video model produced invalid numbers (NaN or inf)")
        return latents

    def _decode_chunk(self, width: int, height: int, frames: int) -> int:
        """Frames per VAE decode: as many as fit in the free GPU memory (all of them on the CPU)."""
        assert self._memory is not None
        return self._memory.decode_chunk(width, height, frames)


def _smooth(old: float | None, new: float) -> float:
    return new if old is None else 0.7 * old + 0.3 * new


def _to_output_rate(frames: Iterator[FrameArray], plan: PassPlan) -> Iterator[FrameArray]:
    """Generated frames to the output rate: motion-compensated frames between them."""
    if plan.factor == 1:
        return frames
    from .. import interpolate

    return interpolate.interpolate(frames, plan.factor)
