"""Build the HumanEval replay traces from CodeT's CodeGen-16B samples.

Reads the CodeT samples (164 problems x 100 completions, and 100 model-written test
samples per problem) and the HumanEval tests, runs every completion in the sandbox and
writes ``dynasor/data/traces/humaneval_codet.jsonl.gz`` in the trace format of DESIGN.md:

- ``answer``: the completion's *behaviour signature* on the model-written tests (one
  character per test: ``P`` passed, ``F`` assertion failed, ``E`` raised, ``T`` timed
  out), so two samples
  have equal answers exactly when the programs agree on those tests (CodeT's dual
  agreement); ``null`` when the program does not even load;
- ``correct``: whether it passes the real HumanEval ``check``;
- ``tokens``: :func:`certaindex.approx_tokens` of the completion (the source has no counts).

Every completion runs in the OS sandbox of ``eval/_sandbox.py`` (see docs/sandbox.md); where
none is available the build stops unless ``--unsafe-exec``. Runs are parallel on ``--workers``
processes; per-problem results are cached in ``--cache`` so an interrupted build resumes, and an
existing output is kept unless ``--force``.

Usage::

    python scripts/build_code_traces.py [--workers 2] [--force]
"""

from __future__ import annotations

import argparse
import difflib
import gzip
import json
import re
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from certaindex import approx_tokens
from eval import Check, Limits, run_checks

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
CODET = SHARED / "traces_codet_humaneval"
SOLUTIONS = CODET / "HumanEval_codegen16B_temp0.8_topp0.95_num100_max300_code_solution.jsonl"
TESTS = CODET / "HumanEval_codegen16B_temp0.8_topp0.95_num100_max300_test_case.jsonl"
HUMANEVAL = SHARED / "humaneval" / "HumanEval.jsonl.gz"
OUT = ROOT / "dynasor" / "data" / "traces" / "humaneval_codet.jsonl.gz"
CACHE = Path.home() / ".cache" / "dynasor" / "humaneval_codet_runs.jsonl"

MAX_TESTS = 50  # most frequent distinct model-written asserts kept per problem
STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")  # HumanEval's completion stop sequences

GENERATED_S = 0.25  # alarm of one model-written assert
CHECK_S = 5.0  # alarm of the real HumanEval check
SIGNATURE = {"P": "P", "F": "F", "T": "T"}  # any other outcome (an exception) is "E"


def _read_jsonl(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _join(solutions: list[dict], tests: list[dict], humaneval: list[dict]) -> list[tuple[dict, dict, dict]]:
    """Match CodeT rows to HumanEval problems (CodeT reorders them and drops the doctests)."""
    by_entry: dict[str, list[dict]] = {}
    for problem in humaneval:
        by_entry.setdefault(problem["entry_point"], []).append(problem)
    test_by_prefix = {t["prompt"][:200]: t for t in tests}
    joined = []
    for row in solutions:
        names = re.findall(r"^def\s+(\w+)\s*\(", row["prompt"], flags=re.M)
        candidates = [p for name in names for p in by_entry.get(name, [])]
        if not candidates:
            raise SystemExit(f"no HumanEval problem for CodeT prompt {row['prompt'][:80]!r}")
        problem = max(candidates, key=lambda p: difflib.SequenceMatcher(None, p["prompt"], row["prompt"]).ratio())
        test_row = test_by_prefix.get(row["prompt"][:200])
        if test_row is None:
            test_row = max(tests, key=lambda t: difflib.SequenceMatcher(None, t["prompt"], row["prompt"]).ratio())
        joined.append((row, test_row, problem))
    if len({p["task_id"] for _, _, p in joined}) != len(joined):
        raise SystemExit("two CodeT rows matched the same HumanEval problem")
    return joined


def generated_tests(test_row: dict, entry_point: str) -> list[str]:
    """The distinct runnable ``assert`` statements of a problem, most frequent first."""
    counts: Counter[str] = Counter()
    for sample in test_row["samples"]:
        for piece in ("assert " + sample).split("\nassert"):
            stmt = " ".join(("assert " + piece.strip().removeprefix("assert ")).split())
            if "____" in stmt or entry_point not in stmt:
                continue
            try:
                compile(stmt, "<test>", "exec")
            except SyntaxError:
                continue
            counts[stmt] += 1
    return [stmt for stmt, _ in counts.most_common(MAX_TESTS)]


def truncate(completion: str) -> str:
    """Cut a completion at HumanEval's stop sequences, as its evaluation does."""
    cut = min((i for s in STOP if (i := completion.find(s)) >= 0), default=len(completion))
    return completion[:cut]


def run_sample(
    prompt: str, completion: str, tests: list[str], check: str, entry: str, *, unsafe_exec: bool = False
) -> dict:
    """Run one completion in the sandbox: its signature on the generated asserts (a program that
    times out on three of them is marked ``T`` on the rest unrun) and whether it passes ``check``.
    All three come from the harness's verified report; no report means the program did not load."""
    checks = [Check(t, seconds=GENERATED_S) for t in tests]
    checks.append(Check(f"{check}\ncheck({entry})", seconds=CHECK_S, always=True))
    run = run_checks(
        prompt + truncate(completion),
        checks,
        limits=Limits(timeout=20.0, memory_mb=2048),
        load_seconds=3.0,
        stop_after_timeouts=3,
        unsafe_exec=unsafe_exec,
    )
    if not (run.verified and run.loaded):
        return {"loaded": False, "signature": "", "correct": False}
    *generated, final = run.outcomes
    signature = "".join(SIGNATURE.get(o, "E") for o in generated)
    return {"loaded": True, "signature": signature, "correct": final == "P"}


def build_problem(row: dict, test_row: dict, problem: dict, *, unsafe_exec: bool = False) -> dict:
    entry = problem["entry_point"]
    tests = generated_tests(test_row, entry)
    samples = []
    for completion in row["samples"]:
        res = run_sample(row["prompt"], completion, tests, problem["test"], entry, unsafe_exec=unsafe_exec)
        samples.append(
            {
                "text": completion,
                "answer": res["signature"] if res["loaded"] else None,
                "tokens": approx_tokens(completion),
                "correct": bool(res["correct"]),
            }
        )
    return {
        "id": problem["task_id"],
        "prompt": row["prompt"],
        "reference": problem["canonical_solution"],
        "n_generated_tests": len(tests),
        "tokens_approx": True,
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--limit", type=int, default=None, help="first N problems only (testing)")
    parser.add_argument("--force", action="store_true", help="rebuild even if --out exists")
    parser.add_argument(
        "--unsafe-exec",
        action="store_true",
        help="run the programs without isolation where bubblewrap cannot sandbox them (never the default)",
    )
    args = parser.parse_args(argv)
    if args.out.exists() and not args.force:
        print(f"{args.out} exists; --force to rebuild")
        return 0
    joined = _join(_read_jsonl(SOLUTIONS), _read_jsonl(TESTS), _read_jsonl(HUMANEVAL))[: args.limit]
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if args.cache.exists():
        done = {r["id"]: r for r in _read_jsonl(args.cache)}
    todo = [j for j in joined if j[2]["task_id"] not in done]
    print(f"{len(joined)} problems, {len(done)} cached, {len(todo)} to run", file=sys.stderr)
    with ThreadPoolExecutor(args.workers) as pool, args.cache.open("a", encoding="utf-8") as cache:
        for i, record in enumerate(pool.map(lambda j: build_problem(*j, unsafe_exec=args.unsafe_exec), todo), 1):
            done[record["id"]] = record
            cache.write(json.dumps(record) + "\n")
            cache.flush()
            acc = sum(s["correct"] for s in record["samples"]) / len(record["samples"])
            print(f"[{i}/{len(todo)}] {record['id']}: pass@1 {acc:.2f}", file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(args.out, "wt", encoding="utf-8") as fh:
        for _, _, problem in joined:
            record = {**done[problem["task_id"]], "tokens_approx": True}
            fh.write(json.dumps(record) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
