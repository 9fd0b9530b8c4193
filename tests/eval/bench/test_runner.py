from __future__ import annotations

import pytest

from eval.bench import PointSpec, RunConfig, load_workload, run_bench, run_points, summarize


def _config(**changes) -> RunConfig:
    base = {
        "workload": load_workload("sc-math"),
        "duration": 60.0,
        "seed": 0,
        "params": {"max_samples": 8, "samples_per_round": 2},
    }
    return RunConfig(**(base | changes))


def test_baselines_spend_the_full_budget_and_dynasor_stops_early() -> None:
    config = _config(early_exit="dynasor")  # the paper's comparison: only dynasor stops early
    fcfs, dyn = run_points(config, [PointSpec("fcfs", 1.0, 1.0), PointSpec("dynasor", 1.0, 1.0)])
    assert len(fcfs.outcomes) == len(dyn.outcomes) > 30
    assert {o.exit_reason for o in fcfs.outcomes} == {"budget"}
    assert all(o.samples == 8 for o in fcfs.outcomes)
    assert any(o.exit_reason == "confident" for o in dyn.outcomes)
    assert summarize(dyn.outcomes, 60).tokens_per_query < summarize(fcfs.outcomes, 60).tokens_per_query
    # Same seed: the same questions arrive at the same times under both policies.
    assert [(o.id, o.arrival) for o in fcfs.outcomes] == [(o.id, o.arrival) for o in dyn.outcomes]
    # Virtual time: a minute of traffic (plus drain) ran on the loop clock.
    assert fcfs.loop_s >= 59.0


def test_early_exit_can_be_given_to_every_policy() -> None:
    [run] = run_points(_config(early_exit="all"), [PointSpec("fcfs", 1.0, 1.0)])
    assert any(o.exit_reason == "confident" for o in run.outcomes)


def test_early_exit_is_a_switch_of_its_own_not_the_policy_s_name() -> None:
    config = _config(early_exit="las")
    assert [config.early_exit_for(p) for p in ("las", "fcfs", "dynasor", "dynasor:aging=5")] == [1, 0, 0, 0]
    assert _config(early_exit="dynasor").early_exit_for("dynasor:aging=5")  # knobs do not change who it is
    las, dyn = run_points(config, [PointSpec("las", 1.0, 1.0), PointSpec("dynasor", 1.0, 1.0)])
    assert any(o.exit_reason == "confident" for o in las.outcomes)
    assert {o.exit_reason for o in dyn.outcomes} == {"budget"}  # the dynasor policy without early exit
    # A point's own switch wins over the config's.
    [forced] = run_points(config, [PointSpec("dynasor", 1.0, 1.0, early_exit=True)])
    assert any(o.exit_reason == "confident" for o in forced.outcomes)


def test_by_default_every_policy_runs_with_and_without_early_exit() -> None:
    config = _config()
    assert config.early_exit == "both"
    assert config.arms(["fcfs", "dynasor"]) == [("fcfs", False), ("fcfs", True), ("dynasor", False), ("dynasor", True)]


def test_policy_knobs_reach_the_scheduler() -> None:
    # A small scheduler capacity keeps gangs waiting, so the order (and the aging that shapes it) matters.
    config = _config(max_seqs=2, early_exit="none", duration=30.0)
    eager, patient = run_points(
        config, [PointSpec("dynasor:aging=0", 2.0, 1.0), PointSpec("dynasor:aging=1e9", 2.0, 1.0)]
    )
    # With a huge aging rate the key is the arrival time: queries finish in arrival order.
    finish = [o.arrival + o.latency for o in patient.outcomes]
    assert finish == sorted(finish)
    assert [o.latency for o in eager.outcomes] != [o.latency for o in patient.outcomes]


def test_the_scheduler_capacity_is_the_scheduler_s_alone() -> None:
    # 4 sequences in flight where the engine could run 256: gangs queue in the scheduler.
    small, engine = run_points(
        _config(duration=30.0), [PointSpec("fcfs", 2.0, 1.0, False), PointSpec("fcfs", 2.0, 1.0, False)]
    )
    assert small.outcomes == engine.outcomes
    [small] = run_points(_config(duration=30.0, max_seqs=4), [PointSpec("fcfs", 2.0, 1.0, False)])
    queued = summarize(small.outcomes, 30.0)
    free = summarize(engine.outcomes, 30.0)
    assert sum(o.queue_time for o in small.outcomes) > 10 * max(sum(o.queue_time for o in engine.outcomes), 1.0)
    assert queued.latency_p90 > free.latency_p90


def test_tight_deadlines_are_cut_and_counted_as_misses() -> None:
    [run] = run_points(_config(), [PointSpec("fcfs", 2.0, 0.01, early_exit=False)])  # 2.4 s deadlines
    m = summarize(run.outcomes, 60.0)
    assert m.exit_reasons.get("deadline", 0) > 0
    assert m.attainment < 1.0
    assert all(o.latency <= o.deadline + 1e-6 for o in run.outcomes)
    assert all(not o.attained for o in run.outcomes if o.exit_reason == "deadline")


def test_no_recorded_sample_is_replayed_twice() -> None:
    # The traces hold 8 samples a question; a budget of 16 is capped, for every arm.
    config = _config(params={"max_samples": 16, "samples_per_round": 2}, duration=30.0)
    assert config.workload.budget_notes(config.params) == [
        "sc-math: max_samples 16 capped at the 8 samples recorded per question (no recorded sample is replayed twice)"
    ]
    assert config.workload.budget_notes({"max_samples": 8}) == []
    runs = run_points(config, [PointSpec("fcfs", 1.0, 1.0, False), PointSpec("dynasor", 1.0, 1.0, True)])
    for run in runs:
        assert max(o.samples for o in run.outcomes) <= 8
        assert run.engine["samples_replayed_twice"] == 0
    assert {o.samples for o in runs[0].outcomes} == {8}


def _bench(seed: int, jobs: int = 1, duration: float = 30.0):
    return run_bench(
        _config(duration=duration, seed=seed),
        ["fcfs", "dynasor"],
        [1.0],
        [0.1],
        search=True,
        rel_tol=0.25,
        max_probes=4,
        jobs=jobs,
        verbose=False,
    )


def _without_wall_time(result) -> dict:
    data = result.to_dict()
    data["points"] = [{k: v for k, v in p.items() if k != "wall_s"} for p in data["points"]]
    return data


def test_same_seed_same_numbers_and_the_ablation_ratios() -> None:
    a, b = _bench(0), _bench(0)
    assert _without_wall_time(a) == _without_wall_time(b)
    assert a.meta["arms"] == ["fcfs", "fcfs+exit", "dynasor", "dynasor+exit"]
    rates = {arm: a.sustainable(arm, 0.1) for arm in a.meta["arms"]}
    assert all(rate is not None for rate in rates.values())
    ratios = a.ratios(0.1)
    assert ratios["dynasor+exit/fcfs"] == rates["dynasor+exit"] / rates["fcfs"]  # the whole system
    assert ratios["dynasor+exit/fcfs+exit"] == rates["dynasor+exit"] / rates["fcfs+exit"]  # scheduling alone
    assert ratios["dynasor/fcfs"] == rates["dynasor"] / rates["fcfs"]  # scheduling alone, no early exit
    assert ratios["fcfs+exit/fcfs"] == rates["fcfs+exit"] / rates["fcfs"]  # early exit alone
    assert {c.kind for c in a.comparisons()} == {"whole system", "scheduling alone", "early exit alone"}
    assert a.meta["label"] == "simulated (profile h100-llama3-8b)"
    [other] = run_points(_config(duration=30.0, seed=1), [PointSpec("fcfs", 1.0, 0.1, False)])
    assert summarize(other.outcomes, 30.0).to_dict() != a.points[0].metrics


@pytest.mark.parametrize("jobs", [2])
def test_same_numbers_whatever_jobs(jobs: int) -> None:
    # Worker processes run the arms in another order and after other work than one process does.
    assert _without_wall_time(_bench(3, jobs=jobs)) == _without_wall_time(_bench(3, jobs=1))


def test_arrivals_go_on_until_the_scored_queries_are_done() -> None:
    # Above what the engine sustains: with the load kept on, the backlog never clears for the scored
    # queries; a drained run lets the last of them finish on an emptying engine.
    spec = PointSpec("fcfs", 6.0, 0.25, early_exit=False)
    kept, drained = (run_points(_config(duration=60.0, keep_load=k), [spec])[0] for k in (True, False))
    assert [o.id for o in kept.outcomes] == [o.id for o in drained.outcomes]  # the same queries are scored
    assert [o.arrival for o in kept.outcomes] == [o.arrival for o in drained.outcomes]
    assert all(o.arrival < 60.0 for o in kept.outcomes)
    assert summarize(kept.outcomes, 60.0).attainment < summarize(drained.outcomes, 60.0).attainment
