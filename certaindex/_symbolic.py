"""Symbolic answer comparison (math-verify) in a worker process with a hard timeout.

math-verify's own timeout uses ``signal.alarm``: it works only in the main thread, and a
signal cannot interrupt a long big-integer operation in C (``9^{9^{9^9}}``) anyway. So every
comparison runs in one child process; when it does not answer in time the child is killed
and restarted on the next call. This works from any thread, and a pathological expression
costs at most the timeout.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

from certaindex._defaults import SYMBOLIC_TIMEOUT_S

__all__ = ["SymbolicComparer"]

_START_TIMEOUT_S = 120.0  # importing sympy + math-verify in a fresh interpreter
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])


def _as_latex(answer: str) -> str:
    # Plain strings such as "(1,2]" or "\{1,2\}" parse as intervals/sets only inside $...$.
    return answer if answer.startswith("$") else f"${answer}$"


def _serve() -> None:  # pragma: no cover - runs in the child process
    """Worker loop: one JSON ``[a, b]`` per stdin line, one JSON result per stdout line."""
    from math_verify import parse, verify

    # math-verify warns on every call made with its own timeouts disabled.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    # sympy imports lazily on first use: pay that here, not inside the first timed comparison.
    verify(parse("$\\frac{1}{2}$", parsing_timeout=None), parse("$0.5$", parsing_timeout=None), timeout_seconds=None)
    out = sys.stdout
    out.write('"ready"\n')
    out.flush()
    for line in sys.stdin:
        a, b = json.loads(line)
        try:
            pa = parse(_as_latex(a), parsing_timeout=None)
            pb = parse(_as_latex(b), parsing_timeout=None)
            ok: bool | str = bool(pa and pb and verify(pa, pb, timeout_seconds=None))
        except Exception as exc:
            ok = f"error: {type(exc).__name__}"
        out.write(json.dumps(ok) + "\n")
        out.flush()


class SymbolicComparer:
    """Compare two answers with math-verify in a killable worker process.

    Parameters
    ----------
    timeout:
        Seconds one comparison may take (parse both sides and verify); on expiry the worker
        is killed and the comparison counts as *not equal*.

    Thread-safe: calls are serialised on one worker (a plain subprocess speaking JSON lines,
    so it neither forks a threaded parent nor re-imports the caller's ``__main__``).
    :meth:`close` stops it (also at exit).
    """

    def __init__(self, timeout: float = SYMBOLIC_TIMEOUT_S) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
        self.timeout = timeout
        self.calls = 0
        self.timeouts = 0
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        atexit.register(_close_if_alive, weakref.ref(self))

    def equal(self, a: str, b: str) -> bool:
        """``verify(parse(a), parse(b))`` with both wrapped in ``$...$``; False on timeout."""
        with self._lock:
            proc = self._ensure_worker()
            self.calls += 1
            assert proc.stdin is not None
            proc.stdin.write((json.dumps([a, b]) + "\n").encode())
            proc.stdin.flush()
            line = self._read_line(proc, self.timeout)
            if line is None:
                self.timeouts += 1
                self._stop_worker()
                return False
            return json.loads(line) is True

    def close(self) -> None:
        """Stop the worker process (a later call starts a new one)."""
        with self._lock:
            self._stop_worker()

    def __del__(self) -> None:
        proc = getattr(self, "_proc", None)
        if proc is not None and proc.poll() is None:
            proc.kill()

    def _read_line(self, proc: subprocess.Popen[bytes], timeout: float) -> bytes | None:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:  # the worker died
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _ensure_worker(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._stop_worker()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PACKAGE_ROOT, env.get("PYTHONPATH")]))
        proc = subprocess.Popen(
            [sys.executable, "-c", "from certaindex._symbolic import _serve; _serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._proc, self._buffer = proc, b""
        if self._read_line(proc, _START_TIMEOUT_S) != b'"ready"':
            self._stop_worker()
            raise RuntimeError("the math-verify worker process did not start")
        return proc

    def _stop_worker(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(timeout=5)
            for stream in (self._proc.stdin, self._proc.stdout):
                if stream is not None:
                    stream.close()
        self._proc, self._buffer = None, b""


def _close_if_alive(ref: weakref.ref[SymbolicComparer]) -> None:
    # At exit: stop the worker of a comparer that still exists (a weak reference, so that
    # registering the hook does not keep every comparer alive).
    comparer = ref()
    if comparer is not None:
        comparer.close()
