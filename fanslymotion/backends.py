"""The choice of backend (README, "Renderers"): the camera-motion renderer, or Stable Video
Diffusion where a CUDA device and its weights are there. Apart from renderer.py so that the
renderer interface never imports the svd package that implements it."""

from __future__ import annotations

import logging
from pathlib import Path

from .config import Settings
from .errors import Unavailable
from .renderer import MotionRenderer, Renderer

log = logging.getLogger(__name__)


def select_renderer(settings: Settings) -> Renderer:
    """Pick the backend from `settings.renderer`; see the README for the rules."""
    if settings.renderer == "motion":
        return MotionRenderer(settings, "FANSLYMOTION_RENDERER=motion")
    return _select_svd(settings)


def _select_svd(settings: Settings) -> Renderer:
    """`auto`: SVD when a CUDA device and the weights are there, else the camera-motion engine.

    `svd`: SVD or a start-up error (`Unavailable`). The checks are cheap: no model is loaded here,
    the weights are only looked up (a local folder, or the Hugging Face cache, offline).
    """
    from . import svd  # torch and diffusers load only when SVD is a candidate

    device, reason = svd.svd_device(settings)
    weights: Path | None = None
    if device is not None:
        weights = svd.find_svd_weights(settings.svd_model)
        if weights is None:
            reason = f"SVD weights not found for {settings.svd_model} (offline)"
    if device is None or weights is None:
        if settings.renderer == "svd":
            raise Unavailable(f"FANSLYMOTION_RENDERER=svd but {reason}")
        log.warning("SVD renderer not used: %s; using the camera-motion renderer", reason)
        return MotionRenderer(settings, reason)
    return svd.SVDRenderer(settings, device=device, weights=weights)
