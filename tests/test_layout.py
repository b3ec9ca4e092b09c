"""The import rules between our modules, read from the source (ast), so they cannot drift.

- torch, diffusers, transformers and accelerate are imported only by the svd package (svd/);
- renderer.py and svd/ import nothing of app, api, bot or queue;
- no bot module imports a renderer;
- motion.py, video.py, photo.py and interpolate.py import nothing of the service (and no torch);
- only app and __main__ import the cluster package, which imports nothing of the bot or the API.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fanslymotion"
HEAVY = {"torch", "diffusers", "transformers", "accelerate"}


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it (also inside functions): our own modules as
    ".name" (`.queue`), others by their top-level name (`torch`, and the stdlib's `queue`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                ours = parts[0] == "fanslymotion" and len(parts) > 1
                found.add(f".{parts[1]}" if ours else parts[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from . import x / from .x import y
                if node.module:  # from ..models (in store/) is ours too
                    found.add("." + node.module.split(".")[0])
                else:
                    found.update("." + alias.name for alias in node.names)
            elif node.module:
                parts = node.module.split(".")
                ours = parts[0] == "fanslymotion" and len(parts) > 1
                found.add(f".{parts[1]}" if ours else parts[0])
    return found


def _name(path: Path) -> str:
    """`queue` for queue.py, `store.jobs` for store/jobs.py."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(path): _imports(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_the_rules_see_our_modules() -> None:
    assert {"renderer", "svd", "queue", "motion", "video", "photo", "interpolate"} <= MODULES.keys()
    assert "torch" in MODULES["svd.backend"] and ".motion" in MODULES["renderer"]
    # The SVD package's parts (issue 22): the sampler and memory hold torch, the hand-off of
    # frames to the encoding thread is plain threading.
    assert {"svd.sampler", "svd.memory", "svd.handoff", "svd.chain"} <= MODULES.keys()
    assert not MODULES["svd.handoff"] & HEAVY
    assert "store.jobs" in MODULES


@pytest.mark.parametrize("module", sorted(MODULES))
def test_only_svd_imports_torch_and_diffusers(module: str) -> None:
    if module != "svd" and not module.startswith("svd."):
        assert not MODULES[module] & HEAVY, f"{module} imports {MODULES[module] & HEAVY}"


SVD_PARTS = sorted(m for m in MODULES if m == "svd" or m.startswith("svd."))


@pytest.mark.parametrize("module", ["renderer", *SVD_PARTS])
def test_renderers_do_not_import_the_service(module: str) -> None:
    assert not MODULES[module] & {".app", ".api", ".bot", ".queue"}
    assert not any(name.startswith(".bot") for name in MODULES[module])


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m == "bot" or m.startswith("bot_")))
def test_the_bot_imports_no_renderer(module: str) -> None:
    assert not MODULES[module] & {".renderer", ".svd"}


@pytest.mark.parametrize("module", ["motion", "video", "photo", "interpolate"])
def test_the_engines_import_nothing_of_the_service(module: str) -> None:
    ours = {m for m in MODULES[module] if m.startswith(".")}
    assert ours <= {".errors"}, f"{module}.py imports {ours}"


CLUSTER_PARTS = sorted(m for m in MODULES if m.startswith("cluster."))


def test_only_the_composition_root_knows_the_cluster() -> None:
    """The bot, the API and the page never know which backend runs: only app and __main__
    (the composition root and the command line) import the cluster package."""
    assert {"cluster.db", "cluster.front", "cluster.worker", "cluster.routes"} <= set(CLUSTER_PARTS)
    importers = {
        m for m, names in MODULES.items() if ".cluster" in names and not m.startswith("cluster")
    }
    assert importers == {"app", "__main__"}


@pytest.mark.parametrize("module", CLUSTER_PARTS)
def test_the_cluster_imports_no_bot_and_no_api(module: str) -> None:
    assert not MODULES[module] & {".app", ".api", ".web"}
    assert not any(name.startswith(".bot") for name in MODULES[module])
