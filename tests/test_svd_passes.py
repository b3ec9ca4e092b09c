"""SVD clips that hold together (issue 22), on the tiny random-weight pipeline on the CPU: the pass
plan, anchored passes, latents shared across seams, the fp16 and memory fixes, determinism and
the hand-off of frames to the encoding thread."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fanslymotion import video
from fanslymotion.backends import select_renderer
from fanslymotion.errors import RenderError
from fanslymotion.renderer import RenderSpec, RenderTask
from fanslymotion.svd import SVDRenderer, svd_pass_plan
from fanslymotion.svd.handoff import Handoff
from fanslymotion.svd.memory import even_chunks, is_out_of_memory
from fanslymotion.svd.plan import looped, svd_noise_aug
from fanslymotion.vocabulary import Progress

from .conftest import make_settings, photo_bytes
from .svd_tiny import build_tiny_svd

torch.set_num_threads(1)

pytestmark = [
    # diffusers' scheduler calls np.array() on a torch tensor (see tests/test_svd.py).
    pytest.mark.filterwarnings(
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
    ),
]

# 3 passes of the tiny model (6 frames a pass, 4 new ones after the first): 12 frames at 4 fps.
THREE = RenderSpec(duration=3, resolution="360p", motion="pan_l", fps=4, steps=2, seed=1234)


def _settings(tmp_path: Path, model: Path, **extra: Any) -> Any:
    values: dict[str, Any] = {
        "renderer": "svd",
        "svd_model": str(model),
        "svd_device": "cpu",
        "svd_size": 128,
        "torch_threads": 1,
        **extra,
    }
    return make_settings(tmp_path / "data", **values)


def _load(tmp_path: Path, model: Path, **extra: Any) -> SVDRenderer:
    chosen = select_renderer(_settings(tmp_path, model, **extra))
    assert isinstance(chosen, SVDRenderer)
    chosen.load()
    assert chosen.state.status == "ready", chosen.state
    return chosen


@pytest.fixture(scope="module")
def renderer(tmp_path_factory: pytest.TempPathFactory, tiny_svd: Path) -> SVDRenderer:
    return _load(tmp_path_factory.mktemp("svd-passes"), tiny_svd)


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.jpg"
    path.write_bytes(photo_bytes(320, 200))
    return path


def _render(renderer: SVDRenderer, photo: Path, out: Path, spec: RenderSpec = THREE) -> Any:
    task = RenderTask("job", spec, photo, out, {})
    return renderer.render(task, lambda report: None, threading.Event())


def _frames(path: Path) -> np.ndarray:
    return np.stack(list(video.read_frames(path)))


# -- the plan ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fps", [24, 30])
def test_pass_count_from_3_to_12_s(fps: int) -> None:
    """SVD-XT (25 frames a pass) generates at 6 fps and the interpolator makes the rest: a
    12 s clip is 4 passes at 24 and at 30 fps (the old plan, every frame generated at 12 fps,
    took 7)."""
    # 6 s + 1 frames generated: 25 from the first pass, 20 new from each next one.
    expected = {3: 1, 4: 1, 5: 2, 6: 2, 7: 2, 8: 3, 9: 3, 10: 3, 11: 4, 12: 4}
    for seconds, passes in expected.items():
        plan = svd_pass_plan(seconds * fps, fps, 25, preset="pan_l")
        assert plan.factor == fps // 6 and plan.generation_fps == 6.0
        assert plan.conditioning_fps == 6
        # Enough generated frames for the output once interpolated, and not one pass too many.
        assert (plan.generated - 1) * plan.factor + 1 >= seconds * fps
        assert (plan.generated - 2) * plan.factor + 1 < seconds * fps
        assert plan.passes == passes, (seconds, fps)
        assert not plan.loop
    assert svd_pass_plan(144, 12, 25, generation_fps=12).passes == 7  # the old plan
    # micro loops one pass back and forth instead of chaining.
    micro = svd_pass_plan(12 * 24, 24, 25, preset="micro")
    assert micro.loop and micro.passes == 1 and micro.generated == 73
    assert looped(4, 9) == [0, 1, 2, 3, 2, 1, 0, 1, 2]


def test_memory_helpers() -> None:
    assert even_chunks(25, 12) == [(0, 8), (8, 17), (17, 25)]
    assert even_chunks(25, 25) == [(0, 25)] and even_chunks(6, 3) == [(0, 3), (3, 6)]
    for count in range(1, 40):
        for chunk in range(1, count + 1):
            sizes = [b - a for a, b in even_chunks(count, chunk)]
            assert sum(sizes) == count and max(sizes) <= chunk and max(sizes) - min(sizes) <= 1
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert is_out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling"))
    assert is_out_of_memory(RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"))
    assert not is_out_of_memory(RuntimeError("Input type (c10::Half) and bias type (float)"))
    assert svd_noise_aug(0.05, 1024, 576) == pytest.approx(0.05)
    assert svd_noise_aug(0.05, 768, 768) == pytest.approx(0.0625)
    assert svd_noise_aug(0.05, 576, 1024) == pytest.approx(0.075)
    assert svd_noise_aug(0.05, 128, 64) == pytest.approx(0.05)  # the small 16:9 size


# -- anchored passes and shared latents ----------------------------------------------------------


def test_clip_runs_once_per_job_and_seams_share_their_latents(
    renderer: SVDRenderer, photo: Path, tmp_path: Path
) -> None:
    """One CLIP image encoding per job (the photo's, for every pass); each pass's first 2
    latent frames are the previous pass's last 2, bit for bit, before the VAE decodes them."""
    pipe = renderer.pipeline
    encodes: list[int] = []
    decoded: list[torch.Tensor] = []
    hooks = [
        pipe.image_encoder.register_forward_pre_hook(lambda m, a: encodes.append(1)),
        pipe.vae.decoder.register_forward_pre_hook(lambda m, a: decoded.append(a[0].clone())),
    ]
    try:
        result = _render(renderer, photo, tmp_path / "out.mp4")
    finally:
        for hook in hooks:
            hook.remove()
    assert result.frames == 12 and video.probe(tmp_path / "out.mp4").frames == 12
    assert len(encodes) == 1
    assert len(decoded) == 3  # one decode per pass (the whole pass fits on the CPU)
    head = 2
    for before, after in itertools.pairwise(decoded):
        assert torch.equal(before[-head:], after[:head])
        assert not torch.equal(before[:head], after[:head])


def test_a_pass_matches_the_diffusers_pipeline(renderer: SVDRenderer) -> None:
    """The sampler's first pass is the pipeline's own output for the same inputs (it follows
    `StableVideoDiffusionPipeline.__call__`); only CLIP's normalisation is done by us."""
    from PIL import Image

    from fanslymotion.svd.sampler import Conditioning, Sampler

    image = Image.fromarray(np.asarray(Image.open(_photo_file()).convert("RGB").resize((128, 64))))
    sampler = Sampler(renderer.pipeline)
    ours = sampler.denoise(
        sampler.anchor(image),
        image,
        frames=6,
        steps=3,
        cond=Conditioning(7, 100, 0.02),
        generator=torch.Generator("cpu").manual_seed(5),
    )
    theirs = renderer.pipeline(
        image,
        height=64,
        width=128,
        num_frames=6,
        num_inference_steps=3,
        fps=7,
        motion_bucket_id=100,
        noise_aug_strength=0.02,
        generator=torch.Generator("cpu").manual_seed(5),
        output_type="latent",
    ).frames
    assert ours.shape == theirs.shape == (1, 6, 4, 8, 16)
    assert torch.allclose(ours, theirs, atol=1e-3, rtol=1e-3)


def _photo_file() -> Any:
    import io

    return io.BytesIO(photo_bytes(320, 200))


# -- the fp16 fixes ------------------------------------------------------------------------------


def test_fault_inside_vae_encode_leaves_the_next_job_rendering(tmp_path: Path, photo: Path) -> None:
    """In fp16 the VAE is cast to fp32 around its encode. An out-of-memory error raised inside
    `vae.encode` is retried and the job completes; any other error there fails the job; either
    way the VAE is back in fp16 and the next job renders."""
    folder = build_tiny_svd(tmp_path / "fp16", fp16_variant=True)
    # A 64x64 generation: torch's fp16 convolutions are slow on a CPU (16 s a job at 128x64).
    chosen = _load(tmp_path, folder, svd_dtype="float16", svd_size=64)
    vae = chosen.pipeline.vae
    encode = vae.encode
    faults: list[BaseException] = []
    seen: list[torch.dtype] = []

    def faulty(*args: Any, **kwargs: Any) -> Any:
        seen.append(vae.dtype)
        if faults:
            raise faults.pop()
        return encode(*args, **kwargs)

    vae.encode = faulty
    spec = RenderSpec(duration=1, resolution="360p", motion="pan_l", fps=4, steps=2, seed=3)
    try:
        faults.append(torch.cuda.OutOfMemoryError("CUDA out of memory (injected in encode)"))
        result = _render(chosen, photo, tmp_path / "oom.mp4", spec)
        assert result.frames == 4 and chosen.last_fallback.level == 1
        assert seen[0] == torch.float32  # the fault struck inside the fp32 window
        assert vae.dtype == torch.float16
        faults.append(RuntimeError("a model fault inside the encode (injected)"))
        with pytest.raises(RenderError):
            _render(chosen, photo, tmp_path / "failed.mp4", spec)
        assert vae.dtype == torch.float16
        after = tmp_path / "after.mp4"
        assert _render(chosen, photo, after, spec).frames == 4
    finally:
        vae.encode = encode
    frames = _frames(after)
    assert frames.shape == (4, 360, 640, 3) and frames.std() > 1
    # The job after the faults is the job a fresh renderer makes.
    clean = _load(tmp_path / "clean", folder, svd_dtype="float16", svd_size=64)
    _render(clean, photo, tmp_path / "clean.mp4", spec)
    assert np.array_equal(frames, _frames(tmp_path / "clean.mp4"))


def test_allocation_failure_of_cublas_walks_the_ladder(
    renderer: SVDRenderer, photo: Path, tmp_path: Path
) -> None:
    calls: list[str] = []

    def cublas(stage: str) -> None:
        calls.append(stage)
        if stage == "decode" and calls.count("decode") == 1:
            raise RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate")

    renderer.fault_injector = cublas
    try:
        result = _render(renderer, photo, tmp_path / "out.mp4")
    finally:
        renderer.fault_injector = None
    assert result.frames == 12 and renderer.last_fallback.level == 1


def test_weights_never_left_split_after_a_job(
    renderer: SVDRenderer, photo: Path, tmp_path: Path
) -> None:
    """A job that needed the CPU offload puts every weight back; when that move fails, every
    model stays under the offload hooks (not half moved), render raises nothing of it, and the
    next job renders."""
    pipe = renderer.pipeline
    models = (pipe.unet, pipe.vae, pipe.image_encoder)
    original = pipe.to
    failures = [RuntimeError("CUDA out of memory while moving the weights (injected)")]

    def to(*args: Any, **kwargs: Any) -> Any:
        # The move back after the job (the offload's own move to the CPU passes keywords).
        if failures and args == (renderer.device,) and not kwargs:
            raise failures.pop()
        return original(*args, **kwargs)

    pipe.to = to
    ooms = [torch.cuda.OutOfMemoryError("CUDA out of memory (injected)") for _ in range(2)]

    def oom_twice(stage: str) -> None:
        if stage == "denoise" and ooms:
            raise ooms.pop()

    renderer.fault_injector = oom_twice
    try:
        result = _render(renderer, photo, tmp_path / "offload.mp4")
        assert result.frames == 12 and renderer.last_fallback.level == 2
        assert all(hasattr(model, "_hf_hook") for model in models)
        renderer.fault_injector = None
        assert _render(renderer, photo, tmp_path / "next.mp4").frames == 12
    finally:
        pipe.to = original
        renderer.fault_injector = None
    assert not any(hasattr(model, "_hf_hook") for model in models)
    assert all(p.device.type == "cpu" for m in models for p in m.parameters())


# -- determinism ---------------------------------------------------------------------------------

_RESTARTED = """
import sys, threading
import numpy as np
from fanslymotion import video
from fanslymotion.backends import select_renderer
from fanslymotion.renderer import RenderSpec, RenderTask
from tests.conftest import make_settings
from pathlib import Path

model, photo, out, data = sys.argv[1:5]
settings = make_settings(Path(data), renderer="svd", svd_model=model, svd_device="cpu",
                         svd_size=128, torch_threads=1)
renderer = select_renderer(settings)
renderer.load()
spec = RenderSpec(duration=3, resolution="360p", motion="pan_l", fps=4, steps=2, seed=1234)
renderer.render(RenderTask("job", spec, Path(photo), Path(out), {}), lambda r: None,
                threading.Event())
"""


def test_same_seed_same_frames_in_one_process_and_after_a_restart(
    renderer: SVDRenderer, photo: Path, tmp_path: Path, tiny_svd: Path
) -> None:
    """A 3-pass job twice in one process, with another job between them, and once more in a
    fresh process: the same frames, bit for bit (x264 is deterministic on equal input)."""
    first, second = tmp_path / "first.mp4", tmp_path / "second.mp4"
    _render(renderer, photo, first)
    other = RenderSpec(duration=2, resolution="360p", motion="dolly_in", fps=8, steps=2, seed=9)
    _render(renderer, photo, tmp_path / "other.mp4", other)
    _render(renderer, photo, second)
    restarted = tmp_path / "restarted.mp4"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _RESTARTED,
            str(tiny_svd),
            str(photo),
            str(restarted),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    a, b, c = _frames(first), _frames(second), _frames(restarted)
    assert a.shape == (12, 360, 640, 3)
    assert np.array_equal(a, b) and np.array_equal(a, c)


# -- the hand-off to the encoding thread ---------------------------------------------------------


def test_encoding_overlaps_generation() -> None:
    """The consumer takes item 0 while the producer is still to make item 1; an error on either
    side ends the other and is raised."""
    consumed = threading.Event()
    seen: list[tuple[str, int]] = []

    def produce() -> Iterator[int]:
        for i in range(3):
            seen.append(("made", i))
            yield i
            if i == 0:
                assert consumed.wait(10), "the consumer did not run alongside"

    def consume(items: Iterator[int]) -> list[int]:
        got = []
        for item in items:
            seen.append(("used", item))
            got.append(item)
            consumed.set()
        return got

    assert Handoff[int, list[int]](2).run(produce(), consume) == [0, 1, 2]
    assert seen.index(("used", 0)) < seen.index(("made", 1))

    def failing_producer() -> Iterator[int]:
        yield 1
        raise ValueError("producer broke")

    stopped: list[bool] = []

    def patient(items: Iterator[int]) -> int:
        try:
            return sum(items)
        finally:
            stopped.append(True)

    with pytest.raises(ValueError, match="producer broke"):
        Handoff[int, int](1).run(failing_producer(), patient)
    assert stopped == [True]

    def endless() -> Iterator[int]:
        while True:
            time.sleep(0.001)
            yield 1

    def failing_consumer(items: Iterator[int]) -> int:
        next(items)
        raise OSError("encoder broke")

    with pytest.raises(OSError, match="encoder broke"):
        Handoff[int, int](1).run(endless(), failing_consumer)


def test_output_rate_by_interpolation(renderer: SVDRenderer, photo: Path, tmp_path: Path) -> None:
    """24 fps out of 6 generated a second: 2 s is 48 frames from 13 generated (x4), 3 passes."""
    spec = RenderSpec(duration=2, resolution="360p", motion="dolly_in", fps=24, steps=2, seed=2)
    events: list[Progress] = []
    task = RenderTask("job", spec, photo, tmp_path / "out.mp4", {})
    result = renderer.render(task, events.append, threading.Event())
    plan = renderer.last_plan
    assert plan is not None and (plan.factor, plan.generated, plan.passes) == (4, 13, 3)
    info = video.probe(tmp_path / "out.mp4")
    assert (info.frames, result.frames) == (48, 48) and info.fps == pytest.approx(24.0)
    assert events[-1].percent == 100
