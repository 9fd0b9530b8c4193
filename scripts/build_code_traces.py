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

Runs are parallel on ``--workers`` processes; per-problem results are cached in
``--cache`` so an interrupted build resumes, and an existing output is kept unless
``--force``.

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
from eval._sandbox import run_python

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

# Runs inside the sandbox: load the program, run each generated assert with its own alarm,
# then the real HumanEval check. The result goes to a dup of stdout taken before the
# program runs, so a program that closes or redirects stdout cannot hide it.
_HARNESS = """
import json as _json, os as _os, signal as _signal
_res = _os.fdopen(_os.dup(1), "w")
def _alarm(signum, frame):
    raise TimeoutError
_signal.signal(_signal.SIGALRM, _alarm)
def _run(src, env, seconds):
    _signal.setitimer(_signal.ITIMER_REAL, seconds)
    try:
        exec(src, env)
    finally:
        _signal.setitimer(_signal.ITIMER_REAL, 0)
_env = {"__name__": "__sandbox__"}
_out = {"loaded": True, "signature": "", "correct": False}
try:
    _run(PROGRAM, _env, 3.0)
except BaseException:
    _out["loaded"] = False
if _out["loaded"]:
    _sig, _slow = [], 0
    for _t in GENERATED:
        if _slow >= 3:  # a program that loops on three tests loops on the rest
            _sig.append("T")
            continue
        try:
            _run(_t, dict(_env), 0.25)
            _sig.append("P")
        except AssertionError:
            _sig.append("F")
        except TimeoutError:
            _sig.append("T")
            _slow += 1
        except BaseException:
            _sig.append("E")
    _out["signature"] = "".join(_sig)
    try:
        _run(CHECK + "\\ncheck(" + ENTRY + ")", dict(_env), 5.0)
        _out["correct"] = True
    except BaseException:
        pass
_res.write("@@RESULT@@" + _json.dumps(_out) + "\\n")
_res.flush()
"""


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


def run_sample(prompt: str, completion: str, tests: list[str], check: str, entry: str) -> dict:
    code = (
        f"PROGRAM = {prompt + truncate(completion)!r}\nGENERATED = {tests!r}\n"
        f"CHECK = {check!r}\nENTRY = {entry!r}\n" + _HARNESS
    )
    result = run_python(code, timeout=20.0, memory_mb=2048)
    for line in result.stdout.splitlines():
        if line.startswith("@@RESULT@@"):
            return json.loads(line.removeprefix("@@RESULT@@"))
    return {"loaded": False, "signature": "", "correct": False}


def build_problem(row: dict, test_row: dict, problem: dict) -> dict:
    entry = problem["entry_point"]
    tests = generated_tests(test_row, entry)
    samples = []
    for completion in row["samples"]:
        res = run_sample(row["prompt"], completion, tests, problem["test"], entry)
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
        for i, record in enumerate(pool.map(lambda j: build_problem(*j), todo), 1):
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
