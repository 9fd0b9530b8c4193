"""Prometheus metrics of the proxy, on a registry of its own (one per app).

Reasoning queries are counted from the runtime's finished results (this object is a
runtime observer); gauges read the scheduler, runtime and upstream pool at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from dynasor._query import QueryResult

__all__ = ["CONTENT_TYPE_LATEST", "ProxyMetrics"]

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
_CERTAINDEX_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)


class ProxyMetrics:
    """Counters, histograms and gauges of one proxy."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.queries = Counter(
            "dynasor_queries",
            "Reasoning queries finished, by algorithm and exit reason.",
            ["algorithm", "exit_reason"],
            registry=r,
        )
        self.tokens_generated = Counter(
            "dynasor_tokens_generated", "Completion tokens generated for reasoning queries.", ["algorithm"], registry=r
        )
        self.tokens_saved = Counter(
            "dynasor_tokens_saved",
            "Completion tokens avoided versus each query's configured cap.",
            ["algorithm"],
            registry=r,
        )
        self.certaindex = Histogram(
            "dynasor_certaindex",
            "Final certaindex of reasoning queries.",
            ["algorithm"],
            buckets=_CERTAINDEX_BUCKETS,
            registry=r,
        )
        self.query_latency = Histogram(
            "dynasor_query_latency_seconds",
            "Arrival to answer of reasoning queries.",
            ["algorithm"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_time = Histogram(
            "dynasor_query_queue_seconds",
            "Time reasoning queries spent waiting for dispatch.",
            ["algorithm"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.passthrough_latency = Histogram(
            "dynasor_passthrough_latency_seconds",
            "Pass-through requests, arrival to the end of the response.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.requests = Counter(
            "dynasor_http_requests",
            "HTTP requests answered, by endpoint, kind and status.",
            ["endpoint", "kind", "status"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "dynasor_queue_depth", "Gangs waiting for dispatch, by gang-scheduling policy.", ["policy"], registry=r
        )
        self.active_queries = Gauge("dynasor_active_queries", "Reasoning queries admitted and running.", registry=r)
        self.passthrough_inflight = Gauge(
            "dynasor_passthrough_inflight", "Pass-through requests in flight.", registry=r
        )
        self.subrequests = Counter(
            "dynasor_subrequests",
            "Engine sub-requests of finished reasoning queries, by the query's exit reason and how each ended "
            "(abort: closed in the engine before it finished).",
            ["algorithm", "exit_reason", "finish_reason"],
            registry=r,
        )
        self.subrequests_running = Gauge(
            "dynasor_subrequests_running", "Sub-requests of reasoning queries dispatched and not finished.", registry=r
        )
        self.engine_sequences = Gauge(
            "dynasor_sim_engine_sequences",
            "Sequences running or waiting in the simulated engine (plain and reasoning; sim upstream only).",
            registry=r,
        )
        self.upstream_up = Gauge(
            "dynasor_upstream_up", "1 while an upstream replica is in use.", ["upstream"], registry=r
        )
        self.upstream_load = Gauge(
            "dynasor_upstream_load",
            "Queries and pass-through requests on an upstream replica.",
            ["upstream"],
            registry=r,
        )

    def observe(self, result: QueryResult) -> None:
        """Runtime observer: account one finished query."""
        algorithm = result.algorithm
        self.queries.labels(algorithm, str(result.exit_reason)).inc()
        self.tokens_generated.labels(algorithm).inc(result.usage.completion_tokens)
        saved = result.usage.tokens_saved
        if saved:
            self.tokens_saved.labels(algorithm).inc(saved)
        if result.certaindex is not None:
            self.certaindex.labels(algorithm).observe(result.certaindex)
        self.query_latency.labels(algorithm).observe(result.latency)
        self.queue_time.labels(algorithm).observe(result.queue_time)
        ends: dict[str, int] = {}
        for record in result.requests:
            ends[record.finish_reason] = ends.get(record.finish_reason, 0) + 1
        for finish, count in ends.items():
            self.subrequests.labels(algorithm, str(result.exit_reason), finish).inc(count)

    def track(self, policy: str, queue_depth: Callable[[], float], active: Callable[[], float]) -> None:
        """Read the scheduler's queue and the runtime's active count at scrape time."""
        self.queue_depth.labels(policy).set_function(queue_depth)
        self.active_queries.set_function(active)

    def track_failover(self, read: Callable[[], Iterable[tuple[str, int, int]]]) -> None:
        """Read, at scrape time, each upstream's ``(url, resent, tokens_lost)`` failover counters."""
        self.registry.register(_FailoverCounters(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _FailoverCounters(Collector):
    """Counters the upstream pool keeps on its replicas, exported as Prometheus counters."""

    def __init__(self, read: Callable[[], Iterable[tuple[str, int, int]]]) -> None:
        self.read = read

    def collect(self) -> Iterator[CounterMetricFamily]:
        resent = CounterMetricFamily(
            "dynasor_upstream_resent",
            "Sub-requests whose stream broke part-way on an upstream replica and were sent again to another.",
            labels=["upstream"],
        )
        lost = CounterMetricFamily(
            "dynasor_upstream_tokens_lost",
            "Completion tokens generated by streams that broke part-way on an upstream replica.",
            labels=["upstream"],
        )
        for url, sent_again, tokens_lost in self.read():
            resent.add_metric([url], sent_again)
            lost.add_metric([url], tokens_lost)
        yield resent
        yield lost
