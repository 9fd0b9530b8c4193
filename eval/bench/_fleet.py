"""Many simulated replicas behind the proxy's upstream pool, for the online benchmark.

The proxy (``dynasor serve`` with repeated ``--upstream``) runs one runtime, so one gang scheduler
whose capacity is the sum of the replicas' (``PooledBackend.capacity``), over an
:class:`~dynasor.server.upstreams.UpstreamPool`: a query is bound to the least loaded usable replica
when it arrives and every sub-request of it goes there; a sub-request whose replica fails is sent
again, from its start, to another replica (the partial work of that sub-request is lost, the
query's finished sub-requests are kept), and a :class:`~dynasor.server.upstreams.HealthMonitor`
probes the replicas in the background. A :class:`Fleet` builds exactly that over N simulated
engines, each with its own sequence and KV limits, so the same routing code runs in virtual time.

A :class:`~eval.bench.ReplicaFailure` takes one replica down for good at a virtual time, and the
fleet answers as the proxy's HTTP backend (``OpenAIBackend``) does when a vLLM server crashes:

- a sub-request whose stream had delivered tokens breaks off (``StreamBroken``): the proxy sends
  it again, from its prompt, to another replica, its query moving there (no bench program relays
  text to a client as it decodes; in the proxy one that does fails its query instead); the tokens
  the broken stream had generated are lost;
- a sub-request that had no token yet (waiting in the engine, or sent after the crash) is refused,
  tried again with the proxy's backoff (``upstream_attempts`` tries), and then, unreachable, moves
  with its query to another replica, where it starts again from its prompt.

This module imports the proxy's package (FastAPI with it), so the bench loads it only for a run
with replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from algorithms.protocol import Completion
from dynasor import EngineUnavailable, StreamBroken
from dynasor.engine.base import Backend, Capacity, EngineRequest
from dynasor.engine.openai import RetryPolicy
from dynasor.engine.sim import SimBackend, Source
from dynasor.scorers import SyntheticScorer
from dynasor.server import ServerSettings
from dynasor.server.upstreams import HealthMonitor, PooledBackend, Replica, UpstreamPool
from eval.bench._failure import ReplicaFailure

__all__ = ["PROXY_ATTEMPTS", "PROXY_HEALTH_INTERVAL_S", "PROXY_RETRY_S", "Fleet", "FleetStats"]

T = TypeVar("T")

# The proxy's own defaults: probing interval, how long a replica stays out, tries per sub-request.
_PROXY_DEFAULTS = ServerSettings()
PROXY_HEALTH_INTERVAL_S = _PROXY_DEFAULTS.health_interval_s
PROXY_RETRY_S = _PROXY_DEFAULTS.replica_retry_s
PROXY_ATTEMPTS = _PROXY_DEFAULTS.upstream_attempts

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class _FailingBackend(Backend):
    """A replica that crashes at loop time ``down_at``, seen through the proxy's HTTP backend:
    a stream that had delivered tokens breaks off (``StreamBroken``); a request without a token
    yet, or sent later, is refused and tried again with backoff, then ``EngineUnavailable``."""

    def __init__(self, inner: SimBackend, down_at: float, *, attempts: int = PROXY_ATTEMPTS, seed: int = 0) -> None:
        self.inner = inner
        self.engine = inner.engine
        self.model = inner.model
        self.down_at = down_at
        self.retry = RetryPolicy(attempts=attempts)
        self._rng = random.Random(seed)
        self.broken_off: set[str] = set()
        """Queries with a stream cut after its first tokens (sent again elsewhere by the pool)."""
        self.refused = 0
        """Sub-requests refused after every try (their queries move)."""

    def capacity(self) -> Capacity:
        return self.inner.capacity()

    def _down(self) -> bool:
        return asyncio.get_running_loop().time() >= self.down_at

    async def generate(self, request: EngineRequest) -> Completion:
        if not self._down():
            try:
                async with asyncio.timeout_at(self.down_at):
                    return await self.inner.generate(request)
            except TimeoutError:
                streamed = request.meter.completion_tokens  # what the aborted sequence had generated
                if streamed > 0:
                    self.broken_off.add(request.query_id)
                    message = f"stream broke after {streamed} tokens (replica went down)"
                    raise StreamBroken(message, chunks=streamed) from None
        for retry in range(self.retry.attempts - 1):  # the first try was refused (or cut before a token)
            await asyncio.sleep(self.retry.delay(retry, self._rng))
        self.refused += 1
        raise EngineUnavailable("connection refused (replica down)")

    async def check_health(self) -> None:
        if self._down():
            raise EngineUnavailable("connection refused (replica down)")

    async def aclose(self) -> None:
        await self.inner.aclose()


class _MeteredPool(UpstreamPool):
    """The proxy's pool, unchanged, plus the time integral of each replica's bound queries and the
    queries that moved; none of it changes a routing decision."""

    def __init__(self, replicas: Iterable[Replica], **kwargs: Any) -> None:
        super().__init__(replicas, **kwargs)
        self.area = [0.0] * len(self.replicas)
        self._last = [self.clock()] * len(self.replicas)
        self._index = {id(r): i for i, r in enumerate(self.replicas)}
        self.moved: set[str] = set()
        self.peak_bound = 0
        self._start = self.clock()

    def _settle(self, replica: Replica) -> None:
        i, now = self._index[id(replica)], self.clock()
        self.area[i] += replica.queries * (now - self._last[i])
        self._last[i] = now

    def pick(self, exclude: Iterable[Replica] = ()) -> Replica:
        # The pool binds a query to the replica it picks: close that replica's integral first.
        replica = super().pick(exclude)
        self._settle(replica)
        return replica

    def bind(self, query_id: str) -> Replica:
        replica = super().bind(query_id)
        self.peak_bound = max(self.peak_bound, self.bound)
        return replica

    def rebind(self, query_id: str, exclude: Iterable[Replica]) -> Replica:
        self.moved.add(query_id)
        return super().rebind(query_id, exclude)

    def release(self, query_id: str) -> None:
        replica = self._bound.get(query_id)
        if replica is not None:
            self._settle(replica)
        super().release(query_id)

    def mean_bound(self) -> list[float]:
        """Each replica's time-averaged number of bound queries so far."""
        for replica in self.replicas:
            self._settle(replica)
        span = max(self.clock() - self._start, 1e-9)
        return [a / span for a in self.area]


@dataclass
class FleetStats:
    """What the fleet saw during one run (virtual seconds; bytes of this process's RSS)."""

    programs_started: int = 0
    programs_finished: int = 0
    """Programs that ran to their end (an answer, or cut at their deadline)."""
    programs_cancelled: int = 0
    """Programs cancelled part-way (the unscored load still running when the scored queries were done)."""
    rss_start: int = 0
    rss_at_peak: int = 0
    """RSS when the most queries were in flight (sampled each time the count grows by ``rss_step``)."""
    peak_in_flight: int = 0
    rss_samples: list[tuple[int, int]] = field(default_factory=list)
    """``(queries in flight, RSS)`` at each sample."""


def _max_over_mean(values: list[float]) -> float | None:
    mean = sum(values) / len(values) if values else 0.0
    return max(values) / mean if mean > 0 else None


def _rss() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:  # no procfs: memory figures are left out
        return 0


class Fleet:
    """N simulated engines behind the proxy's pool, pooled backend and health probing.

    Build it inside the run's event loop (a failure time is counted from the loop's clock then).
    """

    def __init__(
        self,
        profile: str,
        source: Source,
        replicas: int,
        *,
        seed: int = 0,
        prefix_caching: bool = True,
        failure: ReplicaFailure | None = None,
        health_interval_s: float = PROXY_HEALTH_INTERVAL_S,
        retry_s: float = PROXY_RETRY_S,
        rss_step: int = 0,
    ) -> None:
        if replicas < 1:
            raise ValueError(f"a fleet needs at least one replica, got {replicas}")
        if failure is not None and failure.replica >= replicas:
            raise ValueError(f"replica {failure.replica} cannot fail: there are {replicas} (0-based)")
        loop = asyncio.get_running_loop()
        self.source = source
        self.sims = [SimBackend(profile, source, seed=seed, prefix_caching=prefix_caching) for _ in range(replicas)]
        backends: list[Backend] = list(self.sims)
        self.failing: _FailingBackend | None = None
        if failure is not None:
            self.failing = _FailingBackend(self.sims[failure.replica], loop.time() + failure.at, seed=seed)
            backends[failure.replica] = self.failing
        self.pool = _MeteredPool(
            [Replica(f"sim:{i}", b) for i, b in enumerate(backends)], retry_s=retry_s, clock=loop.time
        )
        self.backend = PooledBackend(self.pool)
        self.monitor = HealthMonitor(self.pool, health_interval_s) if health_interval_s > 0 else None
        self.scorer = SyntheticScorer(seed=seed)
        self.stats = FleetStats()
        self.rss_step = rss_step
        self._in_flight = 0
        self._stack: contextlib.AsyncExitStack | None = None

    def capacity(self, max_seqs: int | None) -> Capacity | None:
        """The scheduler's capacity: the pool's sum, or ``max_seqs`` sequences in all when given."""
        total = self.backend.capacity()
        return None if max_seqs is None or total is None else replace(total, max_seqs=max_seqs)

    async def start(self) -> None:
        """Start health probing (as the proxy does while it serves) and take the starting RSS."""
        self.stats.rss_start = _rss() if self.rss_step else 0
        self._stack = contextlib.AsyncExitStack()
        if self.monitor is not None:
            await self._stack.enter_async_context(self.monitor.running())

    async def stop(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None

    async def serve(self, query_id: str, run: Awaitable[T]) -> T:
        """Run one query as the proxy's reasoning service does: bound to a replica until it ends."""
        self.pool.bind(query_id)
        self.stats.programs_started += 1
        self._in_flight += 1
        if self.rss_step and self._in_flight > self.stats.peak_in_flight:
            self.stats.peak_in_flight = self._in_flight
            if self._in_flight % self.rss_step == 0:
                rss = _rss()
                self.stats.rss_samples.append((self._in_flight, rss))
                self.stats.rss_at_peak = rss
        try:
            result = await run
        except asyncio.CancelledError:
            self.stats.programs_cancelled += 1
            raise
        else:
            self.stats.programs_finished += 1
            return result
        finally:
            self._in_flight -= 1
            self.pool.release(query_id)

    def counters(self) -> dict[str, float]:
        """The engine counters of the single-engine bench, summed over replicas, plus the fleet's."""
        engines = [s.engine for s in self.sims]
        tokens = [float(e.tokens_generated) for e in engines]
        busy = [float(e.busy_time) for e in engines]
        out: dict[str, float] = {
            "samples_replayed_twice": float(getattr(self.source, "replayed_twice", 0)),
            "tokens_generated": sum(tokens),
            "prompt_tokens_prefilled": float(sum(e.prompt_tokens_prefilled for e in engines)),
            "prefix_hit_tokens": float(sum(e.prefix_hit_tokens for e in engines)),
            "busy_time_s": sum(busy),
            "preemptions": float(sum(e.preemptions for e in engines)),
            "replicas": float(len(engines)),
        }
        live = [i for i in range(len(engines)) if self.failing is None or self.sims[i] is not self.failing.inner]
        bound = self.pool.mean_bound()
        balance = {
            "replica_load_max_over_mean": _max_over_mean([bound[i] for i in live]),
            "replica_tokens_max_over_mean": _max_over_mean([tokens[i] for i in live]),
            "replica_busy_max_over_mean": _max_over_mean([busy[i] for i in live]),
        }
        out |= {k: v for k, v in balance.items() if v is not None}
        out["queries_moved"] = float(len(self.pool.moved))
        out["peak_queries_bound"] = float(self.pool.peak_bound)
        if self.failing is not None:
            out["failed_replica_queries_broken_off"] = float(len(self.failing.broken_off))
            # The pool counts what broken streams had generated, as the proxy does.
            out["failed_replica_tokens_lost"] = float(sum(r.tokens_lost for r in self.pool.replicas))
            out["failed_replica_requests_refused"] = float(self.failing.refused)
            out["failed_replica_requests_resent"] = float(sum(r.resent for r in self.pool.replicas))
        return out
