"""scripts/fit_cpu_profile.py: observations saved with --raw are fitted back to the iteration
cost that produced them, and --profile-out writes a profile the simulated engine loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dynasor.engine.sim import load_profile
from tests.dynasor.server.conftest import serve_app
from tests.dynasor.server.faulty import FaultyUpstream

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "fit_cpu_profile.py"
TRUE = {"step_base_s": 0.012, "step_per_seq_s": 0.0008, "step_per_context_token_s": 2e-6, "prefill_per_token_s": 3e-5}


def _observations(rng: np.random.Generator) -> dict[str, object]:
    decode = []
    for b in (1, 2, 4, 8, 16, 32, 64):
        for prompt in (16, 128, 512):
            for k in range(0, 48, 6):
                context = b * (prompt + k)
                step = TRUE["step_base_s"] + TRUE["step_per_seq_s"] * b + TRUE["step_per_context_token_s"] * context
                decode.append((b, context, 0, step * rng.uniform(0.97, 1.03)))
    # Time to first token: a fixed per-request part (HTTP, tokenisation) plus the prefill itself.
    prefill = [(1, p, p, 0.05 + TRUE["prefill_per_token_s"] * p) for p in (64, 256, 1024, 2048) for _ in range(2)]
    return {"decode": {}, "observations": decode, "prefill": prefill, "load_average": [0.25, 1.5]}


def test_saved_observations_fit_back_and_the_profile_loads(tmp_path: Path) -> None:
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps(_observations(np.random.default_rng(0))))
    out = tmp_path / "cpu-tiny-here.json"
    with serve_app(FaultyUpstream().app()) as url:  # a server without vLLM's /metrics
        args = ["--url", url, "--from-raw", str(raw), "--profile-out", str(out), "--max-num-seqs", "64"]
        done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "fit (real engine)" in done.stdout and f"wrote the profile {out}" in done.stdout
    profile = load_profile(out)
    assert profile.name == "cpu-tiny-here" and profile.max_num_seqs == 64
    for name, value in TRUE.items():
        assert getattr(profile, name) == pytest.approx(value, rel=0.1), name
    # The profile says how loaded the machine was when its observations were taken.
    assert "Load average (1 min) 0.25 before measuring and 1.50 after" in profile.source


def test_a_prefill_joining_a_running_batch_sets_the_prefill_term(tmp_path: Path) -> None:
    """The simulator charges a prefill inside an iteration of the running batch, so the
    in-batch observations set the term even when a lone request's first token grows otherwise."""
    rng = np.random.default_rng(1)
    saved = _observations(rng)
    # A lone prompt's first token: four times steeper than inside a batch.
    saved["prefill"] = [
        (1, p, p, 0.05 + 4 * TRUE["prefill_per_token_s"] * p) for p in (128, 256, 512) for _ in range(2)
    ]
    in_batch = []
    for b in (2, 4):
        for f in (32, 64, 128, 256):
            context = b * (64 + 6) + f
            step = (
                TRUE["step_base_s"]
                + TRUE["step_per_seq_s"] * (b + 1)
                + TRUE["step_per_context_token_s"] * context
                + TRUE["prefill_per_token_s"] * f
            )
            in_batch.append((b + 1, context, f, step * rng.uniform(0.98, 1.02)))
    saved["prefill_in_batch"] = in_batch
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps(saved))
    out = tmp_path / "in-batch.json"
    with serve_app(FaultyUpstream().app()) as url:
        args = ["--url", url, "--from-raw", str(raw), "--profile-out", str(out)]
        done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    profile = load_profile(out)
    assert profile.prefill_per_token_s == pytest.approx(TRUE["prefill_per_token_s"], rel=0.15)
    assert "8 iterations prefilling a fresh prompt of 32-256 tokens joining 2-4 running requests" in profile.source
