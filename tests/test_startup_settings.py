"""Settings that cannot work are refused when `python -m fanslymotion` starts (exit 2, one line
naming the variable), not when the first job fails; a misspelt variable is named in a warning."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from .test_process import Process


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"FANSLYMOTION_X264_PRESET": "bogus"}, "FANSLYMOTION_X264_PRESET"),
        ({"FANSLYMOTION_PUBLIC_URL": "motion.example.com"}, "FANSLYMOTION_PUBLIC_URL"),
        ({"FANSLYMOTION_PUBLIC_URL": "ftp://example.com"}, "FANSLYMOTION_PUBLIC_URL"),
        (
            {"FANSLYMOTION_ARCHIVE_AFTER_DAYS": "10", "FANSLYMOTION_PRUNE_AFTER_DAYS": "3"},
            "FANSLYMOTION_PRUNE_AFTER_DAYS",
        ),
        ({"FANSLYMOTION_SVD_DEVICE": "gpu0"}, "FANSLYMOTION_SVD_DEVICE"),
        (
            {"FANSLYMOTION_RENDERER": "auto", "FANSLYMOTION_SVD_MODEL": "not a model!"},
            "FANSLYMOTION_SVD_MODEL",
        ),
    ],
)
def test_unusable_setting_is_refused_at_start(
    tmp_path: Path, env: dict[str, str], named: str
) -> None:
    done = Process(tmp_path).run_once(60, **env)
    assert done.returncode == 2, done.stderr
    lines = [line for line in done.stderr.splitlines() if named in line]
    assert lines and ("invalid settings" in lines[0] or "cannot start" in lines[0]), done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "fanslymotion.sqlite3").exists()  # refused before touching data


def test_a_model_folder_without_a_pipeline_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "model"
    empty.mkdir()
    done = Process(tmp_path / "data").run_once(
        FANSLYMOTION_RENDERER="auto", FANSLYMOTION_SVD_MODEL=str(empty)
    )
    assert done.returncode == 2 and "model_index.json" in done.stderr, done.stderr


def test_misspelt_variable_is_named_with_the_closest_setting(tmp_path: Path) -> None:
    process = Process(tmp_path, FANSLYMOTION_X264_PRESTE="fast", FANSLYMOTION_PORTT="1")
    process.start()
    try:
        log = process.log()
        assert "FANSLYMOTION_X264_PRESTE is not a FanslyMotion setting" in log
        assert "did you mean FANSLYMOTION_X264_PRESET?" in log
        assert "did you mean FANSLYMOTION_PORT?" in log
        assert process.get("/health")[0] == 200  # a warning, not a refusal
    finally:
        assert process.stop(signal.SIGTERM) == 0
