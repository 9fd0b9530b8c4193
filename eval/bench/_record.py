"""Record what a live engine generated, as replayable traces (trace format of the design doc).

A real-engine run with ``record_traces`` set writes every completed sample, grouped by
question, so that the same workload can be replayed on the simulated engine (its fitted
cost profile) as the run's simulated twin: same questions, same answers, same lengths.
Samples of the same question from several runs (policies, rates) are merged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from algorithms.protocol import Completion
from certaindex import extract_answer
from dynasor.engine.base import Backend, Capacity, EngineRequest

__all__ = ["RecordingBackend", "merge_traces"]


class RecordingBackend(Backend):
    """Passes requests to ``inner`` and keeps each completed sample's text, answer and length."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.model = inner.model
        self.samples: dict[str, list[dict[str, Any]]] = {}

    async def generate(self, request: EngineRequest) -> Completion:
        completion = await self.inner.generate(request)
        if request.request.tag == "sample" and completion.finish_reason in ("stop", "length"):
            self.samples.setdefault(request.query_id, []).append(
                {
                    "text": completion.text,
                    "answer": extract_answer(completion.text),
                    "tokens": completion.completion_tokens,
                    "finish_reason": completion.finish_reason,
                }
            )
        return completion

    def capacity(self) -> Capacity | None:
        return self.inner.capacity()

    async def aclose(self) -> None:
        await self.inner.aclose()


def merge_traces(path: str | Path, questions: Mapping[str, Mapping[str, Any]]) -> int:
    """Merge ``questions`` (``id -> {"prompt", "reference", "samples"}``) into the trace file.

    Returns the number of questions in the file afterwards.
    """
    out = Path(path)
    merged: dict[str, dict[str, Any]] = {}
    if out.exists():
        for line in out.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                merged[row["id"]] = row
    for qid, row in questions.items():
        if not row.get("samples"):
            continue
        entry = merged.setdefault(qid, {"id": qid, "prompt": row["prompt"], "reference": row.get("reference")})
        entry.setdefault("samples", []).extend(row["samples"])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r) + "\n" for r in merged.values()), encoding="utf-8")
    return len(merged)
