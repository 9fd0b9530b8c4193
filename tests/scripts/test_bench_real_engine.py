"""scripts/bench_real_engine.py --twin-of: the twins of an earlier run, against its real rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from eval.bench import PointSpec, RunConfig, load_workload, run_points

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_real_engine.py"
sys.path.insert(0, str(SCRIPT.parent))
from bench_real_engine import KNOBS, _row  # noqa: E402


def test_twins_of_an_earlier_run_replay_its_samples(tmp_path: Path) -> None:
    earlier, out = tmp_path / "earlier", tmp_path / "twins"
    earlier.mkdir()
    config = {"rate": 0.5, "duration": 20.0, "slo_scale": 0.25, "max_seqs": 4, "seed": 0}
    # Stands in for the live run: a simulated one recording its samples the same way.
    live = RunConfig(
        load_workload("sc-math"),
        duration=config["duration"],
        seed=config["seed"],
        max_seqs=config["max_seqs"],
        early_exit="all",
        params=KNOBS,
        record_traces=str(earlier / "samples-fcfs.jsonl"),
        engine_profile="cpu-tiny",
    )
    [run] = run_points(live, [PointSpec("fcfs", config["rate"], config["slo_scale"], True)])
    real = _row(run, config["duration"])
    recorded = {"config": config | {"url": "http://engine:8000", "model": "m"}, "real": {"fcfs": real}}
    (earlier / "comparison.json").write_text(json.dumps(recorded))

    base = [sys.executable, str(SCRIPT), "--twin-of", str(earlier), "--policies", "fcfs", "--out", str(out)]
    base += ["--profile", "cpu-tiny", "--duration", "20", "--seed", "0"]
    done = subprocess.run([*base, "--rate", "0.5"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "real engine (http://engine:8000, model m)" in done.stdout
    report = json.loads((out / "comparison.json").read_text())
    assert report["real"]["fcfs"] == real
    # The twin ran the recorded questions, with the same arrivals, and is compared with the recorded rows.
    twin = report["simulated"]["fcfs"]
    assert twin["queries"] == real["queries"] > 3 and twin["latency_p90_s"] > 0
    assert report["p90_error"]["fcfs"] == (twin["latency_p90_s"] - real["latency_p90_s"]) / real["latency_p90_s"]
    # Each twin query's outcome, in arrival order, to set beside the engine's query by query.
    lines = (out / "queries-fcfs-simulated.jsonl").read_text().splitlines()
    queries = [json.loads(line) for line in lines]
    assert len(queries) == twin["queries"]
    assert [q["arrival"] for q in queries] == sorted(q["arrival"] for q in queries)
    assert sum(q["completion_tokens"] for q in queries) / len(queries) == twin["tokens_per_query"]

    refused = subprocess.run([*base, "--rate", "0.25"], capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0 and "--twin-of" in refused.stderr
