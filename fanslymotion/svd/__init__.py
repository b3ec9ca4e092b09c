"""Stable Video Diffusion (SVD-XT) behind the renderer interface.

The only package that imports torch, diffusers, transformers and accelerate; `renderer.py`
imports it lazily, so a service running the camera-motion renderer never loads them. `plan`
lays out a clip (sizes, passes, conditioning, progress), `load` finds and loads the pipeline,
`sampler` runs one pass
(anchored, latents shared across seams), `chain` joins passes, `memory` holds the decode and
the out-of-memory fallbacks, `handoff` passes frames to the encoding thread, `backend` is the
renderer. Pass checkpoints and the live preview are
written by `checkpoints.py` (no torch there).
"""

from __future__ import annotations

from .backend import SVDRenderer
from .load import find_svd_weights, optimize_pipeline, svd_device
from .plan import (
    BYTES_PER_DECODED_PIXEL,
    PROGRESS_WEIGHTS,
    SVD_GENERATION_FPS,
    SVD_PASS_SEAM_FRACTION,
    MemoryFallback,
    PassPlan,
    SVDMotion,
    svd_motion,
    svd_overlap,
    svd_pass_plan,
    svd_segments,
    svd_working_size,
)

__all__ = [
    "BYTES_PER_DECODED_PIXEL",
    "PROGRESS_WEIGHTS",
    "SVD_GENERATION_FPS",
    "SVD_PASS_SEAM_FRACTION",
    "MemoryFallback",
    "PassPlan",
    "SVDMotion",
    "SVDRenderer",
    "find_svd_weights",
    "optimize_pipeline",
    "svd_device",
    "svd_motion",
    "svd_overlap",
    "svd_pass_plan",
    "svd_segments",
    "svd_working_size",
]
