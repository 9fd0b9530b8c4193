"""Writing a run's outputs: ``summary.json``, ``profile.jsonl``, PNG plots and the terminal table."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from eval._report import ACCURACY_LOSS_POINTS, summarize, write_profile, write_summary
from eval._results import ResultsFile

__all__ = ["finalize", "render_table"]


def finalize(
    out: str | Path,
    *,
    ids: Collection[str] | None = None,
    rule: Mapping[str, Any] | None = None,
    plots: bool = True,
) -> dict[str, Any]:
    """Summarise ``out/results.jsonl`` (restricted to ``ids`` when given) into the run's outputs.

    Writes ``summary.json``, ``profile.jsonl`` (calibration records, when the run has the
    fixed-budget arm) and, with ``plots``, the PNG plots. ``rule`` is the early-exit arm's stop
    rule (default: the one recorded in ``run.json``). Returns the summary.
    """
    out = Path(out)
    run = json.loads((out / "run.json").read_text(encoding="utf-8"))
    records = [r for r in ResultsFile(out / "results.jsonl") if ids is None or r["id"] in ids]
    config = run.get("config") or {}
    if rule is None:
        # The early-exit arm's rule, as recorded with the run's configuration.
        allocator = config.get("allocator") or {}
        rule = (allocator.get("rules") or {}).get(config.get("algorithm"), allocator.get("default"))
    summary = summarize(records, run=run, rule=rule)
    if any(r.get("baseline") for r in records):
        summary["profile_records"] = write_profile(
            out / "profile.jsonl",
            records,
            str(config.get("algorithm", "sc")),
            dataset=str(config.get("dataset")),
            # Replayed traces may carry token counts approximated from their text.
            tokens_exact=summary["label"] != "replay",
        )
    if plots:
        from eval._plots import write_plots

        summary["plots"] = [p.name for p in write_plots(out, records, summary)]
    write_summary(out / "summary.json", summary)
    return summary


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def render_table(summary: Mapping[str, Any]) -> Any:
    """A rich table of the run: one row per arm (and the oracle), with the label in the title."""
    from rich.markup import escape
    from rich.table import Table

    title = escape(f"dynasor eval [{summary['label']}] {summary.get('backend') or ''}")
    table = Table(title=title, title_justify="left")
    for column in ("arm", "acc", "tokens/q", "samples/q", "saved", "latency", "exits"):
        table.add_column(column, justify="left" if column in ("arm", "exits") else "right")
    fixed = summary.get("fixed_budget")

    def saved(tokens_mean: float) -> str:
        return _pct(1 - tokens_mean / fixed["tokens_mean"]) if fixed and fixed["tokens_mean"] else "-"

    def row(name: str, arm: Mapping[str, Any]) -> None:
        if not arm.get("queries"):
            return
        exits = ", ".join(f"{k} {v}" for k, v in sorted(arm["exit_reasons"].items()))
        table.add_row(
            name,
            _pct(arm["accuracy"]),
            f"{arm['tokens_mean']:.0f}",
            f"{arm['samples_mean']:.2f}",
            saved(arm["tokens_mean"]),
            f"{arm['latency_mean_s']:.2f}s",
            exits,
        )

    if fixed:
        row("fixed", fixed)
    row("early exit", summary["early_exit"])
    same = summary.get("early_exit_on_fixed_samples")
    if same and not str(summary.get("comparison", "")).startswith("exact"):
        table.add_row(
            "  same samples",
            _pct(same["accuracy"]),
            f"{same['tokens_mean']:.0f}",
            "",
            _pct(same["saving"]),
            "",
            "the rule replayed on the fixed arm's samples",
        )
    best = summary.get(f"best_within_{ACCURACY_LOSS_POINTS}pt")
    if best:
        table.add_row(
            f"best <={ACCURACY_LOSS_POINTS}pt",
            _pct(best["accuracy"]),
            f"{best['tokens_mean']:.0f}",
            "",
            _pct(best["saving"]),
            "",
            f"rule m={best['min_step']} t={best['threshold']:.3g} (sweep)",
        )
    held = summary.get(f"best_within_{ACCURACY_LOSS_POINTS}pt_crossfit")
    if held:
        table.add_row(
            "  held-out",
            _pct(held["accuracy"]),
            "",
            "",
            _pct(held["saving"]),
            "",
            f"rule chosen on other queries ({held['folds']}-fold)",
        )
    oracle = summary.get("oracle")
    if oracle:
        table.add_row(
            "oracle", _pct(oracle["accuracy"]), f"{oracle['tokens_mean']:.0f}", "", _pct(oracle["saving"]), "", ""
        )
    if summary.get("comparison"):
        table.caption = summary["comparison"]
    return table
