"""Two proxy processes over the same engine, each owning the queries routed to it.

A load balancer in front of several ``dynasor serve`` processes needs no shared state: a reasoning
query lives inside the one HTTP request that carries it, so whichever process receives it owns it
and schedules its sub-requests. What the processes share is the engine; ``--replica-seqs`` gives
each its share of the engine's batch, within which its scheduler orders its own gangs.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager

import httpx
import pytest

from tests.dynasor.server.conftest import free_port
from tests.dynasor.server.test_engine import stream_counter

pytestmark = [pytest.mark.engine, pytest.mark.slow]

PROMPT = [{"role": "user", "content": "What is 3 + 4? Put the answer in \\boxed{}."}]
SHARE = 2  # sequences each process may keep running on the engine


@contextmanager
def proxy_process(upstream: str, model: str) -> Iterator[str]:
    """``dynasor serve`` as its own process; yields its URL once healthy, stops it after."""
    port = free_port()
    cmd = [sys.executable, "-c", "from dynasor_cli import main; main()", "serve", "--upstream", upstream]
    cmd += ["--model", model, "--port", str(port), "--replica-seqs", str(SHARE), "--health-interval", "0"]
    proc = subprocess.Popen([*cmd, "--log-level", "warning"])
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"dynasor serve exited with {proc.returncode}"
            assert time.monotonic() < deadline, "dynasor serve did not come up"
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_two_processes_each_schedule_their_own_queries_on_a_shared_engine(engine_url, engine_model, serve):
    counters = [stream_counter(engine_url) for _ in range(2)]
    with ExitStack() as stack:
        proxies = [
            stack.enter_context(proxy_process(stack.enter_context(serve(app)), engine_model)) for app, _ in counters
        ]
        body = {
            "model": engine_model,
            "messages": PROMPT,
            "max_tokens": 24,
            # Gangs of 2 and a share of 2: a process runs one query's round at a time, the
            # others wait in its scheduler.
            "dynasor": {"algorithm": "sc", "max_samples": 4, "samples_per_round": 2},
        }

        def ask(i: int) -> tuple[int, dict]:
            target = proxies[i % 2]  # round robin, as a load balancer would
            response = httpx.post(f"{target}/v1/chat/completions", json=body, timeout=300)
            assert response.status_code == 200, response.text
            return i % 2, response.json()

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(ask, range(8)))

    for owner, (_, counts) in enumerate(counters):
        mine = [a for o, a in answers if o == owner]
        assert len(mine) == 4 and all(a["choices"][0]["message"]["content"] is not None for a in mine)
        # Every sub-request this process sent was for its own queries, and it sent all of them.
        assert counts["opened"] == sum(a["usage"]["dynasor"]["samples"] for a in mine)
        # Its scheduler kept to its share of the engine while 4 queries wanted 8 sequences.
        assert counts["peak"] == SHARE, counts
        assert counts["open"] == 0
