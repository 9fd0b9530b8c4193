"""vLLM's serving benchmark runs against the engine and through the proxy (scripts/bench_serve_proxy.py)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from tests.conftest import engine_home, engine_unavailable

pytestmark = [pytest.mark.engine, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_serve_proxy.py"


def test_both_arms_complete_and_the_proxied_one_goes_through_the_proxy(
    engine_url: str, engine_model: str, tmp_path: Path
) -> None:
    if not (engine_home() / "vllm-env" / "bin" / "vllm").exists():
        engine_unavailable("no engine venv: run scripts/vllm_setup.sh")
    spec = importlib.util.spec_from_file_location("bench_serve_proxy", SCRIPT)
    assert spec and spec.loader
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    argv = ["--upstream", engine_url, "--model", engine_model, "--num-prompts", "3", "--output-len", "8"]
    summary = script.main([*argv, "--rounds", "1", "--out", str(tmp_path)])
    assert summary["proxied_requests"] == 3  # the proxied arm's requests, and only those
    for metric, row in summary["table"].items():
        assert row["direct"] > 0 and row["proxy"] > 0 and math.isfinite(row["ratio"]), metric
    assert (tmp_path / "direct-0.json").exists() and (tmp_path / "proxy-0.json").exists()
