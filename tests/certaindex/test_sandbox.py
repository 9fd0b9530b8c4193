"""The code sandbox (``eval/_sandbox.py``) that builds the HumanEval traces."""

from __future__ import annotations

import time

from eval._sandbox import run_python, run_python_async


def test_runs_and_captures() -> None:
    r = run_python("import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)")
    assert (r.status, r.returncode, r.stdout, r.stderr.strip()) == ("error", 3, "out\n", "err")


def test_timeout_kills_the_process_group() -> None:
    start = time.monotonic()
    r = run_python("while True: pass", timeout=0.5)
    assert r.status == "timeout"
    assert time.monotonic() - start < 5


def test_no_network_and_no_subprocess() -> None:
    r = run_python("import socket\nsocket.create_connection(('127.0.0.1', 80))")
    assert r.status == "error" and "PermissionError" in r.stderr
    r = run_python("import subprocess\nsubprocess.run(['true'])")
    assert r.status == "error" and "PermissionError" in r.stderr


def test_memory_limit() -> None:
    r = run_python("x = bytearray(3 * 2**30)", memory_mb=512)
    assert r.status == "error" and "MemoryError" in r.stderr


def test_temp_dir_cwd_is_removed() -> None:
    r = run_python("import os; open('f.txt', 'w').write('x'); print(os.getcwd())")
    assert r.status == "ok"
    import os

    assert not os.path.exists(r.stdout.strip())


async def test_async_variant() -> None:
    r = await run_python_async("print(input()[::-1])", stdin="abc\n")
    assert r.stdout == "cba\n"
    r = await run_python_async("import time; time.sleep(30)", timeout=0.5)
    assert r.status == "timeout"
