"""Shared fixtures.

Tests marked ``engine`` talk to a real vLLM server (see ``scripts/vllm_server.sh``). Its base
URL comes from ``DYNASOR_TEST_UPSTREAM`` (default ``http://127.0.0.1:8011``) and the served
model name from ``DYNASOR_TEST_MODEL`` (default: the first model the server lists). Tests that must
stop and restart a server use ``tiny_engine``, which the suite starts itself. When no
server answers, those tests are skipped with the reason, except under CI (``CI`` set to a
true value), where they fail: CI must exercise the real engine.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import httpx
import pytest
from hypothesis import settings

# No per-example deadline: timings on a shared 2-core machine say nothing about correctness.
settings.register_profile("dynasor", deadline=None)
settings.load_profile("dynasor")

DEFAULT_UPSTREAM = "http://127.0.0.1:8011"


def engine_metric(engine_url: str, name: str, label: str = "") -> float:
    """Sum of a metric's series on the engine (those carrying ``label`` when given)."""
    text = httpx.get(f"{engine_url}/metrics", timeout=10).text
    pattern = re.compile(re.escape(name) + r"[{ ]")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if pattern.match(line) and label in line)


def in_ci() -> bool:
    """True when running under CI (where a missing engine is a failure, not a skip)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def engine_unavailable(reason: str) -> NoReturn:
    """Skip the test with ``reason`` outside CI; fail it under CI."""
    if in_ci():
        pytest.fail(f"CI needs the real engine: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def engine_url() -> str:
    """Base URL (no ``/v1``) of a healthy vLLM server serving the real SmolLM2 weights."""
    url = os.environ.get("DYNASOR_TEST_UPSTREAM", DEFAULT_UPSTREAM).rstrip("/").removesuffix("/v1")
    try:
        ok = httpx.get(f"{url}/health", timeout=5.0).status_code == 200
    except httpx.HTTPError as exc:
        engine_unavailable(
            f"no vLLM server at {url} ({type(exc).__name__}); start one with "
            "scripts/vllm_setup.sh && scripts/vllm_server.sh start, or set DYNASOR_TEST_UPSTREAM"
        )
    if not ok:
        engine_unavailable(f"vLLM server at {url} is not healthy")
    return url


@pytest.fixture(scope="session")
def engine_model(engine_url: str) -> str:
    """The served model name to send with requests."""
    if name := os.environ.get("DYNASOR_TEST_MODEL"):
        return name
    models = httpx.get(f"{engine_url}/v1/models", timeout=10.0).json()["data"]
    if not models:
        engine_unavailable(f"{engine_url} serves no model")
    return str(models[0]["id"])


ROOT = Path(__file__).resolve().parents[1]
SERVER_SCRIPT = ROOT / "scripts" / "vllm_server.sh"


@dataclass
class ManagedServer:
    """A small vLLM server the tests start, stop and restart through ``scripts/vllm_server.sh``.

    It serves ``smollm2-tiny`` (random weights, 2 layers) with ``--max-num-seqs 2`` so that
    a handful of requests already queue, which is what priority and abort tests need.
    """

    port: int
    model: str = "smollm2-tiny"
    max_num_seqs: int = 2
    extra_args: tuple[str, ...] = ()
    """More vLLM arguments (``--runner pooling --convert classify`` for a reward server)."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self, action: str, timeout: float) -> subprocess.CompletedProcess[str]:
        args = [str(SERVER_SCRIPT), action, "--port", str(self.port)]
        if action == "start":
            args += ["--model", self.model, "--", "--max-num-seqs", str(self.max_num_seqs), *self.extra_args]
        # 1 GiB of KV cache is ample for the tiny model and keeps parallel sessions affordable.
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False, env=env)

    def start(self) -> None:
        done = self._run("start", timeout=400)
        if done.returncode != 0:
            raise RuntimeError(f"cannot start the test server:\n{done.stderr[-3000:]}")

    def stop(self) -> None:
        self._run("stop", timeout=60)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def engine_home() -> Path:
    """Where ``scripts/vllm_setup.sh`` keeps the engine venv and the models."""
    return Path(os.environ.get("DYNASOR_ENGINE_HOME", Path.home() / ".cache" / "dynasor"))


def _managed(server: ManagedServer) -> Iterator[ManagedServer]:
    home = engine_home()
    if not (home / "vllm-env" / "bin" / "python").exists() or not (home / "models" / server.model).exists():
        engine_unavailable(f"no engine venv or {server.model} model under {home}: run scripts/vllm_setup.sh")
    try:
        server.start()
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        engine_unavailable(str(exc))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def reward_engine() -> Iterator[ManagedServer]:
    """A tiny vLLM server with a classification head (``/classify``, ``/pooling``), as a reward model."""
    yield from _managed(
        ManagedServer(port=_free_port(), max_num_seqs=8, extra_args=("--runner", "pooling", "--convert", "classify"))
    )


@pytest.fixture(scope="session")
def tiny_engine() -> Iterator[ManagedServer]:
    """A restartable tiny vLLM server of this session (port ``DYNASOR_TEST_TINY_PORT``, default: a free one)."""
    port = os.environ.get("DYNASOR_TEST_TINY_PORT")
    yield from _managed(ManagedServer(port=int(port) if port else _free_port()))
