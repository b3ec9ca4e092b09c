"""SVD pass checkpoints and the live preview, in a job's work folder (`data/work/<job>/`).

After each pass the SVD renderer hands its finished output here: the frames it keeps for the
clip, the overlap tail it shares with the next pass (whose first frame is the next pass's concat
image), the tail's final latents (the next pass's first latent frames) and its colour statistics.
A background thread writes them, each file under a temporary name then renamed, so the GPU
starts the next pass at once and a kill never leaves half a checkpoint:

* `pass-NN.npz`: pass NN's kept frames, each a lossless WebP (exact pixels, about half the bytes
  of raw RGB on photos);
* `state.npz`: written last, the checkpoint proper: the parameters it belongs to, how many
  passes are done, the tail (lossless WebP), the shared latents and the colour statistics
  (float32, exact);
* `preview.mp4`: a small H.264 clip of the frames so far, through the job's camera path.

No torch here: the queue, housekeeping and the API use this module on machines without it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import itertools
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .vocabulary import Preview

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from .motion import FramePath

    FrameArray = npt.NDArray[np.uint8]
    FloatArray = npt.NDArray[np.float32]

log = logging.getLogger(__name__)

FORMAT = 2
"""Bumped whenever what a checkpoint holds changes: an older one is then ignored."""

STATE = "state.npz"
PREVIEW = "preview.mp4"
PREVIEW_SIDE = 320
"""Long side of the preview in pixels."""
PREVIEW_CRFS = (30, 38, 46)
"""x264 qualities tried in turn until the preview fits PREVIEW_MAX_BYTES: real SVD frames take
~55 KB for a whole 12 s clip at the first; only noise-like frames need the others."""
PREVIEW_MAX_BYTES = 400_000


def work_dir(data_dir: Path, job_id: str) -> Path:
    """The job's scratch folder: its checkpoints and its preview."""
    return data_dir / "work" / job_id


def remove_work(folder: Path) -> bool:
    """Remove a work folder and everything in it; whether there was one."""
    if not folder.exists():
        return False
    shutil.rmtree(folder, ignore_errors=True)
    return True


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under `folder` (0 when it does not exist)."""
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file():
                total += path.stat().st_size
    return total


@dataclass(frozen=True)
class Resumed:
    """A checkpoint that matched: the passes done and what the next pass needs."""

    passes_done: int
    tail: FrameArray | None  # (head, H, W, 3) uint8; None once the last pass is done
    reference: tuple[FloatArray, FloatArray]  # colour mean and std, float32, (1, 3, 1, 1)
    shared: FloatArray | None = None  # the tail's final latents (head, C, h, w), float32


@dataclass(frozen=True)
class PreviewPlan:
    """How the preview is drawn: the output's camera path at a small size."""

    size: tuple[int, int]
    n_frames: int
    fps: int
    path: FramePath  # the output's camera over SVD's working frames
    stride: int  # output frames per generated frame (the interpolation factor)
    frames: int  # the output's frame count
    passes: int


def preview_size(out_w: int, out_h: int, side: int = PREVIEW_SIDE) -> tuple[int, int]:
    """The output's aspect at `side` pixels on the long side, even sides (x264's 4:2:0)."""
    scale = side / max(out_w, out_h)
    return max(2, round(out_w * scale / 2) * 2), max(2, round(out_h * scale / 2) * 2)


def _webp(frame: FrameArray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    # method 0 is the fastest lossless setting and still about half of raw RGB on photos.
    Image.fromarray(frame).save(out, format="WEBP", lossless=True, method=0, quality=0)
    return out.getvalue()


def _unwebp(blob: Any) -> FrameArray:
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(blob.tobytes())) as image:
        frame: FrameArray = np.asarray(image.convert("RGB"))
    return frame


def _save_npz(path: Path, arrays: Mapping[str, Any]) -> None:
    """np.savez to a temporary name, fsync, rename: a reader sees the old file or the new."""
    import numpy as np

    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _frames_entries(prefix: str, frames: FrameArray) -> dict[str, Any]:
    import numpy as np

    return {
        f"{prefix}{i:03d}": np.frombuffer(_webp(frame), dtype=np.uint8)
        for i, frame in enumerate(frames)
    }


def _frames_from(data: Any, prefix: str) -> FrameArray | None:
    import numpy as np

    names = sorted(name for name in data.files if name.startswith(prefix))
    if not names:
        return None
    return np.stack([_unwebp(data[name]) for name in names])


class PassStore:
    """One job's checkpoints and preview. `save` and the preview run on a writer thread of their
    own; `close` waits for them (a job that stops keeps every pass it finished)."""

    def __init__(
        self,
        folder: Path,
        params: Mapping[str, object],
        *,
        min_free_bytes: int = 0,
        preview: PreviewPlan | None = None,
        on_preview: Callable[[Preview], None] | None = None,
    ) -> None:
        self.folder = folder
        self.params = json.dumps({"format": FORMAT, **params}, sort_keys=True)
        self.min_free_bytes = min_free_bytes
        self._plan = preview
        self._on_preview = on_preview
        self._small: list[FrameArray] = []  # the frames so far, preview-sized
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="checkpoint")
        self._skipped = False

    # -- reading --

    def load(self) -> Resumed | None:
        """The checkpoint in the folder if it belongs to these parameters; else None (and the
        folder's stale files are removed, so passes of two parameter sets never mix)."""
        import numpy as np

        path = self.folder / STATE
        if not path.is_file():
            return None
        try:
            with np.load(path) as data:
                params = data["params"].tobytes().decode()
                passes_done = int(data["passes_done"])
                tail = _frames_from(data, "tail_")
                reference = (data["mean"].astype(np.float32), data["std"].astype(np.float32))
                shared = data["shared"] if "shared" in data.files else None
        except Exception as exc:  # unreadable (a disk fault): start over
            log.warning(
                "ignoring the unreadable checkpoint %s [%s: %s]", path, type(exc).__name__, exc
            )
            self._clear()
            return None
        if params != self.params:
            log.info("ignoring the checkpoint in %s: it belongs to other parameters", self.folder)
            self._clear()
            return None
        missing = [k for k in range(passes_done) if not self._pass_path(k).is_file()]
        if missing:
            log.warning(
                "ignoring the checkpoint in %s: pass %d is missing", self.folder, missing[0]
            )
            self._clear()
            return None
        return Resumed(passes_done, tail, reference, shared)

    def kept(self, k: int) -> FrameArray:
        """Pass k's kept frames, as the pass produced them."""
        import numpy as np

        with np.load(self._pass_path(k)) as data:
            frames = _frames_from(data, "frame_")
        assert frames is not None
        if self._plan is not None:
            self._small.extend(self._shrink(frames))
        return frames

    # -- writing --

    def save(
        self,
        k: int,
        kept: FrameArray,
        tail: FrameArray | None,
        reference: tuple[FloatArray, FloatArray],
        shared: FloatArray | None = None,
    ) -> None:
        """Checkpoint pass k (in the background): its kept frames, then the state (with the
        latents the next pass starts from, when the renderer shares them across passes)."""
        self._writer.submit(self._write, k, kept, tail, reference, shared)

    def preview_now(self, passes_done: int) -> None:
        """Write the preview of the frames kept so far (after a resume: the checkpointed ones)."""
        if self._plan is not None and self._small:
            self._writer.submit(self._guarded, self._write_preview, passes_done)

    def close(self) -> None:
        """Wait for the pending writes."""
        self._writer.shutdown(wait=True)

    def _write(
        self,
        k: int,
        kept: FrameArray,
        tail: FrameArray | None,
        reference: tuple[FloatArray, FloatArray],
        shared: FloatArray | None,
    ) -> None:
        if self._plan is not None:
            self._small.extend(self._shrink(kept))
        self._guarded(self._write_checkpoint, k, kept, tail, reference, shared)
        if self._plan is not None:
            self._guarded(self._write_preview, k + 1)

    def _guarded(self, write: Callable[..., None], *args: Any) -> None:
        # A checkpoint or preview is a convenience: failing to write one never fails the job.
        try:
            write(*args)
        except Exception as exc:
            log.warning("could not write to %s [%s: %s]", self.folder, type(exc).__name__, exc)

    def _write_checkpoint(
        self,
        k: int,
        kept: FrameArray,
        tail: FrameArray | None,
        reference: tuple[FloatArray, FloatArray],
        shared: FloatArray | None,
    ) -> None:
        import numpy as np

        self.folder.mkdir(parents=True, exist_ok=True)
        needed = kept.nbytes + (tail.nbytes if tail is not None else 0)
        if shutil.disk_usage(self.folder).free - needed < self.min_free_bytes:
            if not self._skipped:
                log.warning("disk almost full: no more checkpoints for %s", self.folder.name)
            self._skipped = True
        if self._skipped:  # a later pass without its predecessors could never be resumed
            return
        _save_npz(self._pass_path(k), _frames_entries("frame_", kept))
        state: dict[str, Any] = {
            "params": np.frombuffer(self.params.encode(), dtype=np.uint8),
            "passes_done": np.array(k + 1),
            "mean": reference[0],
            "std": reference[1],
        }
        if tail is not None:
            state.update(_frames_entries("tail_", tail))
        if shared is not None:
            state["shared"] = shared
        _save_npz(self.folder / STATE, state)

    def _write_preview(self, passes_done: int) -> None:
        from . import camera, reframe, video

        plan = self._plan
        assert plan is not None
        count = min(len(self._small), plan.n_frames)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / PREVIEW
        tmp = path.with_name(f".{PREVIEW}.tmp")
        width, height = plan.size
        small_h, small_w = self._small[0].shape[:2]
        camera_path = camera.PreviewPath(
            plan.path,
            (small_w, small_h),
            plan.size,
            stride=plan.stride,
            generated=plan.n_frames,
            frames=plan.frames,
        )
        for crf in PREVIEW_CRFS:
            frames = reframe.apply_path(self._small[:count], camera_path, plan.n_frames)
            video.encode(
                itertools.islice(frames, count),
                tmp,
                width=width,
                height=height,
                fps=plan.fps,
                crf=crf,
                preset="veryfast",
            )
            if tmp.stat().st_size <= PREVIEW_MAX_BYTES:
                break
        os.replace(tmp, path)
        if self._on_preview is not None:
            self._on_preview(Preview(path, count, passes_done, plan.passes, path.stat().st_size))

    def _shrink(self, frames: FrameArray) -> Iterator[FrameArray]:
        import numpy as np
        from PIL import Image

        height, width = frames.shape[1:3]
        scale = min(1.0, PREVIEW_SIDE / max(width, height))
        size = (max(2, round(width * scale)), max(2, round(height * scale)))
        for frame in frames:
            small = Image.fromarray(frame).resize(size, Image.Resampling.BILINEAR)
            yield np.asarray(small)

    def _pass_path(self, k: int) -> Path:
        return self.folder / f"pass-{k:02d}.npz"

    def _clear(self) -> None:
        for path in (*self.folder.glob("*.npz"), self.folder / PREVIEW):
            path.unlink(missing_ok=True)
