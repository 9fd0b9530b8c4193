"""Build the bundled MATH trace set from the Qwen2.5-Math reward/majority example.

Reads ``math_cot_100.jsonl`` (100 MATH questions x 8 sampled solutions) and writes it in the
trace format: text, extracted answer, correctness, reward score, and token counts
approximated from the text (``certaindex.approx_tokens``; the source records none).

    python scripts/build_math_traces.py ../shared/data/traces_qwen25math_rm_maj/math_cot_100.jsonl
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from certaindex import approx_tokens

OUT = Path(__file__).resolve().parents[1] / "dynasor" / "data" / "traces" / "math-qwen25.jsonl"


def convert(raw: dict) -> dict:
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
        "level": raw.get("level"),
    }


def main(source: str) -> None:
    lines = Path(source).read_text(encoding="utf-8").splitlines()
    with OUT.open("w", encoding="utf-8") as out:
        for line in lines:
            if line.strip():
                out.write(json.dumps(convert(json.loads(line)), ensure_ascii=False) + "\n")
    print(f"wrote {OUT} ({len(lines)} questions)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/traces_qwen25math_rm_maj/math_cot_100.jsonl")
