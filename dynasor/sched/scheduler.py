"""The gang scheduler: mechanism only; the order comes from a :class:`GangPolicy`.

Waiting gangs sit in one heap keyed by the policy. :meth:`GangScheduler.schedule` pops
gangs in key order while the whole gang fits the backend's capacity and grants each a
permit; the gang's own task (inside its query's task group) then runs the requests, so
cancelling a query cancels its waiting gangs and aborts its running requests alike.
Submitting, dispatching and withdrawing each cost O(log n).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from algorithms.protocol import Completion, GenerateRequest
from dynasor._state import QueryStats, RequestRecord
from dynasor._tasks import first_error
from dynasor.engine.base import Backend, Capacity, EngineRequest
from dynasor.sched.gang import Gang
from dynasor.sched.policy import GangPolicy

__all__ = ["Dispatch", "GangScheduler", "estimate_prompt_tokens", "gang_kv"]

# Characters per token for the KV estimate of a prompt before the engine has tokenised it.
_CHARS_PER_TOKEN = 4


def estimate_prompt_tokens(request: GenerateRequest) -> int:
    """Rough prompt size in tokens, for capacity estimates only (never for usage)."""
    if isinstance(request.prompt, str):
        chars = len(request.prompt)
    else:
        chars = sum(len(str(m.get("content") or "")) for m in request.prompt)
    return chars // _CHARS_PER_TOKEN + 1


def gang_kv(stats: QueryStats, requests: Sequence[GenerateRequest]) -> list[int]:
    """Estimated KV-cache tokens each request of a gang holds while it runs.

    A request's completion is expected to be as long as the query's samples so far, else as the
    samples of other queries (``prior_request_tokens``), at most its ``max_tokens``. Requests
    with the same prompt share its blocks through the engine's prefix cache: the prompt is
    counted once per gang, spread over the requests that share it.
    """
    expected = stats.mean_request_tokens(prior=stats.prior_request_tokens or 0.0)
    prompts: dict[str, list[int]] = {}
    for i, r in enumerate(requests):
        key = r.prompt if isinstance(r.prompt, str) else repr(r.prompt)
        prompts.setdefault(key, []).append(i)
    kv = [int(min(r.max_tokens, expected or r.max_tokens)) for r in requests]
    for members in prompts.values():
        share = -(-estimate_prompt_tokens(requests[members[0]]) // len(members))
        for i in members:
            kv[i] += share
    return kv


@dataclass(frozen=True, slots=True)
class Dispatch:
    """One scheduling decision: the gangs granted, in order, and when."""

    time: float
    gangs: tuple[Gang, ...]
    """Gangs dispatched, in dispatch order."""
    waiting: int
    """Gangs still waiting afterwards."""


class GangScheduler:
    """Holds pending gangs and the backend's capacity; dispatches whole gangs by policy."""

    def __init__(
        self,
        backend: Backend,
        policy: GangPolicy,
        capacity: Capacity,
        *,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.backend = backend
        self.policy = policy
        self.capacity = capacity
        self._clock = clock
        # Entries are the policy key followed by (seq, gang): flat tuples compare fastest.
        self._heap: list[tuple[float | int | Gang, ...]] = []
        self._waiting = 0
        self._seq = itertools.count()
        self._priority = itertools.count()
        self._request_ids = itertools.count()
        self.running_seqs = 0
        self.running_kv = 0
        self.token_time: float | None = None
        """Recent seconds per generated token of a running request (moving average over finished ones)."""
        self.given_up = 0
        """Gangs the policy left undispatched because their query could not make its deadline."""

    # -- queue verbs -------------------------------------------------------------------------

    def now(self) -> float:
        return self._clock() if self._clock else asyncio.get_running_loop().time()

    def __len__(self) -> int:
        """Gangs waiting for dispatch."""
        return self._waiting

    def submit(self, gang: Gang) -> None:
        """Queue ``gang`` (the scheduler does not dispatch here: call :meth:`schedule`)."""
        gang.seq = next(self._seq)
        entry: tuple[float | int | Gang, ...] = (*self.policy.key(gang), gang.seq, gang)
        heapq.heappush(self._heap, entry)
        self._waiting += 1

    def withdraw(self, gang: Gang) -> None:
        """Remove a waiting gang (lazily: its heap entry is skipped when reached)."""
        if gang.dispatched is None and not gang.withdrawn:
            gang.withdrawn = True
            self._waiting -= 1

    def fits(self, gang: Gang) -> bool:
        """Whether the whole gang fits now; a gang too big for the engine runs alone."""
        if self.running_seqs == 0:
            return True
        if self.running_seqs + len(gang.requests) > self.capacity.max_seqs:
            return False
        limit = self.capacity.max_kv_tokens
        return limit is None or self.running_kv + gang.kv_tokens <= limit

    def schedule(self) -> Dispatch:
        """Dispatch waiting gangs in policy order while the head gang fits.

        Strict order: when the head does not fit, nothing behind it jumps ahead, so a large
        gang is never starved by a stream of small ones.
        """
        granted: list[Gang] = []
        now = self.now()
        while self._heap:
            gang: Gang = self._heap[0][-1]  # type: ignore[assignment]
            if gang.withdrawn:
                heapq.heappop(self._heap)
                continue
            if self.policy.gives_up(gang, now, self.token_time):
                # Never dispatched: the query's deadline ends it, and the capacity goes to others.
                heapq.heappop(self._heap)
                self.withdraw(gang)
                self.given_up += 1
                continue
            if not self.fits(gang):
                break
            heapq.heappop(self._heap)
            self._waiting -= 1
            gang.dispatched = now
            gang.priority = next(self._priority)
            self.running_seqs += len(gang.requests)
            self.running_kv += gang.kv_tokens
            granted.append(gang)
            if gang.on_dispatch is not None:
                gang.on_dispatch(gang)
            if gang.permit is not None and not gang.permit.done():
                gang.permit.set_result(None)
        return Dispatch(now, tuple(granted), self._waiting)

    def _observe(self, gang: Gang, tokens: int) -> None:
        if tokens < 1 or gang.dispatched is None:
            return
        sample = (self.now() - gang.dispatched) / tokens
        self.token_time = sample if self.token_time is None else 0.9 * self.token_time + 0.1 * sample

    def _release(self, gang: Gang, indices: Sequence[int]) -> None:
        self.running_seqs -= len(indices)
        self.running_kv -= sum(gang.request_kv[i] for i in indices)

    # -- running gangs -----------------------------------------------------------------------

    async def run_gang(
        self,
        stats: QueryStats,
        requests: Sequence[GenerateRequest],
        *,
        on_record: Callable[[RequestRecord], None] | None = None,
        on_dispatch: Callable[[Gang], None] | None = None,
    ) -> list[Completion]:
        """Queue ``requests`` as one gang, wait for dispatch, run them, return completions.

        Cancelling the caller withdraws a waiting gang or aborts its running requests.
        Per-request policies (``split_gangs``) queue each request on its own.
        """
        if self.policy.split_gangs and len(requests) > 1:
            async with first_error(), asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self._run_one_gang(stats, [r], on_record, on_dispatch)) for r in requests]
                await _join_in_order(tasks)
            return [task.result()[0] for task in tasks]
        return await self._run_one_gang(stats, requests, on_record, on_dispatch)

    async def _run_one_gang(
        self,
        stats: QueryStats,
        requests: Sequence[GenerateRequest],
        on_record: Callable[[RequestRecord], None] | None,
        on_dispatch: Callable[[Gang], None] | None,
    ) -> list[Completion]:
        gang = Gang(stats, requests, self.now(), gang_kv(stats, requests), on_dispatch=on_dispatch)
        gang.permit = asyncio.get_running_loop().create_future()
        self.submit(gang)
        self.schedule()
        try:
            await gang.permit
        except asyncio.CancelledError:
            if gang.dispatched is None:
                self.withdraw(gang)  # it may have been the head that blocked the gangs behind it
            else:  # dispatched in the same loop iteration as the cancellation
                self._release(gang, range(len(requests)))
            self.schedule()
            raise
        async with first_error(), asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(self._run_request(gang, i, on_record)) for i in range(len(requests))]
            await _join_in_order(tasks)
        return [task.result() for task in tasks]

    async def _run_request(
        self, gang: Gang, index: int, on_record: Callable[[RequestRecord], None] | None
    ) -> Completion:
        request = gang.requests[index]
        engine_request = EngineRequest(
            id=f"{gang.stats.id}-{next(self._request_ids)}",
            query_id=gang.stats.id,
            request=request,
            priority=gang.priority,
        )
        finish_reason = "abort"
        try:
            completion = await self.backend.generate(engine_request)
            finish_reason = completion.finish_reason
            engine_request.meter.prompt_tokens = completion.prompt_tokens
            engine_request.meter.completion_tokens = completion.completion_tokens
            self._observe(gang, completion.completion_tokens)
            return completion
        except Exception:
            finish_reason = "error"
            raise
        finally:
            self._release(gang, (index,))
            if on_record is not None:
                on_record(
                    RequestRecord(
                        id=engine_request.id,
                        query_id=gang.stats.id,
                        tag=request.tag,
                        priority=gang.priority,
                        submitted=gang.submitted,
                        dispatched=gang.dispatched if gang.dispatched is not None else gang.submitted,
                        finished=self.now(),
                        prompt_tokens=engine_request.meter.prompt_tokens,
                        completion_tokens=engine_request.meter.completion_tokens,
                        finish_reason=finish_reason,
                    )
                )
            self.schedule()


async def _join_in_order(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Wait for ``tasks`` (inside their task group); when cancelled, cancel them in creation order.

    A task group cancels its children in the order of a set of tasks, which follows their
    memory addresses; the order in which aborted requests release capacity and leave the
    engine would then differ from one process to the next, and so would a simulated run.
    """
    try:
        await asyncio.wait(tasks)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        raise
