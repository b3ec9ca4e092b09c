"""A tiny random-weight Stable Video Diffusion pipeline for CPU tests (no download).

Same component classes and wiring as SVD-XT, sized down the way diffusers' own pipeline tests
do it, with two differences that matter to us: the VAE has 4 blocks, so latents are 1/8 of the
image as in the real model (the renderer's working sizes are multiples of 64 because of that),
and the CLIP vision tower takes 224 px images in 32 px patches, because the pipeline always
resizes its conditioning image to 224x224.

`build_tiny_svd(folder)` writes the pipeline with `save_pretrained`, so the renderer loads it
through the very same `from_pretrained` path as the real weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The unet's `num_frames` is what the renderer uses as frames per pass: 6 keeps a multi-segment
# job tiny on CPU while leaving room for the overlap between passes.
TINY_FRAMES_PER_PASS = 6


def build_tiny_svd(
    folder: Path, *, frames_per_pass: int = TINY_FRAMES_PER_PASS, fp16_variant: bool = False
) -> Path:
    """Build the tiny pipeline with fixed seeds and save it to `folder`; return `folder`.

    With `fp16_variant` the weights are saved in half precision as the `fp16` variant only
    (`*.fp16.safetensors`), the way the hub publishes SVD-XT's half-size files."""
    import diffusers
    import torch
    import transformers

    # Both libraries are only partly annotated: use them untyped rather than fight mypy.
    d: Any = diffusers
    t: Any = transformers

    torch.manual_seed(0)
    unet = d.UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32,
        num_attention_heads=8,
        # three added time ids (fps, motion bucket, noise augmentation) x addition_time_embed_dim
        projection_class_embeddings_input_dim=96,
        addition_time_embed_dim=32,
        num_frames=frames_per_pass,
    )
    # SVD-XT's scheduler configuration.
    scheduler = d.EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        interpolation_type="linear",
        num_train_timesteps=1000,
        prediction_type="v_prediction",
        sigma_max=700.0,
        sigma_min=0.002,
        steps_offset=1,
        timestep_spacing="leading",
        timestep_type="continuous",
        trained_betas=None,
        use_karras_sigmas=True,
    )
    torch.manual_seed(0)
    vae = d.AutoencoderKLTemporalDecoder(
        block_out_channels=(32, 32, 64, 64),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=1,
    )
    torch.manual_seed(0)
    clip_config = t.CLIPVisionConfig(
        hidden_size=32,
        projection_dim=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=224,
        intermediate_size=37,
        patch_size=32,
    )
    image_encoder = t.CLIPVisionModelWithProjection(clip_config)
    feature_extractor = t.CLIPImageProcessor(crop_size=224, size=224)

    pipe = d.StableVideoDiffusionPipeline(
        vae=vae,
        image_encoder=image_encoder,
        unet=unet,
        scheduler=scheduler,
        feature_extractor=feature_extractor,
    )
    folder.mkdir(parents=True, exist_ok=True)
    if fp16_variant:
        pipe.to(dtype=torch.float16)
        pipe.save_pretrained(folder, variant="fp16")
    else:
        pipe.save_pretrained(folder)
    return folder
