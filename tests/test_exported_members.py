"""Each package's ``__init__`` is its public surface (as httpx checks its own exports).

``__all__`` names exactly the public objects the package binds, each of them exists, and
nothing outside a package reaches into its underscore modules: scripts, examples and the
packages above use what ``__init__`` exports (tests may look inside the package they test).
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PACKAGES = [
    "certaindex",
    "algorithms",
    "dynasor",
    "dynasor.engine",
    "dynasor.engine.openai",
    "dynasor.engine.sim",
    "dynasor.sched",
    "dynasor.server",
    "eval",
    "eval.bench",
    "dynasor_cli",
]

# Files whose owners are moving them to public names (see each note); the list only shrinks.
PENDING: dict[str, str] = {}


@pytest.mark.parametrize("package", PACKAGES)
def test_all_is_exactly_the_public_names(package: str) -> None:
    module = importlib.import_module(package)
    exported = set(module.__all__)
    assert len(exported) == len(module.__all__), "duplicates in __all__"
    assert [name for name in module.__all__ if not hasattr(module, name)] == []
    # Subpackages and public submodules bind themselves on import; they are reached by name.
    public = {name for name, value in vars(module).items() if not name.startswith("_") and not inspect.ismodule(value)}
    modules = {name for name in exported if inspect.ismodule(getattr(module, name))}
    assert sorted(exported - modules) == sorted(public)


def _private_imports(path: Path) -> list[str]:
    """Modules ``path`` imports that lie inside another package's underscore module."""
    here = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            private = next((i for i, part in enumerate(parts) if part.startswith("_") and part != "__future__"), None)
            if private is None or parts[0] not in {"certaindex", "algorithms", "dynasor", "eval", "dynasor_cli"}:
                continue
            owner = ".".join(parts[:private])
            if not f"{here}.".startswith(f"{owner}."):
                found.append(name)
    return sorted(set(found))


def _code_files() -> list[Path]:
    folders = ["certaindex", "algorithms", "dynasor", "eval", "dynasor_cli", "scripts", "examples"]
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_nothing_outside_a_package_imports_its_underscore_modules() -> None:
    offenders = {
        str(path.relative_to(ROOT)): found
        for path in _code_files()
        if (found := _private_imports(path)) and str(path.relative_to(ROOT)) not in PENDING
    }
    assert offenders == {}


def test_tests_look_inside_only_the_package_they_test() -> None:
    offenders = {}
    for path in sorted((ROOT / "tests").rglob("*.py")):
        tested = path.relative_to(ROOT / "tests").parts[0]
        foreign = [name for name in _private_imports(path) if name.split(".")[0] != tested]
        if foreign:
            offenders[str(path.relative_to(ROOT))] = foreign
    assert offenders == {}


def test_pending_files_still_exist() -> None:
    """A file that no longer exists, or no longer needs it, leaves the list."""
    stale = [name for name in PENDING if not (ROOT / name).exists() or not _private_imports(ROOT / name)]
    assert stale == []
