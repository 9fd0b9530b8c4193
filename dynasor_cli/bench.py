"""``dynasor bench``: online serving benchmark, SLO attainment under load, policy against policy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from dynasor.sched import POLICIES
from dynasor_cli._options import key_values, policy_specs

if TYPE_CHECKING:
    from rich.console import Console

    from eval.bench import BenchResult, RunConfig

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
    policies: Annotated[
        str, typer.Option(help="Scheduling policies to compare, comma-separated; knobs as NAME:KEY=VALUE")
    ] = ",".join(POLICIES),
    engine_profile: Annotated[str, typer.Option(help="Cost profile of the simulated engine")] = "h100-llama3-8b",
    duration: Annotated[float, typer.Option(help="Seconds of scored arrivals per run")] = 600.0,
    keep_load: Annotated[
        bool,
        typer.Option(
            "--keep-load/--drain",
            help="Arrivals go on (unscored) until every scored query is done; --drain stops them at --duration",
        ),
    ] = True,
    seed: Annotated[int, typer.Option(help="Seed of arrivals and content")] = 0,
    arrivals: Annotated[str, typer.Option(help="poisson, gamma, or a timestamp FILE")] = "poisson",
    cv: Annotated[float, typer.Option(help="Coefficient of variation of gamma arrivals (>1: bursty)")] = 2.0,
    upstream: Annotated[
        str | None, typer.Option(help="Base URL of a live OpenAI-compatible engine (real time)")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Served model name on the live engine")] = None,
    max_seqs: Annotated[
        int | None,
        typer.Option(help="Sequences the scheduler keeps in flight (default: the engine's limit; 16 live)"),
    ] = None,
    prefix_caching: Annotated[
        bool, typer.Option(help="Automatic prefix caching in the simulated engine (on, as in vLLM)")
    ] = True,
    early_exit: Annotated[
        str,
        typer.Option(
            help="Who gets Certaindex early exit: both (every policy with and without: the ablation), "
            "all, none, or policies by name"
        ),
    ] = "both",
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
    replicas: Annotated[
        int | None,
        typer.Option(
            help="Simulated replicas behind the proxy's upstream pool (query affinity, least loaded); rates stay totals"
        ),
    ] = None,
    fail_replica: Annotated[
        str | None, typer.Option(help="With --replicas: INDEX@SECONDS takes that replica down for good then")
    ] = None,
    save_queries: Annotated[bool, typer.Option(help="Store every query's outcome in the results file")] = False,
    plots: Annotated[bool, typer.Option(help="Write PNG plots")] = True,
    quiet: Annotated[bool, typer.Option(help="No per-point progress lines")] = False,
) -> None:
    """Deadline attainment under load, policy against policy, and each policy's sustainable rate.

    Without --upstream it runs on the simulated engine in virtual time; with it, in real
    time against the live engine. Every figure printed is labelled with how it was obtained.
    """
    from dynasor import ConfigError
    from eval.bench import run_bench

    policy_list = policy_specs(policies)
    _check_early_exit(early_exit)
    params = key_values(param, "--param", _json_or_text)
    rate_list, scale_list = _floats(rates, "--rates"), _floats(slo_scale, "--slo-scale")
    try:
        config = _run_config(
            workload,
            replay_traces,
            duration=duration,
            keep_load=keep_load,
            seed=seed,
            arrivals=arrivals,
            cv=cv,
            engine_profile=engine_profile,
            upstream=upstream,
            model=model,
            max_seqs=max_seqs,
            prefix_caching=prefix_caching,
            early_exit=early_exit,
            allocator=allocator,
            params=params,
            record_traces=record_traces,
        )
        config = _with_replicas(config, replicas, fail_replica)
        result = run_bench(
            config,
            policy_list,
            rate_list,
            scale_list,
            search=search if search is not None else upstream is None,
            rel_tol=tolerance,
            max_probes=max_probes,
            jobs=jobs,
            keep_queries=save_queries,
            verbose=not quiet,
        )
    except (ConfigError, ValueError) as exc:
        _console().print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    _print_results(result, out, plots)


def _check_early_exit(who: str) -> None:
    from eval.bench import EARLY_EXIT_CHOICES

    names = {name.strip() for name in who.split(",") if name.strip()}
    if who not in EARLY_EXIT_CHOICES and (not names or not names <= set(POLICIES)):
        raise typer.BadParameter(
            f"choose {', '.join(EARLY_EXIT_CHOICES)}, or policies by name ({', '.join(POLICIES)})",
            param_hint="--early-exit",
        )


def _json_or_text(raw: str) -> object:
    import json

    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _run_config(
    workload: str,
    replay_traces: Path | None,
    *,
    duration: float,
    keep_load: bool,
    seed: int,
    arrivals: str,
    cv: float,
    engine_profile: str,
    upstream: str | None,
    model: str | None,
    max_seqs: int | None,
    prefix_caching: bool,
    early_exit: str,
    allocator: Path | None,
    params: dict[str, object],
    record_traces: Path | None,
) -> RunConfig:
    """The benchmark's configuration; raises ConfigError or ValueError for a bad one."""
    from dynasor import ConfigError
    from dynasor.allocator import AllocatorConfig
    from dynasor.engine.sim import load_profile
    from eval.bench import RunConfig, load_workload, make_arrivals

    chosen = load_workload(workload)
    if replay_traces is not None:
        if upstream:
            raise ConfigError("--replay-traces replays on the simulated engine; drop --upstream")
        chosen = chosen.with_recorded(replay_traces)
    config = RunConfig(
        workload=chosen,
        duration=duration,
        keep_load=keep_load,
        seed=seed,
        arrivals=make_arrivals(arrivals, cv=cv),
        engine_profile=engine_profile,
        upstream=upstream,
        model=model,
        max_seqs=max_seqs,
        prefix_caching=prefix_caching,
        early_exit=early_exit,
        allocator=AllocatorConfig.load(allocator) if allocator else None,
        params=params,
        record_traces=str(record_traces) if record_traces else None,
    )
    if not upstream:
        load_profile(engine_profile)
    return config


def _with_replicas(config: RunConfig, replicas: int | None, fail_replica: str | None) -> RunConfig:
    from dataclasses import replace

    from dynasor import ConfigError
    from eval.bench import parse_failure

    if replicas is None:
        if fail_replica is not None:
            raise ConfigError("--fail-replica needs --replicas")
        return config
    if replicas < 1:
        raise ConfigError(f"--replicas must be >= 1, got {replicas}")
    if config.upstream:
        raise ConfigError("--replicas simulates engines; drop --upstream (dynasor serve takes repeated --upstream)")
    failure = parse_failure(fail_replica) if fail_replica is not None else None
    if failure is not None and failure.replica >= replicas:
        raise ConfigError(f"--fail-replica {fail_replica}: replicas are numbered 0 to {replicas - 1}")
    return replace(config, replicas=replicas, replica_failure=failure)


def _console() -> Console:
    import sys

    from rich.console import Console

    # A wide console when writing to a file or pipe, so the table keeps every column.
    return Console() if sys.stdout.isatty() else Console(width=200)


def _print_results(result: BenchResult, out: Path, plots: bool) -> None:
    """Write the results file (and plots) and print the table and the headline."""
    from rich.table import Table

    from eval.bench import ablation_rows, headline, plot, summary_rows, write_json

    console = _console()
    path = write_json(result, out / "results.json")

    def show(title: str, rows: list[dict[str, str]]) -> None:
        table = Table(title=title)
        for column in rows[0] if rows else []:
            table.add_column(column, justify="left" if column in ("arm", "policy") else "right")
        for row in rows:
            table.add_row(*row.values())
        console.print(table)

    show(f"dynasor bench: {result.label}", summary_rows(result))
    for scale in result.meta["search_slo_scales"]:
        show(
            f"sustainable rate (queries/s at {result.meta['target_attainment']:.0%} attainment), "
            f"SLO scale {scale:g}: {result.label}",
            ablation_rows(result, scale),
        )
    for line in headline(result):
        console.print(line, highlight=False, markup=False)
    written = plot(result, out) if plots else []
    console.print(f"results: {path}" + "".join(f", {p}" for p in written), highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
