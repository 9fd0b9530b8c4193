"""The runtime (query manager): admits queries, runs their programs, applies the allocator.

Each query runs its program inside one cancel scope (an :func:`asyncio.timeout` whose
deadline is the query's); the program's gangs go through the shared
:class:`~dynasor.sched.GangScheduler`, which runs each gang's sub-requests in a task group
nested in that scope. A stop, whether the allocator's, the budget's, the deadline's or the
client's, is the scope's cancellation: waiting gangs are withdrawn, running sub-requests are
aborted in the engine, nothing the query started outlives it, and the result is finalised
from ``program.answer()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from algorithms import make_program
from algorithms.protocol import ChatMessage, Completion, GenerateRequest, Program, QueryInfo
from certaindex import Certainty
from dynasor._exceptions import ConfigError, QueueFull
from dynasor._query import Query, QueryResult, TrajectoryPoint, Usage
from dynasor._state import ExitReason, QueryStats, RequestRecord
from dynasor.allocator import Action, Allocator, AllocatorConfig
from dynasor.engine.base import Backend, Capacity, Scorer
from dynasor.sched.gang import Gang
from dynasor.sched.policy import DEFAULT_POLICY, GangPolicy, make_policy
from dynasor.sched.scheduler import GangScheduler

__all__ = ["Runtime"]

logger = logging.getLogger(__name__)

# Sequences the scheduler keeps in flight when neither the caller nor the backend says.
_DEFAULT_MAX_SEQS = 256


class Runtime:
    """Runs reasoning queries on one backend.

    Parameters
    ----------
    backend:
        Where generation requests go.
    policy:
        Gang-ordering policy: an instance, or a name or spec with knobs (``"dynasor:aging=0.5"``;
        see :func:`~dynasor.sched.make_policy`).
    allocator:
        Stop rules (an :class:`Allocator`, its config, or None for the bundled defaults).
    capacity:
        What the scheduler keeps in flight; defaults to the backend's own limits.
    scorer:
        Reward scorer behind ``ctx.score`` (None: programs that score fail with ConfigError).
    max_active:
        Queries admitted at once; more raise :class:`QueueFull` (None: unbounded).
    """

    def __init__(
        self,
        backend: Backend,
        *,
        policy: str | GangPolicy = DEFAULT_POLICY,
        allocator: Allocator | AllocatorConfig | None = None,
        capacity: Capacity | None = None,
        scorer: Scorer | None = None,
        max_active: int | None = None,
    ) -> None:
        self.backend = backend
        self.policy = make_policy(policy) if isinstance(policy, str) else policy
        self.allocator = allocator if isinstance(allocator, Allocator) else Allocator(allocator)
        cap = capacity or backend.capacity() or Capacity(max_seqs=_DEFAULT_MAX_SEQS)
        self.scheduler = GangScheduler(backend, self.policy, cap)
        self.scorer = scorer
        self.max_active = max_active
        self.observers: list[Callable[[QueryResult], None]] = []
        """Called with every finished query (metrics, logs)."""
        self._active: dict[str, _QueryRun] = {}
        # What finished queries used, for the scheduler's predictions of new ones.
        self._samples_by_algorithm: dict[str, tuple[int, int]] = {}  # algorithm -> (queries, samples)
        self._request_tokens = (0, 0)  # (requests, completion tokens)

    def _learn(self, result: QueryResult) -> None:
        queries, samples = self._samples_by_algorithm.get(result.algorithm, (0, 0))
        self._samples_by_algorithm[result.algorithm] = (queries + 1, samples + result.samples)
        finished = [r for r in result.requests if r.finish_reason in ("stop", "length")]
        requests, tokens = self._request_tokens
        self._request_tokens = (requests + len(finished), tokens + sum(r.completion_tokens for r in finished))

    def _priors(self, algorithm: str) -> tuple[float | None, float | None]:
        """(expected samples, tokens per sample) learned from finished queries."""
        queries, samples = self._samples_by_algorithm.get(algorithm, (0, 0))
        requests, tokens = self._request_tokens
        return (samples / queries if queries else None, tokens / requests if requests else None)

    @property
    def active(self) -> int:
        """Queries admitted and not finished."""
        return len(self._active)

    async def run(
        self,
        query: Query,
        program: Program | None = None,
        *,
        on_event: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> QueryResult:
        """Run ``query`` to its end and return the result.

        ``program`` defaults to the registered algorithm ``query.algorithm`` built with
        ``query.params``. ``on_event`` receives the program's progress events and a
        ``{"type": "report", ...}`` event per certaindex report.
        Raises :class:`QueueFull` when ``max_active`` queries are running, and
        :class:`ConfigError` for an unknown algorithm, bad parameters, or a program that scores
        when no scorer is configured (refused before it runs).
        """
        if self.max_active is not None and len(self._active) >= self.max_active:
            raise QueueFull(f"{len(self._active)} queries active (limit {self.max_active})")
        if query.id in self._active:
            raise ConfigError(f"query id {query.id!r} is already running")
        if program is None:
            try:
                program = make_program(query.algorithm, query.params)
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc
        if program.uses_scorer and self.scorer is None:
            raise ConfigError(f"{query.algorithm} needs a reward scorer, and none is configured")
        loop = asyncio.get_running_loop()
        run = _QueryRun(self, query, program, loop.time(), on_event)
        self._active[query.id] = run
        try:
            return await run.execute()
        finally:
            del self._active[query.id]

    def cancel(self, query_id: str) -> bool:
        """Stop a running query; its :meth:`run` returns with exit reason ``cancelled``."""
        run = self._active.get(query_id)
        if run is None:
            return False
        run.stop(ExitReason.CANCELLED)
        return True

    async def aclose(self) -> None:
        await self.backend.aclose()
        if self.scorer is not None:
            await self.scorer.aclose()


class _QueryRun:
    """One query in flight; it is the program's :class:`~algorithms.protocol.Context`."""

    def __init__(
        self,
        runtime: Runtime,
        query: Query,
        program: Program,
        now: float,
        on_event: Callable[[Mapping[str, Any]], None] | None,
    ) -> None:
        self.runtime = runtime
        self.spec = query
        self.program = program
        self.on_event = on_event
        self.info = QueryInfo(query.id, query.prompt, query.params)
        caps = [c for c in (query.budget.max_samples, program.max_samples) if c is not None]
        self.max_samples = min(caps) if caps else None
        expected_samples, request_tokens = runtime._priors(query.algorithm)
        self.stats = QueryStats(
            id=query.id,
            arrival=now,
            deadline=None if query.deadline is None else now + query.deadline,
            max_samples=self.max_samples,
            max_tokens=query.budget.max_tokens,
            expected_samples=expected_samples,
            prior_request_tokens=request_tokens,
        )
        self.records: list[RequestRecord] = []
        self.trajectory: list[TrajectoryPoint] = []
        self.last_certainty: Certainty | None = None
        self.exit_reason: ExitReason | None = None
        self.scope: asyncio.Timeout | None = None
        """The query's cancel scope while its program runs (its deadline is the query's)."""
        self.prompt_tokens = 0
        self.largest_request = 0
        # Reservations for requests in flight, so concurrent gangs cannot overrun a cap.
        self.inflight_requests = 0
        self.inflight_tokens = 0
        # Queueing time: spans with a request waiting for dispatch and none running.
        self.waiting = 0
        self.running = 0
        self.queue_time = 0.0
        self._mark = now

    # -- Context -----------------------------------------------------------------------------

    @property
    def query(self) -> QueryInfo:
        return self.info

    @property
    def samples(self) -> int:
        return self.stats.samples

    @property
    def tokens(self) -> int:
        return self.stats.attained_tokens

    @property
    def remaining_samples(self) -> int | None:
        if self.max_samples is None:
            return None
        return max(self.max_samples - self.stats.samples - self.inflight_requests, 0)

    async def gather(self, requests: Sequence[GenerateRequest]) -> list[Completion]:
        batch = [] if self.exit_reason is not None else self._fit_budget(list(requests))
        if not batch:
            self.stop(ExitReason.BUDGET)  # keeps the reason of an earlier stop
            await _until_cancelled()  # by the query's scope: a stopped query sends nothing more
        reserved = sum(r.max_tokens for r in batch)
        self.largest_request = max(self.largest_request, *(r.max_tokens for r in batch))
        self.inflight_requests += len(batch)
        self.inflight_tokens += reserved
        self._count(waiting=len(batch))
        dispatched = 0

        def on_dispatch(gang: Gang) -> None:
            nonlocal dispatched
            dispatched += len(gang.requests)
            self._count(waiting=-len(gang.requests), running=len(gang.requests))

        recorded = len(self.records)
        try:
            return await self.runtime.scheduler.run_gang(
                self.stats, batch, on_record=self._on_record, on_dispatch=on_dispatch
            )
        finally:
            self.inflight_requests -= len(batch)
            self.inflight_tokens -= reserved
            # Requests dispatched but cancelled before they ran leave no record: uncount them too.
            unrecorded = dispatched - (len(self.records) - recorded)
            self._count(waiting=dispatched - len(batch), running=-max(unrecorded, 0))

    async def generate(self, request: GenerateRequest) -> Completion:
        return (await self.gather([request]))[0]

    async def score(self, prompt: str | Sequence[ChatMessage], responses: Sequence[Completion]) -> list[float]:
        scorer = self.runtime.scorer
        if scorer is None:
            raise ConfigError(f"{self.spec.algorithm} needs a reward scorer, and none is configured")
        return await scorer.score(self.info, prompt, responses)

    def report(self, certainty: Certainty) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        stats = self.stats
        stats.steps += 1
        stats.certaindex = certainty.value
        self.last_certainty = certainty
        answer = self._safe_answer()
        self.trajectory.append(
            TrajectoryPoint(
                stats.steps,
                now - stats.arrival,
                stats.samples,
                stats.attained_tokens,
                certainty.value,
                certainty.measure,
                answer,
            )
        )
        self.emit(
            {
                "type": "report",
                "step": stats.steps,
                "certaindex": certainty.value,
                "measure": certainty.measure,
                "samples": stats.samples,
                "answer": answer,
            }
        )
        # A step's duration net of queueing: time spent waiting before the first dispatch is
        # not a cost the next step pays again.
        self._count()
        step_time = max(now - stats.arrival - self.queue_time, 0.0) / stats.steps
        decision = self.runtime.allocator.decide(self.spec, stats, certainty, now=now, step_time=step_time)
        if decision.action is Action.DEMOTE:
            stats.demoted = True
        if decision.stop:
            self.stop(decision.reason or ExitReason.CONFIDENT)
        elif self.spec.budget.max_steps is not None and stats.steps >= self.spec.budget.max_steps:
            self.stop(ExitReason.BUDGET)

    def emit(self, event: Mapping[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(event)

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self, reason: ExitReason) -> None:
        """End the query: cancel its scope (the program, and every gang it has in flight)."""
        if self.exit_reason is None:
            self.exit_reason = reason
        if self.scope is not None and not self.scope.expired():
            self.scope.reschedule(asyncio.get_running_loop().time())  # the deadline is now

    async def execute(self) -> QueryResult:
        error: str | None = None
        try:
            async with asyncio.timeout_at(self.stats.deadline) as self.scope:
                await self.program.run(self)
        except TimeoutError:
            self.exit_reason = self.exit_reason or ExitReason.DEADLINE
        except asyncio.CancelledError:
            # The caller gave up on the query (client disconnect): account, then obey.
            self.exit_reason = self.exit_reason or ExitReason.CANCELLED
            self._finish(error)
            raise
        except Exception as exc:
            logger.warning("query %s failed: %r", self.info.id, exc)
            cause = _first_leaf(exc)  # a task group's failure is its first child's
            error = f"{type(cause).__name__}: {cause}"
            self.exit_reason = ExitReason.ERROR
        if self.exit_reason is None:
            spent = self.max_samples is not None and self.stats.samples >= self.max_samples
            self.exit_reason = ExitReason.BUDGET if spent else ExitReason.COMPLETED
        return self._finish(error)

    def _finish(self, error: str | None) -> QueryResult:
        self.scope = None  # left: a late stop has nothing to cancel
        now = asyncio.get_running_loop().time()
        self._count()
        budget = self.spec.budget
        if budget.max_tokens is not None:
            cap: int | None = budget.max_tokens
        elif self.program.token_budget is not None:
            cap = self.program.token_budget
        elif self.max_samples is not None and self.largest_request:
            cap = self.max_samples * self.largest_request
        else:
            cap = None
        output = ""
        with contextlib.suppress(Exception):
            output = self.program.output()
        result = QueryResult(
            id=self.info.id,
            algorithm=self.spec.algorithm,
            answer=self._safe_answer(),
            output=output,
            exit_reason=self.exit_reason or ExitReason.CANCELLED,
            usage=Usage(self.prompt_tokens, self.stats.attained_tokens, cap),
            samples=self.stats.samples,
            steps=self.stats.steps,
            certaindex=None if self.last_certainty is None else self.last_certainty.value,
            trajectory=tuple(self.trajectory),
            arrival=self.stats.arrival,
            finished=now,
            queue_time=self.queue_time,
            requests=tuple(self.records),
            error=error,
        )
        self.runtime._learn(result)
        for observer in self.runtime.observers:
            try:
                observer(result)
            except Exception:
                logger.exception("result observer failed")
        return result

    # -- bookkeeping -------------------------------------------------------------------------

    def _fit_budget(self, batch: list[GenerateRequest]) -> list[GenerateRequest]:
        """Trim a gang to the sample cap and its requests' max_tokens to the token cap."""
        remaining = self.remaining_samples
        if remaining is not None:
            batch = batch[:remaining]
        if self.spec.budget.max_tokens is not None and batch:
            left = self.spec.budget.max_tokens - self.stats.attained_tokens - self.inflight_tokens
            share = left // len(batch)
            if share < 1:
                batch = batch[: max(left, 0)]
                share = 1
            batch = [r if r.max_tokens <= share else _with_max_tokens(r, share) for r in batch]
        return batch

    def _on_record(self, record: RequestRecord) -> None:
        self.records.append(record)
        self.prompt_tokens += record.prompt_tokens
        self.stats.attained_tokens += record.completion_tokens
        if record.finish_reason not in ("abort", "error"):
            self.stats.samples += 1
        self._count(running=-1)

    def _count(self, *, waiting: int = 0, running: int = 0) -> None:
        now = asyncio.get_running_loop().time()
        if self.waiting > 0 and self.running == 0:
            self.queue_time += now - self._mark
        self._mark = now
        self.waiting += waiting
        self.running += running

    def _safe_answer(self) -> str | None:
        try:
            return self.program.answer()
        except Exception:
            logger.exception("%s.answer() failed", type(self.program).__name__)
            return None


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


async def _until_cancelled() -> None:
    await asyncio.get_running_loop().create_future()


def _with_max_tokens(request: GenerateRequest, max_tokens: int) -> GenerateRequest:
    return replace(request, max_tokens=max_tokens)
