"""Imports point downward only: certaindex <- algorithms <- dynasor <- eval."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["certaindex", "algorithms", "dynasor", "eval", "dynasor_cli"]


def imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("layer", LAYERS)
def test_no_upward_imports(layer: str) -> None:
    above = set(LAYERS[LAYERS.index(layer) + 1 :])
    offenders = [
        f"{path.relative_to(ROOT)} imports {sorted(imported_packages(path) & above)}"
        for path in (ROOT / layer).rglob("*.py")
        if imported_packages(path) & above
    ]
    assert offenders == []


def test_certaindex_and_algorithms_stay_light() -> None:
    code = (
        "import sys, certaindex, algorithms, algorithms.protocol;"
        "heavy = {'httpx', 'fastapi', 'uvicorn', 'torch', 'vllm', 'dynasor', 'eval'} & set(sys.modules);"
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
