"""Stories in cluster mode on real processes: a front and one worker on the session's
PostgreSQL. The worker fetches the story's other photos and music from the front, renders the
story as one box does, and the front checks the upload (every frame of the timeline, the music
as long as the video) before it completes the job. A story file the front lost fails the
attempt with an error that names it, and the job ends failed after its retries."""

from __future__ import annotations

import json
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fanslymotion import music, video
from fanslymotion.cluster.front import check_upload
from fanslymotion.datadir import story_inputs
from fanslymotion.renderer import RenderSpec
from fanslymotion.story import parse_story

from .cluster_stack import Cluster, cluster_of, wait_for
from .storytools import photo_jpeg, tune, write_wav

# Serial: the worker is fenced off after 4 s without a heartbeat (WORKER_TIMEOUT), so a worker
# starved by a second test process would have its job re-run.
pytestmark = [pytest.mark.timeout(300), pytest.mark.serial]

FPS = 4  # cluster_stack's FANSLYMOTION_FPS
TERMINAL = ("completed", "failed", "cancelled")
STORY: dict[str, Any] = {
    "shots": [
        {"duration": 2, "motion_preset": "pan_l", "caption": "Astronaut"},
        {"duration": 2, "motion_preset": "dolly_in", "caption": "Кофе", "transition": "cut"},
        {"duration": 2},
    ],
    "transition": {"kind": "crossfade", "seconds": 0.5},
    "look": "warm",
    "watermark": {"text": "@cluster", "corner": "top_right"},
}
PHOTOS = ("astronaut", "coffee", "chelsea")


@pytest.fixture
def cluster(tmp_path: Path, pg_url: str) -> Iterator[Cluster]:
    yield from cluster_of(tmp_path, pg_url)


def _multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body and its content type: text fields, then (name, file, data)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        parts.append(head.encode() + value.encode() + b"\r\n")
    for name, filename, data in files:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}";'
            f' filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        )
        parts.append(head.encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _create_story(cluster: Cluster, audio: bytes | None) -> str:
    files = [("image", f"{i}.jpg", photo_jpeg(name)) for i, name in enumerate(PHOTOS)]
    if audio is not None:
        files.append(("audio", "tune.wav", audio))
    fields = {"user_id": "3", "resolution": "360p", "story": json.dumps(STORY)}
    body, kind = _multipart(fields, files)
    request = urllib.request.Request(
        f"{cluster.front_url}/job/create", data=body, method="POST", headers={"Content-Type": kind}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 201
        return str(json.loads(response.read())["job_id"])


class _Events:
    """The job's SSE stream read in a thread until its terminal event ends it."""

    def __init__(self, cluster: Cluster, job_id: str) -> None:
        self.bodies: list[dict[str, Any]] = []
        url = f"{cluster.front_url}/job/{job_id}/events"
        self.response = urllib.request.urlopen(url, timeout=120)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        with self.response:
            for line in self.response:
                if line.startswith(b"data: "):
                    self.bodies.append(json.loads(line[len(b"data: ") :]))

    def messages(self) -> list[str]:
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the event stream did not end"
        return [str(b["message"]) for b in self.bodies if b["status"] == "processing"]


def test_a_story_with_music_renders_on_a_worker(cluster: Cluster, tmp_path: Path) -> None:
    cluster.front.start()
    audio = write_wav(tmp_path / "tune.wav", tune(9.0, level=0.05)).read_bytes()
    job_id = _create_story(cluster, audio)
    folder = story_inputs(cluster.front.data_dir, job_id)
    assert sorted(p.name for p in folder.iterdir()) == ["music.audio", "shot-1.img", "shot-2.img"]
    events = _Events(cluster, job_id)  # before any worker: no progress can be missed
    cluster.add_worker("box0-gpu0")
    final = cluster.front.wait(job_id, TERMINAL, timeout=180)
    assert final["status"] == "completed", cluster.logs()
    story = final["story"]
    assert [s["caption"] for s in story["shots"]] == ["Astronaut", "Кофе", ""]
    assert [s["transition"] for s in story["shots"]] == ["crossfade", "cut", ""]
    assert story["music"] is True and story["watermark"] == "@cluster"
    frames = 3 * 2 * FPS - 2  # one crossfade of 0.5 s (2 frames at 4 fps), one cut
    status, result = cluster.front.get(f"/job/result/{job_id}")
    assert status == 200 and result["story"] == story
    assert story["frames"] == result["frames"] == frames
    assert result["duration"] == story["seconds"] == frames / FPS
    shots = [m for m in events.messages() if m.startswith("shot ")]
    assert shots and set(shots) <= {"shot 1/3", "shot 2/3", "shot 3/3"}, events.bodies
    out = cluster.front.data_dir / "hot" / f"{job_id}.mp4"
    assert sum(1 for _ in video.read_frames(out, luma=True)) == frames
    assert video.probe(out).metadata.get("fanslymotion_story_shots") == "3"
    assert abs(music.audio_seconds(out) - frames / FPS) <= 1 / FPS
    # The story's other inputs go with its photo once it completed (INPUT_RETENTION=delete),
    # in the background after the transition.
    inputs = cluster.front.data_dir / "inputs"
    wait_for(lambda: not list(inputs.glob(f"{job_id}*")), 30, "the story's inputs retired")
    worker = cluster.workers["box0-gpu0"]
    assert not list((worker.folder / "workers" / worker.name / "inputs").iterdir())
    assert "Traceback" not in cluster.logs()


def test_a_story_file_the_front_lost_fails_the_job_with_its_name(cluster: Cluster) -> None:
    cluster.front.start()
    job_id = _create_story(cluster, None)
    folder = story_inputs(cluster.front.data_dir, job_id)
    (folder / "shot-2.img").unlink()
    worker = cluster.add_worker("box0-gpu0", FANSLYMOTION_MAX_RETRIES="1")
    final = cluster.front.wait(job_id, TERMINAL, timeout=120)
    assert final["status"] == "failed", cluster.logs()
    assert final["attempts"] == 1  # the first attempt was retried once
    assert "could not fetch story/shot-2.img" in final["error"], final
    assert "shot-2.img is gone" in final["error"]
    # A failed job keeps its inputs for an operator's retry, its story folder with its photo.
    assert list((cluster.front.data_dir / "inputs").glob(f"{job_id}.*"))
    assert (folder / "shot-1.img").is_file()
    assert not list((worker.folder / "workers" / worker.name / "inputs").iterdir())
    assert "Traceback" not in cluster.logs()


def _clip(path: Path, frames: int, audio: video.AudioTrack | None = None) -> Path:
    rng = np.random.default_rng(2)
    pictures = (rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(frames))
    video.encode(pictures, path, width=64, height=48, fps=FPS, preset="ultrafast", audio=audio)
    return path


def test_the_front_checks_a_story_upload_for_its_frames_and_music(tmp_path: Path) -> None:
    story = replace(parse_story(STORY), music=True)
    spec = RenderSpec(duration=6, resolution="360p", motion="pan_l", fps=FPS, story=story)
    frames = spec.frames
    assert frames == 3 * 2 * FPS - 2 != spec.duration * FPS  # the timeline, not duration x fps
    wav = write_wav(tmp_path / "tune.wav", tune(9.0, level=0.05))
    track = music.prepare(wav, 0.0, frames / FPS)
    assert check_upload(_clip(tmp_path / "ok.mp4", frames, track), spec, 64, 48) is None
    silent = _clip(tmp_path / "silent.mp4", frames)
    assert check_upload(silent, spec, 64, 48) == "it has no audio track, though the story has music"
    assert check_upload(silent, replace(spec, story=replace(story, music=False)), 64, 48) is None
    short = _clip(tmp_path / "short.mp4", frames - 1, track)
    assert check_upload(short, spec, 64, 48) == f"it has {frames - 1} frames, not {frames}"
