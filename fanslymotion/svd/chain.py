"""How SVD passes are chained into one clip (docs/svd.md, "Chaining passes"): consecutive passes
share their last/first `head` latent frames, colour is matched on that overlap, the shared
frames are cross-faded, and the next pass's VAE-concat image is the first shared frame."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..checkpoints import Resumed

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from PIL.Image import Image as PILImage

    FrameArray = npt.NDArray[np.uint8]


class Chain:
    """What links consecutive passes: the overlap tail (uint8 frames, as shown), its colour
    statistics, its final latents (the next pass's first frames) and the next concat image.

    Everything the next pass reads is held exactly as a checkpoint stores it (uint8 frames,
    float32 statistics, latents in float32, which holds fp16 and bf16 exactly), so a resumed
    job makes the very frames an uninterrupted one does."""

    def __init__(self, first: PILImage, per_pass: int, head: int) -> None:
        self.condition = first
        self.per_pass = per_pass
        self.head = head
        self.reference: tuple[torch.Tensor, torch.Tensor] | None = None
        self.tail: FrameArray | None = None
        self.shared: torch.Tensor | None = None

    def link(self, clip: torch.Tensor, latents: torch.Tensor, *, last: bool) -> FrameArray:
        """Colour-match and cross-fade one decoded pass, keep its tail; its kept frames.

        `latents` (1, F, C, h, w): the pass's final latents; their last `head` frames are
        the next pass's first."""
        from PIL import Image

        per_pass, head = self.per_pass, self.head
        with torch.inference_mode():
            if self.reference is not None:
                # Matched on the overlap only: the frames both passes show must agree, the rest
                # of the pass follows with the same (limited) correction.
                ycc = _to_ycbcr(clip)
                mean, std = (t.to(ycc.device, ycc.dtype) for t in self.reference)
                ycc = _match_stats(ycc, _channel_stats(ycc[:head]), (mean, std))
                clip = _from_ycbcr(ycc)
            if self.tail is not None:
                clip[:head] = _crossfade(_from_uint8(self.tail, clip), clip[:head])
            if last:
                self.tail = self.shared = self.reference = None
            else:
                self.tail = _to_uint8(clip[per_pass - head :])
                self.reference = _tail_stats(self.tail)
                self.shared = latents[0, per_pass - head :].float().cpu()
                self.condition = Image.fromarray(self.tail[0])
            return _to_uint8(clip[: per_pass if last else per_pass - head])

    def reference_arrays(self) -> tuple[Any, Any]:
        """The tail's colour statistics for the checkpoint (float32; kept there for the
        record: a resume recomputes them from the tail)."""
        if self.reference is None:
            return _identity_stats()
        mean, std = self.reference
        return mean.float().numpy(), std.float().numpy()

    def shared_array(self) -> Any:
        return None if self.shared is None else self.shared.numpy()

    def restore(self, resumed: Resumed) -> int:
        """Continue after a checkpoint; returns the passes it had done."""
        from PIL import Image

        self.tail = resumed.tail
        if self.tail is not None:
            self.reference = _tail_stats(self.tail)
            self.condition = Image.fromarray(self.tail[0])
        if resumed.shared is not None:
            self.shared = torch.from_numpy(resumed.shared)
        return resumed.passes_done


def _identity_stats() -> tuple[Any, Any]:
    import numpy as np

    return np.zeros((1, 3, 1, 1), np.float32), np.ones((1, 3, 1, 1), np.float32)


def _tail_stats(tail: FrameArray) -> tuple[torch.Tensor, torch.Tensor]:
    """Colour statistics of the uint8 tail, in float64 on the CPU: the same numbers on any
    device and thread count (a float32 reduction's order shifts its last bits)."""
    frames = torch.from_numpy(tail).permute(0, 3, 1, 2).to(torch.float64) / 127.5 - 1
    return _channel_stats(_to_ycbcr(frames))


# Colour is handled in YCbCr (BT.601, on [-1, 1] RGB): luma and chroma statistics are matched
# separately, which corrects SVD's typical drift (brightness creeping, a colour cast) without
# the hue shifts that matching R, G and B independently can cause.
_RGB_TO_YCC = (
    (0.299, 0.587, 0.114),
    (-0.168736, -0.331264, 0.5),
    (0.5, -0.418688, -0.081312),
)


def _to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:

    matrix = torch.tensor(_RGB_TO_YCC, dtype=rgb.dtype, device=rgb.device)
    return torch.einsum("ij,fjhw->fihw", matrix, rgb)


def _from_ycbcr(ycc: torch.Tensor) -> torch.Tensor:

    matrix = torch.linalg.inv(torch.tensor(_RGB_TO_YCC, dtype=torch.float64)).to(ycc)
    return torch.einsum("ij,fjhw->fihw", matrix, ycc)


def _channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation over frames and pixels, shaped (1, C, 1, 1)."""

    std, mean = torch.std_mean(x, dim=(0, 2, 3), keepdim=True)
    return mean, std


def _match_stats(
    x: torch.Tensor,
    stats: tuple[torch.Tensor, torch.Tensor],
    reference: tuple[torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """Shift and scale each channel to the reference statistics (gain limited to 0.8-1.25, so
    a pass whose content really changed is not forced into the first one's contrast)."""
    mean, std = stats
    ref_mean, ref_std = reference
    gain = (ref_std / std.clamp_min(1e-4)).clamp(0.8, 1.25)
    return (x - mean) * gain + ref_mean


def _crossfade(old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """Blend the overlapping frames of two passes: raised-cosine weights from old to new."""

    n = old.shape[0]
    t = torch.arange(1, n + 1, dtype=old.dtype, device=old.device) / (n + 1)
    w = (0.5 - 0.5 * torch.cos(torch.pi * t)).view(n, 1, 1, 1)
    return old * (1 - w) + new * w


def _from_uint8(frames: FrameArray, like: torch.Tensor) -> torch.Tensor:
    """(F, H, W, 3) uint8 -> (F, 3, H, W) in [-1, 1], on `like`'s device and dtype."""

    tensor = torch.from_numpy(frames).to(like.device).permute(0, 3, 1, 2)
    return tensor.to(like.dtype) / 127.5 - 1


def _to_uint8(frames: torch.Tensor) -> FrameArray:
    """(F, 3, H, W) in [-1, 1] -> (F, H, W, 3) uint8 on the CPU."""

    out = ((frames + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    array: FrameArray = out.cpu().numpy()
    return array
