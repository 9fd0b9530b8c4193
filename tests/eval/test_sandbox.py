"""The code sandbox (``eval/_sandbox.py``): scripts, checks, the verified report, refusal without isolation.

The escapes a hostile program tries are in ``test_sandbox_escapes.py``.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import secrets
import shutil

import pytest

import eval._isolation as eval_isolation
import eval._sandbox as sandbox
from eval._isolation import Isolation, isolation
from eval._sandbox import (
    Check,
    Limits,
    SandboxUnavailable,
    _parse_report,
    run_checks,
    run_python,
    run_python_async,
    runs_started,
)
from tests.conftest import in_ci


@pytest.fixture(autouse=True)
def _isolated() -> None:
    iso = isolation()
    if not iso.available:
        if in_ci():
            pytest.fail(f"CI must run the sandbox tests isolated: {iso.reason}", pytrace=False)
        pytest.skip(iso.reason)


def test_runs_isolated_and_captures() -> None:
    r = run_python("import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)")
    assert (r.status, r.returncode, r.stdout, r.stderr.strip(), r.isolated) == ("error", 3, "out\n", "err", True)


def test_program_is_pid_2_of_its_own_namespace_as_nobody() -> None:
    r = run_python("import os; print(os.getpid(), os.getuid(), sorted(os.listdir('/')))")
    pid, uid, rest = r.stdout.split(" ", 2)
    assert (pid, uid) == ("2", "65534")
    assert "etc" not in rest and "home" not in rest and "work" not in rest


def test_timeout_kills_and_counts_one_run() -> None:
    before = runs_started()
    r = run_python("while True: pass", timeout=0.5)
    assert r.status == "timeout" and r.returncode is None
    assert runs_started() - before == 1


def test_tmp_is_private_and_gone_afterwards() -> None:
    first = run_python("open('/tmp/f.txt', 'w').write('x'); import os; print(os.getcwd())")
    assert first.status == "ok" and first.stdout == "/tmp\n"
    second = run_python("import os; print(os.listdir('/tmp'))")
    assert second.stdout == "[]\n"


async def test_async_variant_feeds_stdin_and_times_out() -> None:
    r = await run_python_async("print(input()[::-1])", stdin="abc\n")
    assert r.stdout == "cba\n"
    r = await run_python_async("import time; time.sleep(30)", timeout=0.5)
    assert r.status == "timeout"


async def test_cancelling_the_awaiting_task_kills_the_sandbox() -> None:
    marker = f"dynasor-cancel-{secrets.token_hex(4)}"
    code = (
        f"import os, sys\nos.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}])"
    )
    task = asyncio.create_task(run_python_async(code, timeout=60))
    for _ in range(200):
        await asyncio.sleep(0.05)
        if _alive(marker):
            break
    assert _alive(marker) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(40):  # the worker thread notices the cancellation within a poll interval
        if not _alive(marker):
            break
        await asyncio.sleep(0.05)
    assert _alive(marker) == 0


def test_checks_report_each_outcome() -> None:
    program = (
        "def f(x):\n    if x < 0:\n        raise ValueError(x)\n    while x == 7:\n        pass\n    return 2 * x\n"
    )
    checks = [
        Check("assert f(2) == 4"),
        Check("assert f(2) == 5"),
        Check("f(-1)"),
        Check("f(7)", seconds=0.3),
        Check("f(3)", mode="eval"),
    ]
    run = run_checks(program, checks, limits=Limits(timeout=5))
    assert run.verified and run.loaded
    assert run.outcomes == ("P", "F", "EValueError", "T", "=6")
    assert not run.passed


def test_stop_after_timeouts_skips_the_rest() -> None:
    run = run_checks("def f():\n    while True: pass\n", [Check("f()", seconds=0.2)] * 5, stop_after_timeouts=2)
    assert run.outcomes == ("T", "T", "T", "T", "T")
    assert run.result.seconds < 3  # two alarms ran, not five


def test_a_program_that_does_not_load_is_reported_as_such() -> None:
    run = run_checks("x = undefined_name\n", [Check("assert True")])
    assert run.verified and not run.loaded and run.outcomes == () and "NameError" in run.detail


# -- the report: only an exact record under this run's token counts ------------------------------


def _record(token: str, *fields: str) -> bytes:
    return (token + "\n" + "".join(f"{len(f)}:{f}" for f in fields)).encode()


def test_report_parsing_accepts_only_the_exact_record() -> None:
    token = secrets.token_hex(16)
    assert _parse_report(_record(token, "1", "", "P"), token) == ["1", "", "P"]
    assert _parse_report(_record(token, "1", "a:b\n3:x", "P", "=1"), token) == ["1", "a:b\n3:x", "P", "=1"]
    assert _parse_report(_record(secrets.token_hex(16), "1", "", "P"), token) is None  # another token
    assert _parse_report(b"junk" + _record(token, "1", "", "P"), token) is None  # bytes before it
    other = token[:-1] + ("1" if token.endswith("0") else "0")  # one character off
    assert _parse_report(_record(token, "1", "", "P") + b"1:P", other) is None
    assert _parse_report(_record(token, "1", "", "P")[:-1], token) is None  # truncated
    assert _parse_report(_record(token, "1", "", "P") + b"x", token) is None  # trailing garbage
    assert _parse_report(b"", token) is None


# -- refusal where there is no isolation ---------------------------------------------------------


@pytest.fixture
def no_isolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "isolation", lambda: Isolation(False, reason="user namespaces are disabled"))


@pytest.mark.usefixtures("no_isolation")
def test_without_isolation_untrusted_code_is_refused_with_the_reason() -> None:
    before = runs_started()
    with pytest.raises(SandboxUnavailable, match=r"user namespaces are disabled.*--unsafe-exec"):
        run_python("print(1)")
    with pytest.raises(SandboxUnavailable):
        run_checks("def f(): pass", [Check("f()")])
    assert runs_started() == before  # nothing ran


@pytest.mark.usefixtures("no_isolation")
def test_unsafe_exec_runs_unisolated_with_the_same_limits_and_report(tmp_path: os.PathLike[str]) -> None:
    r = run_python("import os; print(os.getpid() != 2)", unsafe_exec=True)
    assert r.status == "ok" and r.stdout == "True\n" and not r.isolated
    r = run_python("while True: pass", timeout=0.5, unsafe_exec=True)
    assert r.status == "timeout"
    run = run_checks("def f(x):\n    return x\n", [Check("assert f(1) == 1")], unsafe_exec=True)
    assert run.passed and not run.result.isolated


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


@pytest.mark.parametrize(("flag", "expected"), [([], False), (["--unsafe-exec"], True)])
def test_eval_command_passes_unsafe_exec_to_the_grader(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str], flag: list[str], expected: bool
) -> None:
    import eval as eval_package

    seen: list[bool] = []

    def fake_run_eval(config, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(config.unsafe_exec)
        raise SandboxUnavailable("refusing to run model-written code: no sandbox here")

    monkeypatch.setattr(eval_package, "run_eval", fake_run_eval)
    from typer.testing import CliRunner

    from dynasor_cli import app

    args = ["eval", "--dataset", "humaneval", "--limit", "1", "--out", str(tmp_path), *flag]
    result = CliRunner().invoke(app, args)
    assert seen == [expected]
    assert result.exit_code == 2 and "refusing to run model-written code" in result.output


@pytest.mark.skipif(os.geteuid() != 0, reason="only root drops to nobody before starting bwrap")
def test_bwrap_under_a_root_only_directory_still_starts(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A venv in /root (mode 0700) holds bwrap where nobody cannot reach it: the probe uses a copy."""
    original = pathlib.Path(isolation().bwrap or "")
    private = tmp_path / "home"
    private.mkdir(mode=0o700)
    site = private / "site-packages"
    shutil.copytree(original.parents[1], site / original.parents[1].name)
    libs = original.parents[2] / f"{original.parents[1].name}.libs"
    if libs.is_dir():
        shutil.copytree(libs, site / libs.name)
    hidden = site / original.relative_to(original.parents[2])
    monkeypatch.setattr(eval_isolation, "_bwrap_binary", lambda: str(hidden))
    isolation.cache_clear()
    try:
        found = isolation()
    finally:
        isolation.cache_clear()
    assert found.available, found.reason
    assert found.bwrap != str(hidden) and os.access(found.bwrap or "", os.X_OK)
