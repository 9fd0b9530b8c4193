"""Reasoning requests: a ``dynasor`` object in the body becomes a :class:`~dynasor._query.Query`.

No web framework here: :class:`ReasoningService` checks a request, runs it on the
:class:`~dynasor.runtime.Runtime` and builds the OpenAI response, or the stream of chunks.

Streaming. Algorithms listed in ``ServerSettings.streaming_algorithms`` (chain of thought)
stream their reasoning text as it decodes: every text delta of the query's sub-requests
except probes (``tag == "probe"``) becomes a content chunk, and the stream ends as soon as
the query exits. Other algorithms (SC, MCTS, REBASE, ...) send one *progress chunk* per
certaindex report, a chunk with an empty ``choices`` list and a ``dynasor`` object::

    {"object": "chat.completion.chunk", "choices": [], "dynasor": {"type": "report", "step": 2,
     "certaindex": 0.81, "measure": "entropy", "samples": 4, "answer": "42"}}

which standard clients skip (they read ``choices``), then the answer as content chunks.
The finishing chunk carries the query's summary in its ``dynasor`` object as well.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from algorithms import ALGORITHMS, make_program
from algorithms.protocol import Program
from certaindex import ALGORITHM_MEASURES, KNOWN_MEASURES
from dynasor._exceptions import ConfigError, QueueFull
from dynasor._presets import StopRule, changed_rule
from dynasor._query import Budget, Query, QueryResult
from dynasor._state import ExitReason
from dynasor.engine.base import EngineRequest, Scorer
from dynasor.runtime import Runtime
from dynasor.scorers import ScorerRouter
from dynasor.server._knobs import TOKEN_KNOBS, KnobError, knob_model, validate_knobs
from dynasor.server._passthrough import ServingError, unavailable
from dynasor.server._settings import ServerSettings
from dynasor.server._shapes import DONE, Endpoint, Shaper, sse
from dynasor.server.protocol import ChatCompletionRequest, CompletionRequest, DynasorOptions
from dynasor.server.upstreams import NoHealthyUpstream, PooledBackend

__all__ = ["ReasoningPlan", "ReasoningService", "usage_block"]

_EFFORT_KNOBS = ("effort", "preset")
"""Program knobs that take an effort level by name."""

_TEXT = object()
_END = object()
# A reasoning answer ends because the program chose its answer, whatever cut the samples short.
_FINISH = "stop"


@dataclass(slots=True)
class ReasoningPlan:
    """A checked reasoning request, ready to run."""

    endpoint: Endpoint
    query: Query
    program: Program
    model: str
    stream_text: bool
    progress: bool
    include_usage: bool
    logprobs: int | None = None
    """Top logprobs every sub-request asks for (what the query's reward scorer reads)."""


def usage_block(result: QueryResult) -> dict[str, Any]:
    """OpenAI ``usage`` with the ``dynasor`` extension."""
    usage = result.usage
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "dynasor": {
            "algorithm": result.algorithm,
            "exit_reason": str(result.exit_reason),
            "samples": result.samples,
            "steps": result.steps,
            "tokens_generated": usage.completion_tokens,
            "tokens_cap": usage.tokens_cap,
            "tokens_saved": usage.tokens_saved,
            "certaindex": result.certaindex,
            "answer": result.answer,
            "latency_s": round(result.latency, 6),
            "queue_time_s": round(result.queue_time, 6),
        },
    }


class ReasoningService:
    """Checks, runs and answers reasoning requests."""

    def __init__(self, settings: ServerSettings, runtime: Runtime, backend: PooledBackend) -> None:
        self.settings = settings
        self.runtime = runtime
        self.backend = backend

    # -- checking ------------------------------------------------------------------------

    def plan(self, endpoint: Endpoint, req: ChatCompletionRequest | CompletionRequest) -> ReasoningPlan:
        """Turn a request into a query; raises :class:`ServingError` (400) for a client mistake."""
        opts = req.dynasor
        assert opts is not None
        limits = self.settings
        if opts.algorithm not in ALGORITHMS:
            raise ServingError(
                400,
                f"Unknown algorithm: {opts.algorithm!r} (choose from {', '.join(sorted(ALGORITHMS))})",
                param="dynasor.algorithm",
            )
        if (req.n or 1) > 1:
            raise ServingError(400, "n > 1 is not supported with dynasor: one answer per query", param="n")
        if opts.max_samples is not None and opts.max_samples > limits.max_samples:
            raise ServingError(
                400,
                f"max_samples {opts.max_samples} exceeds this server's limit {limits.max_samples}",
                param="dynasor.max_samples",
            )
        _check_measure(opts)
        params, accepted = self._program_params(opts, req)
        rule = self._stop_rule(opts, accepted, params)
        try:
            program = make_program(opts.algorithm, params)
        except (ValueError, TypeError) as exc:
            raise ServingError(400, str(exc), param=_knob_param(str(exc), params)) from exc
        logprobs = self._scorer_logprobs(opts.algorithm, program, params)
        try:
            budget = Budget(max_samples=opts.max_samples, max_tokens=opts.max_total_tokens, max_steps=opts.max_steps)
        except ValueError as exc:
            raise ServingError(400, str(exc), param="dynasor") from exc
        prefix = "chatcmpl" if endpoint == "chat" else "cmpl"
        deadline = opts.deadline
        if limits.request_timeout_s is not None:
            deadline = min(deadline or limits.request_timeout_s, limits.request_timeout_s)
        query = Query(
            prompt=_prompt(req),
            algorithm=opts.algorithm,
            params=params,
            budget=budget,
            deadline=deadline,
            id=f"{prefix}-{uuid.uuid4().hex}",
            certaindex=rule,
        )
        if self.runtime.active >= limits.max_active:
            raise ServingError(
                429,
                f"{self.runtime.active} reasoning queries running (limit {limits.max_active}); retry later",
                "rate_limit_exceeded",
                headers={"Retry-After": "1"},
            )
        return ReasoningPlan(
            endpoint=endpoint,
            query=query,
            program=program,
            model=req.model or self.backend.model,
            stream_text=opts.algorithm in limits.streaming_algorithms,
            progress=opts.progress,
            include_usage=req.include_usage,
            logprobs=logprobs,
        )

    def _program_params(
        self, opts: DynasorOptions, req: ChatCompletionRequest | CompletionRequest
    ) -> tuple[dict[str, Any], set[str]]:
        """The program's knobs, checked (the ``dynasor`` object's, then the request's own
        ``max_tokens``, ``temperature`` and ``max_samples`` where the program has such knobs),
        and the names of all the knobs it has."""
        params = opts.knobs()
        try:
            validate_knobs(opts.algorithm, params)
        except KnobError as exc:
            raise ServingError(400, str(exc), param=f"dynasor.{exc.param}") from None
        limit = self.settings.max_tokens
        for name in TOKEN_KNOBS:
            value = params.get(name)
            if isinstance(value, int) and value > limit:
                raise ServingError(400, f"{name} {value} exceeds this server's limit {limit}", param=f"dynasor.{name}")
        accepted = set(knob_model(opts.algorithm).model_fields)
        cap = req.token_cap()
        if cap is not None and "max_tokens" in accepted:
            params.setdefault("max_tokens", cap)
        if req.temperature is not None and "temperature" in accepted:
            params.setdefault("temperature", req.temperature)
        if opts.max_samples is not None and "max_samples" in accepted:
            params.setdefault("max_samples", opts.max_samples)
        return params, accepted

    def _scorer_logprobs(self, algorithm: str, program: Program, params: Mapping[str, Any]) -> int | None:
        """Refuse, before anything runs, a program that scores when no scorer can serve it.

        Returns the logprobs its scorer needs the engine to send with each sample (None: none).
        """
        if not program.uses_scorer:
            return None
        scorer = self.runtime.scorer
        if scorer is None:
            raise ServingError(
                400,
                f"{algorithm} needs a reward scorer, and this server has none: start it with --reward logprob "
                "(the engine's own token probabilities, no second model), --reward judge (the served model grades "
                "each sample) or --reward URL (a vLLM-served reward model)",
                param="dynasor.algorithm",
            )
        chosen: Scorer = scorer
        if isinstance(scorer, ScorerRouter):
            name = params.get("scorer") or scorer.default
            if name not in scorer.scorers:
                raise ServingError(
                    400,
                    f"Unknown scorer {name!r}: this server offers {', '.join(scorer.scorers)}",
                    param="dynasor.scorer",
                )
            chosen = scorer.scorers[str(name)]
        return chosen.needs_logprobs

    def _stop_rule(self, opts: DynasorOptions, accepted: set[str], params: dict[str, Any]) -> StopRule | None:
        """The query's own stop rule when the request asks for one (None: the configured rule).

        An effort level goes to a program with levels of its own (an ``effort`` knob, or CoT's
        window and chunk from the presets' ``effort_knobs``); for others it sets fields of the
        algorithm's rule, and an explicit ``certaindex`` object wins over it.
        """
        config = self.runtime.allocator.config
        changes: dict[str, Any] = {}
        if opts.effort is not None:
            knob = next((k for k in _EFFORT_KNOBS if k in accepted), None)
            knobs = config.knobs_for_effort(opts.algorithm, opts.effort)
            if knob is not None:
                params.setdefault(knob, opts.effort)
            elif knobs is not None:  # levels that are program knobs (cot's window and chunk), from the presets
                for name, value in knobs.items():
                    params.setdefault(name, value)
            else:
                changes.update(config.effort_changes(opts.effort))
        if opts.certaindex is not None:
            changes.update(opts.certaindex.changes())
        if not changes:
            return None
        try:
            return changed_rule(config.rule_for(opts.algorithm), changes, algorithm=opts.algorithm)
        except (ConfigError, TypeError, ValueError) as exc:
            raise ServingError(400, f"bad certaindex rule: {exc}", param=_rule_param(str(exc), changes)) from exc

    # -- running -------------------------------------------------------------------------

    async def run(self, plan: ReasoningPlan, on_event: Any = None) -> QueryResult:
        """Run the planned query; the client's cancellation aborts every sub-request."""
        qid = plan.query.id
        pool = self.backend.pool
        try:
            pool.bind(qid)
        except NoHealthyUpstream as exc:
            raise unavailable(exc) from None
        if plan.logprobs is not None:
            self.backend.logprobs[qid] = plan.logprobs
        try:
            result = await self.runtime.run(plan.query, plan.program, on_event=on_event)
        except QueueFull as exc:
            raise ServingError(429, str(exc), "rate_limit_exceeded", headers={"Retry-After": "1"}) from None
        finally:
            pool.release(qid)
            self.backend.taps.pop(qid, None)
            self.backend.logprobs.pop(qid, None)
        if result.exit_reason is ExitReason.ERROR and not result.output:
            raise ServingError(502, f"upstream failed: {result.error}", "upstream_error")
        if result.exit_reason is ExitReason.DEADLINE and not result.output:
            raise ServingError(
                504, f"no answer within the query's deadline ({plan.query.deadline:g} s)", "upstream_timeout"
            )
        return result

    async def complete(self, plan: ReasoningPlan) -> dict[str, Any]:
        """The whole answer as one OpenAI response object."""
        result = await self.run(plan)
        shaper = Shaper(plan.endpoint, plan.model, id=plan.query.id)
        return shaper.response([(result.output, _FINISH)], usage_block(result))

    async def stream(self, plan: ReasoningPlan) -> AsyncIterator[bytes]:
        """Server-sent events of the answer (see the module docstring)."""
        shaper = Shaper(plan.endpoint, plan.model, id=plan.query.id)
        events: asyncio.Queue[tuple[object, Any]] = asyncio.Queue()
        streamed: list[str] = []

        def on_event(event: Mapping[str, Any]) -> None:
            events.put_nowait((None, dict(event)))

        if plan.stream_text:

            def tap(request: EngineRequest, text: str) -> None:
                if request.request.tag != "probe":
                    events.put_nowait((_TEXT, text))

            self.backend.taps[plan.query.id] = tap
        # The query runs beside the stream, not in a task group of it: a generator may be closed
        # from another task, where a group it holds cannot exit. The finally below ends the query.
        task = asyncio.get_running_loop().create_task(self.run(plan, on_event=on_event))
        task.add_done_callback(lambda _: events.put_nowait((_END, None)))
        try:
            if plan.endpoint == "chat":
                yield shaper.chunk("", first=True)
            while True:
                kind, payload = await events.get()
                if kind is _END:
                    break
                if kind is _TEXT:
                    streamed.append(payload)
                    yield shaper.chunk(payload)
                elif plan.progress:
                    yield shaper.side_chunk(extra={"dynasor": payload})
            try:
                result = task.result()
            except ServingError as exc:
                yield sse(exc.body) + DONE
                return
            tail = _tail("".join(streamed), result)
            if tail:
                yield shaper.chunk(tail)
            usage = usage_block(result)
            yield shaper.chunk(None if plan.endpoint == "chat" else "", _FINISH, extra={"dynasor": usage["dynasor"]})
            if plan.include_usage:
                yield shaper.side_chunk(usage=usage)
            yield DONE
        finally:
            task.cancel()  # a no-op once the query has ended; otherwise it aborts its sub-requests
            await asyncio.wait([task])
            if not task.cancelled():
                task.exception()  # seen: a failure after the client left is not worth a warning


def _tail(streamed: str, result: QueryResult) -> str:
    """What is left to send after the streamed reasoning: the rest of the output, or the answer."""
    output = result.output
    if not streamed:
        return output
    if output.startswith(streamed):
        return output[len(streamed) :]
    return f"\n\n**Final Answer:** \\boxed{{{result.answer}}}" if result.answer is not None else ""


def _prompt(req: ChatCompletionRequest | CompletionRequest) -> Any:
    if isinstance(req, ChatCompletionRequest):
        return req.messages
    if isinstance(req.prompt, str):
        return req.prompt
    if len(req.prompt) != 1:
        raise ServingError(400, "a reasoning request takes one prompt", param="prompt")
    return req.prompt[0]


def _check_measure(opts: DynasorOptions) -> None:
    """400 for a stop rule reading a measure its algorithm never reports (it would never fire)."""
    measure = opts.certaindex.changes().get("measure") if opts.certaindex is not None else None
    if measure is None:
        return
    reported = ALGORITHM_MEASURES.get(opts.algorithm)
    known = reported if reported is not None else sorted(KNOWN_MEASURES)
    if measure not in known:
        raise ServingError(
            400,
            f"certaindex measure {measure!r} is not one {opts.algorithm} reports (choose from {', '.join(known)})",
            param="dynasor.certaindex.measure",
        )


def _rule_param(message: str, changes: Mapping[str, Any]) -> str:
    """The ``param`` of a stop rule's complaint: the changed field it names first.

    >>> _rule_param("rule for 'sc': threshold must lie in [0, 1], got 2", {"threshold": 2, "min_samples": 1})
    'dynasor.certaindex.threshold'
    """
    found = [(at, name) for name in changes if (at := message.find(f"{name} ")) >= 0]
    return f"dynasor.certaindex.{min(found)[1]}" if found else "dynasor.certaindex"


def _knob_param(message: str, params: Mapping[str, Any]) -> str:
    """The ``param`` of a program's own complaint: the knob its message starts with, if any.

    >>> _knob_param("vote must be one of best, reward, got 'x'", {"vote": "x"}), _knob_param("no", {})
    ('dynasor.vote', 'dynasor')
    """
    message = message.removeprefix("Bad parameters for ").partition(": ")[2] or message
    first = message.split(" ", 1)[0]
    return f"dynasor.{first}" if first in params else "dynasor"
