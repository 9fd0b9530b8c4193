"""Build the SVAMP replay traces from Program-of-Thoughts' self-consistency samples.

The source (TIGER-AI-Lab/Program-of-Thoughts, ``outputs/svamp_sc_s0_e-1_11_08_14_02.jsonl``)
holds, per SVAMP question, 30 Python programs sampled from code-davinci-002 (T=0.5, PoT
prompt) and the gold answer. It records no per-sample answer, so every program runs in the
sandbox (``eval._sandbox.run_checks``) and its ``ans`` variable is read back:

- ``answer``: ``ans`` as a number string (``"17"``, ``"0.5357142857"``), signed as in the run that
  wrote the file (its recorded majorities include negative values); ``null`` when the program fails,
  sets no ``ans`` or sets a non-number;
- ``correct``: the value rounded to the precision of the shorter of it and the gold answer
  (PoT's SVAMP rule) equals the gold answer;
- order: PoT stores the 30 completions sorted by total log-probability, not in the order they
  were drawn. Replaying that order would put the likeliest programs first and flatter early
  stopping, so the samples are put in a seeded random order per question (the draws are
  exchangeable); ``logprob_rank`` keeps each sample's place in the source (0 = likeliest);
- ``tokens``: :func:`certaindex.approx_tokens` of the program (the source has no counts).

The raw copy may be a prefix of the source file (only the first part could be fetched); a
trailing partial line is ignored. The script checks that the majority of the extracted answers
equals the majority PoT recorded (``executed``) and says where it does not.

Usage::

    python scripts/build_svamp_traces.py [RAW] [--out PATH]
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import random
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from certaindex import approx_tokens
from eval import Check, Limits, run_checks

ROOT = Path(__file__).resolve().parents[1]
RAW = ROOT / "data" / "raw" / "traces_pot_svamp_sc" / "svamp_sc_s0_e-1_11_08_14_02.prefix.jsonl"
OUT = ROOT / "dynasor" / "data" / "traces" / "svamp-codex.jsonl"
ORDER_SEED = "svamp-codex"
"""Seed of the per-question sample order (with the question's index)."""


def read_records(text: str) -> list[dict[str, Any]]:
    """The question records of a (possibly truncated) PoT output file, in file order.

    The first line (``{"demonstration": ...}``) is the few-shot prompt, not a question; a last
    line cut off by the prefix fetch is dropped.
    """
    records = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # the truncated tail of a prefix copy
        if "generated" in record:
            records.append(record)
    return records


def value_of(outcome: str | None) -> float | None:
    """The number a program's ``ans`` held, from the sandbox's ``=<repr>`` outcome.

    Follows PoT's reading of ``ans``: a dict gives its first value, a list or tuple its first
    element, a bool counts as 0/1; anything that is not a finite real number gives ``None``.
    """
    if outcome is None or not outcome.startswith("="):
        return None
    text = outcome[1:]
    try:
        value: Any = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        try:
            value = float(text)
        except ValueError:
            return None
    if isinstance(value, dict):
        value = next(iter(value.values()), None)
    elif isinstance(value, (list, tuple)):
        value = value[0] if value else None
    if isinstance(value, int | float):  # bool is an int: 0 or 1
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def number_key(value: float) -> str:
    """A canonical string for a number: integers without a decimal point, else 10 significant digits."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.10g}"


def _decimals(value: float) -> int:
    text = str(value)
    return len(text.split(".")[-1]) if "." in text else 5


def is_correct(value: float | None, gold: float) -> bool:
    """PoT's SVAMP check: equal after rounding both to the fewer decimals of the two."""
    if value is None:
        return False
    places = min(_decimals(value), _decimals(gold))
    return round(value, places) == round(gold, places)


def sampling_order(n: int, index: int) -> list[int]:
    """A seeded random order of the ``n`` source positions of question ``index``."""
    order = list(range(n))
    random.Random(f"{ORDER_SEED}:{index}").shuffle(order)
    return order


def run_program(program: str) -> str | None:
    """Run one program in the sandbox and return the outcome of evaluating ``ans``."""
    run = run_checks(program, [Check("ans", mode="eval", seconds=5.0)], limits=Limits(timeout=15.0))
    if not (run.verified and run.loaded and run.outcomes):
        return None
    return run.outcomes[0]


def build_question(
    record: dict[str, Any], index: int, execute: Callable[[str], str | None] = run_program
) -> dict[str, Any]:
    """One trace line: programs run (each distinct program once), answers, correctness, order."""
    programs: Sequence[str] = record["generated"]
    outcomes = {program: execute(program) for program in dict.fromkeys(programs)}
    gold = float(record["answer"])
    values = [value_of(outcomes[p]) for p in programs]
    answers = [None if v is None else number_key(v) for v in values]
    samples = [
        {
            "text": programs[i],
            "answer": answers[i],
            "tokens": max(approx_tokens(programs[i]), 1),
            "correct": is_correct(values[i], gold),
            "logprob_rank": i,
        }
        for i in sampling_order(len(programs), index)
    ]
    votes = Counter(a for a in answers if a is not None)  # source order, as PoT counted
    executed = record.get("executed")
    return {
        "id": f"svamp-{index}",
        "prompt": f"# Passage: {record['passage']}\n# Question: {record['question']}\n",
        "reference": number_key(gold),
        "kind": "math",
        "tokens_approx": True,
        "source_majority": None if executed is None else number_key(float(executed)),
        "majority_matches_source": bool(votes)
        and executed is not None
        and votes.most_common(1)[0][0] == number_key(float(executed)),
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw", nargs="?", type=Path, default=RAW, help="PoT svamp_sc output (or a prefix of it)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    records = read_records(args.raw.read_text(encoding="utf-8"))
    with ThreadPoolExecutor(args.workers) as pool:
        rows = list(pool.map(lambda item: build_question(item[1], item[0]), enumerate(records)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    stats = summary(rows)
    mismatched = [r["id"] for r in rows if not r["majority_matches_source"]]
    print(
        f"wrote {args.out}: "
        + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in stats.items())
    )
    print(
        f"majority differs from the source's recorded one on {len(mismatched)} question(s): {mismatched}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
