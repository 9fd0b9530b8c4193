"""Build the bundled MATH trace set from the Qwen2.5-Math reward/majority example.

Reads ``math_cot_100.jsonl`` (100 MATH questions x 8 sampled solutions) and writes it in the
trace format: text, extracted answer, correctness, reward score, and token counts
approximated from the text (``certaindex.approx_tokens``; the source records none).
Each question carries its MATH difficulty ``level`` (1-5, from the source) and its
``subject`` where the problem is also in MATH-500 (joined on the problem text; the source
has no subject, so the others get ``null``), for folds within the set.

    python scripts/build_math_traces.py [SOURCE] [MATH500]
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from certaindex import approx_tokens

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "dynasor" / "data" / "traces" / "math-qwen25.jsonl"
SOURCE = ROOT.parent / "shared" / "data" / "traces_qwen25math_rm_maj" / "math_cot_100.jsonl"
MATH500 = ROOT.parent / "shared" / "data" / "math500" / "test.jsonl"


def problem_key(text: str) -> str:
    """Problem text with runs of whitespace collapsed, for joining two copies of MATH."""
    return " ".join(text.split())


def level_number(level: object) -> int | None:
    """MATH's ``"Level 3"`` (or ``3``) as ``3``; ``None`` when there is no level (``"Level ?"``)."""
    match = re.fullmatch(r"(?:Level\s*)?(\d)", str(level).strip())
    return int(match.group(1)) if match else None


def subjects_by_problem(math500: Path) -> dict[str, str]:
    """MATH-500's subject of each problem, keyed by :func:`problem_key`."""
    if not math500.exists():
        print(f"{math500} not found: subjects left empty", file=sys.stderr)
        return {}
    rows = [json.loads(line) for line in math500.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {problem_key(row["problem"]): row["subject"] for row in rows}


def convert(raw: dict, subjects: dict[str, str] | None = None) -> dict:
    samples = [
        {
            "text": text,
            "answer": pred,
            "tokens": max(approx_tokens(text), 1),
            "correct": bool(correct),
            "score": float(score[0]) if isinstance(score, list) else float(score),
        }
        for text, pred, correct, score in zip(raw["code"], raw["pred"], raw["score"], raw["pred_score"], strict=True)
    ]
    return {
        "id": f"math-{raw['idx']}",
        "prompt": raw["question"],
        "reference": raw["gt"],
        "samples": samples,
        "level": level_number(raw.get("level")),
        "subject": (subjects or {}).get(problem_key(raw["question"])),
        "tokens_approx": True,  # approx_tokens above: the source records no counts
    }


def main(source: Path = SOURCE, math500: Path = MATH500) -> None:
    lines = [line for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    subjects = subjects_by_problem(math500)
    rows = [convert(json.loads(line), subjects) for line in lines]
    with OUT.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    with_subject = sum(row["subject"] is not None for row in rows)
    print(f"wrote {OUT} ({len(rows)} questions, {with_subject} with a subject from MATH-500)")


if __name__ == "__main__":
    main(*(Path(arg) for arg in sys.argv[1:3]))
