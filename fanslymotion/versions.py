"""What this code is: the package version and, when known, the commit it was built from.

The commit comes from FANSLYMOTION_COMMIT (set by a deployment) or from the git checkout the
package runs from (read from its files, no `git` process); None when neither says."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from . import __version__

COMMIT_VARIABLE = "FANSLYMOTION_COMMIT"


def _git_dir(root: Path) -> Path | None:
    """The git directory of a checkout or worktree rooted at `root`."""
    dot = root / ".git"
    if dot.is_dir():
        return dot
    if dot.is_file():  # a worktree: "gitdir: <path>"
        text = dot.read_text(encoding="utf-8", errors="replace").strip()
        if text.startswith("gitdir:"):
            return Path(text.removeprefix("gitdir:").strip())
    return None


def _ref_value(git_dir: Path, ref: str) -> str | None:
    """A ref's commit: loose in the git dir or its common dir, else in packed-refs."""
    common = git_dir
    common_file = git_dir / "commondir"
    if common_file.is_file():
        common = (git_dir / common_file.read_text().strip()).resolve()
    for folder in (git_dir, common):
        loose = folder / ref
        if loose.is_file():
            return loose.read_text().strip() or None
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text().splitlines():
            parts = line.split(" ")
            if len(parts) == 2 and parts[1] == ref:
                return parts[0]
    return None


@functools.cache
def commit() -> str | None:
    """The commit (12 hex digits) this code runs from, or None when unknown. Blocking (file
    reads), cached: call it once at start or in an executor."""
    given = os.environ.get(COMMIT_VARIABLE, "").strip()
    if given:
        return given[:12]
    git_dir = _git_dir(Path(__file__).resolve().parent.parent)
    if git_dir is None:
        return None
    try:
        head = (git_dir / "HEAD").read_text().strip()
        value = _ref_value(git_dir, head.removeprefix("ref: ")) if head.startswith("ref:") else head
    except OSError:
        return None
    return value[:12] if value else None


def label(version: str, commit_id: str | None) -> str:
    """ "0.1.0" or "0.1.0+abc123def456"."""
    return f"{version}+{commit_id}" if commit_id else version


def this() -> str:
    """This process's label (blocking the first time, see `commit`)."""
    return label(__version__, commit())
