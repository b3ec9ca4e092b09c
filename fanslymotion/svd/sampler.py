"""One SVD pass, denoised the way diffusers' `StableVideoDiffusionPipeline.__call__` (0.42.1) does
it, with what chaining needs and the pipeline cannot give:

* the CLIP image embedding is an argument: the renderer computes it once per job, from the
  original photo, so every pass is anchored to the photo (only the VAE-concat image comes from
  the continuation);
* the first `shared` latent frames are pinned to the previous pass's last ones: after every
  step they are replaced by those final latents re-noised to the sigma the sampler is at, so
  the overlap ends as the very same latents and the motion carries across the seam;
* every random draw (noise augmentation, initial latents, the shared frames' noise, the
  scheduler's) comes from the job's generator, and the scheduler is a fresh copy per pass: no
  state goes from one job to the next;
* the VAE's dtype is restored even when its encode fails (the pipeline leaves it in fp32 after
  an error between its two casts, and every later fp16 decode then fails).

`tests/test_svd_plan.py` checks a plain pass against the pipeline's own output.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import diffusers  # noqa: F401  (a lazy module: the pipeline classes load on first use)
import torch

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

log = logging.getLogger(__name__)

StepFn = Callable[[int], None]
"""Called after every denoising step with its index (progress, cancel)."""


@dataclass(frozen=True)
class Conditioning:
    """SVD's micro-conditioning of a pass and its classifier-free guidance ramp."""

    fps: int
    motion_bucket_id: int
    noise_aug_strength: float
    min_guidance: float = 1.0
    max_guidance: float = 3.0


class Sampler:
    """Runs passes on a loaded pipeline's models (compiled UNet included)."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe

    @property
    def device(self) -> torch.device:
        # Under model CPU offload the models sit on the CPU between calls: the hooks' device.
        device: torch.device = self.pipe._execution_device
        return device

    def anchor(self, image: PILImage) -> torch.Tensor:
        """The CLIP image embedding of `image`, with the zero (unconditional) half first:
        shape (2, 1, D), in the image encoder's dtype."""
        from diffusers.pipelines.stable_video_diffusion import pipeline_stable_video_diffusion

        p: Any = pipeline_stable_video_diffusion  # unannotated
        pipe = self.pipe
        processor = pipe.video_processor
        pixels = processor.numpy_to_pt(processor.pil_to_numpy(image))
        # As the pipeline: normalise to [-1, 1] before the antialiased resize, back after.
        pixels = (p._resize_with_antialiasing(pixels * 2.0 - 1.0, (224, 224)) + 1.0) / 2.0
        # CLIP's normalisation done here rather than by the image processor: its PIL and
        # torchvision back-ends (transformers picks by what is installed) then cannot differ.
        extractor = pipe.feature_extractor
        mean = torch.tensor(extractor.image_mean, dtype=pixels.dtype).view(1, 3, 1, 1)
        std = torch.tensor(extractor.image_std, dtype=pixels.dtype).view(1, 3, 1, 1)
        pixels = (pixels - mean) / std
        encoder = pipe.image_encoder
        dtype = next(encoder.parameters()).dtype
        with torch.no_grad():
            embeds = encoder(pixels.to(device=self.device, dtype=dtype)).image_embeds
        embeds = embeds.unsqueeze(1)
        return torch.cat([torch.zeros_like(embeds), embeds])

    def encode_condition(
        self, image: PILImage, noise_aug: float, generator: torch.Generator, dtype: torch.dtype
    ) -> torch.Tensor:
        """The VAE latent of the concat image with noise augmentation, CFG-doubled (zeros
        first), shape (2, C, h, w) in `dtype`. The VAE goes back to its dtype whatever happens."""
        from diffusers.utils.torch_utils import randn_tensor

        pipe, vae = self.pipe, self.pipe.vae
        pixels = pipe.video_processor.preprocess(image, height=image.height, width=image.width)
        pixels = pixels.to(self.device)
        noise = randn_tensor(pixels.shape, generator=generator, device=self.device)
        pixels = pixels + noise_aug * noise.to(pixels.dtype)
        own = vae.dtype
        upcast = own == torch.float16 and vae.config.force_upcast
        try:
            if upcast:
                vae.to(dtype=torch.float32)
            with torch.no_grad():
                latent = vae.encode(pixels.to(vae.dtype)).latent_dist.mode()
        finally:
            if vae.dtype != own:
                vae.to(dtype=own)
        latent = latent.to(dtype)
        return torch.cat([torch.zeros_like(latent), latent])

    def denoise(
        self,
        embeddings: torch.Tensor,
        condition: PILImage,
        *,
        frames: int,
        steps: int,
        cond: Conditioning,
        generator: torch.Generator,
        shared: torch.Tensor | None = None,
        on_step: StepFn | None = None,
    ) -> torch.Tensor:
        """One pass's final latents, (1, frames, C, h, w) in the UNet's dtype, on the device.

        `shared` (k, C, h, w): the previous pass's last k final latents, which become this
        pass's first k frames."""
        from diffusers.utils.torch_utils import randn_tensor

        pipe, device = self.pipe, self.device
        dtype = embeddings.dtype
        height, width = condition.height, condition.width
        image_latents = self.encode_condition(condition, cond.noise_aug_strength, generator, dtype)
        image_latents = image_latents.unsqueeze(1).repeat(1, frames, 1, 1, 1)
        # SVD was conditioned on fps - 1 (as the pipeline does).
        time_ids = pipe._get_add_time_ids(
            cond.fps - 1, cond.motion_bucket_id, cond.noise_aug_strength, dtype, 1, 1, True
        ).to(device)
        scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
        scheduler.set_timesteps(steps, device=device)
        scale = pipe.vae_scale_factor
        shape = (1, frames, pipe.unet.config.in_channels // 2, height // scale, width // scale)
        # As `prepare_latents`, but scaled by this pass's scheduler (the pipeline's own would
        # give the sigma of whatever it was last set to).
        latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        latents = latents * scheduler.init_noise_sigma
        pin: Callable[[int], None] = _no_pin
        if shared is not None:
            k = shared.shape[0]
            anchor = shared.to(device=device, dtype=dtype).unsqueeze(0)
            eps = randn_tensor(anchor.shape, generator=generator, device=device, dtype=dtype)
            sigmas = scheduler.sigmas.to(device=device, dtype=torch.float32)

            def pin(index: int) -> None:
                # The shared frames at the noise level the sampler is at (0 after the last
                # step: exactly the previous pass's latents).
                level = scheduler.init_noise_sigma if index == 0 else sigmas[index]
                latents[:, :k] = (anchor.float() + level * eps.float()).to(dtype)

        pin(0)
        ramp = torch.linspace(cond.min_guidance, cond.max_guidance, frames)
        guidance = ramp.to(device, dtype).view(1, frames, 1, 1, 1)
        with torch.no_grad():
            for i, t in enumerate(scheduler.timesteps):
                model_input = scheduler.scale_model_input(torch.cat([latents] * 2), t)
                model_input = torch.cat([model_input, image_latents], dim=2)
                noise_pred = pipe.unet(
                    model_input,
                    t,
                    encoder_hidden_states=embeddings,
                    added_time_ids=time_ids,
                    return_dict=False,
                )[0]
                uncond, conditional = noise_pred.chunk(2)
                noise_pred = uncond + guidance * (conditional - uncond)
                latents = scheduler.step(noise_pred, t, latents, generator=generator).prev_sample
                pin(i + 1)
                if on_step is not None:
                    on_step(i)
        pipe.maybe_free_model_hooks()
        result: torch.Tensor = latents
        return result


def _no_pin(index: int) -> None:
    return None
