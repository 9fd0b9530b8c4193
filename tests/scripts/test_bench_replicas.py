"""scripts/bench_replicas.py in short: the figures of a healthy and a failed run over two replicas."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_replicas.py"


def test_a_point_reports_cpu_memory_balance_and_the_failure() -> None:
    args = ["--replicas", "2", "--rate-per-replica", "3", "--duration", "20", "--memory-step", "10"]
    args += ["--fail-replica", "1@10"]
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["label"].startswith("simulated (profile h100-llama3-8b)")
    healthy, failed = report["healthy"], report["with_failure"]
    assert healthy["scored_queries"] == failed["scored_queries"] > 50
    assert healthy["programs_run"] >= healthy["scored_queries"] and healthy["cpu_ms_per_program"] > 0
    assert healthy["peak_in_flight_sampled"] >= 10 and healthy["rss_per_query_in_flight_kib"] > 0
    assert healthy["engine"]["replicas"] == 2 and healthy["engine"]["queries_moved"] == 0
    lost = failed["engine"]["failed_replica_queries_broken_off"] + failed["engine"]["queries_moved"]
    assert lost > 0
