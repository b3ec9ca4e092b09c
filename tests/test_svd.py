"""The SVD renderer on a tiny random-weight SVD pipeline, on the CPU, with no download.

The pipeline (tests/svd_tiny.py) is built once per session and saved with `save_pretrained`; the
renderer loads it with `from_pretrained` offline, exactly as it loads SVD-XT. Its unet makes 6
frames a pass, so a 16-frame job is 4 chained passes. Random weights make noise, not pictures:
these tests check the plumbing (passes, sizes, progress, cancel, memory fallbacks, determinism),
not the look.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from fanslymotion import video
from fanslymotion.app import Service
from fanslymotion.backends import select_renderer
from fanslymotion.errors import Cancelled, GPUOutOfMemory, Unavailable
from fanslymotion.models import Progress
from fanslymotion.renderer import (
    MotionRenderer,
    RenderSpec,
    RenderTask,
    RenderWorker,
)
from fanslymotion.svd import (
    SVDRenderer,
    find_svd_weights,
    svd_motion,
    svd_overlap,
    svd_segments,
    svd_working_size,
)

from .conftest import ServiceFactory, make_settings, photo_bytes
from .svd_tiny import TINY_FRAMES_PER_PASS, build_tiny_svd

# On two shared cores more threads only make the timings swing.
torch.set_num_threads(1)

pytestmark = [
    # diffusers' EulerDiscreteScheduler.set_timesteps calls np.array() on a torch tensor, which
    # numpy 2 warns about for torch's __array__ (diffusers 0.42.1, torch 2.13, numpy 2.x).
    pytest.mark.filterwarnings(
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
    ),
]

ProgressLog = list[tuple[float, str, float | None]]


def _settings(tmp_path: Path, model: Path | str, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "renderer": "svd",
        "svd_model": str(model),
        "svd_device": "cpu",
        "svd_size": 128,
    }
    values.update(overrides)
    return make_settings(tmp_path / "data", **values)


@pytest.fixture(scope="module")
def renderer(tmp_path_factory: pytest.TempPathFactory, tiny_svd: Path) -> SVDRenderer:
    """One loaded renderer for the module (loading is the slow part)."""
    chosen = select_renderer(_settings(tmp_path_factory.mktemp("svd"), tiny_svd))
    assert isinstance(chosen, SVDRenderer)
    chosen.load()
    assert chosen.state.status == "ready", chosen.state
    return chosen


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.jpg"
    path.write_bytes(photo_bytes(320, 200))
    return path


SPEC = RenderSpec(duration=2, resolution="360p", motion="pan_l", fps=8, steps=3, seed=7)


def _render(
    renderer: SVDRenderer,
    photo: Path,
    out: Path,
    spec: RenderSpec = SPEC,
    *,
    on_progress: Callable[[float, str], None] | None = None,
    cancel: threading.Event | None = None,
) -> tuple[Any, ProgressLog]:
    events: ProgressLog = []

    def progress(report: Progress) -> None:
        events.append((report.percent, report.message, report.eta))
        if on_progress is not None:
            on_progress(report.percent, report.message)

    metadata = {"fanslymotion_seed": str(spec.seed)}
    task = RenderTask("job", spec, photo, out, metadata)
    result = renderer.render(task, progress, cancel or threading.Event())
    return result, events


class _OOM:
    """Fault injector: raise CUDA's out-of-memory error on the chosen model calls."""

    def __init__(self, times: int, stage: str | None = None) -> None:
        self.times = times
        self.stage = stage
        self.calls: list[str] = []

    def __call__(self, stage: str) -> None:
        self.calls.append(stage)
        if self.times and (self.stage is None or stage == self.stage):
            self.times -= 1
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected)")


# -- pure helpers --


def test_working_sizes() -> None:
    expected = {
        "16:9": (1024, 576),
        "9:16": (576, 1024),
        "1:1": (768, 768),
        "4:3": (896, 640),
        "3:4": (640, 896),
    }
    for aspect, size in expected.items():
        assert svd_working_size(aspect, 1024) == size
    for long_side in (64, 128, 512, 768, 1024, 1280):
        for aspect in expected:
            w, h = svd_working_size(aspect, long_side)
            assert w % 64 == 0 and h % 64 == 0 and max(w, h) <= long_side
    assert svd_working_size("16:9", 128) == (128, 64)
    assert svd_working_size("9:16", 128) == (64, 128)


def test_passes_cover_the_clip() -> None:
    assert svd_overlap(25) == 4 and svd_overlap(14) == 2 and svd_overlap(6) == 1
    for per_pass in (4, 6, 14, 25):
        overlap = svd_overlap(per_pass)
        assert 2 * (overlap + 1) <= per_pass  # a pass's blended head never reaches its tail
        for total in range(1, 200):
            n = svd_segments(total, per_pass, overlap)
            made = per_pass + (n - 1) * (per_pass - 1 - overlap)
            assert made >= total  # enough frames ...
            assert n == 1 or made - (per_pass - 1 - overlap) < total  # ... and no pass too many
    assert svd_segments(144, 25, 4) == 7  # 12 s at 12 fps: 7 passes of SVD-XT


def test_motion_conditioning() -> None:
    micro, _ = svd_motion("micro", 0.5)
    pan, pan_noise = svd_motion("pan_l", 0.5)
    assert micro < pan and svd_motion("micro", 0.5)[1] < pan_noise
    buckets = [svd_motion("dolly_in", s / 10)[0] for s in range(11)]
    assert buckets == sorted(buckets) and buckets[0] < buckets[-1] <= 255


def test_import_does_not_load_torch() -> None:
    code = "import sys, fanslymotion.renderer; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# -- selection --


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA fallback")
def test_auto_without_cuda_is_the_motion_renderer(tmp_path: Path, tiny_svd: Path) -> None:
    chosen = select_renderer(_settings(tmp_path, tiny_svd, renderer="auto", svd_device=""))
    assert isinstance(chosen, MotionRenderer)
    assert chosen.state.reason == "no CUDA device"
    with pytest.raises(Unavailable, match="no CUDA device"):
        select_renderer(_settings(tmp_path, tiny_svd, svd_device=""))


def test_missing_weights(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    chosen = select_renderer(_settings(tmp_path, missing, renderer="auto"))
    assert isinstance(chosen, MotionRenderer)
    assert chosen.state.reason == f"SVD weights not found for {missing} (offline)"
    with pytest.raises(Unavailable, match="SVD weights not found"):
        select_renderer(_settings(tmp_path, missing))
    # A hub id that is not in the cache is not fetched either.
    assert find_svd_weights("nobody/no-such-model", cache_dir=tmp_path / "hub") is None


def test_hub_id_resolves_from_the_cache(tmp_path: Path, tiny_svd: Path) -> None:
    """A hub id is looked up in the Hugging Face cache layout, offline."""
    repo = tmp_path / "hub" / "models--acme--tiny-svd"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.parent.mkdir(parents=True)
    snapshot.symlink_to(tiny_svd, target_is_directory=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    found = find_svd_weights("acme/tiny-svd", cache_dir=tmp_path / "hub")
    assert found is not None and (found / "model_index.json").is_file()


async def test_broken_weights_fail_the_load(tmp_path: Path, tiny_svd: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text((tiny_svd / "model_index.json").read_text())
    auto = select_renderer(_settings(tmp_path, broken, renderer="auto"))
    assert isinstance(auto, SVDRenderer)
    worker = RenderWorker(auto.settings, auto)
    worker.start()
    # Under auto a failed load is a state and a fall-back, not an exception.
    chosen = await worker.ready()
    await worker.stop(5)
    assert auto.state.status == "failed" and isinstance(chosen, MotionRenderer)
    assert worker.fallback_reason is not None and "SVD failed to load" in worker.fallback_reason
    forced = select_renderer(_settings(tmp_path, broken))
    with pytest.raises(Unavailable, match="SVD failed to load"):
        forced.load()


# -- rendering --


def test_multi_pass_render(renderer: SVDRenderer, photo: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    result, events = _render(renderer, photo, out)
    assert (result.frames, result.width, result.height, result.fps) == (16, 640, 360, 8)
    assert result.renderer == "svd"
    info = video.probe(out)
    assert (info.frames, info.width, info.height) == (16, 640, 360)
    assert info.fps == pytest.approx(8.0)
    assert info.metadata.get("fanslymotion_seed") == "7"

    percents = [p for p, _, _ in events]
    assert percents == sorted(percents) and percents[0] == 0 and percents[-1] == 100
    phases = [phase for _, phase, _ in events]
    for k in range(1, 5):
        assert f"animating {k}/4" in phases and f"decoding {k}/4" in phases
    assert "encoding" in phases and phases[-1] == "finishing"
    # Every denoising step of every pass moves the bar: 4 passes x 3 steps.
    assert sum(phase.startswith("animating") for phase in phases) == 12
    assert any(eta is not None and eta > 0 for _, _, eta in events)
    assert renderer.last_fallback.level == 0
    assert renderer.estimate_seconds(SPEC) > 0


def test_portrait_aspect(renderer: SVDRenderer, tmp_path: Path) -> None:
    photo = tmp_path / "tall.png"
    photo.write_bytes(photo_bytes(200, 330, fmt="PNG"))
    spec = RenderSpec(duration=1, resolution="360p", motion="tilt_up", fps=4, steps=2, seed=1)
    first = Image.open(photo).convert("RGB").resize((64, 128))
    frames = renderer.working_frames(first, spec, cancel=threading.Event())
    assert [f.shape[:2] for f in frames] == [(128, 64)] * 4
    result, _ = _render(renderer, photo, tmp_path / "tall.mp4", spec)
    assert (result.width, result.height, result.frames) == (360, 640, 4)


def test_same_seed_same_frames(renderer: SVDRenderer, photo: Path, tmp_path: Path) -> None:
    paths = [tmp_path / f"{name}.mp4" for name in ("a", "b", "c")]
    _render(renderer, photo, paths[0])
    _render(renderer, photo, paths[1])
    _render(renderer, photo, paths[2], RenderSpec(**{**SPEC.__dict__, "seed": 8}))
    a, b, c = (np.stack(list(video.read_frames(p))) for p in paths)
    assert a.shape == (16, 360, 640, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_cancel_inside_the_step_loop(renderer: SVDRenderer, photo: Path, tmp_path: Path) -> None:
    out = tmp_path / "cancelled.mp4"
    cancel = threading.Event()
    phases: list[str] = []

    def on_progress(percent: float, phase: str) -> None:
        phases.append(phase)
        if phase == "animating 2/4":
            cancel.set()  # the next step's callback raises

    with pytest.raises(Cancelled):
        _render(renderer, photo, out, on_progress=on_progress, cancel=cancel)
    assert phases[-1] == "animating 2/4"
    assert phases.count("animating 2/4") == 1  # stopped at the very next step
    assert not out.exists()
    # The renderer carries on with the next job.
    result, _ = _render(renderer, photo, out)
    assert result.frames == 16 and out.exists()


@pytest.mark.parametrize(
    ("free_gib", "reserved_gib", "allocated_gib", "frames", "chunk"),
    [
        (60, 10, 10, 25, 21),  # 60 GiB free: 21 frames of 2.25 GiB (fp32) in 80 % of it
        (80, 10, 10, 25, 25),  # room for the whole pass
        (10, 20, 8, 25, 7),  # 12 GiB cached but unused by torch count as free
        (1, 0, 0, 25, 1),  # never less than one frame
        (80, 0, 0, 6, 6),  # never more than the pass
    ],
)
def test_decode_chunk_from_free_gpu_memory(
    renderer: SVDRenderer,
    monkeypatch: pytest.MonkeyPatch,
    free_gib: int,
    reserved_gib: int,
    allocated_gib: int,
    frames: int,
    chunk: int,
) -> None:
    """The chunk arithmetic against what CUDA would report (torch.cuda's queries replaced)."""
    gib = 2**30
    monkeypatch.setattr(renderer, "device", "cuda:0")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (free_gib * gib, 80 * gib))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: reserved_gib * gib)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: allocated_gib * gib)
    assert renderer.pipeline.vae.dtype == torch.float32  # 2 x 2048 bytes per pixel and frame
    assert renderer._decode_chunk(1024, 576, frames) == chunk


def test_oom_retries_with_half_the_decode_chunk(
    renderer: SVDRenderer, photo: Path, tmp_path: Path
) -> None:
    injector = _OOM(times=1, stage="decode")
    renderer.fault_injector = injector
    try:
        result, _ = _render(renderer, photo, tmp_path / "oom1.mp4")
    finally:
        renderer.fault_injector = None
    assert result.frames == 16
    assert renderer.last_fallback.level == 1
    assert renderer.last_fallback.last_chunk == TINY_FRAMES_PER_PASS // 2
    # The denoised latents were kept: one denoise per pass, no pass denoised twice.
    assert injector.calls.count("denoise") == 4


def test_oom_in_denoising_then_offload(renderer: SVDRenderer, photo: Path, tmp_path: Path) -> None:
    pipe = renderer.pipeline
    models = (pipe.unet, pipe.vae, pipe.image_encoder)
    oom = _OOM(times=2, stage="denoise")
    hooked: list[bool] = []

    def injector(stage: str) -> None:
        hooked.append(all(hasattr(model, "_hf_hook") for model in models))
        oom(stage)

    renderer.fault_injector = injector
    try:
        result, _ = _render(renderer, photo, tmp_path / "oom2.mp4")
    finally:
        renderer.fault_injector = None
    assert result.frames == 16 and renderer.last_fallback.level == 2
    assert video.probe(tmp_path / "oom2.mp4").frames == 16
    # Two OOMs, then the pass and the rest of the job ran under diffusers' model CPU offload
    # (accelerate's hooks on every model)...
    assert hooked[:2] == [False, False] and all(hooked[2:]) and len(hooked) > 3
    # ...which is gone for the next job, back at full speed.
    assert not any(hasattr(model, "_hf_hook") for model in models)
    result, _ = _render(renderer, photo, tmp_path / "after.mp4")
    assert result.frames == 16 and renderer.last_fallback.level == 0


def test_oom_everywhere_is_a_clear_error(
    renderer: SVDRenderer, photo: Path, tmp_path: Path
) -> None:
    out = tmp_path / "oom3.mp4"
    renderer.fault_injector = _OOM(times=1000)
    try:
        with pytest.raises(GPUOutOfMemory) as caught:
            _render(renderer, photo, out)
    finally:
        renderer.fault_injector = None
    assert caught.value.message.startswith("not enough GPU memory for 360p, 2 s")
    assert caught.value.retryable is False
    assert not out.exists()
    # One job's failure does not break the renderer.
    result, _ = _render(renderer, photo, out)
    assert result.frames == 16 and renderer.last_fallback.level == 0


# -- torch.compile (dynamo's "eager" backend: the same tracing, guards and graphs as inductor on
# CUDA, without code generation, so it takes seconds on the CPU) --


def _compiled(tmp_path: Path, tiny_svd: Path, backend: Any = "eager") -> SVDRenderer:
    chosen = SVDRenderer(
        _settings(tmp_path, tiny_svd, svd_compile=True), device="cpu", weights=tiny_svd
    )
    chosen.compile_backend = backend
    chosen.load()
    assert chosen.state.status == "ready", chosen.state
    return chosen


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])


def _frames(
    renderer: SVDRenderer, photo: Path, spec: RenderSpec, *, n_frames: int | None = None
) -> np.ndarray:
    image = Image.open(photo).convert("RGB")
    width, height = svd_working_size(
        "9:16" if image.height > image.width else "16:9", renderer.settings.svd_size
    )
    first = image.resize((width, height))
    return np.stack(list(renderer.working_frames(first, spec, n_frames=n_frames)))


@pytest.fixture
def tall_photo(tmp_path: Path) -> Path:
    path = tmp_path / "tall.png"
    path.write_bytes(photo_bytes(200, 330, fmt="PNG"))
    return path


def test_compiled_unet_one_graph_per_working_size(
    renderer: SVDRenderer, tiny_svd: Path, photo: Path, tall_photo: Path, tmp_path: Path
) -> None:
    before = _graphs()
    compiled = _compiled(tmp_path, tiny_svd)
    assert compiled.compiled and compiled.state.extra["compiled"] is True
    # The load traced the UNet at every working size (128x64, 64x128, 64x64 at SVD_SIZE=128),
    # each as a single graph: no graph breaks.
    sizes = compiled.working_sizes()
    assert sizes == [(128, 64), (64, 128), (64, 64)]
    assert _graphs() == before + len(sizes)
    assert "compiling" not in compiled.state.extra
    # A job never compiles: landscape and portrait jobs that differ in everything (size, steps,
    # passes, seed, fps, motion bucket, guidance, noise augmentation) reuse the graphs.
    other = RenderSpec(duration=1, resolution="720p", motion="micro", fps=12, steps=2, seed=3)
    portrait = RenderSpec(duration=1, resolution="360p", motion="tilt_up", fps=8, steps=2, seed=1)
    for spec, source in ((SPEC, photo), (other, photo), (portrait, tall_photo)):
        result, _ = _render(compiled, source, tmp_path / f"{spec.seed}.mp4", spec)
        assert result.frames == spec.frames
    assert _graphs() == before + len(sizes)
    assert compiled.compiled
    # Compiled or not, a pass makes the same frames, up to the rounding of channels-last
    # kernels. (Later passes start from these frames, and random weights amplify a difference
    # of 1 into noise, so only one pass is compared.)
    one_pass = {"n_frames": TINY_FRAMES_PER_PASS}
    ours = _frames(compiled, photo, SPEC, **one_pass)
    eager = _frames(renderer, photo, SPEC, **one_pass)
    assert ours.shape == eager.shape == (TINY_FRAMES_PER_PASS, 64, 128, 3)
    assert np.abs(ours.astype(np.int16) - eager.astype(np.int16)).max() <= 1


def test_compile_failure_at_a_later_size_falls_back_to_eager(
    tiny_svd: Path,
    tall_photo: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    compilations: list[int] = []

    def landscape_only(graph: torch.fx.GraphModule, inputs: list[Any]) -> Callable[..., Any]:
        compilations.append(len(inputs))
        if len(compilations) > 1:  # the landscape graph compiles, the next size's not
            raise RuntimeError("no kernel for this shape (injected)")
        forward: Callable[..., Any] = graph.forward
        return forward

    compiled = _compiled(tmp_path, tiny_svd, landscape_only)
    # The load went on eagerly: ready, slower, never broken.
    assert compiled.state.status == "ready" and len(compilations) == 2
    assert not compiled.compiled and compiled.state.extra["compiled"] is False
    assert "torch.compile of the SVD UNet failed; running it eagerly" in caplog.text
    assert "no kernel for this shape (injected)" in caplog.text
    portrait = RenderSpec(duration=2, resolution="360p", motion="tilt_up", fps=4, steps=2, seed=5)
    out = tmp_path / "tall.mp4"
    result, events = _render(compiled, tall_photo, out, portrait)
    assert (result.frames, result.width, result.height) == (8, 360, 640)
    assert video.probe(out).frames == 8
    percents = [p for p, _, _ in events]
    assert percents == sorted(percents) and percents[-1] == 100
    again = tmp_path / "tall-again.mp4"
    _render(compiled, tall_photo, again, portrait)
    assert np.array_equal(
        np.stack(list(video.read_frames(out))), np.stack(list(video.read_frames(again)))
    )


def test_compile_failure_in_the_warm_up(
    tiny_svd: Path, photo: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(graph: torch.fx.GraphModule, inputs: list[Any]) -> Callable[..., Any]:
        raise RuntimeError("compiler crashed (injected)")

    compiled = _compiled(tmp_path, tiny_svd, broken)
    assert not compiled.compiled and compiled.state.extra["compiled"] is False
    assert "compiler crashed (injected)" in caplog.text
    result, _ = _render(compiled, photo, tmp_path / "out.mp4")
    assert result.frames == 16


def test_fp16_weights_load_and_render_in_half_precision(
    tmp_path: Path, photo: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """The CUDA configuration (fp16 files, fp16 compute) on the CPU: the variant is found and
    loaded, the SVD pipeline's per-call VAE casts stay out of the log, and the job renders."""
    folder = build_tiny_svd(tmp_path / "fp16", fp16_variant=True)
    capfd.readouterr()  # building it casts to fp16 outside the renderer: not our log
    caplog.clear()  # nor what that said before the renderer routed diffusers' records
    assert sorted(p.name for p in (folder / "unet").iterdir()) == [
        "config.json",
        "diffusion_pytorch_model.fp16.safetensors",
    ]
    # A 64x64 generation: torch's fp16 convolutions are slow on a CPU.
    settings = _settings(tmp_path, folder, svd_dtype="float16", svd_size=64)
    chosen = select_renderer(settings)
    assert isinstance(chosen, SVDRenderer)
    chosen.load()
    assert chosen.state.status == "ready"
    assert chosen.state.reason.endswith("on cpu (float16, fp16 weights)"), chosen.state.reason
    # One pass of 4 frames, for the same reason.
    spec = RenderSpec(duration=1, resolution="360p", motion="micro", fps=4, steps=2, seed=3)
    out = tmp_path / "fp16.mp4"
    result, _ = _render(chosen, photo, out, spec)
    info = video.probe(out)
    assert (info.frames, info.width, info.height) == (4, 640, 360) == (result.frames, 640, 360)
    frames = np.stack(list(video.read_frames(out)))
    assert frames.std() > 1  # pictures, not a flat field from NaNs or overflow
    # diffusers' false alarm about fp32 modules (two per pass) is dropped, and its other
    # records go through the service's logging rather than its own stderr handler; nothing
    # else reaches stderr either (no loading progress bars).
    assert "should be kept in float32" not in caplog.text
    assert capfd.readouterr().err == ""
    logging.getLogger("diffusers.pipelines").warning("routed through our logging")
    assert "routed through our logging" in caplog.text
    assert "routed through our logging" not in capfd.readouterr().err


# -- the whole service --


async def test_service_renders_with_svd(start_service: ServiceFactory, tiny_svd: Path) -> None:
    """API in, MP4 out, with the SVD renderer on the tiny model (3 s at 4 fps: 3 passes)."""
    client = await start_service(
        renderer="svd", svd_model=str(tiny_svd), svd_device="cpu", svd_size=128
    )
    status, health, _ = await client.request("GET", "/health")
    assert status == 200
    assert health["renderer"]["name"] == "svd"
    assert health["renderer"]["status"] in ("loading", "ready")

    status, created = await client.create(
        duration=3, resolution="360p", motion_preset="dolly_in", seed=1234, steps=2
    )
    assert status == 201, created
    final = await client.wait(created["job_id"])
    assert final["status"] == "completed", final
    assert final["progress"] == 100 and final["renderer"] == "svd"

    status, result, _ = await client.request("GET", f"/job/result/{created['job_id']}")
    assert status == 200
    assert (result["frames"], result["width"], result["height"]) == (12, 640, 360)
    status, data, _ = await client.request("GET", result["video_url"])
    assert status == 200
    out = Path(client.service.settings.data_dir) / "svd.mp4"
    out.write_bytes(data)
    info = video.probe(out)
    assert (info.frames, info.width, info.height) == (12, 640, 360)
    assert info.fps == pytest.approx(4.0)
    assert info.metadata.get("fanslymotion_seed") == "1234"
    assert info.metadata.get("fanslymotion_renderer") == "svd"
    status, health, _ = await client.request("GET", "/health")
    assert health["renderer"]["status"] == "ready"
    assert health["renderer"]["frames_per_pass"] == TINY_FRAMES_PER_PASS


async def test_service_with_svd_forced_and_broken_weights_does_not_start(
    tmp_path: Path, tiny_svd: Path
) -> None:
    """RENDERER=svd: weights that are found but do not load are a start-up error, no fall-back."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model_index.json").write_text((tiny_svd / "model_index.json").read_text())
    settings = make_settings(
        tmp_path / "data", renderer="svd", svd_model=str(broken), svd_device="cpu", svd_size=128
    )
    with pytest.raises(Unavailable, match="failed to load"):
        await Service.start(settings)


async def test_service_auto_falls_back_when_svd_fails_to_load(
    start_service: ServiceFactory, tmp_path: Path, tiny_svd: Path
) -> None:
    broken = tmp_path / "broken-auto"
    broken.mkdir()
    (broken / "model_index.json").write_text((tiny_svd / "model_index.json").read_text())
    client = await start_service(renderer="auto", svd_model=str(broken), svd_device="cpu")
    await client.service.jobs.wait_ready()
    _, health, _ = await client.request("GET", "/health")
    assert health["renderer"]["name"] == "motion"
    assert "failed to load" in health["renderer"]["reason"]
    _, created = await client.create()
    assert (await client.wait(created["job_id"]))["status"] == "completed"
