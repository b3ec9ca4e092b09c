"""numba's cache of the engine's compiled kernels, kept in step with all of their sources.

numba keys a cached function by its own file's timestamp only. A kernel that inlines one from
another file (affine's passes inline pairsum's kernels and resample's weights and store) would
outlive an edit or an upgrade of that other file, and run the old code. So the kernel modules
are hashed together, and when the hash differs from the one the cache was built under, the
cached kernels are removed before any is loaded: the next call compiles them again.
Pure engine: nothing of the service.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path

logger = logging.getLogger(__name__)

MODULES = ("resample.py", "affine.py", "pairsum.py", "ycbcr.py")
"""The modules whose compiled kernels (or what those inline) numba caches."""

STAMP = "kernels.stamp"

_done = threading.Event()
_lock = threading.Lock()


def check(package: Path) -> bool:
    """Clear `package`'s cached kernels (`__pycache__/*.nbi` and `*.nbc`) if its kernel
    modules changed since the stamp was written, and write the new stamp; True when it
    cleared. Skipped where numba caches elsewhere (NUMBA_CACHE_DIR) or the directory cannot
    be written (an installed, read-only package keeps what it was installed with)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return False
    digest = hashlib.blake2b(digest_size=16)
    for name in MODULES:
        digest.update((package / name).read_bytes())
    cache = package / "__pycache__"
    stamp = cache / STAMP
    try:
        if stamp.read_text() == digest.hexdigest():
            return False
    except OSError:
        pass  # no stamp yet: whatever is cached predates it
    try:
        cache.mkdir(exist_ok=True)
        cleared = [*cache.glob("*.nbi"), *cache.glob("*.nbc")]
        for path in cleared:
            path.unlink(missing_ok=True)
        part = cache / f"{STAMP}.{os.getpid()}.tmp"
        part.write_text(digest.hexdigest())
        part.replace(stamp)
    except OSError as exc:
        logger.warning("compiled kernels' cache left as it is: %s", exc)
        return False
    if cleared:
        logger.info("compiled kernels' cache cleared: their sources changed")
    return bool(cleared)


def keep_in_step() -> None:
    """`check` this package once per process, before any kernel loads from the cache."""
    if _done.is_set():
        return
    with _lock:
        if not _done.is_set():
            check(Path(__file__).resolve().parent)
            _done.set()
