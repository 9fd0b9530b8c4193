"""The in-process ``vllm`` backend on the CPU build (run in the engine venv, which has vLLM)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dynasor import ConfigError
from tests.conftest import ROOT, engine_home, engine_unavailable

pytestmark = pytest.mark.engine


@pytest.mark.slow
def test_inproc_backend_on_cpu_build() -> None:
    """Capacity, completion, chat, streaming, logprobs, priority and abort through ``AsyncLLM``."""
    home = engine_home()
    python, model = home / "vllm-env" / "bin" / "python", home / "models" / "smollm2-tiny"
    if not python.exists() or not model.exists():
        engine_unavailable(f"no engine venv or smollm2-tiny under {home}: run scripts/vllm_setup.sh")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1"}
    done = subprocess.run(
        [str(python), str(ROOT / "scripts" / "check_vllm_inproc.py"), str(model)],
        capture_output=True,
        text=True,
        timeout=500,
        env=env,
        check=False,
        cwd=ROOT,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result (exit {done.returncode}):\n{done.stderr[-3000:]}"
    results = json.loads(lines[-1])
    assert done.returncode == 0, results
    for check in ("capacity", "completion", "streamed", "logprobs", "chat", "priority", "abort"):
        assert results[check] is True, (check, results)


async def test_missing_vllm_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from algorithms.protocol import GenerateRequest
    from dynasor.engine.base import EngineRequest
    from dynasor.engine.vllm_inproc import VLLMBackend

    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm now raises ImportError
    backend = VLLMBackend("some/model")
    with pytest.raises(ConfigError, match=r"dynasor-serve\[vllm\]"):
        await backend.generate(EngineRequest("r", "q", GenerateRequest("x", max_tokens=1)))
