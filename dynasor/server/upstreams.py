"""Several upstream replicas behind one proxy.

Every sub-request of a reasoning query goes to the replica the query was bound to (so
the engine's prefix cache serves the shared prompt), chosen as the least loaded healthy
replica when the query arrives. A replica that fails (unreachable, or 5xx through all
retries) is taken out for ``retry_s`` seconds; queries bound to it move to another
replica for their next sub-request, and it is tried again once the pause is over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from algorithms.protocol import Completion
from dynasor._exceptions import EngineUnavailable
from dynasor.engine.base import Backend, Capacity, EngineRequest

__all__ = ["NoHealthyUpstream", "PooledBackend", "Replica", "UpstreamPool"]

logger = logging.getLogger(__name__)

TextTap = Callable[[EngineRequest, str], None]


class NoHealthyUpstream(EngineUnavailable):
    """Every replica is taken out; ``retry_after`` says when the first comes back."""

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
    failures: int = 0
    """Failures in a row (reset by a success)."""
    last_error: str | None = field(default=None, repr=False)

    @property
    def load(self) -> int:
        return self.queries + self.inflight

    def up(self, now: float) -> bool:
        return self.down_until <= now


class UpstreamPool:
    """Replicas, their load and health; binds queries to replicas."""

    def __init__(
        self, replicas: Iterable[Replica], *, retry_s: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.replicas = list(replicas)
        if not self.replicas:
            raise ValueError("an upstream pool needs at least one replica")
        self.retry_s = retry_s
        self.clock = clock
        self._bound: dict[str, Replica] = {}

    def pick(self, exclude: Iterable[Replica] = ()) -> Replica:
        """The least loaded healthy replica (ties: the first listed).

        Raises :class:`NoHealthyUpstream` when every replica not excluded is taken out.
        """
        now = self.clock()
        skip = set(map(id, exclude))
        candidates = [r for r in self.replicas if id(r) not in skip]
        healthy = [r for r in candidates if r.up(now)]
        if not healthy:
            wait = min((r.down_until - now for r in candidates), default=self.retry_s)
            errors = "; ".join(f"{r.url}: {r.last_error}" for r in candidates if r.last_error) or "none reachable"
            raise NoHealthyUpstream(
                f"no upstream available ({errors}); retrying in {max(wait, 0.0):.1f} s", retry_after=max(wait, 0.0)
            )
        return min(healthy, key=lambda r: r.load)

    def mark_failed(self, replica: Replica, error: str) -> None:
        """Take ``replica`` out for ``retry_s`` seconds."""
        replica.failures += 1
        replica.last_error = error
        replica.down_until = self.clock() + self.retry_s
        logger.warning("upstream %s taken out for %.0f s: %s", replica.url, self.retry_s, error)

    def mark_ok(self, replica: Replica) -> None:
        if replica.failures:
            logger.info("upstream %s is back", replica.url)
        replica.failures = 0
        replica.last_error = None
        replica.down_until = 0.0

    # -- query binding -------------------------------------------------------------------

    def bind(self, query_id: str) -> Replica:
        """Bind a new query to the least loaded healthy replica."""
        replica = self.pick()
        self._bound[query_id] = replica
        replica.queries += 1
        return replica

    def rebind(self, query_id: str, exclude: Iterable[Replica]) -> Replica:
        """Move a query off a failing replica."""
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


class PooledBackend(Backend):
    """The runtime's backend over a pool: sticky per query, fails over between replicas.

    ``taps`` maps query ids to a callback that sees each text delta of that query's
    requests (how a chain of thought is streamed to its client as it decodes).
    """

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.taps: dict[str, TextTap] = {}
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
        tap = self.taps.get(request.query_id)
        if tap is not None:
            request = _tapped(request, tap)
        replica = self.pool.replica_for(request.query_id)
        tried: list[Replica] = []
        while True:
            try:
                completion = await replica.backend.generate(request)
            except EngineUnavailable as exc:
                tried.append(replica)
                self.pool.mark_failed(replica, str(exc))
                try:
                    replica = self.pool.rebind(request.query_id, exclude=tried)
                except NoHealthyUpstream:
                    raise exc from None
                logger.info("query %s moves to %s", request.query_id, replica.url)
                continue
            if replica.failures:
                self.pool.mark_ok(replica)
            self.model = replica.backend.model
            return completion

    async def aclose(self) -> None:
        for replica in self.pool.replicas:
            await replica.backend.aclose()


def _tapped(request: EngineRequest, tap: TextTap) -> EngineRequest:
    inner = request.request
    previous = inner.on_text

    def on_text(text: str) -> None:
        if previous is not None:
            previous(text)
        tap(request, text)

    return replace(request, request=replace(inner, on_text=on_text))
