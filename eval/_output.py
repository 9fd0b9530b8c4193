"""Writing a run's outputs: ``summary.json``, calibration inputs, PNG plots and the terminal table."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from certaindex import RuleError, StopRule
from eval._report import (
    ACCURACY_LOSS_POINTS,
    calibration_traces,
    extraction_warning,
    summarize,
    write_profile,
    write_summary,
)
from eval._results import ResultsFile

__all__ = ["finalize", "render_table"]


def _recorded_rule(config: Mapping[str, Any]) -> StopRule | None:
    raw = config.get("rule")
    if not isinstance(raw, Mapping):
        return None
    try:
        return StopRule.from_mapping(raw)
    except RuleError:
        return None


def finalize(
    out: str | Path,
    *,
    ids: Collection[str] | None = None,
    rule: StopRule | None = None,
    plots: bool = True,
) -> dict[str, Any]:
    """Summarise ``out/results.jsonl`` (restricted to ``ids`` when given) into the run's outputs.

    Writes ``summary.json``, the fixed arm's samples for ``dynasor calibrate`` when the run has
    the fixed-budget arm (``traces.jsonl`` in the trace format for programs that keep their
    samples' answers, else ``profile.jsonl`` profiling records) and, with ``plots``, the PNG
    plots. ``rule`` is the early-exit arm's stop rule (default: the one recorded in
    ``run.json``). Returns the summary.
    """
    out = Path(out)
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    records = [r for r in ResultsFile(out / "results.jsonl") if ids is None or r["id"] in ids]
    config = run.get("config") or {}
    rule = rule if rule is not None else _recorded_rule(config)
    summary = summarize(records, run=run, rule=rule)
    warning = extraction_warning(records, config.get("kind"))
    if warning:
        summary["warnings"] = [warning]
    if any(r.get("baseline") for r in records):
        traces = calibration_traces(records)
        if traces and len(traces) == len(records):
            with open(out / "traces.jsonl", "w", encoding="utf-8") as handle:
                handle.writelines(json.dumps(t, ensure_ascii=True) + "\n" for t in traces)
            summary["calibration_file"] = "traces.jsonl"
        else:
            write_profile(
                out / "profile.jsonl",
                records,
                str(config.get("algorithm", "sc")),
                dataset=str(config.get("dataset")),
                tokens_exact=bool(summary["tokens"].get("exact", True)),
            )
            summary["calibration_file"] = "profile.jsonl"
    if plots:
        from eval._plots import write_plots

        summary["plots"] = [p.name for p in write_plots(out, records, summary)]
    write_summary(out / "summary.json", summary)
    return summary


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _pts(x: float) -> str:
    return f"{x:+.1f} pt"


def render_table(summary: Mapping[str, Any]) -> Any:
    """A rich table of the run: one row per arm, the rule on the same samples, the sweep, the oracles."""
    from rich.markup import escape
    from rich.table import Table

    title = escape(f"dynasor eval [{summary['label']}] {summary.get('backend') or ''}")
    table = Table(title=title, title_justify="left")
    columns = ("arm", "acc", "vs fixed", "tokens/q", "samples/q", "tokens saved", "samples saved", "latency", "notes")
    for column in columns:
        table.add_column(column, justify="left" if column in ("arm", "notes") else "right")
    fixed = summary.get("fixed_budget")

    def add(
        name: str, f: Mapping[str, Any], saved: tuple[float | None, float | None], note: str, lat: str = ""
    ) -> None:
        delta = "" if not fixed else _pts(100 * (f["accuracy"] - fixed["accuracy"]))
        table.add_row(
            name,
            _pct(f["accuracy"]),
            delta,
            f"{f['tokens_mean']:.0f}",
            f"{f['samples_mean']:.2f}",
            _pct(saved[0]),
            _pct(saved[1]),
            lat,
            escape(note),
        )

    def exits(arm: Mapping[str, Any]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(arm["exit_reasons"].items()))

    if fixed:
        add("fixed", fixed, (None, None), exits(fixed), f"{fixed['latency_mean_s']:.2f}s")
    early = summary["early_exit"]
    if early.get("queries"):
        saving = summary.get("saving") or {}
        rule = (summary.get("early_exit_rule") or {}).get("describe", "")
        add(
            "early exit",
            early,
            (saving.get("tokens"), saving.get("samples")),
            f"{rule}; {exits(early)}",
            f"{early['latency_mean_s']:.2f}s",
        )
    same = summary.get("early_exit_on_fixed_samples")
    if same and not (summary.get("pairing") or {}).get("exact"):
        add("  same samples", same, (same["saving"], same["samples_saving"]), "the rule replayed on the fixed arm")
    best = summary.get(f"best_within_{ACCURACY_LOSS_POINTS}pt")
    if summary.get("nothing_learned"):
        table.add_row(f"best <={ACCURACY_LOSS_POINTS}pt", "", "", "", "", "", "", "", summary["nothing_learned"])
    elif best:
        note = f"sweep, in-sample: >= {best['threshold']:.3g} from {best['min_samples']} samples"
        add(f"best <={ACCURACY_LOSS_POINTS}pt", best, (best["saving"], best["samples_saving"]), note)
    held = summary.get(f"best_within_{ACCURACY_LOSS_POINTS}pt_crossfit")
    if held:
        table.add_row(
            "  held-out",
            _pct(held["accuracy"]),
            _pts(held["accuracy_delta_points"]),
            "",
            "",
            _pct(held["saving"]),
            _pct(held["samples_saving"]),
            "",
            f"rule chosen on other queries ({held['folds']}-fold)",
        )
    for key, name, note in (
        ("first_correct_oracle", "first-correct oracle", "stops at the first right answer"),
        ("final_answer_oracle", "final-answer oracle", "stops at the first check with the final answer"),
    ):
        if summary.get(key):
            o = summary[key]
            add(name, o, (o["saving"], o["samples_saving"]), note)
    caption = [summary.get("comparison") or ""]
    tokens = summary.get("tokens") or {}
    if tokens and not tokens.get("exact", True):
        caption.append(f"token counts {tokens.get('how', 'approximated')}")
    if summary.get("sweep_rule"):
        caption.append(f"sweep: {summary['sweep_rule']}")
    caption += [f"warning: {w}" for w in summary.get("warnings") or ()]
    table.caption = escape("; ".join(c for c in caption if c))
    return table
