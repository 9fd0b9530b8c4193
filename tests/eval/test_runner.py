"""The batch runner: replay exactness, resumption after a crash or kill -9, code self-consistency."""

from __future__ import annotations

import asyncio
import gc
import json
import math
import signal
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import looptime
import pytest

import certaindex as cx
from algorithms import ALGORITHMS
from certaindex import StopRule
from dynasor import ConfigError, EngineUnavailable
from dynasor.allocator import AllocatorConfig
from dynasor.engine.base import EngineRequest
from dynasor.engine.sim import Draft, FixedSource, SimBackend, Source
from eval import (
    BackendSpec,
    EvalConfig,
    Evaluator,
    Problem,
    ResultsFile,
    finalize,
    fixed_trajectories,
    load_problems,
    run_eval,
)

SC = {"max_samples": 8, "samples_per_round": 2}
STABLE = ("id", "answer", "correct", "tokens", "samples", "steps", "exit_reason")


def _config(out: Path, **changes: Any) -> EvalConfig:
    base: dict[str, Any] = dict(dataset="math-qwen25", backend="sim", params=SC, out=out, compare_baseline=True)
    return EvalConfig(**(base | changes))


def _stable(record: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(record[k] for k in STABLE) + tuple(record["baseline"][k] for k in STABLE[1:])


def test_replay_early_exit_is_the_rule_replayed_on_the_fixed_run(tmp_path: Path) -> None:
    results, backend = run_eval(_config(tmp_path, limit=25))
    assert backend.kind == "replay" and len(results) == 25
    rule = AllocatorConfig.bundled().rule_for("sc")
    assert rule.threshold is not None
    stopped_early = 0
    for record, fixed_trajectory in zip(results, fixed_trajectories(results, rule), strict=True):
        fixed = record["baseline"]
        assert fixed["samples"] == 8 and fixed["exit_reason"] == "budget"
        # Same recorded samples in the same order: the early-exit arm drew a prefix of the fixed arm's ...
        assert record["sample_digests"] == fixed["sample_digests"][: record["samples"]]
        # ... and stopped where certaindex's stop_index stops the fixed arm's samples.
        stop = cx.stop_index(rule, fixed_trajectory)
        assert record["samples"] == fixed_trajectory.samples[stop.index]
        assert record["tokens"] == fixed_trajectory.tokens[stop.index]
        assert record["correct"] == fixed_trajectory.correct[stop.index]
        stopped_early += stop.reason == "confident"
    assert stopped_early > 10
    summary = finalize(tmp_path, plots=False)
    assert summary["label"] == "replay" and summary["pairing"]["exact"]
    early, fixed_arm = summary["early_exit"], summary["fixed_budget"]
    assert early["tokens_total"] < fixed_arm["tokens_total"]
    same = summary["early_exit_on_fixed_samples"]
    assert same["accuracy"] == early["accuracy"] and same["tokens_mean"] == early["tokens_mean"]
    assert same["samples_mean"] == early["samples_mean"]
    assert summary["saving"]["samples"] == pytest.approx(1 - early["samples_mean"] / 8)
    # The calibration traces eval writes replay to the very same figures through certaindex's reader.
    traces = cx.read_traces(tmp_path / "traces.jsonl")
    outcome = cx.replay(rule, cx.trajectories_from_traces(traces))
    assert outcome.accuracy == early["accuracy"] and outcome.samples / outcome.n == early["samples_mean"]
    assert outcome.full_accuracy == fixed_arm["accuracy"]


def test_resume_after_a_crash_runs_only_the_missing_queries(tmp_path: Path) -> None:
    reference, _ = run_eval(_config(tmp_path / "full", limit=12))
    seen: list[str] = []

    def crash_after_five(record: dict[str, Any]) -> None:
        seen.append(record["id"])
        if len(seen) == 5:
            raise KeyboardInterrupt

    with pytest.raises((KeyboardInterrupt, BaseExceptionGroup)):
        run_eval(_config(tmp_path / "part", limit=12, concurrency=3), on_result=crash_after_five)
    # The interrupted task is finalized here, not at some later test's garbage collection (where
    # its "exception never retrieved" log once ran inside ast.parse and broke CPython 3.11's AST
    # constructor: "recursion depth mismatch").
    gc.collect()
    on_file = ResultsFile(tmp_path / "part" / "results.jsonl").done
    assert len(on_file) == 5
    with open(tmp_path / "part" / "results.jsonl", "a") as handle:
        handle.write('{"id": "torn')  # a write cut short by the crash
    rerun: list[str] = []
    results, _ = run_eval(
        _config(tmp_path / "part", limit=12, concurrency=3), on_result=lambda r: rerun.append(r["id"])
    )
    assert len(rerun) == 7 and not set(rerun) & on_file
    assert sorted(_stable(r) for r in results) == sorted(_stable(r) for r in reference)


@pytest.mark.slow
def test_resume_after_kill_9(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import os, signal
        from pathlib import Path
        from eval import EvalConfig, run_eval
        count = 0
        def hook(record):
            global count
            count += 1
            if count == 4:
                os.kill(os.getpid(), signal.SIGKILL)
        run_eval(EvalConfig(dataset="math-qwen25", params={SC!r}, out=Path({str(tmp_path)!r}), limit=10,
                            compare_baseline=True, concurrency=4), on_result=hook)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    survivors = ResultsFile(tmp_path / "results.jsonl").done
    assert len(survivors) == 4  # everything written before the kill is on disk
    rerun: list[str] = []
    results, _ = run_eval(_config(tmp_path, limit=10, concurrency=4), on_result=lambda r: rerun.append(r["id"]))
    assert len(results) == 10 and len(rerun) == 6 and not set(rerun) & survivors


def test_resuming_with_another_configuration_is_refused(tmp_path: Path) -> None:
    run_eval(_config(tmp_path, limit=2))
    with pytest.raises(ConfigError, match="params"):
        run_eval(_config(tmp_path, limit=2, params={"max_samples": 4, "samples_per_round": 2}))


def test_unknown_algorithm_and_knob_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="Unknown algorithm"):
        run_eval(_config(tmp_path / "a", algorithm="nope", limit=1))
    with pytest.raises(ConfigError, match="bogus"):
        run_eval(_config(tmp_path / "b", params={"bogus": 1}, limit=1))


def test_synthetic_sim_backend_grades_against_the_source(tmp_path: Path) -> None:
    results, backend = run_eval(_config(tmp_path, dataset="gsm8k", limit=20, seed=3))
    assert backend.kind == "simulated"
    accuracy = sum(r["correct"] for r in results) / 20
    fixed = sum(r["baseline"]["correct"] for r in results) / 20
    assert 0.2 < fixed <= 1.0 and 0.0 < accuracy <= 1.0
    assert all(r["reference"] != "18" or r["id"] != "gsm8k-0" for r in results)  # synthetic reference


def test_code_replay_uses_recorded_signatures(tmp_path: Path) -> None:
    traces = tmp_path / "code.jsonl"
    rows = [
        {
            "id": "HumanEval/0",
            "prompt": "p",
            "reference": None,
            "samples": [
                {"text": "    return True\n", "answer": "FP", "tokens": 10, "correct": False},
                {"text": "    return False\n", "answer": "PP", "tokens": 10, "correct": True},
                {"text": "    return False  # same\n", "answer": "PP", "tokens": 10, "correct": True},
                {"text": "    return 0\n", "answer": "PP", "tokens": 10, "correct": True},
            ],
        },
    ]
    traces.write_text("".join(json.dumps(r) + "\n" for r in rows))
    results, _ = run_eval(
        _config(
            tmp_path / "out",
            dataset=str(traces),
            backend=f"replay:{traces}",
            params={"max_samples": 4, "samples_per_round": 4, "measure": "entropy", "abstentions": "distinct"},
        )
    )
    (record,) = list(results)
    assert record["kind"] == "code" and record["correct"] is True
    assert "def has_close_elements" in record["answer"]
    # Three of four samples agree: (log n - H) / log n with H in nats.
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert record["certaindex"] == pytest.approx(1 - entropy / math.log(4))


class _CodeSource(Source):
    """Samples a model might write for ``add``: two right programs that differ, one wrong."""

    TEXTS = (
        "```python\ndef add(a, b):\n    return a + b\n```",
        "```python\ndef add(x, y):\n    return sum((x, y))\n```",
        "```python\ndef add(a, b):\n    return a * b\n```",
    )

    def __init__(self) -> None:
        self.drawn = 0

    def draft(self, request: EngineRequest) -> Draft:
        text = self.TEXTS[self.drawn % len(self.TEXTS)]
        self.drawn += 1
        return Draft(text, 20)


def test_code_self_consistency_clusters_by_behaviour(tmp_path: Path) -> None:
    problem = Problem(
        "t/add",
        "def add(a, b):\n    '''>>> add(2, 3)\n    5'''\n",
        "code",
        tests="assert add(2, 3) == 5\nassert add(7, 1) == 8\n",
        entry_point="add",
        examples=("add(2, 3)",),
    )
    spec = BackendSpec("simulated", "test code source", True, lambda: SimBackend("h100-llama3-8b", _CodeSource()))
    params = {"max_samples": 3, "samples_per_round": 3, "measure": "entropy", "abstentions": "distinct"}
    config = _config(tmp_path, dataset="unused", params=params)
    evaluator = Evaluator(config, spec, ResultsFile(tmp_path / "results.jsonl"))
    with asyncio.Runner(loop_factory=lambda: looptime.new_event_loop(start=0.0)) as runner:
        record = runner.run(evaluator.evaluate(problem))
        runner.run(evaluator.arms["early"].aclose())
    # Two of three samples behave alike (5 on the example) although their code differs.
    assert record["correct"] is True and record["baseline"]["correct"] is True
    assert "return a + b" in record["answer"]
    assert record["trajectory"][-1]["correct"] is True
    entropy = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert record["certaindex"] == pytest.approx(1 - entropy / math.log(3))


@pytest.mark.engine
def test_real_engine_path(tmp_path: Path, engine_url: str, engine_model: str) -> None:
    # Tiny on purpose: the point is that every stage runs against the real server.
    config = _config(
        tmp_path,
        dataset="gsm8k",
        backend=engine_url,
        model=engine_model,
        params={"max_samples": 2, "samples_per_round": 2, "max_tokens": 8},
        limit=1,
        compare_baseline=False,
    )
    results, backend = run_eval(config)
    (record,) = list(results)
    assert backend.kind == "real engine"
    assert 0 < record["tokens"] <= 16 and record["samples"] == 2 and record["prompt_tokens"] > 0
    assert record["trajectory"] and record["trajectory"][0]["samples"] == 2
    summary = finalize(tmp_path, plots=False)
    assert summary["label"] == "real engine" and summary["early_exit"]["queries"] == 1


@pytest.mark.engine
def test_real_engine_saves_only_what_early_exit_saved(tmp_path: Path, engine_url: str, engine_model: str) -> None:
    """Both arms on the real engine: per-sample seeds pair their samples, and no saving is printed that
    early exit did not make (short answers, so samples differ in length and unpaired arms would differ)."""
    questions = tmp_path / "add.jsonl"
    pairs = [(2, 3), (17, 25), (40, 2), (9, 9)]
    questions.write_text("".join(json.dumps({"id": f"a{i}", "question": f"What is {a} + {b}?", "answer": a + b})
                                 + "\n" for i, (a, b) in enumerate(pairs)))  # fmt: skip
    params = {"max_samples": 4, "samples_per_round": 2, "max_tokens": 48, "instruction": "Reply with the number only."}
    base = dict(dataset=str(questions), backend=engine_url, model=engine_model, params=params, concurrency=2)
    # A rule that never stops early: both arms draw 4 samples per query, so nothing is saved.
    run_eval(_config(tmp_path / "never", certaindex=AllocatorConfig({"sc": StopRule("majority", None)}), **base))
    summary = finalize(tmp_path / "never", plots=False)
    assert summary["label"] == "real engine"
    assert summary["early_exit"]["samples_mean"] == summary["fixed_budget"]["samples_mean"] == 4
    assert summary["saving"]["tokens"] == 0.0 and summary["saving"]["samples"] == 0.0
    # Seeds pair the arms (vLLM's batching can still change a sample now and then: the report says how many).
    pairing = summary["pairing"]
    assert pairing["paired"] >= 1
    assert pairing["exact"] or f"paired on {pairing['paired']} of 4 queries" in summary["comparison"]
    # A rule that stops at its first check: what it saved is the rest of the fixed arm's samples.
    eager = AllocatorConfig({"sc": StopRule("majority", 0.0, min_samples=2, round_size=2)})
    results, _ = run_eval(_config(tmp_path / "eager", certaindex=eager, **base))
    for record in results:
        fixed = record["baseline"]
        assert record["samples"] == 2 and record["exit_reason"] == "confident"
        if record["sample_digests"] == fixed["sample_digests"][:2]:  # paired: the very same first round
            assert record["sample_tokens"] == fixed["sample_tokens"][:2]
    saved = finalize(tmp_path / "eager", plots=False)["saving"]
    first_round = sum(sum(r["baseline"]["sample_tokens"][:2]) for r in results)
    assert saved["tokens"] == pytest.approx(1 - first_round / sum(r["baseline"]["tokens"] for r in results))
    assert saved["samples"] == 0.5


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_every_registered_algorithm_runs_on_replay(tmp_path: Path, algorithm: str) -> None:
    # Reward-driven programs get the recorded rewards through the replay scorer.
    results, _ = run_eval(_config(tmp_path, algorithm=algorithm, params={}, limit=3))
    assert len(results) == 3
    for record in results:
        assert record["error"] is None and record["baseline"]["error"] is None
        assert record["tokens"] <= record["baseline"]["tokens"]
        assert record["trajectory"], "every program reports certaindex at least once"


def test_the_fixed_arm_of_a_program_that_ends_itself_runs_to_its_budget(tmp_path: Path) -> None:
    """cot ends its own chain when its probes agree; in the fixed arm it must not, or nothing is compared."""
    results, _ = run_eval(_config(tmp_path, algorithm="cot", params={}, limit=10))
    early = sum(r["tokens"] for r in results)
    fixed = sum(r["baseline"]["tokens"] for r in results)
    assert early < fixed
    assert any(r["samples"] < r["baseline"]["samples"] for r in results)


class _FlakyBackend(SimBackend):
    """Fails every request of query ``bad`` as an unreachable engine would."""

    async def generate(self, request: EngineRequest) -> Any:
        if request.query_id == "bad":
            raise EngineUnavailable("connection refused")
        return await super().generate(request)


def test_engine_failures_are_not_recorded_so_a_rerun_retries_them(tmp_path: Path) -> None:
    spec = BackendSpec("simulated", "flaky", True, lambda: _FlakyBackend("h100-llama3-8b", FixedSource(10)))
    evaluator = Evaluator(_config(tmp_path, params={"max_samples": 2}), spec, ResultsFile(tmp_path / "r.jsonl"))
    problems = [Problem("good", "1+1?", "math", "2"), Problem("bad", "2+2?", "math", "4")]
    seen: list[str] = []
    with asyncio.Runner(loop_factory=lambda: looptime.new_event_loop(start=0.0)) as runner:
        runner.run(evaluator.run(problems, lambda r: seen.append(r["id"])))
    assert sorted(seen) == ["bad", "good"]  # progress hears about both
    assert evaluator.failed == ["bad"]
    assert ResultsFile(tmp_path / "r.jsonl").done == {"good"}


def test_replay_skips_problems_without_a_recorded_trace(tmp_path: Path) -> None:
    from dynasor.engine.traces import load_traces

    prompts = {t.prompt.strip(): t.reference for t in load_traces("math-qwen25")}
    results, _ = run_eval(_config(tmp_path, dataset="math500", backend="replay:math-qwen25", params={"max_samples": 2}))
    assert 0 < len(results) < 100
    problems = {p.id: p for p in load_problems("math500")}
    for record in results:
        assert problems[record["id"]].prompt.strip() in prompts
    with pytest.raises(ConfigError, match="no problem"):
        run_eval(_config(tmp_path / "none", dataset="gsm8k", backend="replay:math-qwen25", limit=3))
