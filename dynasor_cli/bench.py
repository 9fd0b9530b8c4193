"""``dynasor bench``: online serving benchmark, SLO attainment under load, policy against policy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["register"]


def _floats(text: str, name: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a comma-separated list of numbers", param_hint=name) from None
    if not values or any(v <= 0 for v in values):
        raise typer.BadParameter("needs positive numbers", param_hint=name)
    return values


def bench(
    workload: Annotated[
        str, typer.Option(help="sc-math, sc-math-synthetic, mcts, rebase, cot, mixed, or a JSONL FILE")
    ] = "sc-math",
    rates: Annotated[str, typer.Option(help="Arrival rates to run, queries/s, comma-separated")] = "0.5,1,2,4",
    slo_scale: Annotated[
        str, typer.Option("--slo-scale", help="Deadline = scale x base deadline; comma-separated for a sweep")
    ] = "1.0",
    policies: Annotated[str, typer.Option(help="Scheduling policies to compare")] = "fcfs,query-fcfs,las,dynasor",
    engine_profile: Annotated[str, typer.Option(help="Cost profile of the simulated engine")] = "h100-llama3-8b",
    duration: Annotated[float, typer.Option(help="Seconds of arrivals per run")] = 600.0,
    seed: Annotated[int, typer.Option(help="Seed of arrivals and content")] = 0,
    arrivals: Annotated[str, typer.Option(help="poisson, gamma, or a timestamp FILE")] = "poisson",
    cv: Annotated[float, typer.Option(help="Coefficient of variation of gamma arrivals (>1: bursty)")] = 2.0,
    upstream: Annotated[
        str | None, typer.Option(help="Base URL of a live OpenAI-compatible engine (real time)")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Served model name on the live engine")] = None,
    max_seqs: Annotated[int | None, typer.Option(help="Sequences kept in flight (default: engine's; 16 live)")] = None,
    early_exit: Annotated[
        str, typer.Option(help="Who gets Certaindex early exit: dynasor (only it), all, none")
    ] = "dynasor",
    allocator: Annotated[Path | None, typer.Option(help="Allocator config (YAML/JSON) for early exit")] = None,
    param: Annotated[
        list[str] | None, typer.Option("--param", help="Algorithm knob override KEY=VALUE (repeatable)")
    ] = None,
    search: Annotated[
        bool | None,
        typer.Option(help="Bisect each policy's highest rate at 90% attainment (default: on when simulated)"),
    ] = None,
    tolerance: Annotated[float, typer.Option(help="Relative width at which the bisection stops")] = 0.05,
    max_probes: Annotated[int, typer.Option(help="Most runs the bisection makes per policy")] = 12,
    jobs: Annotated[int, typer.Option(help="Worker processes for simulated runs (one per policy at most)")] = 1,
    out: Annotated[Path, typer.Option(help="Folder for results.json and the plots")] = Path("bench-results"),
    record_traces: Annotated[
        Path | None, typer.Option(help="Write every completed sample to this trace file (JSONL)")
    ] = None,
    replay_traces: Annotated[
        Path | None,
        typer.Option(help="Replay samples recorded with --record-traces (same workload and seed) on the sim engine"),
    ] = None,
    save_queries: Annotated[bool, typer.Option(help="Store every query's outcome in the results file")] = False,
    plots: Annotated[bool, typer.Option(help="Write PNG plots")] = True,
    quiet: Annotated[bool, typer.Option(help="No per-point progress lines")] = False,
) -> None:
    """Deadline attainment under load, policy against policy, and each policy's sustainable rate.

    Without --upstream it runs on the simulated engine in virtual time; with it, in real
    time against the live engine. Every figure printed is labelled with how it was obtained.
    """
    import json
    import sys

    from rich.console import Console
    from rich.table import Table

    from dynasor import ConfigError
    from dynasor.allocator import AllocatorConfig
    from dynasor.sched.policy import POLICIES
    from eval.bench import RunConfig, headline, load_workload, make_arrivals, plot, run_bench, summary_rows, write_json

    # A wide console when writing to a file or pipe, so the table keeps every column.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    policy_list = [p.strip() for p in policies.split(",") if p.strip()]
    unknown = [p for p in policy_list if p not in POLICIES]
    if unknown:
        raise typer.BadParameter(f"unknown policy {unknown[0]!r} (choose from {', '.join(POLICIES)})")
    if early_exit not in ("dynasor", "all", "none"):
        raise typer.BadParameter("choose dynasor, all or none", param_hint="--early-exit")
    params = {}
    for item in param or []:
        key, sep, raw = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--param")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    try:
        chosen = load_workload(workload)
        if replay_traces is not None:
            if upstream:
                raise ConfigError("--replay-traces replays on the simulated engine; drop --upstream")
            chosen = chosen.with_recorded(replay_traces)
        config = RunConfig(
            workload=chosen,
            duration=duration,
            seed=seed,
            arrivals=make_arrivals(arrivals, cv=cv),
            engine_profile=engine_profile,
            upstream=upstream,
            model=model,
            max_seqs=max_seqs,
            early_exit=early_exit,  # type: ignore[arg-type]
            allocator=AllocatorConfig.load(allocator) if allocator else None,
            params=params,
            record_traces=str(record_traces) if record_traces else None,
        )
        if not upstream:
            from dynasor.engine.sim import load_profile

            load_profile(engine_profile)
        result = run_bench(
            config,
            policy_list,
            _floats(rates, "--rates"),
            _floats(slo_scale, "--slo-scale"),
            search=search if search is not None else upstream is None,
            rel_tol=tolerance,
            max_probes=max_probes,
            jobs=jobs,
            keep_queries=save_queries,
            verbose=not quiet,
        )
    except (ConfigError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    path = write_json(result, out / "results.json")
    rows = summary_rows(result)
    table = Table(title=f"dynasor bench: {result.label}")
    for column in rows[0] if rows else []:
        table.add_column(column, justify="left" if column == "policy" else "right")
    for row in rows:
        table.add_row(*row.values())
    console.print(table)
    for line in headline(result):
        console.print(line, highlight=False, markup=False)
    written = plot(result, out) if plots else []
    console.print(f"results: {path}" + "".join(f", {p}" for p in written), highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
