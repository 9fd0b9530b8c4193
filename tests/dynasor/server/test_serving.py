"""Reasoning requests: turning a body into a query, and the streams they produce."""

from __future__ import annotations

import typing
from dataclasses import dataclass

import openai
import pytest

from algorithms import ALGORITHMS, register_algorithm
from algorithms.protocol import Context, GenerateRequest, Program
from certaindex import Certainty
from dynasor.allocator import AllocatorConfig
from dynasor.engine.sim import FixedSource
from dynasor.server.protocol import ChatCompletionRequest, CompletionRequest, Effort
from dynasor.server.serving import ReasoningService
from dynasor.server.upstreams import PooledBackend, Replica, UpstreamPool

PROMPT = [{"role": "user", "content": "Solve it."}]
LEVELS = ["mild", "low", "mid", "high", "crazy"]
EFFORT = {level: AllocatorConfig.bundled().effort_changes(level) for level in LEVELS}


@dataclass
class ChunkedThought(Program):
    """A chain of thought decoded in chunks, probed after each one, certain from step ``sure_at`` on."""

    name = "chunked-thought"
    chunks: int = 6
    chunk_tokens: int = 8
    sure_at: int = 3

    def __post_init__(self) -> None:
        self.steps = 0

    async def run(self, ctx: Context) -> None:
        for step in range(1, self.chunks + 1):
            await ctx.generate(GenerateRequest(ctx.query.prompt, self.chunk_tokens, tag="reasoning"))
            await ctx.generate(GenerateRequest(ctx.query.prompt, 2, tag="probe"))
            self.steps = step
            ctx.report(Certainty(1.0 if step >= self.sure_at else 0.0, "probe"))

    def answer(self) -> str | None:
        return str(self.steps) if self.steps else None

    def output(self) -> str:
        return f"thought for {self.steps} steps"


@pytest.fixture(scope="module")
def thought_algorithm():
    register_algorithm("chunked-thought")(ChunkedThought)
    yield "chunked-thought"
    ALGORITHMS.pop("chunked-thought")


@pytest.fixture(scope="module")
def service(sim_settings):
    from dynasor.engine.sim import SimBackend
    from dynasor.runtime import Runtime

    settings = sim_settings(max_samples=16, max_tokens=1000)
    backend = PooledBackend(UpstreamPool([Replica("sim", SimBackend("h100-llama3-8b", FixedSource(4)))]))
    runtime = Runtime(backend)
    return ReasoningService(settings, runtime, backend)


def chat(**dynasor: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"messages": PROMPT, "dynasor": dynasor, "max_tokens": 300})


def test_plan_maps_request_fields_to_knobs_and_budget(service):
    plan = service.plan("chat", chat(algorithm="sc", max_samples=12, samples_per_round=3, max_total_tokens=900))
    q = plan.query
    assert q.algorithm == "sc" and q.prompt == PROMPT
    assert q.params == {"samples_per_round": 3, "max_tokens": 300, "max_samples": 12}
    assert (q.budget.max_samples, q.budget.max_tokens) == (12, 900)
    assert plan.program.max_samples == 12
    assert q.certaindex is None  # no rule of its own: the configured rules apply
    assert q.id.startswith("chatcmpl-")


def test_completions_prompt_is_text(service):
    body = CompletionRequest.model_validate({"prompt": ["2+2?"], "dynasor": {}})
    plan = service.plan("completions", body)
    assert plan.query.prompt == "2+2?" and plan.query.id.startswith("cmpl-")


@pytest.mark.parametrize("effort", LEVELS)
def test_effort_sets_the_stop_rule_and_certaindex_overrides_it(service, effort):
    rule = service.plan("chat", chat(effort=effort)).query.certaindex
    assert (rule.threshold, rule.min_samples) == (EFFORT[effort]["threshold"], EFFORT[effort]["min_samples"])
    assert rule.measure == service.runtime.allocator.config.rule_for("sc").measure  # the rest is sc's
    rule = service.plan("chat", chat(effort=effort, certaindex={"threshold": 0.33})).query.certaindex
    assert (rule.threshold, rule.min_samples) == (0.33, EFFORT[effort]["min_samples"])
    # The server-wide rule is untouched.
    assert service.runtime.allocator.config.rule_for("sc").threshold != 0.33


def test_effort_goes_to_a_program_with_levels_of_its_own(service):
    plan = service.plan("chat", chat(algorithm="cot", effort="high"))
    knobs = AllocatorConfig.bundled().knobs_for_effort("cot", "high")
    assert knobs and all(plan.query.params[k] == v for k, v in knobs.items())
    assert plan.query.certaindex is None  # the program's levels, not a stop-rule preset


def test_efforts_are_ordered_from_least_to_most_eager():
    assert list(typing.get_args(Effort)) == LEVELS == list(AllocatorConfig.bundled().effort)
    presets = list(EFFORT.values())
    assert [p["threshold"] for p in presets] == sorted((p["threshold"] for p in presets), reverse=True)
    assert [p["min_samples"] for p in presets] == sorted((p["min_samples"] for p in presets), reverse=True)


async def test_per_query_override_only_applies_to_its_query(service):
    # FixedSource answers carry no boxed answer: every sample abstains. Counted as one "no answer"
    # class they agree at once; counted apart they never do.
    eager = {"threshold": 0.0, "min_samples": 1, "abstentions": "class"}
    never = {"threshold": 1.0, "abstentions": "distinct", "hopeless_threshold": None}
    first = await service.run(service.plan("chat", chat(certaindex=eager, max_samples=8)))
    second = await service.run(service.plan("chat", chat(certaindex=never, max_samples=8)))
    plain = service.plan("chat", chat(certaindex=None, max_samples=8))
    assert first.exit_reason == "confident" and first.steps == 1
    assert second.exit_reason == "budget" and second.samples == 8
    configured = service.runtime.allocator.config.rule_for("sc")
    assert plain.query.certaindex is None and service.runtime.allocator.rule_for(plain.query) is configured


async def test_cot_streams_reasoning_text_and_ends_early(make_proxy, sim_settings, thought_algorithm):
    settings = sim_settings(sim_source=FixedSource(8), streaming_algorithms=(thought_algorithm,))
    with make_proxy(settings) as (url, _):
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as c:
            stream = await c.chat.completions.create(
                model="m",
                messages=PROMPT,
                stream=True,
                stream_options={"include_usage": True},
                extra_body={
                    "dynasor": {"algorithm": thought_algorithm, "certaindex": {"measure": "probe", "threshold": 0.9}}
                },
            )
            chunks = [ch async for ch in stream]
    texts = [ch.choices[0].delta.content for ch in chunks if ch.choices and ch.choices[0].delta.content]
    usage = chunks[-1].usage.model_extra["dynasor"]
    # One content chunk per reasoning call (probes are not shown) until the exit at step 3.
    assert usage["exit_reason"] == "confident" and usage["steps"] == 3
    assert texts[:3] == [" tok" * 8] * 3
    assert usage["samples"] == 6  # 3 reasoning calls + 3 probes
    assert texts[-1] == "\n\n**Final Answer:** \\boxed{3}"
