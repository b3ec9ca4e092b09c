"""Where the subject of a photo is: faces first, else the most salient region, else the centre.

Faces come from scikit-image's bundled LBP frontal-face cascade (the model ships inside the
library, nothing is fetched). Saliency is the spectral residual of the photo's log spectrum
(Hou & Zhang 2007) on a small grey copy: cheap, and it finds the object that stands out from a
plain background. Both run on a downscaled copy, in whatever thread calls them (the service
calls from an executor or the render thread, never on the event loop). The answer depends on
the photo's grey pixels alone, so the last few are remembered: the page asks again at every
change of a setting and then creates the job, and "Another variant" sends the same photo.
Pure engine: numpy, Pillow and scikit-image.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from PIL import Image

log = logging.getLogger(__name__)

Framing = Literal["face", "saliency", "centre", "focus", "camera"]
FRAMINGS: tuple[Framing, ...] = ("face", "saliency", "centre", "focus", "camera")

# Faces are looked for on a copy this wide at most: the cascade's smallest face is 24 px, so a
# face of 1/27 of the photo's width is still found (in about 0.3 s on one core).
FACE_WIDTH = 640
# Detections that must overlap before a face is believed: at the cascade's default (4) a photo
# of leaves or a noise texture yields a "face"; at 8 the real ones remain (scikit-image's
# astronaut, and the same face pasted small into a bigger photo).
FACE_NEIGHBOURS = 8
# Photos whose subjects are remembered, the most recent ones (a key and a Subject each).
MEMO_SIZE = 64
# Saliency is computed at this size: the spectral residual works on the gist of the image.
SALIENCY_SIZE = 64
# A saliency map whose peak region stands out less than this (peak mean over overall mean)
# says nothing: a uniform texture or an empty photo is framed at the centre.
SALIENCY_CONTRAST = 1.6

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Subject:
    """Where to aim: a point in photo fractions (0-1 from the left/top), how it was found, and
    the faces' boxes (x0, y0, x1, y1 in photo fractions; largest first) when faces were."""

    framing: Framing
    x: float
    y: float
    faces: tuple[Box, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "framing": self.framing,
            "x": round(self.x, 4),
            "y": round(self.y, 4),
            "faces": [[round(v, 4) for v in box] for box in self.faces],
        }


CENTRE = Subject("centre", 0.5, 0.5)

_local = threading.local()


def _cascade() -> object:
    """One cascade per thread (it keeps scratch state while it scans)."""
    cascade = getattr(_local, "cascade", None)
    if cascade is None:
        from skimage import data
        from skimage.feature import Cascade

        cascade = Cascade(data.lbp_frontal_face_cascade_filename())  # type: ignore[no-untyped-call]
        _local.cascade = cascade
    return cascade


def _grey(image: Image.Image) -> Image.Image:
    return image if image.mode == "L" else image.convert("L")


def find_faces(image: Image.Image) -> list[Box]:
    """Frontal faces in `image`, as boxes in photo fractions, largest first."""
    scale = min(1.0, FACE_WIDTH / image.width)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    small = _grey(image)
    if scale < 1:
        small = small.resize(size, Image.Resampling.BILINEAR)
    grey = np.asarray(small, dtype=np.float64) / 255.0
    if min(grey.shape) < 24:
        return []
    found = _cascade().detect_multi_scale(  # type: ignore[attr-defined]
        img=grey,
        scale_factor=1.2,
        step_ratio=1,
        min_size=(24, 24),
        max_size=(min(grey.shape), min(grey.shape)),
        min_neighbor_number=FACE_NEIGHBOURS,
    )
    w, h = grey.shape[1], grey.shape[0]
    boxes = [
        (d["c"] / w, d["r"] / h, (d["c"] + d["width"]) / w, (d["r"] + d["height"]) / h)
        for d in found
    ]
    return _merge(sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1])))


def _merge(boxes: list[Box]) -> list[Box]:
    """Drop detections whose centre falls inside a larger one (the cascade reports a face at
    several neighbouring scales)."""
    kept: list[Box] = []
    for box in boxes:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        if not any(k[0] <= cx <= k[2] and k[1] <= cy <= k[3] for k in kept):
            kept.append(box)
    return kept


def saliency_map(image: Image.Image) -> npt.NDArray[np.float64]:
    """The spectral-residual saliency of `image` at SALIENCY_SIZE x SALIENCY_SIZE, in [0, 1]."""
    grey = _grey(image).resize((SALIENCY_SIZE, SALIENCY_SIZE), Image.Resampling.BOX)
    pixels = np.asarray(grey, dtype=np.float64)
    spectrum = np.fft.fft2(pixels)
    log_amp = np.log(np.abs(spectrum) + 1e-9)
    phase = np.angle(spectrum)
    # The residual: what the log spectrum has beyond its local average (3x3 box, wrapped).
    smooth = sum(np.roll(np.roll(log_amp, dy, 0), dx, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
    residual = log_amp - smooth / 9.0
    sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * phase))) ** 2
    sal = _blur(sal, 3)
    top = sal.max()
    return sal / top if top > 0 else sal


def _blur(a: npt.NDArray[np.float64], radius: int) -> npt.NDArray[np.float64]:
    """A separable box blur applied twice (close to a Gaussian), edges clamped."""
    out = a
    for _ in range(2):
        for axis in (0, 1):
            padded = np.pad(
                out, [(radius, radius) if i == axis else (0, 0) for i in (0, 1)], "edge"
            )
            csum = np.cumsum(padded, axis=axis)
            csum = np.insert(csum, 0, 0.0, axis=axis)
            n = out.shape[axis]
            hi = np.take(csum, np.arange(2 * radius + 1, 2 * radius + 1 + n), axis=axis)
            lo = np.take(csum, np.arange(n), axis=axis)
            out = (hi - lo) / (2 * radius + 1)
    return out


def salient_point(image: Image.Image) -> tuple[float, float] | None:
    """The centre of the region that stands out, in photo fractions; None when none does."""
    sal = saliency_map(image)
    threshold = np.quantile(sal, 0.9)
    mask = sal >= threshold
    mean = float(sal.mean())
    if mean <= 0 or float(sal[mask].mean()) / mean < SALIENCY_CONTRAST:
        return None
    ys, xs = np.nonzero(mask)
    weights = sal[mask]
    x = (float(np.sum(xs * weights) / weights.sum()) + 0.5) / SALIENCY_SIZE
    y = (float(np.sum(ys * weights) / weights.sum()) + 0.5) / SALIENCY_SIZE
    return x, y


class _Memo:
    """The subjects of the last MEMO_SIZE photos, by a digest of their grey pixels and size;
    shared by the threads that look (a lock around the table, none around the looking)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.table: OrderedDict[bytes, Subject] = OrderedDict()
        self.lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(grey: Image.Image) -> bytes:
        digest = hashlib.blake2b(grey.tobytes(), digest_size=20)
        digest.update(f"{grey.width}x{grey.height}".encode())
        return digest.digest()

    def get(self, key: bytes) -> Subject | None:
        with self.lock:
            found = self.table.get(key)
            if found is None:
                self.misses += 1
            else:
                self.hits += 1
                self.table.move_to_end(key)
            return found

    def put(self, key: bytes, found: Subject) -> None:
        with self.lock:
            self.table[key] = found
            while len(self.table) > self.size:
                self.table.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.table.clear()
            self.hits = self.misses = 0


_memo = _Memo(MEMO_SIZE)


def memo_stats() -> tuple[int, int]:
    """How many times `find_subject` answered from memory, and how many times it looked."""
    with _memo.lock:
        return _memo.hits, _memo.misses


def forget_subjects() -> None:
    """Empty the memory of photos seen (and its counts)."""
    _memo.clear()


def find_subject(image: Image.Image) -> Subject:
    """Faces first (the largest one's centre), else a salient region's centre, else the centre.
    A photo with the same grey pixels as one of the last MEMO_SIZE gets the same answer again
    without a new look."""
    grey = _grey(image)
    key = _Memo.key(grey)
    found = _memo.get(key)
    if found is None:
        found, settled = _look(grey)
        if settled:
            _memo.put(key, found)
    return found


def _look(grey: Image.Image) -> tuple[Subject, bool]:
    """The subject of a grey photo, and whether the answer may be remembered (not when the
    face detector failed: the next look may succeed)."""
    settled = True
    try:
        faces = find_faces(grey)
    except Exception as exc:  # a detector failure must never fail a render: aim elsewhere
        log.warning("face detection failed: %s: %s", type(exc).__name__, exc)
        faces, settled = [], False
    if faces:
        x0, y0, x1, y1 = faces[0]
        return Subject("face", (x0 + x1) / 2, (y0 + y1) / 2, tuple(faces)), settled
    point = salient_point(grey)
    return (CENTRE if point is None else Subject("saliency", *point)), settled
