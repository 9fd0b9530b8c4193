"""``dynasor demo``: the embedded default workload, printed as a table."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dynasor_cli._options import DEFAULT_POLICY, POLICY_HELP, policy_spec

if TYPE_CHECKING:
    from rich.table import Table

    from dynasor.demo import DemoOutcome


def demo(
    traces: Annotated[str, typer.Option(help="Bundled trace set name or a trace JSONL path.")] = "math-qwen25",
    profile: Annotated[str, typer.Option(help="Cost profile of the simulated engine.")] = "h100-llama3-8b",
    policy: Annotated[str, typer.Option(help=POLICY_HELP)] = DEFAULT_POLICY,
    rate: Annotated[float, typer.Option(help="Query arrivals per second (Poisson).")] = 2.0,
    max_samples: Annotated[int, typer.Option(help="Sample cap per query.")] = 8,
    samples_per_round: Annotated[
        int | None, typer.Option(help="Samples per step (gang size); default: the stop rule's round size.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N queries.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of arrivals and sample order.")] = 0,
    certaindex: Annotated[
        Path | None,
        typer.Option(help="Certaindex config (YAML/JSON, as `dynasor calibrate` writes); default: bundled."),
    ] = None,
    real_time: Annotated[bool, typer.Option("--real-time", help="Run on the wall clock.")] = False,
    rows: Annotated[int, typer.Option(help="Per-query rows to print (0: all).")] = 0,
) -> None:
    """Self-consistency with Certaindex early exit on the simulated engine, replaying bundled traces.

    Prints one row per query and the totals against a fixed-budget run of the same samples.
    """
    from rich.console import Console
    from rich.markup import escape

    from dynasor import DynasorError
    from dynasor.demo import DemoSettings, demo_params, demo_rules, run_demo

    policy_spec(policy)
    console = Console(width=max(Console().width, 100))  # the table needs ~100 columns
    settings = DemoSettings(
        traces, profile, policy, rate, max_samples, samples_per_round, limit, seed, certaindex, not real_time
    )
    started = time.perf_counter()
    try:
        rule = demo_rules(settings).rule_for("sc")
        rounds = int(demo_params(settings, rule).get("samples_per_round", 2))  # type: ignore[call-overload]
        outcomes = run_demo(settings)
    except (DynasorError, ValueError, FileNotFoundError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    wall = time.perf_counter() - started
    clock = "real time" if real_time else "virtual time"
    label = f"replay of '{traces}' on the simulated engine (profile {profile}, {clock}), policy {policy}"

    console.print(_query_table(outcomes if rows <= 0 else outcomes[:rows], max_samples, rounds))
    console.print(_totals_table(outcomes))
    promise = rule.certification.statement if rule.certification else "no certification"
    approx = any(not s.tokens_exact for o in outcomes for s in o.record.samples)
    tokens = "tokens approximated from the recorded text" if approx else "recorded token counts"
    console.print(escape(f"stop rule: {rule.describe()}; {promise}"), style="dim")
    console.print(
        escape(f"{label}; {tokens}; {len(outcomes)} queries at {rate}/s; wall time {wall:.1f} s"), style="dim"
    )


def _query_table(outcomes: Sequence[DemoOutcome], max_samples: int, samples_per_round: int) -> Table:
    """One row per query: its answer, exit, samples, tokens against the fixed budget's, latency."""
    from rich.table import Table

    table = Table(title=f"Self-consistency, max {max_samples} samples, rounds of {samples_per_round}")
    table.add_column("query", no_wrap=True)
    table.add_column("answer", no_wrap=True, max_width=14, overflow="ellipsis")
    table.add_column("ok", no_wrap=True)
    table.add_column("exit", no_wrap=True)
    for column in ("samples", "tokens", "fixed", "saved", "latency s"):
        table.add_column(column, justify="right", no_wrap=True)
    for o in outcomes:
        early, base = o.early, o.baseline
        saved = 1 - early.usage.completion_tokens / base.usage.completion_tokens if base.usage.completion_tokens else 0
        table.add_row(
            early.id,
            early.answer or "-",
            "[green]yes[/green]" if o.early_correct else "[red]no[/red]",
            str(early.exit_reason),
            str(early.samples),
            str(early.usage.completion_tokens),
            str(base.usage.completion_tokens),
            f"{saved:.0%}",
            f"{early.latency:.2f}",
        )
    return table


def _totals_table(outcomes: Sequence[DemoOutcome]) -> Table:
    from rich.table import Table

    from dynasor.demo import summarize

    s = summarize(outcomes)
    totals = Table(title="Totals: Certaindex early exit vs fixed budget (same samples)")
    for column in ("", "early exit", "fixed budget"):
        totals.add_column(column, justify="right")
    totals.add_row("accuracy", f"{s['accuracy']:.1%}", f"{s['baseline_accuracy']:.1%}")
    totals.add_row("samples", f"{s['samples']:,}", f"{s['baseline_samples']:,}")
    totals.add_row("completion tokens", f"{s['tokens']:,}", f"{s['baseline_tokens']:,}")
    totals.add_row("tokens saved", f"{s['tokens_saved']:,} ({s['saved_fraction']:.1%})", "-")
    totals.add_row("latency mean s", f"{s['latency_mean']:.2f}", f"{s['baseline_latency_mean']:.2f}")
    totals.add_row("latency p90 s", f"{s['latency_p90']:.2f}", f"{s['baseline_latency_p90']:.2f}")
    return totals


def register(app: typer.Typer) -> None:
    app.command()(demo)
