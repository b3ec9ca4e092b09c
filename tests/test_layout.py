"""The import rules between our modules, read from the source (ast), so they cannot drift.

- torch, diffusers, transformers and accelerate are imported only by the svd package (svd/);
- renderer.py and svd/ import nothing of app, api, bot or queue;
- no bot module imports a renderer;
- motion, video, photo, interpolate, camera and subject import nothing of the service (and no torch);
- only app and __main__ import the cluster package, which imports nothing of the bot or the API;
- no import cycle between our modules, not even one that only typing or a lazy import makes;
- the render thread (renderer, svd/, checkpoints) and the store do not import the API's models;
- the API and the page know neither the composition root nor the renderer or the checkpoints;
- the job service (queue) renders through the executor port only, the executors (dispatcher,
  cluster.front) import no service, and no class there derives from another of ours.
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


@pytest.mark.parametrize(
    "module",
    [
        "motion",
        "video",
        "photo",
        "interpolate",
        "camera",
        "subject",
        "rolling",
        "resample",
        "drift",
        "reframe",
        "ycbcr",
        "affine",
        "pairsum",
        "kernelcache",
    ],
)
def test_the_engines_import_nothing_of_the_service(module: str) -> None:
    ours = {m for m in MODULES[module] if m.startswith(".")}
    engine = {
        ".errors",
        ".motion",
        ".subject",
        ".rolling",
        ".resample",
        ".drift",
        ".ycbcr",
        ".affine",
        ".pairsum",
        ".kernelcache",
    }  # the engine's modules may use one another
    assert ours <= engine, f"{module}.py imports {ours}"


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


def _ours(module: str) -> set[str]:
    """The modules of ours that `module` imports, a package's modules standing for themselves
    (`.models` from svd/plan.py is `models`; `.plan` from svd/backend.py is `svd.plan`)."""
    package = module.split(".")[0] if "." in module else None
    found = set()
    for name in MODULES[module]:
        if not name.startswith("."):
            continue
        sibling = f"{package}.{name[1:]}" if package else None
        found.add(sibling if sibling in MODULES else name[1:])
    return {name for name in found if name in MODULES and name != module}


def _top(module: str) -> str:
    """A package's modules count as the package: a cycle through svd/ is one."""
    return module.split(".")[0]


def test_no_import_cycle_even_for_typing() -> None:
    graph: dict[str, set[str]] = {}
    for module in MODULES:
        graph.setdefault(_top(module), set()).update(
            _top(name) for name in _ours(module) if _top(name) != _top(module)
        )
    cycles = []
    for start in sorted(graph):
        seen, todo = set(), list(graph[start])
        while todo:
            name = todo.pop()
            if name == start:
                cycles.append(start)
                break
            if name not in seen:
                seen.add(name)
                todo.extend(graph.get(name, ()))
    assert cycles == [], f"these modules reach themselves through their imports: {cycles}"


@pytest.mark.parametrize(
    "module",
    [
        "renderer",
        "checkpoints",
        "events",
        *SVD_PARTS,
        *sorted(m for m in MODULES if m.startswith("store")),
    ],
)
def test_the_render_thread_and_the_store_do_not_import_the_api_models(module: str) -> None:
    assert ".models" not in MODULES[module], f"{module} imports the API's models"


def test_the_api_asks_the_job_service_only() -> None:
    assert not MODULES["api"] & {".app", ".renderer", ".checkpoints", ".svd"}
    assert not MODULES["web"] & {".app", ".renderer", ".checkpoints"}


def test_the_loop_helper_imports_nothing_of_ours() -> None:
    """loops.py is used by every layer (queue, bot, webhooks, cluster): it depends on none."""
    assert "loops" in MODULES
    assert not {m for m in MODULES["loops"] if m.startswith(".")}


def _classes(path: Path) -> dict[str, list[str]]:
    """Each class `path` defines, with the names of its bases."""
    found = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ClassDef):
            found[node.name] = [ast.unparse(base).split(".")[-1] for base in node.bases]
    return found


SERVICE_PARTS = ["queue", "executor", "dispatcher", *CLUSTER_PARTS]


def test_the_job_service_and_its_executors_compose_and_never_inherit() -> None:
    """One job service, two executors behind one port: no class of the service, the port or
    an executor derives from another class of ours (nothing inherited can be dead)."""
    ours = {name for path in PACKAGE.rglob("*.py") for name in _classes(path)}
    for module in SERVICE_PARTS:
        path = PACKAGE / (module.replace(".", "/") + ".py")
        for name, bases in _classes(path).items():
            inherited = set(bases) & ours
            assert not inherited, f"{module}.{name} derives from {inherited}"
    assert {"LocalExecutor"} <= _classes(PACKAGE / "dispatcher.py").keys()
    assert {"ClusterExecutor"} <= _classes(PACKAGE / "cluster" / "front.py").keys()


def test_the_service_knows_the_port_and_the_executors_know_no_service() -> None:
    """queue.py renders through executor.Executor only; only the composition root picks the
    executor; neither executor, nor the port, imports the service."""
    assert ".executor" in MODULES["queue"]
    assert not MODULES["queue"] & {".dispatcher", ".cluster"}
    for module in ("executor", "dispatcher", "cluster.front"):
        assert ".queue" not in MODULES[module], f"{module} imports the job service"
    assert not MODULES["executor"] & {".dispatcher", ".cluster"}
    importers = {m for m, names in MODULES.items() if ".dispatcher" in names}
    assert importers == {"app"}


STORY_ENGINE = ["story", "looks", "overlay", "music", "compositor", "ycbcr"]


@pytest.mark.parametrize("module", STORY_ENGINE)
def test_the_story_engine_imports_nothing_of_the_service(module: str) -> None:
    """Issue 25: the story's compositor and its parts are engine: no service, no torch."""
    ours = {m for m in MODULES[module] if m.startswith(".")}
    engine = {".errors", ".motion", ".camera", ".video", *(f".{m}" for m in STORY_ENGINE)}
    assert ours <= engine, f"{module}.py imports {ours}"
    assert not MODULES[module] & HEAVY


def test_story_rendering_stays_on_the_render_side() -> None:
    """story_render runs in the render thread beside the renderers: none of the service."""
    assert not MODULES["story_render"] & {".app", ".api", ".bot", ".queue", ".store"}
    assert ".story_render" not in MODULES["renderer"]  # the composer hands it to RenderWorker


def test_the_store_port_and_the_shared_texts_know_no_dialect() -> None:
    """The job service, the bot and the webhook sender see a store of record through
    store.port; the port and the SQL texts both dialects run know neither SQLite's store nor
    the cluster's."""
    assert _ours("store.port") <= {"store.rows", "vocabulary"}
    assert _ours("store.texts") == set()
    assert _ours("store.job_texts") == set()
    assert not MODULES["queue"] & {".cluster", ".dispatcher"}


OPERATOR_PARTS = ["admin", "admin_models", "limits", "stats", "versions"]


def test_the_operators_room_asks_the_job_service_only() -> None:
    """The admin API, the limits and the figures (issue 26) know no renderer, executor, bot or
    cluster; only the composition root registers the admin API; limits and figures need no
    HTTP."""
    assert set(OPERATOR_PARTS) <= MODULES.keys() and "store.owners" in MODULES
    for module in OPERATOR_PARTS:
        found = MODULES[module]
        assert not found & {".app", ".renderer", ".dispatcher", ".cluster", ".svd"}, module
        assert not {m for m in found if m.startswith(".bot")}, module
    assert {m for m, names in MODULES.items() if ".admin" in names} == {"app"}
    for module in ("limits", "stats", "versions", "admin_models"):
        assert "aiohttp" not in MODULES[module] and ".api" not in MODULES[module], module


# Issue 24: who a request is (credentials, owner, miniapp) and where a webhook may go
# (webhook_guard) are small nouns below the API: they import nothing of the service.
@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        ("owner", set()),
        ("credentials", set()),
        ("miniapp", {".errors", ".owner"}),
        ("webhook_guard", {".config", ".errors"}),
    ],
)
def test_the_trust_modules_stand_below_the_service(module: str, allowed: set[str]) -> None:
    ours = {m for m in MODULES[module] if m.startswith(".")}
    assert ours <= allowed, f"{module}.py imports {ours - allowed}"
