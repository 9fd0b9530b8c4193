"""The HTTP reward scorer against a real vLLM pooling server (classification head)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from algorithms.protocol import Completion, QueryInfo
from dynasor.scorers import HttpRewardScorer

pytestmark = pytest.mark.engine

PROMPT = "What is 2 + 2?"
RESPONSES = [Completion(text, 1, 1, "stop") for text in ("The answer is \\boxed{4}.", "It is 5.", "Four.")]


def joined(prompt: object, response: str) -> str:
    return f"Question: {prompt}\nAnswer: {response}"


@pytest.mark.parametrize("endpoint", ["classify", "pooling"])
def test_scores_come_from_the_served_head(reward_engine, endpoint: str) -> None:  # type: ignore[no-untyped-def]
    async def main() -> list[float]:
        scorer = HttpRewardScorer(reward_engine.url, endpoint=endpoint, template=joined)  # type: ignore[arg-type]
        try:
            return await scorer.score(QueryInfo("q", PROMPT), PROMPT, RESPONSES)
        finally:
            await scorer.aclose()

    scores = asyncio.run(main())
    assert len(scores) == len(RESPONSES)
    assert all(0.0 <= s <= 1.0 for s in scores)
    # The scorer's numbers are the server's own: the last class's probability from /classify.
    direct = httpx.post(
        f"{reward_engine.url}/classify",
        json={"model": reward_engine.model, "input": [joined(PROMPT, r.text) for r in RESPONSES]},
        timeout=60,
    ).json()
    assert scores == pytest.approx([row["probs"][-1] for row in direct["data"]], abs=1e-4)
