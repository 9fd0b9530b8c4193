"""Reproduce the calibration evidence on the two recorded trace sets (replay).

For each trace set the queries are split in two halves (even / odd position in the file).
Rules are chosen on one half and replayed on the other, in both directions, next to the
fixed-budget baseline, the oracle stop and the uncalibrated rules (Adaptive-Consistency's
Beta rule, and the allocator's bundled default). Prints a markdown table (the one in
``docs/certaindex.md``) and writes each chosen allocator config and report to ``--out-dir``.

Every figure is ``replay``: recorded samples in recorded order, tokens approximated from text
with :func:`certaindex.approx_tokens` (neither source records token counts).

Usage::

    python scripts/calibrate_traces.py [--out-dir build/calibration]
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

import certaindex as cx

ROOT = Path(__file__).resolve().parents[1]
TRACES = ROOT / "dynasor" / "data" / "traces"
EARLIER_DEFAULT = {"measure": "entropy", "threshold": 0.7, "min_step": 2}
"""The allocator's bundled sc rule when this evidence was made (the shipped rule is now certified:
``certaindex/data/certaindex.yaml``)."""


def render_config(choice: cx.RuleChoice, source: str) -> str:
    """The chosen rule of the earlier calibration, as YAML with a header saying how it was made."""
    return f"# {source}: {choice.statement}\n" + yaml.safe_dump({choice.algorithm: choice.config()}, sort_keys=False)


def render_report(choice: cx.RuleChoice, source: str) -> str:
    return "\n".join([f"Calibration from {source}.", *choice.report_lines()]) + "\n"


@dataclass(frozen=True)
class TraceSet:
    name: str
    path: Path
    round_size: int
    reward: cx.RewardScale | None


SETS = (
    TraceSet("MATH (Qwen2.5-Math, 100 x 8)", TRACES / "math-qwen25.jsonl", 1, cx.RewardScale("sigmoid")),
    TraceSet("HumanEval (CodeGen-16B via CodeT, 164 x 100)", TRACES / "humaneval_codet.jsonl.gz", 10, None),
)
# (label, target loss in points, bound, measures, min_steps); None = every one in the records.
# The small family is fixed in advance: fewer Bonferroni chains, a bound 50 queries can meet.
TARGETS = (
    ("CP 95%, target 0.5 pt, all rules", 0.5, "clopper-pearson", None, None),
    ("CP 95%, target 10 pt, entropy/beta x step 1-2", 10.0, "clopper-pearson", ("entropy", "beta"), (1, 2)),
    ("point estimate, target 0.5 pt, all rules", 0.5, "none", None, None),
)


def load(path: Path) -> list[dict]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def replay(ts: TraceSet, eq: cx.Equivalence) -> list[cx.ProfilingRecord]:
    return [
        r
        for trace in load(ts.path)
        for r in cx.records_from_trace(
            trace, round_size=ts.round_size, equivalence=eq, reward_scale=ts.reward, tokens_exact=False
        )
    ]


def split(queries: Mapping[str, Sequence[cx.ProfilingRecord]]) -> tuple[dict, dict]:
    ids = list(queries)
    return {q: queries[q] for q in ids[0::2]}, {q: queries[q] for q in ids[1::2]}


def row(label: str, o: cx.RuleOutcome, rule: str) -> str:
    return (
        f"| {label} | {rule} | {o.saving:.1%} | {o.accuracy:.3f} | {100 * o.loss:+.1f} | "
        f"{o.harms}/{o.gains} | {o.mean_stop_step:.2f} |"
    )


def rule_text(c: cx.RuleChoice) -> str:
    if c.measure is None:
        return "none certified (full budget)"
    return f"{c.measure} >= {c.threshold:.3g} from step {c.min_step}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "build" / "calibration")
    args = parser.parse_args(argv)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    default_rule = EARLIER_DEFAULT
    eq = cx.Equivalence()
    lines = []
    for ts in SETS:
        if not ts.path.exists():
            lines.append(f"\n{ts.name}: {ts.path} missing (scripts/build_code_traces.py builds it)\n")
            continue
        records = replay(ts, eq)
        queries = cx.group_queries(records)["sc"]
        halves = split(queries)
        steps = max(len(s) for s in queries.values())
        lines.append(f"\n#### {ts.name}: replay, rounds of {ts.round_size}, {steps} steps\n")
        lines.append(
            "| split (choose -> report) | rule | tokens saved | accuracy | loss (pt) | harms/gains | stop step |"
        )
        lines.append("|---|---|---|---|---|---|---|")
        for direction, (cal, test) in (("A -> B", halves), ("B -> A", halves[::-1])):
            full = cx.evaluate_rule(test, "entropy", 2.0)  # never fires: the fixed budget
            lines.append(row(f"{direction} fixed budget", full, "all samples"))
            lines.append(row(f"{direction} oracle stop", cx.oracle_outcome(test), "first step with final answer"))
            beta = cx.evaluate_rule(test, "beta", cx.BETA_STOP_CONFIDENCE)
            lines.append(row(f"{direction} uncalibrated", beta, f"beta >= {cx.BETA_STOP_CONFIDENCE}"))
            bundled = cx.evaluate_rule(
                test, default_rule["measure"], default_rule["threshold"], default_rule["min_step"]
            )
            lines.append(
                row(
                    f"{direction} earlier default",
                    bundled,
                    f"{default_rule['measure']} >= {default_rule['threshold']} from step {default_rule['min_step']}",
                )
            )
            for label, target, bound, measures, min_steps in TARGETS:
                choice = cx.calibrate(
                    cal,
                    algorithm="sc",
                    target_loss=target / 100,
                    bound=bound,  # type: ignore[arg-type]
                    measures=measures,
                    min_steps=min_steps,
                )
                tag = f"{ts.path.stem.split('.')[0]}_{direction[0]}_{bound}_{target:g}_{len(measures or ())}"
                source = f"{ts.path.name} half {direction[0]} (replay)"
                (args.out_dir / f"{tag}.yaml").write_text(render_config(choice, source))
                (args.out_dir / f"{tag}.txt").write_text(render_report(choice, source))
                if choice.measure is None:
                    o = full
                else:
                    o = cx.evaluate_rule(test, choice.measure, choice.threshold or 0.0, choice.min_step or 1)
                lines.append(row(f"{direction} {label}", o, rule_text(choice)))
        n_half = len(halves[0])
        lines.append(
            f"\nHalves of {n_half} and {len(halves[1])} queries; with no harm at all the 95% Clopper-Pearson "
            f"bound on {n_half} queries is {cx.clopper_pearson_upper(0, n_half, 0.05):.3f} before the "
            "Bonferroni correction over (measure, min_step) chains."
        )
    eq.close()
    text = "\n".join(lines)
    print(text)
    (args.out_dir / "evidence.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
