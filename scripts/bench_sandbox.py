"""Code-grading throughput and sandbox start-up cost, isolated against the grader it replaced.

Grades HumanEval's 164 problems x 16 recorded CodeGen-16B completions (the bundled CodeT
traces) in parallel, three ways, and prints programs per second for each:

- ``sandbox``: :class:`eval.CodeGrader` as shipped (bubblewrap + seccomp + limits, verified report);
- ``unisolated``: the same harness and limits as plain subprocesses (what ``--unsafe-exec`` runs
  where there is no isolation);
- ``before`` (with ``--before REV``): the previous ``eval/_sandbox.py`` read from git at ``REV``
  (subprocess with a patching preamble, rlimits and ``unshare -rn``; graded by exit status).

Start-up cost: the median wall time of running ``pass`` N times, one after the other, each way.
Agreement: how often each way's grade matches the correctness recorded in the trace.

Usage::

    python scripts/bench_sandbox.py [--workers 2] [--samples 16] [--before 1467494] [--startup 40]
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from unittest import mock

from eval import CodeGrader, Isolation, Problem, candidate_program, isolation, load_problems, run_python

ROOT = Path(__file__).resolve().parents[1]
TRACES = ROOT / "dynasor" / "data" / "traces" / "humaneval_codet.jsonl.gz"
TIMEOUT_S = 10.0


def _workload(samples: int) -> list[tuple[Problem, str, bool]]:
    problems = {p.id: p for p in load_problems("humaneval")}
    work = []
    with gzip.open(TRACES, "rt", encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            for sample in row["samples"][:samples]:
                work.append((problems[row["id"]], sample["text"], bool(sample["correct"])))
    return work


def _old_module(rev: str) -> ModuleType:
    source = subprocess.run(
        ["git", "show", f"{rev}:eval/_sandbox.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    path = Path(tempfile.mkdtemp(prefix="dynasor-bench-")) / "old_sandbox.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("old_sandbox", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _throughput(grade: Callable[[Problem, str], bool], work: list[tuple[Problem, str, bool]], workers: int) -> dict:
    start = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        grades = list(pool.map(lambda item: grade(item[0], item[1]), work))
    seconds = time.monotonic() - start
    agree = sum(g == recorded for g, (_, _, recorded) in zip(grades, work, strict=True))
    return {
        "programs": len(work),
        "seconds": round(seconds, 1),
        "programs_per_s": round(len(work) / seconds, 1),
        "pass_rate": round(sum(grades) / len(work), 4),
        "agrees_with_trace": round(agree / len(work), 4),
    }


def _startup(run: Callable[[], object], n: int) -> float:
    times = []
    for _ in range(n):
        start = time.monotonic()
        run()
        times.append(time.monotonic() - start)
    return round(statistics.median(times) * 1000, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--samples", type=int, default=16, help="completions per problem (of 100 recorded)")
    parser.add_argument("--limit", type=int, default=None, help="first N programs only")
    parser.add_argument("--before", default=None, help="git revision of the grader to compare against")
    parser.add_argument("--startup", type=int, default=40, help="runs of `pass` for the start-up median")
    args = parser.parse_args(argv)

    iso = isolation()
    if not iso.available:
        print(f"no isolation here: {iso.reason}", file=sys.stderr)
        return 2
    work = _workload(args.samples)[: args.limit]
    print(f"# real machine: {os.cpu_count()} cores, {args.workers} workers; {iso.describe()}")
    print(
        f"# workload: {len(work)} HumanEval programs (CodeT traces, {args.samples} per problem), timeout {TIMEOUT_S} s"
    )

    unisolated = mock.patch("eval._sandbox.isolation", lambda: Isolation(False, reason="benchmark"))
    old = _old_module(args.before) if args.before else None

    print(f"\n| start-up (median of {args.startup} runs of `pass`) | ms |\n|---|---:|", flush=True)
    python = iso.python or sys.executable
    plain = _startup(lambda: subprocess.run([python, "-I", "-S", "-c", "pass"], check=True), args.startup)
    print(f"| `python -I -S -c pass` | {plain} |", flush=True)
    print(f"| sandbox | {_startup(lambda: run_python('pass'), args.startup)} |", flush=True)
    with unisolated:
        ms = _startup(lambda: run_python("pass", unsafe_exec=True), args.startup)
    print(f"| unisolated | {ms} |", flush=True)
    if old is not None:
        print(f"| before ({args.before}) | {_startup(lambda: old.run_python('pass'), args.startup)} |", flush=True)

    print(
        "\n| grader | programs | seconds | programs/s | pass rate | agrees with trace |"
        "\n|---|---:|---:|---:|---:|---:|",
        flush=True,
    )

    def row(name: str, r: dict) -> None:
        print(
            f"| {name} | {r['programs']} | {r['seconds']} | {r['programs_per_s']} | {r['pass_rate']:.1%} "
            f"| {r['agrees_with_trace']:.1%} |",
            flush=True,
        )

    grader = CodeGrader(timeout=TIMEOUT_S, workers=args.workers, cache_size=0)
    row("sandbox", _throughput(lambda p, t: grader.grade(p, t).correct, work, args.workers))
    unsafe = CodeGrader(timeout=TIMEOUT_S, workers=args.workers, cache_size=0, unsafe_exec=True)
    with unisolated:
        row("unisolated", _throughput(lambda p, t: unsafe.grade(p, t).correct, work, args.workers))
    if old is not None:

        def old_grade(problem: Problem, text: str) -> bool:
            code = candidate_program(problem, text)
            if code is None:
                return False
            return bool(old.run_python(f"{code}\n\n{problem.tests}", timeout=TIMEOUT_S).status == "ok")

        row(f"before ({args.before})", _throughput(old_grade, work, args.workers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
