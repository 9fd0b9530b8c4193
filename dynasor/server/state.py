"""The proxy's services, built from its settings: upstream pool, runtime, reasoning, pass-through, metrics.

One :class:`ProxyState` per app (``app.state.proxy``); the routes read everything from it. No
web framework here.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError

from dynasor.allocator import Allocator, AllocatorConfig
from dynasor.engine.base import Backend, Scorer
from dynasor.engine.openai import OpenAIBackend, RetryPolicy
from dynasor.engine.sim import SimBackend
from dynasor.runtime import Runtime
from dynasor.scorers import HttpRewardScorer, JudgeScorer, ScorerRouter, SyntheticScorer, make_scorer
from dynasor.server._passthrough import ServingError, SimResponder, UpstreamRelay
from dynasor.server._settings import ServerSettings
from dynasor.server.metrics import ProxyMetrics
from dynasor.server.protocol import RequestFields, validation_message
from dynasor.server.serving import ReasoningService
from dynasor.server.upstreams import HealthMonitor, PooledBackend, Replica, UpstreamPool

__all__ = ["ProxyState"]


class ProxyState:
    """Everything the routes use, built from the settings (one per app)."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.metrics = ProxyMetrics()
        self.sim: SimResponder | None = None
        self.relay: UpstreamRelay | None = None
        profile = settings.sim_profile
        backends: list[tuple[str, Backend]]
        if profile is not None:
            sim = SimBackend(profile, settings.sim_source, seed=settings.sim_seed)
            backends = [(f"sim:{profile}", sim)]
        else:
            retry = RetryPolicy(attempts=settings.upstream_attempts)
            backends = [
                (
                    url.rstrip("/").removesuffix("/v1"),
                    OpenAIBackend(
                        url,
                        settings.model,
                        api_key=settings.upstream_api_key,
                        connect_timeout=settings.connect_timeout_s,
                        read_timeout=settings.read_timeout_s,
                        retry=retry,
                        max_seqs=settings.replica_seqs,
                        stream_interval=settings.stream_interval,
                    ),
                )
                for url in settings.upstreams
            ]
        self.pool = UpstreamPool(
            [Replica(url, b) for url, b in backends],
            retry_s=settings.replica_retry_s,
            eject_after=settings.eject_after,
        )
        self.backend = PooledBackend(self.pool)
        self.health = (
            HealthMonitor(self.pool, settings.health_interval_s)
            if settings.health_interval_s > 0 and profile is None
            else None
        )
        config = AllocatorConfig.load(settings.allocator_config) if settings.allocator_config else None
        self.scorer = _scorers(settings, self.backend)
        self.runtime = Runtime(
            self.backend,
            policy=settings.policy,
            allocator=Allocator(config),
            max_active=settings.max_active,
            scorer=self.scorer,
        )
        self.runtime.observers.append(self.metrics.observe)
        self.reasoning = ReasoningService(settings, self.runtime, self.backend)
        on_done = self._passthrough_done
        if profile is not None:
            self.sim = SimResponder(
                self.pool.replicas[0].backend, on_done=on_done, max_inflight=settings.max_passthrough
            )
        else:
            self.relay = UpstreamRelay(
                self.pool,
                api_key=settings.upstream_api_key,
                connect_timeout=settings.connect_timeout_s,
                read_timeout=settings.read_timeout_s,
                total_timeout=settings.request_timeout_s,
                max_inflight=settings.max_passthrough,
                on_done=on_done,
            )
        m = self.metrics
        m.track(settings.policy, lambda: float(len(self.runtime.scheduler)), lambda: float(self.runtime.active))
        m.passthrough_inflight.set_function(self._inflight)
        m.subrequests_running.set_function(lambda: float(self.runtime.scheduler.running_seqs))
        m.track_failover(lambda: [(r.url, r.resent, r.tokens_lost) for r in self.pool.replicas])
        for replica in self.pool.replicas:
            m.upstream_up.labels(replica.url).set_function(functools.partial(self._replica_up, replica))
            m.upstream_load.labels(replica.url).set_function(functools.partial(_replica_load, replica))
        if profile is not None:
            engine = self.pool.replicas[0].backend.engine  # type: ignore[attr-defined]
            m.engine_sequences.set_function(lambda: float(engine.running + engine.waiting))

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[None]:
        """The services' lifetime: health probing while the app serves, everything closed after."""
        try:
            if self.health is None:
                yield
            else:
                async with self.health.running():
                    yield
        finally:
            await self.aclose()

    def _replica_up(self, replica: Replica) -> float:
        return float(replica.up(self.pool.clock()))

    def _inflight(self) -> float:
        if self.relay is not None:
            return float(self.relay.inflight)
        return float(self.sim.inflight if self.sim is not None else 0)

    def _passthrough_done(self, path: str, seconds: float) -> None:
        self.metrics.passthrough_latency.labels(path).observe(seconds)

    def plain_fields(self, data: dict[str, Any]) -> RequestFields:
        """The fields of a request the proxy acts on, checked (400 naming the field); the rest is not parsed."""
        try:
            return RequestFields.model_validate(data)
        except ValidationError as exc:
            message, param = validation_message(exc.errors())
            raise ServingError(400, message, param=param) from None

    def check_limits(self, fields: RequestFields) -> None:
        """400 for ``n`` or ``max_tokens`` beyond the configured limits."""
        limits = self.settings
        if fields.n is not None and fields.n > limits.max_n:
            raise ServingError(400, f"n {fields.n} exceeds this server's limit {limits.max_n}", param="n")
        for name in ("max_tokens", "max_completion_tokens"):
            cap = getattr(fields, name)
            if cap is not None and cap > limits.max_tokens:
                raise ServingError(400, f"{name} {cap} exceeds this server's limit {limits.max_tokens}", param=name)

    def sim_models(self) -> dict[str, Any]:
        """``/v1/models`` over the simulated engine."""
        model = {"id": self.backend.model, "object": "model", "created": int(time.time()), "owned_by": "dynasor-sim"}
        return {"object": "list", "data": [model]}

    async def aclose(self) -> None:
        if self.relay is not None:
            await self.relay.aclose()
        await self.runtime.aclose()


def _replica_load(replica: Replica) -> float:
    return float(replica.load)


def _scorers(settings: ServerSettings, backend: PooledBackend) -> ScorerRouter | None:
    """The reward scorers ``settings.reward`` names, behind one router (the first the default)."""
    scorers: dict[str, Scorer] = {}
    for name in settings.rewards():
        if name.startswith(("http://", "https://")):
            scorers["reward-model"] = HttpRewardScorer(
                name,
                settings.reward_model,
                endpoint=settings.reward_endpoint,
                api_key=settings.upstream_api_key,
                timeout=settings.read_timeout_s,
            )
        elif name == "judge":
            scorers[name] = JudgeScorer(backend)
        elif name == "synthetic":
            scorers[name] = SyntheticScorer(seed=settings.sim_seed)
        else:
            scorers[name] = make_scorer(name)
    if not scorers:
        return None
    return ScorerRouter(scorers, default=next(iter(scorers)))
