"""Build the CRUXEval-I replay traces from the recorded gpt-3.5-turbo-0613 samples.

CRUXEval (facebookresearch/cruxeval, MIT) gives 800 short Python functions ``f`` with one
input/output pair each. In *input prediction* (CRUXEval-I) the model sees the code and
``assert f(??) == <output>`` and must write a call ``f(...)`` that makes the assertion hold.
The CRUXEval repository records, for gpt-3.5-turbo-0613 at temperature 0.2, ten sampled
calls per problem (``model_generations/gpt-3.5-turbo-0613_temp0.2_input/generations.json``).
Nothing per sample is recorded beyond the call itself, so every distinct call runs in the
sandbox (``eval._sandbox.run_checks``, one isolated run per call, 5 s alarm), next to the
problem's code:

- ``answer``: the *behaviour* of the sampled call, a canonical ``repr`` of what ``f`` returns
  for it (sets printed sorted, so the string does not depend on hash seeds; a value whose
  text exceeds 300 characters is replaced by its type, length and a hash). Two samples agree
  exactly when their calls make ``f`` return the same value, the way CodeT-style behaviour
  signatures cluster programs. ``null`` when the call does not parse (a generation cut off at
  the token limit), raises, or runs into its alarm;
- ``correct``: CRUXEval's rule, ``f(<sampled call's arguments>) == <gold output>``, evaluated
  in the same run (so ``True`` and ``1`` agree as they do there);
- ``reference``: the canonical value of the gold output (the answer class that is correct);
  ``gold_input`` keeps the benchmark's own call;
- ``status`` per sample: ``ok``, ``syntax`` (did not parse), ``raises:<Exception>`` or
  ``timeout``;
- order: the source keeps the ten samples in the order drawn (it does not sort them), so the
  order is kept; ``tokens``: :func:`certaindex.approx_tokens` of the call (the source has none).

The build also runs each problem's own input and checks that it gives the recorded output;
a problem where it does not is reported (and marked ``gold_checks: false``).

Usage::

    python scripts/build_cruxeval_traces.py [--generations RAW] [--problems RAW] [--out PATH]
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from certaindex import approx_tokens
from eval import Check, Limits, run_checks

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "data" / "raw" / "traces_cruxeval_gpt35_input"
GENERATIONS = RAW / "gpt-3.5-turbo-0613_temp0.2_input.generations.json"
PROBLEMS = RAW / "cruxeval.problems.jsonl"
OUT = ROOT / "dynasor" / "data" / "traces" / "cruxeval_input-gpt35.jsonl.gz"

MAX_ANSWER_CHARS = 300
"""Longer value texts are replaced by a type/length/hash digest (the sandbox cuts reports at 2,000)."""

PROBE = f"""

def __dynasor_canon(value, depth=0):
    if depth > 50:
        return "..."
    kind = type(value)
    if kind in (set, frozenset):
        items = ", ".join(sorted(__dynasor_canon(v, depth + 1) for v in value))
        if kind is frozenset:
            return "frozenset({{" + items + "}})"
        return "{{" + items + "}}" if items else "set()"
    if kind is dict:
        return "{{" + ", ".join(
            __dynasor_canon(k, depth + 1) + ": " + __dynasor_canon(v, depth + 1) for k, v in value.items()
        ) + "}}"
    if kind is list:
        return "[" + ", ".join(__dynasor_canon(v, depth + 1) for v in value) + "]"
    if kind is tuple:
        inner = ", ".join(__dynasor_canon(v, depth + 1) for v in value)
        return "(" + inner + ("," if len(value) == 1 else "") + ")"
    return repr(value)


def __dynasor_probe(call, expected):
    value = call()
    try:
        same = bool(value == expected)
    except Exception:
        same = False
    text = __dynasor_canon(value)
    if len(text) > {MAX_ANSWER_CHARS}:
        import hashlib
        digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        text = "<" + type(value).__name__ + " len=" + str(len(text)) + " sha1=" + digest + ">"
    return (text, same)
"""
"""Helpers appended to a problem's code: run one call and report its canonical value and CRUXEval's check."""


def read_problems(text: str) -> list[dict[str, str]]:
    """The CRUXEval problems (``code``, ``input``, ``output``, ``id``), one JSON object a line."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def read_generations(text: str) -> dict[str, list[str]]:
    """The recorded samples: problem id -> its sampled calls, in the order recorded."""
    data = json.loads(text)
    return {str(k): [str(s) for s in v] for k, v in data.items()}


def probe_source(call: str, output: str) -> str:
    """The check that evaluates ``call`` and compares it with ``output`` (newlines keep comments harmless)."""
    return f"__dynasor_probe(lambda: (\n{call}\n), (\n{output}\n))"


def read_outcome(outcome: str | None) -> tuple[str, str | None, bool]:
    """``(status, answer, correct)`` from the sandbox outcome of one probe."""
    if outcome is None:
        return "unloaded", None, False
    if outcome == "T":
        return "timeout", None, False
    if outcome.startswith("E"):
        name = outcome[1:] or "Exception"
        return ("syntax" if name == "SyntaxError" else f"raises:{name}"), None, False
    try:
        text, same = ast.literal_eval(outcome[1:])
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return "unreadable", None, False
    return "ok", str(text), bool(same)


def run_probe(code: str, call: str, output: str) -> str | None:
    """Run one call against the problem's code in a fresh sandbox; the raw outcome (``None``: no report)."""
    run = run_checks(
        code + PROBE, [Check(probe_source(call, output), mode="eval", seconds=5.0)], limits=Limits(timeout=15.0)
    )
    if not (run.verified and run.loaded and run.outcomes):
        return None
    return run.outcomes[0]


def build_question(
    problem: dict[str, str], calls: Sequence[str], execute: Callable[[str, str, str], str | None] = run_probe
) -> dict[str, Any]:
    """One trace line: the gold call checked, each distinct sampled call run once, answers and correctness."""
    code, output = problem["code"], problem["output"]
    gold_call = f"f({problem['input']})"
    gold_status, reference, gold_ok = read_outcome(execute(code, gold_call, output))
    results = {call: read_outcome(execute(code, call, output)) for call in dict.fromkeys(calls)}
    samples = []
    for call in calls:
        status, answer, correct = results[call]
        samples.append(
            {
                "text": call,
                "answer": answer,
                "tokens": max(approx_tokens(call), 1),
                "correct": correct,
                "status": status,
            }
        )
    return {
        "id": f"cruxeval-i-{problem['id'].removeprefix('sample_')}",
        "prompt": f"{code}\nassert f(??) == {output}\n",
        "reference": reference,
        "kind": "code",
        "tokens_approx": True,
        "gold_input": gold_call,
        "gold_output": output,
        "gold_checks": gold_status == "ok" and gold_ok,
        "samples": samples,
    }


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """pass@1 (mean sample accuracy), majority@N accuracy and the share of samples with no answer."""
    samples = [s for r in rows for s in r["samples"]]
    majority_right = 0
    for row in rows:
        votes = Counter(s["answer"] for s in row["samples"] if s["answer"] is not None)
        if votes:
            top = votes.most_common(1)[0][0]
            majority_right += any(s["correct"] for s in row["samples"] if s["answer"] == top)
    return {
        "questions": len(rows),
        "samples": len(samples),
        "pass@1": sum(s["correct"] for s in samples) / len(samples),
        "majority": majority_right / len(rows),
        "no_answer": sum(s["answer"] is None for s in samples) / len(samples),
    }


def write_rows(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """One JSON object a line; gzip when the name ends in ``.gz`` (fixed mtime, so rebuilds are byte-identical)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(json.dumps(row) + "\n" for row in rows).encode("utf-8")
    if path.suffix == ".gz":
        with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generations", type=Path, default=GENERATIONS, help="CRUXEval generations.json")
    parser.add_argument("--problems", type=Path, default=PROBLEMS, help="CRUXEval problems (jsonl)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args(argv)
    problems = read_problems(args.problems.read_text(encoding="utf-8"))
    generations = read_generations(args.generations.read_text(encoding="utf-8"))
    missing = [p["id"] for p in problems if p["id"] not in generations]
    if missing:
        print(f"no generations for {len(missing)} problem(s): {missing[:5]}", file=sys.stderr)
        return 1
    with ThreadPoolExecutor(args.workers) as pool:
        rows = list(pool.map(lambda p: build_question(p, generations[p["id"]]), problems))
    write_rows(rows, args.out)
    stats = summary(rows)
    statuses = Counter(s["status"].split(":")[0] for r in rows for s in r["samples"])
    failed = [r["id"] for r in rows if not r["gold_checks"]]
    print(
        f"wrote {args.out}: "
        + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in stats.items())
        + f"; sample status {dict(statuses)}"
    )
    print(f"gold input does not give the recorded output on {len(failed)} problem(s): {failed}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
