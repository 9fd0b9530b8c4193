"""mypy passes on the packages, with the settings in pyproject.toml ([tool.mypy]).

Strict on certaindex/, algorithms/ and dynasor/sched/ (Certaindex, the program protocol and the scheduler), the
default elsewhere; a new error anywhere fails this test.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("mypy")


def test_mypy_passes() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--no-error-summary"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_strict_packages_are_strict(tmp_path: Path) -> None:
    """An untyped function in a strict package is an error; the same code elsewhere is not."""
    probes = ["certaindex/probe.py", "algorithms/probe.py", "dynasor/sched/probe.py", "dynasor/probe.py"]
    for package in ("certaindex", "algorithms", "dynasor", "dynasor/sched"):
        (tmp_path / package).mkdir(parents=True, exist_ok=True)
        (tmp_path / package / "__init__.py").write_text("")
    for probe in probes:
        (tmp_path / probe).write_text("def untyped(x):\n    return x\n")
    config = ["--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(tmp_path / ".cache")]
    done = subprocess.run(
        [sys.executable, "-m", "mypy", *config, *probes], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    flagged = {line.split(":")[0] for line in done.stdout.splitlines() if "no-untyped-def" in line}
    assert flagged == {"certaindex/probe.py", "algorithms/probe.py", "dynasor/sched/probe.py"}
