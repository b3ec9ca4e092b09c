"""`python -m fanslymotion render`: a real subprocess, a real MP4, clear exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from fanslymotion import video

from .imagetools import textured_photo

ROOT = Path(__file__).resolve().parent.parent


def render(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # A clean environment and a scratch working directory: no developer .env leaks in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANSLYMOTION_")}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run(
        [sys.executable, "-m", "fanslymotion", "render", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    textured_photo(900, 600, seed=2).save(folder / "landscape.jpg", quality=90)
    textured_photo(600, 900, seed=3).save(folder / "portrait.png")
    (folder / "notes.jpg").write_text("this is not a photo\n")
    textured_photo(50, 200, seed=4).save(folder / "tiny.png")
    # Stored landscape, shown portrait: a phone held upright writes EXIF orientation 6.
    exif = Image.Exif()
    exif[0x0112] = 6
    textured_photo(900, 600, seed=5).save(folder / "rotated.jpg", exif=exif.tobytes())
    return folder


def test_render_landscape(tmp_path: Path, photos: Path) -> None:
    out = tmp_path / "out" / "clip.mp4"
    result = render(
        tmp_path,
        str(photos / "landscape.jpg"),
        "-o",
        str(out),
        "--duration",
        "3",
        "--resolution",
        "360p",
        "--motion",
        "pan_l",
        "--strength",
        "0.7",
        "--fps",
        "4",
        "--seed",
        "9",
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    info = video.probe(out)
    assert (info.width, info.height, info.frames, info.fps) == (640, 360, 12, 4.0)
    assert info.pix_fmt == "yuv420p" and info.sar == "1:1"
    assert "motion=pan_l" in info.metadata.get("comment", "")
    assert info.metadata.get("fanslymotion_seed") == "9"
    assert sorted(p.name for p in out.parent.iterdir()) == ["clip.mp4"]  # no partial file left
    assert "640x360" in result.stdout


def test_render_portrait_auto_aspect(tmp_path: Path, photos: Path) -> None:
    out = tmp_path / "portrait.mp4"
    result = render(
        tmp_path,
        str(photos / "portrait.png"),
        "-o",
        str(out),
        "--duration",
        "3",
        "--resolution",
        "360p",
        "--motion",
        "dolly_in",
        "--fps",
        "2",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    info = video.probe(out)
    assert (info.width, info.height, info.frames) == (360, 640, 6)


def test_render_follows_exif_orientation(tmp_path: Path, photos: Path) -> None:
    out = tmp_path / "rotated.mp4"
    args = ["--duration", "3", "--resolution", "360p", "--motion", "tilt_up", "--fps", "2"]
    result = render(tmp_path, str(photos / "rotated.jpg"), "-o", str(out), *args)
    assert result.returncode == 0, result.stderr
    info = video.probe(out)
    assert (info.width, info.height) == (360, 640)  # auto aspect saw a portrait photo


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("notes.jpg", "not a supported image"),
        ("tiny.png", "too small"),
    ],
)
def test_bad_photo(tmp_path: Path, photos: Path, name: str, message: str) -> None:
    out = tmp_path / "bad.mp4"
    result = render(tmp_path, str(photos / name), "-o", str(out), "--duration", "3", "--fps", "2")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args",
    [
        ["--duration", "5"],
        ["--resolution", "4k"],
        ["--motion", "zoom"],
        ["--aspect", "2:1"],
        ["--strength", "1.5"],
        ["--fps", "0"],
    ],
)
def test_bad_arguments(tmp_path: Path, photos: Path, args: list[str]) -> None:
    result = render(tmp_path, str(photos / "landscape.jpg"), "-o", str(tmp_path / "x.mp4"), *args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "error" in result.stderr
    assert not (tmp_path / "x.mp4").exists()


def test_missing_photo(tmp_path: Path) -> None:
    result = render(tmp_path, str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "x.mp4"))
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("error")


def test_output_is_a_folder_or_under_a_file(tmp_path: Path, photos: Path) -> None:
    photo = str(photos / "landscape.jpg")
    result = render(tmp_path, photo, "-o", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"error: {tmp_path} is a folder: give the video's file name"
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = render(tmp_path, photo, "-o", str(blocker / "out.mp4"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith(f"error: cannot create {blocker}")
    assert not list(tmp_path.glob(".*.partial.mp4"))
