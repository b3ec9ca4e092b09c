"""The compiled kernels' cache is cleared when any kernel module changes (numba itself only
watches each function's own file), and kept while none does."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fanslymotion import kernelcache


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    for name in kernelcache.MODULES:
        (tmp_path / name).write_text(f"# {name}\n")
    return tmp_path


def cached(package: Path, *names: str) -> list[Path]:
    cache = package / "__pycache__"
    cache.mkdir(exist_ok=True)
    paths = [cache / name for name in names]
    for path in paths:
        path.write_bytes(b"compiled")
    return paths


def test_a_cache_from_before_the_stamp_is_cleared_once(package: Path) -> None:
    old = cached(package, "affine._pass_pairs-214.py311.nbi", "affine._pass_pairs-214.py311.1.nbc")
    other = cached(package, "motion.cpython-311.pyc")[0]
    assert kernelcache.check(package)
    assert not any(path.exists() for path in old) and other.exists()
    kept = cached(package, "affine._pass_pairs-214.py311.nbi")
    assert not kernelcache.check(package)  # the same sources: kept
    assert kept[0].exists()


@pytest.mark.parametrize("changed", kernelcache.MODULES)
def test_an_edit_of_any_kernel_module_clears_every_cached_kernel(
    package: Path, changed: str
) -> None:
    kernelcache.check(package)
    compiled = cached(package, "affine._pass_pairs-214.py311.nbi", "resample._rows-210.py311.nbi")
    with (package / changed).open("a") as source:
        source.write("# edited\n")
    assert kernelcache.check(package)
    assert not any(path.exists() for path in compiled)
    assert not kernelcache.check(package)


def test_a_cache_elsewhere_or_unwritable_is_left_alone(
    package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    compiled = cached(package, "affine._pass_pairs-214.py311.nbi")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(package / "elsewhere"))
    assert not kernelcache.check(package)
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    if os.geteuid() != 0:  # root writes anyway
        (package / "__pycache__").chmod(0o500)
        try:
            assert not kernelcache.check(package)
            assert compiled[0].exists()
        finally:
            (package / "__pycache__").chmod(0o700)
