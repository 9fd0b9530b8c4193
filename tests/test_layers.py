"""The tree's picture is the layers' picture: every import follows an arrow drawn here.

Layers, each importing only those before it::

    certaindex <- algorithms <- dynasor <- eval <- dynasor_cli

Inside ``dynasor``, a *part* is a top-level module or subpackage; :data:`DYNASOR_ARROWS` lists,
for each part, the parts it may import. Inside a subpackage, :data:`SIBLING_ARROWS` does the
same for its modules. Nothing imports in a cycle, and tests mirror the code's folders.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["certaindex", "algorithms", "dynasor", "eval", "dynasor_cli"]

# Part of dynasor -> the parts of dynasor it may import. Arrows point down the runtime's stack:
# shared types at the bottom, engines know nothing of queries, the scheduler nothing of the
# allocator (and the other way round), the runtime nothing of the proxy.
DYNASOR_ARROWS: dict[str, set[str]] = {
    "_exceptions": set(),
    "_state": set(),
    "_tasks": set(),
    "clock": set(),
    "_presets": {"_exceptions"},
    "_query": {"_presets", "_state"},
    "engine": {"_exceptions"},
    "sched": {"_exceptions", "_state", "_tasks", "engine"},
    "allocator": {"_presets", "_query", "_state"},
    "scorers": {"_exceptions", "engine"},
    "runtime": {"_exceptions", "_query", "_state", "allocator", "engine", "sched"},
    "demo": {"_query", "allocator", "clock", "engine", "runtime", "sched"},
    "server": {
        "_exceptions",
        "_presets",
        "_query",
        "_state",
        "_tasks",
        "allocator",
        "engine",
        "runtime",
        "sched",
        "scorers",
    },
}

# Subpackage -> its module -> the sibling modules it may import (its __init__ may import them all).
SIBLING_ARROWS: dict[str, dict[str, set[str]]] = {
    "dynasor.engine": {
        "base": set(),
        "traces": set(),
        "openai": {"base"},
        "sim": {"base", "traces"},
        "vllm_inproc": {"base"},
    },
    "dynasor.engine.openai": {
        "_errors": set(),
        "_request": set(),
        "_stream": set(),
        "_client": {"_errors", "_request", "_stream"},
    },
    "dynasor.engine.sim": {
        "_sources": set(),
        "_engine": {"_sources"},
        "_reasoning": {"_sources"},
        "_content": {"_sources", "_reasoning"},
    },
    "dynasor.sched": {"gang": set(), "policy": {"gang"}, "scheduler": {"gang", "policy"}},
    "dynasor.server": {
        "protocol": set(),
        "_settings": set(),
        "_shapes": set(),
        "metrics": set(),
        "upstreams": set(),
        "_knobs": set(),
        "_passthrough": {"_shapes", "protocol", "upstreams"},
        "_body": {"_passthrough"},
        "serving": {"_knobs", "_passthrough", "_settings", "_shapes", "protocol", "upstreams"},
        "state": {"_passthrough", "_settings", "metrics", "protocol", "serving", "upstreams"},
        "routes": {"_body", "_passthrough", "_shapes", "metrics", "protocol", "state", "upstreams"},
        "app": {"_passthrough", "_settings", "protocol", "routes", "state"},
    },
}


@dataclass(frozen=True)
class Import:
    source: str
    """Importing module, dotted (a package is its name, not ``__init__``)."""
    target: str
    """Imported module, dotted; ``from pkg import sub`` is ``pkg.sub`` when ``sub`` is a module."""
    at_import: bool
    """Runs when the module is imported (not inside a function, not only for type checkers)."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path) -> Iterator[Import]:
    source = _module_name(path)

    def visit(node: ast.AST, at_import: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                yield from visit(child, False)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                yield from visit(child, False if not isinstance(child, ast.ClassDef) else at_import)
            elif isinstance(child, ast.Import):
                yield from (Import(source, alias.name, at_import) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                for alias in child.names:
                    sub = f"{child.module}.{alias.name}"
                    yield Import(source, sub if _is_module(sub) else child.module, at_import)
            else:
                yield from visit(child, at_import)

    yield from visit(ast.parse(path.read_text(encoding="utf-8")), True)


def _all_imports(package: str) -> list[Import]:
    return [i for path in sorted((ROOT / package).rglob("*.py")) for i in _imports(path)]


@pytest.mark.parametrize("layer", LAYERS)
def test_each_layer_imports_only_the_layers_below(layer: str) -> None:
    above = set(LAYERS[LAYERS.index(layer) + 1 :])
    offenders = sorted({f"{i.source} -> {i.target}" for i in _all_imports(layer) if i.target.split(".")[0] in above})
    assert offenders == []


def _dynasor_part(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "dynasor" and len(parts) > 1 else None


def test_dynasor_parts_import_only_along_the_arrows() -> None:
    parts_on_disk = {p.stem for p in (ROOT / "dynasor").glob("*.py") if p.stem != "__init__"}
    parts_on_disk |= {p.name for p in (ROOT / "dynasor").iterdir() if (p / "__init__.py").is_file()} - {"data"}
    assert parts_on_disk == set(DYNASOR_ARROWS), "every part of dynasor has a row in DYNASOR_ARROWS"
    offenders = set()
    for i in _all_imports("dynasor"):
        source, target = _dynasor_part(i.source), _dynasor_part(i.target)
        if i.target == "dynasor" and i.source != "dynasor":
            offenders.add(f"{i.source} -> dynasor (the package's public face, from inside it)")
        if source is None or target is None or source == target:
            continue
        if target not in DYNASOR_ARROWS[source]:
            offenders.add(f"{i.source} -> {i.target} ({source} may import {sorted(DYNASOR_ARROWS[source])})")
    assert sorted(offenders) == []


@pytest.mark.parametrize("package", sorted(SIBLING_ARROWS))
def test_siblings_import_only_along_the_arrows(package: str) -> None:
    table = SIBLING_ARROWS[package]
    folder = ROOT.joinpath(*package.split("."))
    on_disk = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"} | {
        p.name for p in folder.iterdir() if (p / "__init__.py").is_file()
    }
    assert on_disk == set(table), f"every module of {package} has a row in SIBLING_ARROWS"
    offenders = set()
    for i in _all_imports(package.replace(".", "/")):
        if i.source == package or not i.target.startswith(f"{package}."):
            continue
        source = i.source[len(package) + 1 :].split(".")[0]
        target = i.target[len(package) + 1 :].split(".")[0]
        if source != target and target not in table[source]:
            offenders.add(f"{i.source} -> {i.target}")
    assert sorted(offenders) == []


def test_eval_core_and_the_benchmark_do_not_know_each_other() -> None:
    bench = [i for i in _all_imports("eval/bench") if i.target.startswith("eval.") and "bench" not in i.target]
    core = [i for i in _all_imports("eval") if not i.source.startswith("eval.bench") and "eval.bench" in i.target]
    assert bench == [] and core == []


def test_no_import_cycles() -> None:
    """Among the modules of every layer, counting what runs at import time."""
    graph: dict[str, set[str]] = {}
    for layer in LAYERS:
        for i in _all_imports(layer):
            graph.setdefault(i.source, set())
            # Importing a submodule runs its package's __init__ first; that arrow is implicit, not a cycle.
            if i.at_import and i.target.split(".")[0] in LAYERS and not i.source.startswith(f"{i.target}."):
                graph[i.source].add(i.target)
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def walk(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                walk(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node, [node])
    assert cycles == []


def test_tests_mirror_the_code_folders() -> None:
    folders = [p for p in (ROOT / "tests").rglob("*") if p.is_dir() and p.name != "__pycache__"]
    orphans = sorted(str(p.relative_to(ROOT)) for p in folders if not (ROOT / p.relative_to(ROOT / "tests")).is_dir())
    assert orphans == []


def test_the_lower_layers_stay_light() -> None:
    code = (
        "import sys, certaindex, algorithms, algorithms.protocol;"
        "heavy = {'httpx', 'fastapi', 'uvicorn', 'torch', 'vllm', 'dynasor', 'eval'} & set(sys.modules);"
        "import dynasor;"
        "heavy |= {'dynasor: ' + m for m in {'fastapi', 'uvicorn', 'torch', 'vllm', 'eval'} & set(sys.modules)};"
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
