from __future__ import annotations

import json

from typer.testing import CliRunner

from dynasor_cli import app


def test_bench_command_prints_labelled_ratios_and_writes_results(tmp_path) -> None:
    args = [
        "bench", "--workload", "sc-math", "--rates", "1", "--slo-scale", "0.1,0.2", "--policies", "fcfs,las,dynasor",
        "--duration", "20", "--seed", "3", "--param", "max_samples=8", "--tolerance", "0.5", "--max-probes", "3",
        "--out", str(tmp_path), "--quiet",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "simulated (profile h100-llama3-8b)" in result.output
    # The 2x2 ablation by default: every policy with and without early exit, and the ratios that split them.
    for text in ("dynasor+exit/fcfs = ", "dynasor+exit/las+exit = ", "dynasor/las = ", "fcfs+exit/fcfs = "):
        assert text in result.output
    assert "whole system" in result.output and "scheduling alone" in result.output
    assert "no early exit" in result.output  # the ablation table's column
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["meta"]["mode"] == "simulated"
    assert data["meta"]["presets"][0]["params"]["max_samples"] == 8
    assert {p["slo_scale"] for p in data["points"]} == {0.1, 0.2}
    arms = {"fcfs", "fcfs+exit", "las", "las+exit", "dynasor", "dynasor+exit"}
    assert set(data["sustainable_rate"]) == arms
    assert all(set(per_scale) == {"0.1", "0.2"} for per_scale in data["sustainable_rate"].values())
    assert (tmp_path / "attainment_vs_rate.png").stat().st_size > 0
    assert (tmp_path / "attainment_vs_slo.png").stat().st_size > 0


def test_bench_command_rejects_bad_input(tmp_path) -> None:
    runner = CliRunner()
    bad_policy = runner.invoke(app, ["bench", "--policies", "sjf", "--out", str(tmp_path)])
    assert bad_policy.exit_code != 0 and "sjf" in bad_policy.output
    bad_knob = runner.invoke(app, ["bench", "--policies", "fcfs,dynasor:agin=1", "--out", str(tmp_path)])
    assert bad_knob.exit_code == 2 and "agin" in bad_knob.output
    bad_early_exit = runner.invoke(app, ["bench", "--early-exit", "sjf", "--out", str(tmp_path)])
    assert bad_early_exit.exit_code == 2 and "--early-exit" in bad_early_exit.output
    bad_workload = runner.invoke(app, ["bench", "--workload", "nope", "--out", str(tmp_path)])
    assert bad_workload.exit_code == 2 and "Unknown workload" in bad_workload.output
    bad_profile = runner.invoke(app, ["bench", "--engine-profile", "tpu", "--rates", "1", "--out", str(tmp_path)])
    assert bad_profile.exit_code == 2 and "cost profile" in bad_profile.output


def test_bench_command_takes_policy_knobs(tmp_path) -> None:
    args = ["bench", "--rates", "1", "--policies", "fcfs,dynasor:aging=0.5,demotion_penalty=1e5", "--duration", "10",
            "--param", "max_samples=4", "--early-exit", "dynasor", "--no-search", "--no-plots", "--out", str(tmp_path),
            "--quiet"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "results.json").read_text())
    assert [p["policy"] for p in data["points"]] == ["fcfs", "dynasor:aging=0.5,demotion_penalty=1e5"]
    dyn = data["points"][1]["metrics"]
    assert dyn["exit_reasons"].get("confident", 0) > 0  # early exit follows the policy's name


def test_bench_command_without_search(tmp_path) -> None:
    args = ["bench", "--rates", "1", "--policies", "fcfs,dynasor", "--duration", "10", "--param", "max_samples=4",
            "--no-search", "--no-plots", "--out", str(tmp_path), "--quiet"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "simulated (profile h100-llama3-8b)" in result.output and "sustainable" not in result.output
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["sustainable_rate"] == {} and len(data["points"]) == 4


def test_bench_command_caps_a_budget_the_traces_cannot_hold(tmp_path) -> None:
    args = ["bench", "--rates", "1", "--policies", "fcfs", "--early-exit", "none", "--duration", "10",
            "--param", "max_samples=16", "--no-search", "--no-plots", "--out", str(tmp_path), "--quiet"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "max_samples 16 capped at the 8 samples recorded per question" in result.output
    data = json.loads((tmp_path / "results.json").read_text())
    [point] = data["points"]
    assert point["metrics"]["samples_per_query"] == 8 and point["engine"]["samples_replayed_twice"] == 0
