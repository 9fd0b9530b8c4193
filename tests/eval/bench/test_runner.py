from __future__ import annotations

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
    config = _config()
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
    assert _config().early_exit_for("dynasor:aging=5")  # knobs do not change who the policy is
    las, dyn = run_points(config, [PointSpec("las", 1.0, 1.0), PointSpec("dynasor", 1.0, 1.0)])
    assert any(o.exit_reason == "confident" for o in las.outcomes)
    assert {o.exit_reason for o in dyn.outcomes} == {"budget"}  # the dynasor policy without early exit


def test_policy_knobs_reach_the_scheduler() -> None:
    # A tiny engine keeps gangs waiting, so the order (and the aging that shapes it) matters.
    config = _config(max_seqs=2, early_exit="none", duration=30.0)
    eager, patient = run_points(
        config, [PointSpec("dynasor:aging=0", 2.0, 1.0), PointSpec("dynasor:aging=1e9", 2.0, 1.0)]
    )
    # With a huge aging rate the key is the arrival time: queries finish in arrival order.
    finish = [o.arrival + o.latency for o in patient.outcomes]
    assert finish == sorted(finish)
    assert [o.latency for o in eager.outcomes] != [o.latency for o in patient.outcomes]


def test_tight_deadlines_are_cut_and_counted_as_misses() -> None:
    [run] = run_points(_config(), [PointSpec("fcfs", 2.0, 0.01)])  # 2.4 s deadlines
    m = summarize(run.outcomes, 60.0)
    assert m.exit_reasons.get("deadline", 0) > 0
    assert m.attainment < 1.0
    assert all(o.latency <= o.deadline + 1e-6 for o in run.outcomes)
    assert all(not o.attained for o in run.outcomes if o.exit_reason == "deadline")


def test_same_seed_same_numbers_and_the_headline_ratios() -> None:
    def bench(seed: int):
        config = _config(duration=30.0, seed=seed)
        return run_bench(
            config, ["fcfs", "dynasor"], [1.0], [0.1], search=True, rel_tol=0.25, max_probes=4, verbose=False
        )

    a, b = bench(0), bench(0)
    assert a.to_dict() | {"points": None} == b.to_dict() | {"points": None}
    strip = [{k: v for k, v in p.items() if k != "wall_s"} for p in a.to_dict()["points"]]
    assert strip == [{k: v for k, v in p.items() if k != "wall_s"} for p in b.to_dict()["points"]]
    assert a.searches["fcfs"].rate is not None and a.searches["dynasor"].rate is not None
    assert a.ratios()["dynasor/fcfs"] == a.searches["dynasor"].rate / a.searches["fcfs"].rate
    assert a.meta["label"] == "simulated (profile h100-llama3-8b)"
    [other] = run_points(_config(duration=30.0, seed=1), [PointSpec("fcfs", 1.0, 0.1)])
    assert summarize(other.outcomes, 30.0).to_dict() != a.points[0].metrics
