"""scripts/scheduling_bound.py: the oracle's rate at P90 attainment, and a short run end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests._scripts import load_script

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "scheduling_bound.py"


def _module() -> ModuleType:
    return load_script("scheduling_bound")


def test_the_oracle_drops_the_heaviest_share_unserved() -> None:
    bound = _module()
    # Nine queries of 1 token and one of 91: serving all takes 100 tokens per 10 queries; the
    # oracle finishing 90% serves the nine light ones only, 9 tokens per 10 arrivals.
    work = [1.0] * 9 + [91.0]
    assert bound.all_served_rate(work, 100.0) == pytest.approx(10.0)
    assert bound.oracle_rate(work, 100.0, 0.9) == pytest.approx(100.0 * 10 / 9)
    # Finishing every query, the oracle can do no better than serving all.
    assert bound.oracle_rate(work, 100.0, 1.0) == pytest.approx(bound.all_served_rate(work, 100.0))
    # The share kept is rounded up: 0.85 of 10 queries still needs 9 of them.
    assert bound.oracle_rate(work, 100.0, 0.85) == pytest.approx(bound.oracle_rate(work, 100.0, 0.9))
    # Order of the input does not matter; equal work gives no headroom at all.
    assert bound.oracle_rate(list(reversed(work)), 100.0) == pytest.approx(bound.oracle_rate(work, 100.0))
    assert bound.oracle_rate([5.0] * 10, 50.0) == pytest.approx(50.0 / 5.0 / 0.9)


def test_bad_input_is_refused() -> None:
    bound = _module()
    with pytest.raises(ValueError, match="no queries"):
        bound.oracle_rate([], 1.0)
    with pytest.raises(ValueError, match="attainment"):
        bound.oracle_rate([1.0], 1.0, 0.0)


@pytest.mark.slow
def test_a_short_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bound.json"
    args = ["--workload", "sc-math", "--unloaded-duration", "60", "--saturated-rate", "12"]
    args += ["--saturated-duration", "30", "--saturated-policies", "fcfs", "--measured", "fcfs=6", "--out", str(out)]
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["label"] == "simulated (profile h100-llama3-8b)"
    assert figures["queries"] > 10 and figures["unloaded_missed"] == 0
    assert figures["oracle_rate"] > figures["all_served_rate"] > 0
    assert 0.0 < figures["heaviest_share_of_work"] < 0.9
    assert figures["oracle_over_measured"]["fcfs"] == pytest.approx(figures["oracle_rate"] / 6)
    assert figures["throughput_tokens_per_s"] == figures["saturated"]["fcfs"]["tokens_per_busy_s"]
