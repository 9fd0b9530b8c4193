"""Reward scorers: vLLM pooling endpoints (mocked HTTP), LLM judge, replay, synthetic, factory."""

from __future__ import annotations

import contextlib
import json
import math

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from algorithms.protocol import Completion, QueryInfo, TokenLogprob
from dynasor import ConfigError, EngineError
from dynasor.engine.base import Backend, EngineRequest
from dynasor.engine.sim import SyntheticSource
from dynasor.scorers import (
    HttpRewardScorer,
    JudgeScorer,
    LogprobScorer,
    ReplayScorer,
    ScorerRouter,
    SyntheticScorer,
    make_scorer,
    parse_grade,
)
from tests.algorithms.helpers import run_query
from tests.dynasor.mock_http import serving

QUERY = QueryInfo("q1", "What is 6 times 7?")


def done(text: str, **meta: object) -> Completion:
    return Completion(text, 5, 3, "stop", meta=meta)


@contextlib.asynccontextmanager
async def vllm_mock(answer):
    """A server answering /classify and /pooling with ``answer(path, body)``; yields its URL and
    the bodies it received."""
    seen: list[tuple[str, dict]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "rm"}]})
        body = json.loads(request.content)
        seen.append((request.url.path, body))
        return httpx.Response(200, json=answer(request.url.path, body))

    async with serving(handler) as url:
        yield url, seen


async def test_classify_scores_are_the_probability_of_the_last_class():
    def answer(path, body):
        rows = [
            {"index": i, "label": "x", "probs": [1 - 0.1 * (i + 1), 0.1 * (i + 1)]} for i in range(len(body["input"]))
        ]
        return {"data": rows[::-1]}  # out of order on purpose

    async with vllm_mock(answer) as (url, seen):
        scorer = HttpRewardScorer(url)
        scores = await scorer.score(QUERY, QUERY.prompt, [done("42"), done("41")])
        await scorer.aclose()
    assert scores == pytest.approx([0.1, 0.2])
    path, body = seen[0]
    assert path == "/classify" and body["model"] == "rm"
    assert body["input"] == ["What is 6 times 7?\n42", "What is 6 times 7?\n41"]


async def test_pooling_per_step_output_scores_the_last_step():
    def answer(path, body):
        return {"data": [{"index": 0, "data": [[0.9, 0.1], [0.3, 0.7]]}, {"index": 1, "data": [0.25]}]}

    async with vllm_mock(answer) as (url, seen):
        scorer = HttpRewardScorer(url, "prm", endpoint="pooling")
        assert await scorer.score(QUERY, QUERY.prompt, [done("a"), done("b")]) == pytest.approx([0.7, 0.25])
        await scorer.aclose()
    assert seen[0][0] == "/pooling" and seen[0][1]["model"] == "prm"


async def test_a_malformed_answer_is_an_engine_error():
    async with vllm_mock(lambda path, body: {"data": [{"index": 0}]}) as (url, _):
        scorer = HttpRewardScorer(url, "rm")
        with pytest.raises(EngineError, match="classify"):
            await scorer.score(QUERY, QUERY.prompt, [done("a")])
        await scorer.aclose()
    async with vllm_mock(lambda path, body: {"data": []}) as (url, _):
        scorer = HttpRewardScorer(url, "rm")
        with pytest.raises(EngineError, match="scored 0"):
            await scorer.score(QUERY, QUERY.prompt, [done("a")])
        await scorer.aclose()


def test_unknown_endpoint_is_a_config_error():
    with pytest.raises(ConfigError, match="pooling"):
        HttpRewardScorer("http://rm", endpoint="embed")  # type: ignore[arg-type]


class JudgeBackend(Backend):
    """Replies to each judge prompt with ``reply(prompt_text)``."""

    def __init__(self, reply):
        self.reply = reply
        self.requests: list[EngineRequest] = []

    async def generate(self, request: EngineRequest) -> Completion:
        self.requests.append(request)
        return done(self.reply(request.request.prompt[-1]["content"]))


async def test_judge_grades_each_response_through_the_backend():
    backend = JudgeBackend(lambda prompt: "9/10" if "42" in prompt.split("Solution:")[1] else "Score: 2")
    scorer = JudgeScorer(backend)
    scores = await scorer.score(QUERY, QUERY.prompt, [done("It is 42."), done("It is 41."), done("")])
    assert scores == pytest.approx([0.9, 0.2, 0.2])
    assert all(r.query_id == "q1" and r.request.tag == "judge" for r in backend.requests)
    assert "What is 6 times 7?" in backend.requests[0].request.prompt[-1]["content"]


async def test_judge_without_a_grade_falls_back_to_the_default():
    scorer = JudgeScorer(JudgeBackend(lambda prompt: "I cannot say."), default=0.4)
    assert await scorer.score(QUERY, QUERY.prompt, [done("x")]) == [0.4]


@given(st.integers(0, 10))
def test_parse_grade_reads_bare_and_fraction_grades(n):
    assert parse_grade(f" {n}") == pytest.approx(n / 10)
    assert parse_grade(f"I'd say {n} out of 10.") == pytest.approx(n / 10)
    assert parse_grade(f"{n}/5") == pytest.approx(min(n / 5, 1.0))


@given(st.text())
def test_parse_grade_is_none_or_in_unit_range(text):
    value = parse_grade(text)
    assert value is None or 0.0 <= value <= 1.0


async def test_replay_scorer_reads_the_recorded_score():
    assert await ReplayScorer().score(QUERY, "p", [done("a", score=3.5), done("b", score=-1)]) == [3.5, -1.0]
    with pytest.raises(ConfigError, match="recorded score"):
        await ReplayScorer().score(QUERY, "p", [done("a")])
    assert await ReplayScorer(missing=0.0).score(QUERY, "p", [done("a")]) == [0.0]


async def test_synthetic_scorer_prefers_meta_then_a_seeded_model():
    scorer = SyntheticScorer(seed=1)
    right = [done(f"r{i}", correct=True) for i in range(200)]
    wrong = [done(f"w{i}", correct=False) for i in range(200)]
    rs, ws = await scorer.score(QUERY, "p", right), await scorer.score(QUERY, "p", wrong)
    assert sum(rs) / 200 > sum(ws) / 200 + 0.2
    assert all(0 <= s <= 1 for s in rs + ws)
    assert await scorer.score(QUERY, "p", [done("x", score=0.33)]) == [0.33]
    assert await SyntheticScorer(seed=1).score(QUERY, "p", right[:5]) == rs[:5]  # reproducible


def test_make_scorer_builds_by_name_and_lists_the_names():
    assert isinstance(make_scorer("synthetic", seed=3), SyntheticScorer)
    with pytest.raises(ConfigError, match="judge, logprob, replay, synthetic"):
        make_scorer("oracle")
    with pytest.raises(ConfigError, match="replay"):
        make_scorer("replay", bogus=1)


async def test_the_router_picks_the_scorer_the_query_names():
    router = ScorerRouter({"replay": ReplayScorer(), "synthetic": SyntheticScorer()}, default="replay")
    scored = done("x", score=0.2, correct=True)
    named = QueryInfo("q", "p", {"scorer": "synthetic"})
    assert await router.score(QUERY, "p", [scored]) == [0.2]  # the default reads the recorded score
    assert await router.score(named, "p", [done("x", correct=True)]) != [0.0]
    with pytest.raises(ConfigError, match="replay, synthetic"):
        router.pick(QueryInfo("q", "p", {"scorer": "judge"}))
    with pytest.raises(ConfigError):
        ScorerRouter({"replay": ReplayScorer()}, default="http")


def test_the_scorer_knob_reaches_the_router_through_the_query():

    router = ScorerRouter({"replay": ReplayScorer(), "synthetic": SyntheticScorer()})
    run = run_query(SyntheticSource(seed=0), "bon", {"max_samples": 2, "scorer": "synthetic"}, scorer=router)
    assert run.result.error is None and run.result.answer is not None
    failed = run_query(SyntheticSource(seed=0), "bon", {"max_samples": 2}, scorer=router)
    assert failed.result.exit_reason == "error" and "scorer" in (failed.result.error or "")


async def test_logprob_scorer_is_the_geometric_mean_token_probability():
    def with_logprobs(*values: float) -> Completion:
        return Completion("x", 1, len(values), "stop", logprobs=tuple(TokenLogprob("t", v) for v in values))

    scorer = make_scorer("logprob")
    assert isinstance(scorer, LogprobScorer) and scorer.needs_logprobs == 0
    sure, unsure = with_logprobs(-0.01, -0.02), with_logprobs(-1.0, -3.0)
    scores = await scorer.score(QUERY, "p", [sure, unsure])
    assert scores[0] == pytest.approx(math.exp(-0.015)) and scores[1] == pytest.approx(math.exp(-2.0))
    assert await scorer.score(QUERY, "p", [with_logprobs(float("-inf"))]) == [0.0]
    assert await scorer.score(QUERY, "p", [Completion("", 1, 0, "stop")]) == [0.0]  # nothing written
    with pytest.raises(EngineError, match="logprobs"):
        await scorer.score(QUERY, "p", [Completion("x", 1, 3, "stop")])  # the engine sent none
