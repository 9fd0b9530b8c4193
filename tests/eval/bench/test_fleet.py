"""Several simulated replicas behind the proxy's pool: identity with one engine, affinity, balance, failover."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, replace

import pytest

from algorithms.protocol import Completion
from dynasor.engine.base import EngineRequest
from dynasor.engine.sim import SimBackend
from eval.bench import PointRun, PointSpec, ReplicaFailure, RunConfig, load_workload, parse_failure, run_points


def _config(**changes) -> RunConfig:
    base = {"workload": load_workload("sc-math"), "duration": 20.0, "seed": 0, "early_exit": "all"}
    return RunConfig(**(base | changes))


@pytest.mark.parametrize("policy", ["dynasor", "fcfs"])
def test_one_replica_gives_exactly_the_single_engine_figures(policy: str) -> None:
    config = _config()
    spec = PointSpec(policy, 6.0, 1.0)
    [single] = run_points(config, [spec])
    [pooled] = run_points(replace(config, replicas=1), [spec])
    assert len(single.outcomes) > 50
    assert [asdict(o) for o in pooled.outcomes] == [asdict(o) for o in single.outcomes]
    assert pooled.loop_s == single.loop_s
    assert {k: pooled.engine[k] for k in single.engine} == single.engine
    assert pooled.engine["replicas"] == 1


@pytest.fixture(scope="module")
def four_replicas() -> tuple[PointRun, dict[str, set[int]]]:
    """A run over four replicas, and which engines (by object id) served each query's sub-requests."""
    seen: dict[str, set[int]] = defaultdict(set)
    generate = SimBackend.generate

    async def spy(self: SimBackend, request: EngineRequest) -> Completion:
        seen[request.query_id].add(id(self))
        return await generate(self, request)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SimBackend, "generate", spy)
        [run] = run_points(_config(replicas=4), [PointSpec("dynasor", 24.0, 1.0)])
    return run, seen


def test_a_query_s_sub_requests_never_span_replicas(four_replicas: tuple[PointRun, dict[str, set[int]]]) -> None:
    run, served_by = four_replicas
    assert len(served_by) >= len(run.outcomes) > 200
    assert max(o.samples for o in run.outcomes) > 2  # queries of several rounds (gangs) took part
    assert all(len(engines) == 1 for engines in served_by.values())
    assert len(set().union(*served_by.values())) == 4
    assert run.engine["queries_moved"] == 0


def test_least_loaded_routing_balances_the_replicas(four_replicas: tuple[PointRun, dict[str, set[int]]]) -> None:
    run, _ = four_replicas
    assert run.fleet is not None
    # Were queries piled on one replica, these would approach 4 (every query on one of four).
    assert run.engine["replica_load_max_over_mean"] < 1.1
    assert run.engine["replica_tokens_max_over_mean"] < 1.2
    assert all(sim.engine.tokens_generated > 0 for sim in run.fleet.sims)
    # The scheduler's capacity is the pool's sum, as in the proxy.
    assert run.fleet.backend.capacity().max_seqs == 4 * run.fleet.sims[0].engine.max_num_seqs  # type: ignore[union-attr]


def test_a_replica_that_goes_down_loses_no_query_silently() -> None:
    config = _config(replicas=3, duration=30.0)
    spec = PointSpec("dynasor", 18.0, 1.0)
    [healthy] = run_points(config, [spec])
    [failed] = run_points(replace(config, replica_failure=ReplicaFailure(1, 15.0)), [spec])
    # Every scored query has an outcome: it finished, was cut at its deadline, or failed with the replica.
    assert [o.id for o in failed.outcomes] == [o.id for o in healthy.outcomes]
    assert len(failed.outcomes) > 300
    assert failed.fleet is not None and failed.fleet.failing is not None
    broken = failed.fleet.failing.broken_off
    moved = failed.fleet.pool.moved
    # As in the proxy, a sample whose stream broke after its first tokens is sent again elsewhere
    # (no client watches it decode), its tokens so far lost; its query moves with it...
    assert broken and broken <= moved
    replicas = failed.fleet.pool.replicas
    assert failed.engine["failed_replica_requests_resent"] == replicas[1].resent >= len(broken)
    assert failed.engine["failed_replica_tokens_lost"] == replicas[1].tokens_lost > 0
    assert all(r.resent == 0 for i, r in enumerate(replicas) if i != 1)
    # ...as does one with no token streamed yet (refused, then moved); every query that moved
    # finishes elsewhere, and none fails with the replica.
    assert "error" not in {o.exit_reason for o in failed.outcomes}
    down = failed.fleet.sims[1].engine
    assert down.running == down.waiting == 0
    # The failed replica stopped working at 15 s of a run whose load went on far longer.
    assert down.tokens_generated < min(s.engine.tokens_generated for s in failed.fleet.sims if s.engine is not down) / 2
    assert healthy.engine["queries_moved"] == 0
    assert "error" not in {o.exit_reason for o in healthy.outcomes}


def test_failure_spec_parses_and_checks() -> None:
    assert parse_failure("3@120") == ReplicaFailure(3, 120.0)
    for bad in ("3", "x@1", "-1@5", "2@-1"):
        with pytest.raises(ValueError, match="INDEX@SECONDS"):
            parse_failure(bad)
    with pytest.raises(ValueError, match="cannot fail"):
        run_points(_config(replicas=2, replica_failure=ReplicaFailure(2, 1.0)), [PointSpec("fcfs", 1.0, 1.0)])
