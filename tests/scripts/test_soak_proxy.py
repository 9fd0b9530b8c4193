"""The soak script in short: a few clients for seconds, same checks as the 10-minute run (docs/proxy.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "soak_proxy.py"


def soak(tmp_path: Path, *args: str) -> dict:
    out = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--out", str(out), "--hang-after", "30"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def check(report: dict) -> None:
    outcomes = report["outcomes"]
    assert outcomes.get("lost", 0) == 0 and outcomes.get("hung", 0) == 0, report["examples"]
    assert outcomes.get("ok", 0) > 50 and outcomes.get("left", 0) > 0
    assert all(value == 0 for value in report["still_running_after_drain"].values()), report[
        "still_running_after_drain"
    ]
    assert report["disconnected_reasoning_queries"] > 0
    assert report["their_subrequests"]["abort"] > 0 and report["their_subrequests"]["error"] == 0


@pytest.mark.slow
def test_short_soak_against_fake_replicas_one_killed_and_restarted(tmp_path):
    report = soak(tmp_path, "--upstream", "fake", "--clients", "12", "--duration", "15", "--kill-at", "0.3")
    check(report)
    assert len(report["events"]) == 2
    assert "killed" in report["events"][0][1] and "restarted" in report["events"][1][1]
    assert report["upstream_streams_closed_early"] > 0  # the engine saw the aborts


@pytest.mark.slow
def test_short_soak_against_the_simulated_engine(tmp_path):
    check(soak(tmp_path, "--upstream", "sim", "--clients", "12", "--duration", "12"))
