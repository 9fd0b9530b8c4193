"""Several upstream replicas behind one proxy, and what the proxy knows of their health.

Every sub-request of a reasoning query goes to the replica the query was bound to (so
the engine's prefix cache serves the shared prompt), chosen as the least loaded usable
replica when the query arrives.

A replica leaves the pool in two ways, and comes back in two:

- *unreachable*: a connection to it fails (refused, reset before an answer, timed out), or a
  health probe does. It is out at once; it is back when a probe succeeds (or, without
  probing, ``retry_s`` later, when a request tries it again).
- *failing*: it answers, but with errors (HTTP 5xx or 429 through all of a sub-request's
  retries) ``eject_after`` times in a row. It is out for ``retry_s``; a success resets the
  count. The last usable replica is never taken out for answering with errors: the fault
  may be the requests', and each failing request already gets its own error.

Queries bound to a replica that leaves move to another one for their next sub-request. A
sub-request whose stream breaks part-way (the replica crashed under it) is sent again, from its
prompt, to another replica when none of its text has gone to a client (no one watches a
self-consistency sample decode); one whose text was being relayed fails its query instead, as
a client cannot take back what it was shown.
:class:`HealthMonitor` probes every replica in the background (vLLM's ``GET /health``), so
``/health`` never reports a closed port as up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from algorithms.protocol import Completion
from dynasor._exceptions import EngineError, EngineUnavailable, StreamBroken
from dynasor.engine.base import Backend, Capacity, EngineRequest

__all__ = ["HealthMonitor", "NoHealthyUpstream", "PooledBackend", "Replica", "UpstreamPool", "replica_states"]

logger = logging.getLogger(__name__)

TextTap = Callable[[EngineRequest, str], None]

DownReason = Literal["unreachable", "failing"]


class NoHealthyUpstream(EngineUnavailable):
    """Every replica is out; ``retry_after`` says when the first may be back."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message, status=503)
        self.retry_after = retry_after


@dataclass(eq=False)
class Replica:
    """One upstream engine and what the pool knows of it."""

    url: str
    backend: Backend
    queries: int = 0
    """Reasoning queries bound to it now."""
    inflight: int = 0
    """Pass-through requests in flight now."""
    down_until: float = 0.0
    down_reason: DownReason | None = None
    failures: int = 0
    """Failed requests in a row (reset by a success)."""
    last_error: str | None = field(default=None, repr=False)
    resent: int = 0
    """Sub-requests whose stream broke here part-way and were sent again to another replica."""
    tokens_lost: int = 0
    """Completion tokens those broken streams had generated."""

    @property
    def load(self) -> int:
        return self.queries + self.inflight

    def up(self, now: float) -> bool:
        return self.down_until <= now


class UpstreamPool:
    """Replicas, their load and health; binds queries to replicas.

    Parameters
    ----------
    retry_s:
        How long a replica stays out (and, without probing, when an unreachable one is tried again).
    eject_after:
        Failed requests in a row that take a replica answering with errors out.
    """

    def __init__(
        self,
        replicas: Iterable[Replica],
        *,
        retry_s: float = 10.0,
        eject_after: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.replicas = list(replicas)
        if not self.replicas:
            raise ValueError("an upstream pool needs at least one replica")
        if eject_after < 1:
            raise ValueError(f"eject_after must be >= 1, got {eject_after}")
        self.retry_s = retry_s
        self.eject_after = eject_after
        self.clock = clock
        self._bound: dict[str, Replica] = {}

    def usable(self) -> list[Replica]:
        now = self.clock()
        return [r for r in self.replicas if r.up(now)]

    def pick(self, exclude: Iterable[Replica] = ()) -> Replica:
        """The least loaded usable replica (ties: the first listed).

        Raises :class:`NoHealthyUpstream` when every replica not excluded is out.
        """
        now = self.clock()
        skip = set(map(id, exclude))
        best: Replica | None = None
        for replica in self.replicas:
            if id(replica) in skip or not replica.up(now):
                continue
            if best is None or replica.load < best.load:
                best = replica
        if best is not None:
            return best
        candidates = [r for r in self.replicas if id(r) not in skip]
        wait = min((r.down_until - now for r in candidates), default=self.retry_s)
        wait = self.retry_s if not math.isfinite(wait) else max(wait, 0.0)
        errors = "; ".join(f"{r.url}: {r.last_error}" for r in candidates if r.last_error) or "none reachable"
        raise NoHealthyUpstream(f"no upstream available ({errors}); retrying in {wait:.1f} s", retry_after=wait)

    def mark_unreachable(self, replica: Replica, error: str) -> None:
        """A connection to ``replica`` failed: out until a probe (or ``retry_s``) says otherwise."""
        was_up = replica.up(self.clock())
        replica.failures += 1
        replica.last_error = error
        replica.down_reason = "unreachable"
        replica.down_until = self.clock() + self.retry_s
        if was_up:
            logger.warning("upstream %s is unreachable, taken out: %s", replica.url, error)

    def mark_failed(self, replica: Replica, error: str) -> bool:
        """``replica`` answered a request with an error; True when that took it out."""
        replica.failures += 1
        replica.last_error = error
        if replica.failures < self.eject_after or not replica.up(self.clock()):
            return False
        if not any(r is not replica for r in self.usable()):
            return False  # the last usable replica stays: the fault may be the requests'
        replica.down_reason = "failing"
        replica.down_until = self.clock() + self.retry_s
        logger.warning(
            "upstream %s failed %d requests in a row, taken out for %.0f s: %s",
            replica.url,
            replica.failures,
            self.retry_s,
            error,
        )
        return True

    def mark_ok(self, replica: Replica) -> None:
        """A request succeeded on ``replica``: its failure count and any pause are over."""
        if replica.down_reason is not None:
            logger.info("upstream %s is back", replica.url)
        replica.failures = 0
        replica.last_error = None
        replica.down_reason = None
        replica.down_until = 0.0

    def probed(self, replica: Replica, error: str | None) -> None:
        """Take a health probe's result: a failure takes the replica out, a success ends an unreachable spell."""
        if error is not None:
            self.mark_unreachable(replica, error)
        elif replica.down_reason == "unreachable":
            self.mark_ok(replica)

    # -- query binding -------------------------------------------------------------------

    def bind(self, query_id: str) -> Replica:
        """Bind a new query to the least loaded usable replica."""
        replica = self.pick()
        self._bound[query_id] = replica
        replica.queries += 1
        return replica

    def rebind(self, query_id: str, exclude: Iterable[Replica]) -> Replica:
        """Move a query off a failing replica; one that another of its requests already moved to
        a usable replica stays there (a gang's requests fail together and move together)."""
        exclude = list(exclude)
        current = self._bound.get(query_id)
        if current is not None and current.up(self.clock()) and all(current is not r for r in exclude):
            return current
        replica = self.pick(exclude)
        self.release(query_id)
        self._bound[query_id] = replica
        replica.queries += 1
        return replica

    def replica_for(self, query_id: str) -> Replica:
        """The replica of a bound query; an unbound one is bound now."""
        return self._bound.get(query_id) or self.bind(query_id)

    def release(self, query_id: str) -> None:
        replica = self._bound.pop(query_id, None)
        if replica is not None:
            replica.queries -= 1

    @property
    def bound(self) -> int:
        return len(self._bound)


class HealthMonitor:
    """Probes every replica's health every ``interval_s`` seconds, in the background."""

    def __init__(self, pool: UpstreamPool, interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.pool = pool
        self.interval_s = interval_s
        self.probes = 0

    async def probe_all(self) -> None:
        """One round: every replica probed concurrently, the pool told each result."""

        async def probe(replica: Replica) -> None:
            error: str | None = None
            try:
                await replica.backend.check_health()
            except EngineError as exc:
                error = str(exc)
            self.pool.probed(replica, error)

        async with asyncio.TaskGroup() as group:
            for replica in self.pool.replicas:
                group.create_task(probe(replica))
        self.probes += 1

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Probe once now, then every ``interval_s`` until the block exits."""
        await self.probe_all()

        async def loop() -> None:
            while True:
                await asyncio.sleep(self.interval_s)
                try:
                    await self.probe_all()
                except Exception:  # a probe must never stop probing
                    logger.exception("health probe round failed")

        task = asyncio.get_running_loop().create_task(loop())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class PooledBackend(Backend):
    """The runtime's backend over a pool: sticky per query, fails over between replicas.

    ``taps`` maps query ids to a callback that sees each text delta of that query's
    requests (how a chain of thought is streamed to its client as it decodes).
    ``logprobs`` maps query ids to the number of top logprobs every request of that query
    asks the engine for (what a logprob reward scorer reads).
    """

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.taps: dict[str, TextTap] = {}
        self.logprobs: dict[str, int] = {}
        self.model = pool.replicas[0].backend.model

    def capacity(self) -> Capacity | None:
        caps = [r.backend.capacity() for r in self.pool.replicas]
        if any(c is None for c in caps):
            return None
        known = [c for c in caps if c is not None]
        kv = [c.max_kv_tokens for c in known]
        return Capacity(
            max_seqs=sum(c.max_seqs for c in known),
            max_kv_tokens=None if any(k is None for k in kv) else sum(k for k in kv if k is not None),
        )

    async def generate(self, request: EngineRequest) -> Completion:
        request = self._shaped(request)
        replica = self.pool.replica_for(request.query_id)
        tried: list[Replica] = []
        while True:
            try:
                completion = await replica.backend.generate(request)
            except StreamBroken as exc:
                self.pool.mark_unreachable(replica, str(exc))
                if request.request.on_text is not None:
                    raise  # its text has been relayed: a second generation would not continue it
                tried.append(replica)
                broken = replica
                broken.tokens_lost += request.meter.completion_tokens
                replica = self._move(request, tried, exc)
                broken.resent += 1
                request.meter.completion_tokens = 0  # the next replica's stream counts afresh
                continue
            except EngineUnavailable as exc:
                tried.append(replica)
                if exc.status is None:
                    self.pool.mark_unreachable(replica, str(exc))
                else:
                    self.pool.mark_failed(replica, str(exc))
                replica = self._move(request, tried, exc)
                continue
            if replica.failures or replica.down_reason is not None:
                self.pool.mark_ok(replica)
            self.model = replica.backend.model
            return completion

    def _move(self, request: EngineRequest, tried: list[Replica], failure: EngineError) -> Replica:
        """Rebind the request's query to a replica not tried yet; ``failure`` when there is none."""
        try:
            replica = self.pool.rebind(request.query_id, exclude=tried)
        except EngineUnavailable:
            raise failure from None
        logger.info("query %s moves to %s", request.query_id, replica.url)
        return replica

    def _shaped(self, request: EngineRequest) -> EngineRequest:
        """The request with its query's tap and logprobs applied."""
        inner = request.request
        changes: dict[str, object] = {}
        tap = self.taps.get(request.query_id)
        if tap is not None:
            changes["on_text"] = _tapped(request, inner.on_text, tap)
        want = self.logprobs.get(request.query_id)
        if want is not None and inner.logprobs is None:
            changes["logprobs"] = want
        if not changes:
            return request
        return replace(request, request=replace(inner, **changes))  # type: ignore[arg-type]

    async def check_health(self) -> None:
        if not self.pool.usable():
            self.pool.pick()  # raises NoHealthyUpstream, naming each replica's error

    async def aclose(self) -> None:
        for replica in self.pool.replicas:
            await replica.backend.aclose()


def _tapped(request: EngineRequest, previous: Callable[[str], None] | None, tap: TextTap) -> Callable[[str], None]:
    def on_text(text: str) -> None:
        if previous is not None:
            previous(text)
        tap(request, text)

    return on_text


def replica_states(pool: UpstreamPool) -> list[Mapping[str, object]]:
    """What ``/health`` shows of each replica."""
    now = pool.clock()
    return [
        {
            "url": r.url,
            "up": r.up(now),
            "load": r.load,
            "down_reason": r.down_reason,
            "error": r.last_error,
            "resent": r.resent,
            "tokens_lost": r.tokens_lost,
        }
        for r in pool.replicas
    ]
