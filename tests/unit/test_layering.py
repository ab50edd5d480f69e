"""The house rules of STYLE.md, checked over the source: imports point down the layers only.

Every import of a shoal module (at the top of a file or inside a function) is resolved to the
module it names and checked against the layers below. No module reads another module's private
names (`from x import _y`, `x._y`), and the pure-state modules import no sockets, threads or
processes. A short allow-list names the few upward imports that must stay, each with its reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Source folder -> the package it installs as (pyproject.toml's package-dir).
PACKAGES = {"runtime": "shoal", "kernel_ext": "shoal.kernel_ext", "widgets": "shoal.widgets"}
LIBRARIES = ("data", "train", "tune", "serve", "rllib")

# _core's layers, lowest first (STYLE.md: leaves, pure state, mechanisms, services).
CORE_LAYERS = {
    "leaf": {"config", "ids", "protocol", "task_args", "task_context", "frame_names"},
    "pure state": {"scheduling", "cluster_table", "object_directory", "arena_allocator", "placement_groups"}
    | {"state_view", "message_schema", "connection_gate", "tcp_frames", "pull_window", "task_record"},
    "mechanism": {"serialization", "serializability", "shared_arena", "arena_store", "auth", "lifecycle"}
    | {"local_objects", "object_io", "system_errors", "fault_log", "handshake_watch", "driver_logs"},
    "service": {"client", "session", "feasibility", "control_store", "node_manager", "node_launcher", "node_main"}
    | {"actor_manager", "cluster_actors", "cluster_peers", "group_placement", "object_handlers", "object_transfer"}
    | {"template", "worker", "actor_host", "worker_watch", "node_host", "message_intake", "port_guard"}
    | {"worker_pool", "task_dispatch", "task_completion", "task_cancel"},
}
RANK = {
    "leaf": 0,
    "pure state": 1,
    "mechanism": 2,
    "service": 3,
    "public API": 4,
    "library": 5,
    "front end": 6,
}
# Pure state takes events in and returns actions out: none of these.
PURE_FORBIDDEN = {"zmq", "socket", "threading", "subprocess", "asyncio", "select", "multiprocessing"}

# Upward imports that stay, and why.
ALLOWED = {
    # `%load_ext shoal`: IPython looks for the extension's entry points on the package itself.
    ("shoal", "shoal.kernel_ext"),
    # The worker template imports the public API before forking, so each worker starts warm.
    ("shoal._core.template", "shoal.api"),
    # Ray's exception classes are the errors leaf: every layer raises them.
    *((f"shoal._core.{name}", "shoal.exceptions") for name in CORE_LAYERS["service"] | CORE_LAYERS["mechanism"]),
    # The CLI starts and stops nodes on this machine (`shoal start/stop`): node_launcher is how.
    ("shoal.cli", "shoal._core.node_launcher"),
    ("shoal.cli", "shoal._core.lifecycle"),
    ("shoal.cli", "shoal._core.config"),
    ("shoal.cli", "shoal._core.auth"),  # where a head keeps its token file, to print the join command
}


def layer_of(module: str) -> str:
    parts = module.split(".")
    if module == "shoal.exceptions":
        return "leaf"
    if parts[:2] == ["shoal", "_core"]:
        if len(parts) == 2:
            return "leaf"
        name = parts[2]
        for layer, names in CORE_LAYERS.items():
            if name in names:
                return layer
        raise AssertionError(f"{module} has no layer: add it to CORE_LAYERS in {Path(__file__).name}")
    if parts[:2] in (["shoal", "kernel_ext"], ["shoal", "widgets"], ["shoal", "labextension"], ["shoal", "cli"]):
        return "front end"
    if len(parts) > 1 and parts[1] in LIBRARIES:
        return "library"
    return "public API"


def source_modules() -> dict[str, Path]:
    modules = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            relative = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in relative.parts if p != "__init__"]
            name = ".".join([package, *parts])
            if folder == "runtime" and parts[:1] in (["kernel_ext"], ["widgets"]):
                continue
            modules[name] = path
    return modules


MODULES = source_modules()


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(module: str, path: Path):
    """(imported shoal module, line, names imported from it) for every import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "shoal":
                    yield alias.name, node.lineno, ()
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path, node)
            if target.split(".")[0] != "shoal":
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if submodule in MODULES:
                    yield submodule, node.lineno, ()
                else:
                    yield target, node.lineno, (alias.name,)


def module_aliases(module: str, path: Path) -> dict[str, str]:
    """Local names bound to shoal modules (`from . import api` -> {"api": "shoal.api"})."""
    aliases = {}
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = _resolve(module, path, node)
            for alias in node.names:
                if f"{target}.{alias.name}" in MODULES:
                    aliases[alias.asname or alias.name] = f"{target}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in MODULES and alias.asname:
                    aliases[alias.asname] = alias.name
    return aliases


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _library_may_import(module: str, target: str) -> bool:
    """Its own package, the public `shoal` names, `shoal.util`, errors, and other libraries' public parts."""
    own = ".".join(module.split(".")[:2])
    if target == own or target.startswith(own + "."):
        return True
    if target in ("shoal", "shoal.exceptions") or target == "shoal.util" or target.startswith("shoal.util."):
        return True
    parts = target.split(".")
    return len(parts) > 1 and parts[1] in LIBRARIES and "_internal" not in parts


def upward_imports() -> list[str]:
    problems = []
    for module, path in MODULES.items():
        mine = layer_of(module)
        for target, line, _ in imports_of(module, path):
            if target == "shoal" or (module, target) in ALLOWED:
                continue
            theirs = layer_of(target)
            where = f"{_shown(path)}:{line}"
            if RANK[theirs] > RANK[mine]:
                problems.append(f"{where}: {module} ({mine}) imports {target} ({theirs}), a layer above it")
            elif mine in ("library", "front end") and target.startswith("shoal._core"):
                problems.append(f"{where}: {module} ({mine}) imports the engine's {target}; use the public API")
            elif mine == "library" and not _library_may_import(module, target):
                problems.append(f"{where}: {module} (library) imports {target}; libraries use `shoal` and `shoal.util`")
    return problems


def private_reads() -> list[str]:
    problems = []
    for module, path in MODULES.items():
        for target, line, names in imports_of(module, path):
            for name in names:
                if _is_private(name) and target != module:
                    problems.append(f"{_shown(path)}:{line}: imports private {name} from {target}")
        aliases = module_aliases(module, path)
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and _is_private(node.attr)
            ):
                problems.append(f"{_shown(path)}:{node.lineno}: reads private {aliases[node.value.id]}.{node.attr}")
    return problems


def test_every_core_module_has_a_layer():
    for module in MODULES:
        layer_of(module)  # raises for a module nobody placed


def test_imports_point_down_the_layers():
    assert upward_imports() == []


def test_no_module_reads_another_modules_private_names():
    assert private_reads() == []


@pytest.mark.parametrize("name", sorted(CORE_LAYERS["pure state"]))
def test_pure_state_has_no_sockets_threads_or_processes(name):
    tree = ast.parse((ROOT / "runtime" / "_core" / f"{name}.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & PURE_FORBIDDEN


def test_the_checker_catches_what_it_should(tmp_path, monkeypatch):
    """A planted upward import, a library reaching into _core and a private read are all found."""
    planted = {
        "shoal._core.scheduling_planted": ("runtime/_core/scheduling_planted.py", "from . import node_manager\n"),
        "shoal.data.planted": ("runtime/data/planted.py", "from .._core import session\n"),
        "shoal.tune.planted": (
            "runtime/tune/planted.py",
            "from shoal import api\nfrom shoal.data._internal import plan\n",
        ),
        "shoal.widgets.planted": ("widgets/planted.py", "from shoal import api\napi._session\n"),
    }
    for module, (relative, text) in planted.items():
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        monkeypatch.setitem(MODULES, module, target)
    monkeypatch.setitem(CORE_LAYERS, "pure state", CORE_LAYERS["pure state"] | {"scheduling_planted"})
    upward = "\n".join(upward_imports())
    assert "scheduling_planted (pure state) imports shoal._core.node_manager (service)" in upward
    assert "shoal.data.planted (library) imports the engine's shoal._core.session" in upward
    assert "shoal.tune.planted (library) imports shoal.api;" in upward
    assert "shoal.tune.planted (library) imports shoal.data._internal" in upward
    assert "reads private shoal.api._session" in "\n".join(private_reads())
