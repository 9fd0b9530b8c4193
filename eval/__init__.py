"""Offline batch evaluation: datasets, graders, the batch runner, reports and plots.

The ``dynasor eval`` command is a thin layer over :func:`run_eval` and :func:`finalize`.
"""

from eval._backends import BackendSpec, parse_backend
from eval._datasets import BUNDLED, DatasetSpec, Problem, entry_calls, load_problems
from eval._graders import CodeGrader, Grade, MathGrader, candidate_program, shared_math_grader
from eval._output import finalize, render_table
from eval._programs import CODE_INSTRUCTION, KeyedSelfConsistency, chosen_completion
from eval._report import (
    SweepPoint,
    apply_rule,
    best_within,
    crossfit,
    oracle,
    pareto_front,
    profile_records,
    stop_index,
    summarize,
    sweep,
)
from eval._results import ResultsFile
from eval._runner import EvalConfig, Evaluator, run_eval

__all__ = [
    "BUNDLED",
    "CODE_INSTRUCTION",
    "BackendSpec",
    "CodeGrader",
    "DatasetSpec",
    "EvalConfig",
    "Evaluator",
    "Grade",
    "KeyedSelfConsistency",
    "MathGrader",
    "Problem",
    "ResultsFile",
    "SweepPoint",
    "apply_rule",
    "best_within",
    "candidate_program",
    "chosen_completion",
    "crossfit",
    "entry_calls",
    "finalize",
    "load_problems",
    "oracle",
    "pareto_front",
    "parse_backend",
    "profile_records",
    "render_table",
    "run_eval",
    "shared_math_grader",
    "stop_index",
    "summarize",
    "sweep",
]
