"""Chain and step sources of the sim engine: chunks continue the chain, probes settle, steps branch."""

from __future__ import annotations

import pytest

from algorithms.protocol import GenerateRequest
from dynasor.engine.base import EngineRequest
from dynasor.engine.sim import (
    ReplayChainSource,
    ReplayStepSource,
    SyntheticChainSource,
    SyntheticStepSource,
    continued_text,
)

USER = [{"role": "user", "content": "What is 6 times 7?"}]


def req(assistant: str | None, max_tokens: int = 64, tag: str = "chunk", stop: tuple[str, ...] = ()) -> EngineRequest:
    prompt = USER if assistant is None else [*USER, {"role": "assistant", "content": assistant}]
    return EngineRequest("r", "q", GenerateRequest(prompt, max_tokens, stop=stop, tag=tag))


def decode(source, chunk: int = 64, prefix: str = "") -> tuple[str, list[int]]:
    """Decode the chain to its end as the CoT program does; return the text and chunk sizes."""
    text, sizes = prefix, []
    while True:
        draft = source.draft(req(text or None, chunk))
        take = min(draft.tokens, chunk)
        piece = draft.text if draft.tokens <= chunk else draft.text[: len(draft.text) * chunk // draft.tokens]
        text += piece
        sizes.append(take)
        if draft.tokens <= chunk:
            return text, sizes


@pytest.mark.parametrize("prefix", ["", "<think>\n"])
def test_synthetic_chunks_reassemble_the_whole_chain(prefix):
    source = SyntheticChainSource(seed=2, min_tokens=300, max_tokens=600)
    text, sizes = decode(source, prefix=prefix)
    chain = source._chains["q"]
    assert text == prefix + chain.text and sum(sizes) == chain.tokens
    assert all(s == 64 for s in sizes[:-1])


def test_synthetic_probes_settle_on_the_final_answer():
    source = SyntheticChainSource(seed=4, min_tokens=400, max_tokens=400, noise=0.0)
    source.set_difficulty("q", 0.5)
    text, _ = decode(source)
    chain = source._chains["q"]
    settle = chain.meta["settle_token"]
    after = [source.draft(req(text[: 5 * t], tag="probe")).meta["probe_answer"] for t in range(settle, settle + 30)]
    before = [source.draft(req(text[: 5 * t], tag="probe")).meta["probe_answer"] for t in range(1, min(settle, 30))]
    assert set(after) == {chain.answer}
    assert len(set(before)) > len(before) / 2  # guesses wander


def test_replayed_chain_is_the_recorded_text_and_its_probes_use_it():
    source = ReplayChainSource("math-qwen25", seed=0)
    source.draft(EngineRequest("r", "math-0", GenerateRequest(USER, 8)))
    chain = source._chains["math-0"]
    first = chain.text.find(chain.answer)
    late = source.draft(
        EngineRequest(
            "r",
            "math-0",
            GenerateRequest(
                [*USER, {"role": "assistant", "content": chain.text[: first + len(chain.answer)]}], 8, tag="probe"
            ),
        )
    )
    assert late.meta["probe_answer"] == chain.answer
    assert source.reference("math-0") == "420"


def test_step_requests_stop_at_the_delimiter_and_rollouts_reach_an_answer():
    source = SyntheticStepSource(seed=0, min_steps=4, max_steps=4, spread=0)
    step = source.draft(req(None, 256, tag="expand", stop=("\n\n",)))
    assert step.text.index("\n\n") > 0 and "boxed" not in step.text.split("\n\n")[0]
    first = step.text.split("\n\n")[0]
    rollout = source.draft(req(first + "\n\n", 1024, tag="rollout"))
    parts = rollout.text.split("\n\n")
    assert len(parts) == 3 and "\\boxed{" in parts[-1] and rollout.meta["final"]
    assert parts[0].startswith("Step 2") and rollout.meta["depth"] == 4


def test_synthetic_steps_are_reproducible_per_seed():
    def trace(seed):
        source = SyntheticStepSource(seed=seed)
        return [source.draft(req(None, 1024, tag="rollout")).text for _ in range(4)]

    assert trace(7) == trace(7) != trace(8)


def test_replayed_steps_splice_recorded_samples():
    source = ReplayStepSource("math-qwen25", seed=0)
    step = source.draft(EngineRequest("r", "math-0", GenerateRequest(USER, 256, stop=("\n\n",))))
    first = step.text.split("\n\n")[0]
    record = source._records.matcher.records[0]
    assert any(s.text.startswith(first) for s in record.samples)
    rollout = source.draft(
        EngineRequest("r", "math-0", GenerateRequest([*USER, {"role": "assistant", "content": first + "\n\n"}], 2048))
    )
    assert rollout.meta["final"] and "correct" in rollout.meta and "score" in rollout.meta


def test_continued_text_reads_the_assistant_message_or_raw_prompt():
    assert continued_text("raw") == "raw"
    assert continued_text(USER) == ""
    assert continued_text([*USER, {"role": "assistant", "content": "so"}]) == "so"


def test_short_chunks_after_an_opener_still_continue_the_chain():
    source = ReplayChainSource("math-qwen25", seed=0)
    qid_request = lambda content, n: EngineRequest(  # noqa: E731
        "r", "math-0", GenerateRequest([*USER, {"role": "assistant", "content": content}], n)
    )
    text = "<think>\n"
    for _ in range(6):
        draft = source.draft(qid_request(text, 4))
        text += draft.text[: len(draft.text) * 4 // draft.tokens] if draft.tokens > 4 else draft.text
    assert source._chains["math-0"].text.startswith(text.removeprefix("<think>\n"))
    assert len(text) > len("<think>\n") + 10
