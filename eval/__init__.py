"""Offline batch evaluation: datasets, graders, the batch runner, reports and plots.

The ``dynasor eval`` command is a thin layer over :func:`run_eval` and :func:`finalize`::

    # exact fixed-budget vs early-exit comparison on recorded traces (virtual time)
    dynasor eval --backend replay:math-qwen25 --max-samples 8 --compare-baseline
    dynasor eval --dataset humaneval --backend replay:humaneval_codet --max-samples 16 --compare-baseline
    # a real engine (OpenAI-compatible, e.g. vLLM)
    dynasor eval --dataset gsm8k --backend http://127.0.0.1:8011 --model smollm2 --limit 20 --compare-baseline

Outputs in ``--out``: ``results.jsonl`` (one line per query, appended as it finishes, so a
re-run resumes; put in query order when the run ends), ``summary.json``, the fixed arm's samples
for ``dynasor calibrate`` (``traces.jsonl`` in the trace format, or ``profile.jsonl`` for programs
without per-sample answers) and ``pareto.png``, ``savings.png``, ``trajectories.png``. Every figure
is labelled with how it was obtained: ``replay``, ``simulated`` or ``real engine``.
"""

from eval._backends import BackendSpec, parse_backend
from eval._datasets import BUNDLED, KINDS, DatasetSpec, Problem, choice_prompt, entry_calls, load_problems
from eval._graders import CodeGrader, Grade, MathGrader, candidate_program, grade_choice, shared_math_grader
from eval._isolation import Isolation, isolation
from eval._output import finalize, render_table
from eval._programs import CODE_INSTRUCTION, KeyedSelfConsistency, chosen_completion
from eval._report import (
    SweepPoint,
    best_within,
    calibration_traces,
    crossfit,
    fixed_trajectories,
    oracles,
    outcome_figures,
    paired,
    pareto_front,
    profile_records,
    summarize,
    sweep,
    sweep_family,
)
from eval._results import ResultsFile
from eval._runner import EvalConfig, Evaluator, run_eval
from eval._sandbox import Check, Limits, SandboxResult, SandboxUnavailable, run_checks, run_python

__all__ = [
    "BUNDLED",
    "CODE_INSTRUCTION",
    "KINDS",
    "BackendSpec",
    "Check",
    "CodeGrader",
    "DatasetSpec",
    "EvalConfig",
    "Evaluator",
    "Grade",
    "Isolation",
    "KeyedSelfConsistency",
    "Limits",
    "MathGrader",
    "Problem",
    "ResultsFile",
    "SandboxResult",
    "SandboxUnavailable",
    "SweepPoint",
    "best_within",
    "calibration_traces",
    "candidate_program",
    "choice_prompt",
    "chosen_completion",
    "crossfit",
    "entry_calls",
    "finalize",
    "fixed_trajectories",
    "grade_choice",
    "isolation",
    "load_problems",
    "oracles",
    "outcome_figures",
    "paired",
    "pareto_front",
    "parse_backend",
    "profile_records",
    "render_table",
    "run_checks",
    "run_eval",
    "run_python",
    "shared_math_grader",
    "summarize",
    "sweep",
    "sweep_family",
]
