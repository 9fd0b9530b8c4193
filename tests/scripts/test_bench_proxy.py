"""scripts/bench_proxy.py in short, against its instant fake upstream: every phase reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_proxy.py"


@pytest.mark.slow
def test_every_phase_reports(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["--upstream", "fake", "--pairs", "4", "--stream-pairs", "2", "--reasoning-queries", "3"]
    args += ["--long-stream-pairs", "2", "--long-stream-tokens", "256"]
    args += ["--reasoning-tokens", "20", "--stream-interval", "4", "--idle-seconds", "1"]
    args += ["--clients", "2", "--duration", "3", "--max-requests", "20", "--out", str(out)]
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    over = figures["overhead"]
    assert over["pairs"] == 4 and over["long_stream_pairs"] == 2 and over["long_stream_tokens"] == 256
    assert over["stream_throughput_ratio_p50"] > 0 and over["long_stream_ratio_p50"] > 0
    cpu = figures["reasoning_cpu"]
    assert cpu["subrequests"] == 3 * 8 and cpu["cpu_ms_per_subrequest"] > 0
    assert cpu["tokens_per_subrequest"] == 20 and cpu["stream_interval"] == 4
    assert 0 <= cpu["idle_cpu_share"] < 1 and 0 <= cpu["cpu_ms_per_subrequest_net"] <= cpu["cpu_ms_per_subrequest"]
    load = figures["load"]
    assert sum(load["lost"].values()) == 0 and sum(load["hung"].values()) == 0 and load["requests"] > 0
