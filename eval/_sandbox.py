"""Run untrusted Python (model-written code) in a bounded subprocess.

Each run gets a fresh temporary directory as its working directory, a new process group
(killed as a whole on timeout), resource limits (address space, CPU seconds, file size, no
core dumps) and no network: socket creation is blocked by a preamble and, where the kernel
allows unprivileged user namespaces, the process also runs in an empty network namespace
(``unshare -rn``). This is containment for benchmark code, not a security boundary against
a determined attacker.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Literal

__all__ = ["SandboxResult", "run_python", "run_python_async"]

Status = Literal["ok", "error", "timeout"]

# Runs before the user's code: no sockets, no subprocesses (which would escape the limits'
# accounting and the process-group kill only partly).
_PREAMBLE = """\
import socket as _s, os as _o, subprocess as _sp
def _blocked(*a, **k):
    raise PermissionError("network and subprocesses are disabled in the sandbox")
_s.socket = _s.create_connection = _s.socketpair = _blocked
_sp.Popen = _sp.run = _sp.call = _sp.check_call = _sp.check_output = _blocked
_o.system = _o.popen = _o.fork = _o.forkpty = _blocked
for _n in ("execv", "execve", "execvp", "execvpe", "spawnv", "spawnve"):
    setattr(_o, _n, _blocked)
del _s, _o, _sp, _n
"""


@dataclass(frozen=True, slots=True)
class SandboxResult:
    """Outcome of one sandboxed run."""

    status: Status
    """``ok`` (exit 0), ``error`` (non-zero exit, killed by a limit) or ``timeout``."""
    returncode: int | None
    stdout: str
    stderr: str
    seconds: float


@functools.cache
def _unshare_prefix() -> tuple[str, ...]:
    """``unshare -rn`` if this kernel lets us drop the network without privileges."""
    exe = shutil.which("unshare")
    if exe is None:
        return ()
    try:
        ok = subprocess.run([exe, "-rn", "true"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return (exe, "-rn") if ok else ()


def _limits(memory_mb: int, cpu_s: int, file_mb: int) -> None:
    # Runs in the child between fork and exec.
    mem = memory_mb * 2**20
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_mb * 2**20, file_mb * 2**20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _command(python: str, script: str) -> list[str]:
    # -I: isolated mode (no PYTHON* env vars, no user site, script dir not on sys.path).
    return [*_unshare_prefix(), python, "-I", script]


def _prepare(code: str, workdir: str) -> str:
    script = os.path.join(workdir, "main.py")
    with open(script, "w", encoding="utf-8") as fh:
        fh.write(_PREAMBLE)
        fh.write(code)
    return script


def _env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}


def run_python(
    code: str,
    *,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    file_mb: int = 16,
    stdin: str | None = None,
    python: str = sys.executable,
) -> SandboxResult:
    """Run ``code`` as a Python script in a sandboxed subprocess and wait for it.

    Parameters
    ----------
    code:
        The script. It runs with a temporary directory as cwd, removed afterwards.
    timeout:
        Wall-clock seconds; on expiry the whole process group is killed (``SIGKILL``).
    memory_mb, file_mb:
        Address-space and written-file-size limits (``RLIMIT_AS``, ``RLIMIT_FSIZE``).
    stdin:
        Text fed to the script's standard input.
    python:
        Interpreter to run (default: this one).

    Examples
    --------
    >>> run_python("print(6 * 7)").stdout
    '42\\n'
    >>> run_python("while True: pass", timeout=0.5).status
    'timeout'
    """
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dynasor-sbx-") as workdir:
        script = _prepare(code, workdir)
        proc = subprocess.Popen(
            _command(python, script),
            cwd=workdir,
            env=_env(),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
            preexec_fn=functools.partial(_limits, memory_mb, max(1, int(timeout) + 1), file_mb),
        )
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            out, err = proc.communicate()
            return SandboxResult("timeout", None, out, err, time.monotonic() - start)
        finally:
            # Children the script left behind die with their group.
            _kill_group(proc.pid)
    status: Status = "ok" if proc.returncode == 0 else "error"
    return SandboxResult(status, proc.returncode, out, err, time.monotonic() - start)


async def run_python_async(
    code: str,
    *,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    file_mb: int = 16,
    stdin: str | None = None,
    python: str = sys.executable,
) -> SandboxResult:
    """:func:`run_python` for asyncio code: same limits, awaits the subprocess.

    Cancelling the awaiting task kills the process group.
    """
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dynasor-sbx-") as workdir:
        script = _prepare(code, workdir)
        proc = await asyncio.create_subprocess_exec(
            *_command(python, script),
            cwd=workdir,
            env=_env(),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=functools.partial(_limits, memory_mb, max(1, int(timeout) + 1), file_mb),
        )
        try:
            async with asyncio.timeout(timeout):
                out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        except TimeoutError:
            _kill_group(proc.pid)
            out, err = await proc.communicate()
            return SandboxResult("timeout", None, _text(out), _text(err), time.monotonic() - start)
        finally:
            _kill_group(proc.pid)
    status: Status = "ok" if proc.returncode == 0 else "error"
    return SandboxResult(status, proc.returncode, _text(out), _text(err), time.monotonic() - start)


def _text(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
