"""Finding, loading and speeding up the SVD pipeline: the device, the weights (never
downloaded), fp16 variants, SDPA attention and torch.compile, and the libraries' logs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import diffusers  # noqa: F401  (a lazy module: the pipeline classes load on first use)
import torch
import torch._dynamo.exc

from ..config import Settings

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    FrameArray = npt.NDArray[np.uint8]

log = logging.getLogger(__name__)


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
    default with torch 2, made explicit). With `compile_unet`: channels-last UNet weights, cuDNN
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
    # Channels-last for the compiled UNet's 2-D convolutions only: `Module.to(memory_format=...)`
    # on the whole UNet fails on its temporal layers' 5-D Conv3d weights, and the uncompiled VAE
    # would only pay layout copies around each convolution.
    for module in pipe.unet.modules():
        if isinstance(module, torch.nn.Conv2d):
            conv: Any = module  # torch's stubs for Module.to lack `memory_format`
            conv.to(memory_format=torch.channels_last)
    mode = compile_mode if compile_backend == "inductor" else None
    pipe.unet = torch.compile(
        pipe.unet, backend=compile_backend, mode=mode, fullgraph=False, dynamic=False
    )


def own_storage(pipe: Any) -> None:
    """Give every weight and buffer a storage of its own. Loaded weights can be views at
    arbitrary offsets of one buffer, and CPU kernels round differently at different alignments:
    after an offload had moved them (new, aligned storage) the same job made other frames than
    on a fresh load. Owned storage is laid out the same after a load, a restart or an offload."""
    with torch.no_grad():
        for name in ("unet", "vae", "image_encoder"):
            model = getattr(pipe, name)
            for tensor in (*model.parameters(), *model.buffers()):
                tensor.data = tensor.data.clone()


def _is_compile_error(exc: BaseException) -> bool:
    """Whether `exc` comes from torch.compile (tracing or code generation), not from the model."""

    return isinstance(exc, torch._dynamo.exc.TorchDynamoException)


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


def _dtype_keyword() -> str:
    """`dtype` since diffusers deprecated `torch_dtype`; older versions only know the latter."""
    from diffusers.utils import deprecation_utils

    return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"
