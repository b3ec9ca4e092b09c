"""GPU memory around SVD: what counts as out of memory, the VAE decode in even chunks sized from
free memory, the fallback ladder (half the chunk, then model CPU offload), and putting the
pipeline back whole (weights on one device, the dtypes it was loaded in) after every job."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import GPUOutOfMemory
from ..renderer import RenderSpec, check_cancel
from .plan import BYTES_PER_DECODED_PIXEL, MemoryFallback

log = logging.getLogger(__name__)

# cuBLAS and cuDNN report a failed allocation as a plain RuntimeError with their status name.
_ALLOCATION_FAILURES = (
    "CUBLAS_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_ALLOC_FAILED",
    "CUDNN_STATUS_NOT_ENOUGH_WORKSPACE",
    "CUDA out of memory",
    "CUDA error: out of memory",
)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether `exc` is the GPU running out of memory, however the library reported it."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(s in str(exc) for s in _ALLOCATION_FAILURES)


def even_chunks(count: int, chunk: int) -> list[tuple[int, int]]:
    """[start, stop) ranges of at most `chunk` frames, as even as possible: 25 at 12 is
    9+8+8, never 12+12+1 (a frame decoded alone flickers: the temporal decoder sees no
    neighbours)."""
    parts = max(1, -(-count // max(1, chunk)))
    bounds = [round(i * count / parts) for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts)]


@dataclass
class Decoded:
    frames: torch.Tensor  # (F, 3, H, W) float32 in [-1, 1]
    seconds: float


class Memory:
    """The pipeline's memory state for one renderer: the fallbacks, offload and the dtypes."""

    def __init__(self, pipe: Any, device: Callable[[], str], frames_per_pass: int) -> None:
        self.pipe = pipe
        self._device = device
        self.frames_per_pass = frames_per_pass
        self.offloaded = False
        # The dtypes the pipeline was loaded in: a failed call must never leave a model cast.
        self.dtypes = {name: model.dtype for name, model in self._models()}

    @property
    def device(self) -> str:
        return self._device()

    def _models(self) -> list[tuple[str, Any]]:
        return [(name, getattr(self.pipe, name)) for name in ("unet", "vae", "image_encoder")]

    def decode_chunk(self, width: int, height: int, frames: int) -> int:
        """Frames per VAE decode: as many as fit in the free GPU memory (all on the CPU)."""
        if not self.device.startswith("cuda"):
            return frames
        device = torch.device(self.device)
        free, _total = torch.cuda.mem_get_info(device)
        # What torch's caching allocator holds but does not use is free to us too (the driver
        # counts it as taken): after denoising that is often several GiB.
        free += torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        scale = 2 if self.pipe.vae.dtype == torch.float32 else 1
        per_frame = width * height * BYTES_PER_DECODED_PIXEL * scale
        return max(1, min(frames, int(free * 0.8) // per_frame))

    def decode(
        self,
        latents: torch.Tensor,
        *,
        ladder: MemoryFallback,
        cancel: threading.Event,
        on_chunk: Callable[[float], None] | None = None,
        inject: Callable[[str], None] | None = None,
    ) -> Decoded:
        """The pass's frames, decoded in the VAE's own dtype (whatever dtype the latents have)."""
        started = time.monotonic()
        vae = self.pipe.vae
        scale = self.pipe.vae_scale_factor
        count = latents.shape[1]
        width, height = latents.shape[-1] * scale, latents.shape[-2] * scale
        chunk = self.decode_chunk(width, height, count)
        if ladder.chunk_cap is not None:
            chunk = min(chunk, ladder.chunk_cap)
        ranges = even_chunks(count, chunk)
        ladder.last_chunk = max(stop - start for start, stop in ranges)
        flat = latents.flatten(0, 1) / vae.config.scaling_factor
        parts: list[torch.Tensor] = []
        with torch.inference_mode():
            for start, stop in ranges:
                check_cancel(cancel)
                if inject is not None:
                    inject("decode")
                piece = flat[start:stop].to(vae.dtype)
                parts.append(vae.decode(piece, num_frames=stop - start).sample.float())
                if on_chunk is not None:
                    on_chunk(stop / count)
        return Decoded(torch.cat(parts), time.monotonic() - started)

    def climb(self, ladder: MemoryFallback, spec: RenderSpec, exc: BaseException) -> None:
        """One step down the memory fallbacks, or `GPUOutOfMemory` when none is left."""
        self.empty_cache()
        self.restore_dtypes()
        ladder.level += 1
        if ladder.level == 1:
            ladder.chunk_cap = max(1, (ladder.last_chunk or self.frames_per_pass) // 2)
            log.warning(
                "SVD out of GPU memory; retrying the pass with decode chunks of %d",
                ladder.chunk_cap,
            )
        elif ladder.level == 2:
            log.warning("SVD out of GPU memory again; retrying the pass with model CPU offload")
            self.enable_offload()
        else:
            raise GPUOutOfMemory(oom_message(spec)) from exc

    def enable_offload(self) -> None:
        if self.offloaded:
            return
        self.offloaded = True
        # On the CPU this saves nothing, but it installs the very hooks it installs on CUDA
        # (accelerate's, moving each model to `device` for its call): the tests run through them.
        self.pipe.enable_model_cpu_offload(device=self.device)

    def restore_dtypes(self) -> None:
        """Every model back in the dtype it was loaded in (the SVD pipeline casts its VAE to
        fp32 for the encode and back; an error in between must not leave it in fp32)."""
        for name, model in self._models():
            if model.dtype != self.dtypes[name]:
                log.warning(
                    "SVD %s was left in %s; back to %s", name, model.dtype, self.dtypes[name]
                )
                model.to(dtype=self.dtypes[name])

    def end_job(self) -> None:
        """After every job: dtypes as loaded, and after an offload every weight back on the GPU,
        or, if that fails (the GPU is short), every weight under the offload hooks: never split
        between devices. Never raises."""
        try:
            self.restore_dtypes()
        except Exception:
            log.exception("could not restore the SVD models' dtypes")
        if not self.offloaded:
            return
        try:
            self.pipe.remove_all_hooks()
            self.pipe.to(self.device)
            self.offloaded = False
        except Exception as exc:
            log.warning(
                "SVD weights could not go back to %s [%s: %s]; staying under CPU offload",
                self.device,
                type(exc).__name__,
                exc,
            )
            self.offloaded = False
            try:
                self.pipe.to("cpu")
                self.enable_offload()
            except Exception:
                log.exception("could not put the SVD weights under CPU offload")
        self.empty_cache()

    def empty_cache(self) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()


def oom_message(spec: RenderSpec) -> str:
    return (
        f"not enough GPU memory for {spec.resolution}, {spec.duration} s, even with the"
        " memory-saving fallbacks: the GPU is busy or too small; try again in a few minutes"
    )
