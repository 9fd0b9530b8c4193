"""What a hostile program tries against the code grader, and what stops it.

Every attack is graded through :class:`CodeGrader` on a one-function problem. Each attack
program returns the right answer *only if its attack worked* (it read the secret, connected,
wrote the file, forged the report...), so "graded incorrect" means "blocked", and each test goes
red when the protection it names is removed. Every test also checks, by counting, that exactly
one sandbox ran and that no process the program started is alive afterwards, and that the run
ended within its limit plus a margin.
"""

from __future__ import annotations

import os
import secrets
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from eval import CodeGrader, Problem
from eval._isolation import isolation
from eval._sandbox import runs_started
from tests.conftest import in_ci

LIMIT_S = 3.0
MARGIN_S = 2.0
"""Start-up, kill and reaping on a loaded 2-core machine."""

ADD = Problem(
    id="t/add",
    prompt="def add(a, b):\n",
    kind="code",
    tests="def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(10, -4) == 6\n\ncheck(add)\n",
    entry_point="add",
)

# Writes a passing report for a stolen token, then leaves before the real harness can report.
FORGE = textwrap.dedent(
    """
    import os as _os
    def forge(token, fd):
        fields = ["1", "", "P"]
        _os.write(fd, (token + "\\n" + "".join(str(len(f)) + ":" + f for f in fields)).encode())
        _os._exit(0)
    """
)


@pytest.fixture(autouse=True)
def _isolated() -> None:
    iso = isolation()
    if not iso.available:
        if in_ci():
            pytest.fail(f"CI must run the escape tests isolated: {iso.reason}", pytrace=False)
        pytest.skip(iso.reason)


@pytest.fixture
def marker() -> str:
    """A string the attack puts on its processes' command lines, to count them from outside."""
    return f"dynasor-escape-{secrets.token_hex(6)}"


def _alive(marker: str) -> int:
    count = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as fh:
                    count += marker.encode() in fh.read()
            except OSError:
                continue
    return count


def _sleeper(marker: str, seconds: int = 120) -> str:
    """Source of a call that replaces the calling process with a marked sleeper."""
    return f"os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep({seconds})', {marker!r}])"


def attack(program: str, marker: str = "", *, timeout: float = LIMIT_S, **grader: object):
    """Grade ``program`` once; check one run started, it ended in time and left nothing alive."""
    before = runs_started()
    graded = CodeGrader(timeout=timeout, memory_mb=512, **grader)  # type: ignore[arg-type]
    grade = graded.grade(ADD, textwrap.dedent(program))
    assert runs_started() - before == 1
    if marker:
        assert _alive(marker) == 0, "a process the program started outlived its sandbox"
    return grade


# -- the filesystem ----------------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / "escaped"
    yield target
    assert not target.exists(), "the program wrote a file outside its sandbox"


@pytest.mark.parametrize(
    "how",
    [
        "import posix\nposix.system('touch {target}')",
        "import os\nos.waitpid(os.posix_spawn('/bin/sh', ['sh', '-c', 'touch {target}'], {{}}), 0)",
        "open('{target}', 'w').write('x')",
        "import subprocess\nsubprocess.run(['touch', '{target}'])",
    ],
    ids=["posix.system", "posix_spawn", "open", "subprocess"],
)
def test_writing_outside_tmp_is_blocked(outside: Path, how: str) -> None:
    program = f"""
        import os
        try:
{textwrap.indent(how.format(target=outside), " " * 12)}
        except Exception:
            pass
        def add(a, b):
            return a + b if os.path.exists({str(outside)!r}) else 0
    """
    grade = attack(program)
    assert not grade.correct


def test_system_directories_are_read_only() -> None:
    program = """
        def add(a, b):
            for path in ("/usr/lib/dynasor-escaped", "/escaped"):
                try:
                    open(path, "w").close()
                    return a + b
                except OSError:
                    pass
            return 0
    """
    assert not attack(program).correct


@pytest.mark.parametrize(
    "path_of",
    [
        lambda secret: "/etc/passwd",
        lambda secret: str(secret),
        lambda secret: str(Path(__file__).resolve()),
        lambda secret: str(Path.home()),
    ],
    ids=["etc-passwd", "user-file", "project-tree", "home"],
)
def test_host_files_are_invisible(tmp_path: Path, path_of) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("the user's secret")
    path = path_of(secret)
    assert os.path.exists(path)
    program = f"""
        import os
        def add(a, b):
            return a + b if os.path.exists({path!r}) else 0
    """
    assert not attack(program).correct


def test_tmp_is_small() -> None:
    # Files of 1 MiB each stay under the file-size limit: what stops them is the tmpfs's size.
    program = """
        def add(a, b):
            try:
                for i in range(128):
                    with open(f"/tmp/fill{i}", "wb") as fh:
                        fh.write(b"x" * (1 << 20))
                return a + b
            except OSError:
                return 0
    """
    assert not attack(program).correct


# -- the network -------------------------------------------------------------------------------


def test_tcp_to_the_host_is_unreachable() -> None:
    # Two layers: seccomp refuses the socket, the empty network namespace the connection.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        program = f"""
            import _socket
            def add(a, b):
                s = _socket.socket()
                s.settimeout(1)
                try:
                    s.connect(("127.0.0.1", {port}))
                    return a + b
                except OSError:
                    return 0
        """
        assert not attack(program).correct


def test_abstract_unix_sockets_of_the_host_are_unreachable() -> None:
    # Abstract sockets have no file to hide: only the network namespace separates them.
    path = f"\0dynasor-test-{secrets.token_hex(6)}"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen()
        program = f"""
            import socket
            def add(a, b):
                try:
                    socket.socket(socket.AF_UNIX).connect({path!r})
                    return a + b
                except OSError:
                    return 0
        """
        assert not attack(program).correct


# -- processes ----------------------------------------------------------------------------------


def test_fork_bomb_is_bounded_and_dies_with_the_sandbox(marker: str) -> None:
    program = f"""
        import os, sys, posix
        started = 0
        for _ in range(200):
            try:
                if posix.fork() == 0:
                    {_sleeper(marker)}
                started += 1
            except OSError:
                break
        def add(a, b):
            return a + b if started == 200 else 0
    """
    grade = attack(program, marker)
    assert not grade.correct


def test_setsid_grandchild_cannot_hold_the_grader(marker: str) -> None:
    # The old grader waited for pipe EOF: a detached grandchild kept it for as long as it slept.
    program = f"""
        import os, sys, posix
        if posix.fork() == 0:
            posix.setsid()
            if posix.fork() == 0:
                {_sleeper(marker)}
            os._exit(0)
        def add(a, b):
            return 0
    """
    grader = CodeGrader(timeout=LIMIT_S, memory_mb=512)
    before = runs_started()
    grade = grader.grade(ADD, textwrap.dedent(program))
    assert runs_started() - before == 1 and not grade.correct
    assert _alive(marker) == 0


def test_wall_clock_limit_holds_for_a_sleeping_tree(marker: str) -> None:
    program = f"""
        import os, sys, posix
        if posix.fork() == 0:
            {_sleeper(marker)}
        def add(a, b):
            os.wait()
            return a + b
    """
    grader = CodeGrader(timeout=LIMIT_S, memory_mb=512)
    grade = grader.grade(ADD, textwrap.dedent(program))
    assert grade.status == "timeout" and not grade.correct
    assert _alive(marker) == 0


def test_signals_cannot_reach_host_processes() -> None:
    program = f"""
        import os
        def add(a, b):
            try:
                os.kill({os.getpid()}, 0)  # 0: only asks whether the grader's process is reachable
                return a + b
            except OSError:
                return 0
    """
    assert not attack(program).correct


def test_no_nested_user_namespace() -> None:
    # Inside a user namespace of its own a program is root again (mounts, more namespaces).
    # Two layers: bwrap's --disable-userns and seccomp's refusal of unshare/clone flags.
    program = """
        import subprocess
        def add(a, b):
            done = subprocess.run(["unshare", "--user", "--map-root-user", "true"], capture_output=True)
            return a + b if done.returncode == 0 else 0
    """
    assert not attack(program).correct


def test_seccomp_refuses_network_sockets() -> None:
    # The empty network namespace would let the socket be created (and fail to connect);
    # the seccomp filter refuses the socket itself.
    program = """
        import socket
        def add(a, b):
            try:
                socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
                return a + b
            except OSError:
                return 0
    """
    assert not attack(program).correct


def test_environment_carries_no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two layers: bwrap --clearenv, and a fixed environment for bwrap itself.
    monkeypatch.setenv("DYNASOR_TEST_API_KEY", "sk-not-for-programs")
    program = """
        import os
        def add(a, b):
            return a + b if "DYNASOR_TEST_API_KEY" in os.environ else 0
    """
    assert not attack(program).correct


def test_memory_is_bounded() -> None:
    # An untouched mapping costs no time, so only the address-space limit can refuse it.
    program = """
        import mmap
        def add(a, b):
            try:
                mmap.mmap(-1, 4 * 2**30).close()
                return a + b
            except OSError:
                return 0
    """
    assert not attack(program).correct


def test_huge_output_is_cut_and_fails() -> None:
    program = """
        import sys
        for _ in range(1600):
            sys.stdout.write("x" * 65536)
        def add(a, b):
            return a + b
    """
    grade = attack(program)
    assert not grade.correct and "too much output" in grade.detail


def test_infinite_loop_times_out() -> None:
    grade = attack("def add(a, b):\n    while True:\n        pass\n")
    assert grade.status == "timeout" and not grade.correct


# -- the grade ------------------------------------------------------------------------------------


def test_exit_status_zero_before_the_tests_is_not_a_pass() -> None:
    grade = attack("def add(a, b):\n    return 0\nraise SystemExit(0)\n")
    assert not grade.correct


def test_os_exit_zero_before_the_tests_is_not_a_pass() -> None:
    grade = attack("import os\ndef add(a, b):\n    return 0\nos._exit(0)\n")
    assert not grade.correct


def test_printing_a_pass_or_writing_the_report_pipe_is_not_a_pass() -> None:
    program = FORGE + textwrap.dedent(
        """
        import sys
        print("PASSED", flush=True)
        forge("0" * 32, int(sys.argv[2]))
        def add(a, b):
            return 0
        """
    )
    assert not attack(program).correct


def test_closing_stdout_does_not_hide_the_report() -> None:
    # A right program that closes stdout and stderr still passes: the report has its own pipe.
    right = "import os\nos.close(1)\nos.close(2)\ndef add(a, b):\n    return a + b\n"
    assert attack(right).correct
    wrong = "import os\nos.close(1)\nos.close(2)\ndef add(a, b):\n    return 0\n"
    assert not attack(wrong).correct


def test_the_payload_pipe_is_empty_when_the_program_runs() -> None:
    program = FORGE + textwrap.dedent(
        """
        import os, re, sys
        try:
            data = os.read(int(sys.argv[1]), 1 << 20)
        except OSError:
            data = b""
        found = re.search(rb'"token": "([0-9a-f]{32})"', data)
        if found:
            forge(found.group(1).decode(), int(sys.argv[2]))
        def add(a, b):
            return 0
        """
    )
    assert not attack(program).correct


def test_frames_of_the_harness_are_out_of_reach() -> None:
    program = FORGE + textwrap.dedent(
        """
        import sys
        def steal():
            try:
                frame = sys._getframe(0)
            except ValueError:
                return
            while frame is not None:
                if "token" in frame.f_locals and "report_fd" in frame.f_locals:
                    forge(frame.f_locals["token"], frame.f_locals["report_fd"])
                frame = frame.f_back
        steal()
        def add(a, b):
            return 0
        """
    )
    assert not attack(program).correct


def test_traceback_frames_are_out_of_reach() -> None:
    program = FORGE + textwrap.dedent(
        """
        def steal():
            try:
                raise RuntimeError
            except RuntimeError as exc:
                try:
                    frame = exc.__traceback__.tb_frame
                except AttributeError:
                    return
            while frame is not None:
                if "token" in frame.f_locals and "report_fd" in frame.f_locals:
                    forge(frame.f_locals["token"], frame.f_locals["report_fd"])
                frame = frame.f_back
        steal()
        def add(a, b):
            return 0
        """
    )
    assert not attack(program).correct


def test_ctypes_is_refused() -> None:
    program = FORGE + textwrap.dedent(
        """
        import ctypes
        ctypes.pythonapi.PyEval_GetFrame.restype = ctypes.py_object
        frame = ctypes.pythonapi.PyEval_GetFrame()
        while frame is not None:
            if "token" in frame.f_locals and "report_fd" in frame.f_locals:
                forge(frame.f_locals["token"], frame.f_locals["report_fd"])
            frame = frame.f_back
        def add(a, b):
            return 0
        """
    )
    grade = attack(program)
    assert not grade.correct and "ctypes" in grade.detail


# Finds live and dead 32-character str objects (type pointer, length 32, the characters, a NUL)
# in a process's memory: in a fresh interpreter that is the token and little else.
SCAN = textwrap.dedent(
    """
    import re, struct
    def scan(pid, str_type):
        pattern = re.compile(re.escape(struct.pack("<Qq", str_type, 32)) + rb".{24}([0-9a-f]{32})\\x00", re.S)
        found = []
        with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
            for line in maps:
                span, perms = line.split()[:2]
                if not perms.startswith("rw"):
                    continue
                lo, hi = (int(x, 16) for x in span.split("-"))
                try:
                    mem.seek(lo)
                    chunk = mem.read(hi - lo)
                except (OSError, ValueError, OverflowError):
                    continue
                found += [m.group(1).decode() for m in pattern.finditer(chunk)]
        return found
    """
)


def test_proc_self_mem_is_refused() -> None:
    # Two layers: the audit hook closes /proc, and a non-dumpable process's mem file is root's.
    program = (
        FORGE
        + SCAN
        + textwrap.dedent(
            """
        import sys
        try:
            found = scan("self", id(str))
        except OSError:
            found = []
        if found:
            forge(found[0], int(sys.argv[2]))
        def add(a, b):
            return 0
        """
        )
    )
    assert not attack(program).correct


def test_another_process_cannot_read_the_harness_memory() -> None:
    # A fresh interpreter has no audit hook: what stops it is the harness being non-dumpable.
    program = FORGE + textwrap.dedent(
        f"""
        import os, subprocess, sys
        scanner = {SCAN!r} + "\\nimport sys\\nprint(*scan(sys.argv[1], int(sys.argv[2])))"
        argv = [sys.executable, "-c", scanner, str(os.getpid()), str(id(str))]
        out = subprocess.run(argv, capture_output=True, text=True)
        if out.stdout.split():
            forge(out.stdout.split()[0], int(sys.argv[2]))
        def add(a, b):
            return 0
        """
    )
    assert not attack(program).correct
