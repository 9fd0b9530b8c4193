"""``dynasor eval`` end to end through the CLI (replay, virtual time)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import certaindex as cx
from dynasor.allocator import AllocatorConfig
from dynasor_cli import app


def test_eval_command_writes_every_output_and_resumes(tmp_path: Path) -> None:
    args = ["eval", "--backend", "replay:math-qwen25", "--limit", "6", "--max-samples", "4", "--compare-baseline"]
    args += ["--out", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "replay" in result.output and "early exit" in result.output
    for name in ("results.jsonl", "summary.json", "traces.jsonl", "pareto.png", "savings.png", "trajectories.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["label"] == "replay" and summary["queries"] == 6
    assert summary["fixed_budget"]["samples_mean"] == 4
    # Same command again: nothing left to run, same figures.
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 6
    assert json.loads((tmp_path / "summary.json").read_text())["early_exit"] == summary["early_exit"]


def test_threshold_override_changes_the_early_exit_arm(tmp_path: Path) -> None:
    base = ["eval", "--backend", "replay:math-qwen25", "--limit", "8", "--no-plots"]
    strict = CliRunner().invoke(app, [*base, "--threshold", "1.0", "--min-samples", "8", "--out", str(tmp_path / "s")])
    loose = CliRunner().invoke(app, [*base, "--threshold", "0.0", "--min-samples", "1", "--out", str(tmp_path / "l")])
    assert strict.exit_code == 0 and loose.exit_code == 0, strict.output + loose.output
    s = json.loads((tmp_path / "s" / "summary.json").read_text())["early_exit"]
    loose_summary = json.loads((tmp_path / "l" / "summary.json").read_text())["early_exit"]
    # The rule checks every round_size samples (the bundled rule's rounds), the first check stops.
    first_check = AllocatorConfig.bundled().rule_for("sc").round_size
    assert loose_summary["samples_mean"] == first_check and s["samples_mean"] == 8
    assert loose_summary["exit_reasons"] == {"confident": 8}


def test_bad_backend_and_missing_dataset_are_reported(tmp_path: Path) -> None:
    bad = CliRunner().invoke(app, ["eval", "--dataset", "gsm8k", "--backend", "carrier-pigeon", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "unknown backend" in bad.output
    missing = CliRunner().invoke(app, ["eval", "--backend", "sim", "--out", str(tmp_path / "m")])
    assert missing.exit_code == 2 and "--dataset" in missing.output


def test_policy_and_its_knobs_are_checked_before_running(tmp_path: Path) -> None:
    base = ["eval", "--backend", "replay:math-qwen25", "--limit", "2", "--no-plots"]
    bad = CliRunner().invoke(app, [*base, "--policy", "dynasor:aging=fast", "--out", str(tmp_path / "b")])
    assert bad.exit_code == 2 and "aging" in bad.output and not (tmp_path / "b").exists()
    good = CliRunner().invoke(app, [*base, "--policy", "dynasor:aging=0.5", "--out", str(tmp_path / "g")])
    assert good.exit_code == 0, good.output
    assert json.loads((tmp_path / "g" / "run.json").read_text())["config"]["policy"] == "dynasor:aging=0.5"


def _program_traces(path: Path) -> Path:
    """Samples whose text is a program (as SVAMP's Codex traces): the answer is recorded, not in the text."""
    rows = []
    for q in range(12):
        right, wrong = str(10 + q), str(99 - q)
        answers = [right, right, wrong, right, right] if q % 3 else [wrong, wrong, right, wrong, right]
        samples = [
            {"text": f"a = {q}\nb = 10\nans = a + b  # line {i}", "answer": a, "tokens": 12}
            for i, a in enumerate(answers)
        ]
        rows.append({"id": f"p{q}", "prompt": f"What is {q} + 10?", "reference": right, "samples": samples})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_eval_and_calibrate_agree_on_a_trace_whose_text_is_a_program(tmp_path: Path) -> None:
    traces = _program_traces(tmp_path / "programs.jsonl")
    args = ["eval", "--backend", f"replay:{traces}", "--max-samples", "5", "--compare-baseline", "--no-plots"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "e")])
    assert result.exit_code == 0, result.output
    fixed = json.loads((tmp_path / "e" / "summary.json").read_text())["fixed_budget"]
    # calibrate's reading of the same file: the recorded answers, graded against the references.
    full = cx.replay(cx.StopRule(), cx.trajectories_from_traces(cx.read_traces(traces)))
    assert full.full_accuracy == 8 / 12  # the majority is right on the 8 queries where q % 3 != 0
    assert fixed["accuracy"] == full.full_accuracy
    calibrate = CliRunner().invoke(app, ["calibrate", str(traces), "--out", str(tmp_path / "r.yaml")])
    assert calibrate.exit_code == 0, calibrate.output
    assert f"vs {full.full_accuracy:.3f} at the full budget" in calibrate.output
    # Reading the answers from the text instead finds the program's last number: wrong, and said so.
    reread = CliRunner().invoke(app, [*args, "--reextract", "--out", str(tmp_path / "x")])
    assert reread.exit_code == 0, reread.output
    assert json.loads((tmp_path / "x" / "summary.json").read_text())["fixed_budget"]["accuracy"] < fixed["accuracy"]


def test_a_calibrated_config_drives_eval(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "version: 1\nsc: {measure: esc, threshold: 1.0, min_samples: 3, round_size: 3, abstentions: distinct}\n"
    )
    args = ["eval", "--backend", "replay:math-qwen25", "--limit", "5", "--max-samples", "6", "--no-plots"]
    result = CliRunner().invoke(app, [*args, "--certaindex", str(rules), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["early_exit_rule"]["measure"] == "esc" and summary["early_exit_rule"]["round_size"] == 3
    records = [json.loads(line) for line in (tmp_path / "o" / "results.jsonl").read_text().splitlines()]
    assert all(r["samples"] in (3, 6) for r in records)  # rounds of the rule's size: checks at 3 and 6
    assert {p["measure"] for r in records for p in r["trajectory"]} == {"esc"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("sc: {measure: entropy, min_step: 2}\n")
    refused = CliRunner().invoke(app, [*args, "--certaindex", str(bad), "--out", str(tmp_path / "b")])
    assert refused.exit_code == 2 and "min_step" in refused.output


def test_multiple_choice_grading_and_agreement(tmp_path: Path) -> None:
    """A local multiple-choice file: options mapped to letters for grading and for agreement."""
    questions = [
        {"id": "m0", "question": "Capital of France?", "options": ["Rome", "Paris", "Oslo"], "answer": "Paris"},
        {"id": "m1", "question": "2 + 2 = ?", "choices": {"A": "3", "B": "5", "C": "4"}, "answer": "C"},
        {"id": "m2", "question": "Largest planet?", "options": ["Jupiter", "Mars"], "answer": 0},
    ]
    dataset = tmp_path / "mc.jsonl"
    dataset.write_text("".join(json.dumps(q) + "\n" for q in questions))
    said = {  # every dress of a choice, the option's own text included
        "m0": ["The answer is (B).", "Answer: **B**", "so the answer is Paris", "\\boxed{\\text{(B)}}"],
        "m1": ["The answer is 4.", "(C)", "Answer: C", "I think the answer is (A)"],
        "m2": ["the answer is Mars", "Answer: B", "B) Mars", "The answer is (A)"],
    }
    traces = tmp_path / "mc_traces.jsonl"
    traces.write_text(
        "".join(
            json.dumps({"id": q, "prompt": "", "samples": [{"text": t, "tokens": 5} for t in texts]}) + "\n"
            for q, texts in said.items()
        )
    )
    args = ["eval", "--dataset", str(dataset), "--backend", f"replay:{traces}", "--kind", "choice"]
    args += [
        "--max-samples",
        "4",
        "--samples-per-round",
        "4",
        "--compare-baseline",
        "--no-plots",
        "-p",
        "measure=majority",
    ]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    records = {r["id"]: r for r in map(json.loads, (tmp_path / "o" / "results.jsonl").read_text().splitlines())}
    # m0: all four say B, the option "Paris": unanimous and right. m1: three say C (one by the value 4).
    # m2: B three times (one by the text "Mars"), the reference is index 0 = A: wrong.
    assert [records[q]["baseline"]["correct"] for q in ("m0", "m1", "m2")] == [True, True, False]
    assert records["m0"]["baseline"]["certaindex"] == 1.0 and records["m1"]["baseline"]["certaindex"] == 0.75
    assert records["m2"]["baseline"]["certaindex"] == 0.75


def test_progress_lines_when_stderr_is_not_a_terminal(tmp_path: Path) -> None:
    args = ["eval", "--backend", "replay:math-qwen25", "--limit", "25", "--max-samples", "2", "--no-plots"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("eval: ")]
    assert lines[0] == "eval: 25 queries"
    assert [line.split(",")[0] for line in lines[1:]] == [
        "eval: 10/25 queries",
        "eval: 20/25 queries",
        "eval: 25/25 queries",
    ]


@pytest.mark.parametrize("kind", ["essay"])
def test_unknown_kind_is_refused(tmp_path: Path, kind: str) -> None:
    result = CliRunner().invoke(
        app, ["eval", "--backend", "replay:math-qwen25", "--kind", kind, "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and "math, choice or code" in result.output


def test_a_warning_when_extraction_finds_no_answer_in_most_samples(tmp_path: Path) -> None:
    traces = tmp_path / "silent.jsonl"
    rows = [
        {"id": f"s{q}", "prompt": f"Question {q}?", "reference": "1", "samples": [{"text": "I do not know."}] * 4}
        for q in range(3)
    ]
    traces.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["eval", "--backend", f"replay:{traces}", "--max-samples", "4", "--compare-baseline", "--no-plots"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "warning: answer extraction (math) found no answer in" in " ".join(result.output.split())
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["warnings"] and "is --kind right?" in summary["warnings"][0]
