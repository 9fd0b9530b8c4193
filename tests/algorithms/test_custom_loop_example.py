"""The custom-loop example stays short and runs on the sim engine."""

from __future__ import annotations

import runpy
from pathlib import Path

from dynasor.clock import run

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_loop.py"


def test_the_example_is_under_40_lines_and_stops_confident_queries_early(capsys):
    assert len(EXAMPLE.read_text().splitlines()) < 40
    module = runpy.run_path(str(EXAMPLE))  # defines, does not run (guarded by __main__)
    run(module["main"]())
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(line.endswith("(simulated)") for line in lines)
    samples = [int(line.split("samples=")[1].split()[0]) for line in lines]
    assert all(s in (2, 6, 14) for s in samples)  # whole rounds of 2, 4, 8
    assert any("exit=confident" in line for line in lines)
