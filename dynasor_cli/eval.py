"""``dynasor eval``: offline batch evaluation of early exit on a math or code dataset."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["register"]


def _pairs(items: list[str] | None, what: str) -> dict[str, Any]:
    """``KEY=VALUE`` options as a dict, values read as YAML scalars (``8`` -> 8, ``null`` -> None)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{what} must look like KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value) if what == "--param" else value.strip()
    return out


def eval_command(
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Bundled set (gsm8k, math500, aime24, aime25, amc23, humaneval, mbpp), trace set, "
            "local .jsonl/.json/.parquet file or hub name; defaults to the replayed trace file."
        ),
    ] = None,
    algorithm: Annotated[
        str, typer.Option(help="Reasoning program: sc, cot, mcts, rebase, bon (as registered).")
    ] = "sc",
    backend: Annotated[
        str, typer.Option(help="sim, replay:PATH (trace file or bundled trace set), or engine URL.")
    ] = "sim",
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="Algorithm knob KEY=VALUE (repeat).")] = None,
    max_samples: Annotated[int | None, typer.Option(help="Knob max_samples (fixed-budget sample count).")] = None,
    samples_per_round: Annotated[int | None, typer.Option(help="Knob samples_per_round (gang size).")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Knob max_tokens per sample.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Knob temperature.")] = None,
    model: Annotated[str | None, typer.Option(help="Served model name (engine URL backend).")] = None,
    policy: Annotated[str, typer.Option(help="Gang policy: fcfs, query-fcfs, las, dynasor.")] = "dynasor",
    allocator: Annotated[Path | None, typer.Option(help="Stop-rule config (YAML/JSON); default: bundled.")] = None,
    threshold: Annotated[float | None, typer.Option(help="Override the algorithm's certaindex threshold.")] = None,
    min_step: Annotated[int | None, typer.Option(help="Override the first step the threshold applies at.")] = None,
    limit: Annotated[int | None, typer.Option(help="First N problems only.")] = None,
    concurrency: Annotated[int, typer.Option(help="Queries in flight at once.")] = 8,
    out: Annotated[Path | None, typer.Option(help="Output folder (re-running with it resumes).")] = None,
    compare_baseline: Annotated[
        bool, typer.Option("--compare-baseline", help="Also run the fixed budget (no early exit) and sweep thresholds.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of simulated and replayed draws.")] = 0,
    sim_profile: Annotated[
        str, typer.Option(help="Cost profile of the simulated engine (sim and replay timing).")
    ] = "h100-llama3-8b",
    kind: Annotated[str | None, typer.Option(help="math or code, for local files and trace sets.")] = None,
    field: Annotated[
        list[str] | None, typer.Option("--field", help="Column mapping KEY=COLUMN (id, prompt, reference, tests).")
    ] = None,
    split: Annotated[str, typer.Option(help="Split of a hub dataset.")] = "test",
    scorer: Annotated[
        str,
        typer.Option(
            help="Reward scorer for mcts/rebase/reward votes: auto (replay: recorded, sim: synthetic), "
            "none, or a scorer name."
        ),
    ] = "auto",
    grade_timeout: Annotated[float, typer.Option(help="Seconds a code candidate may run when graded.")] = 10.0,
    unsafe_exec: Annotated[
        bool,
        typer.Option(
            "--unsafe-exec",
            help="Run model-written code WITHOUT isolation where the bubblewrap sandbox is unavailable "
            "(by default such runs are refused).",
        ),
    ] = False,
    plots: Annotated[bool, typer.Option(help="Write PNG plots.")] = True,
) -> None:
    """Evaluate Certaindex early exit on a dataset: accuracy, tokens, savings, plots; resumable."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dynasor import ConfigError
    from dynasor.allocator import AllocatorConfig
    from eval import EvalConfig, finalize, render_table, run_eval

    console = Console(stderr=True)
    params = _pairs(param, "--param")
    for key, value in (
        ("max_samples", max_samples),
        ("samples_per_round", samples_per_round),
        ("max_tokens", max_tokens),
        ("temperature", temperature),
    ):
        if value is not None:
            params[key] = value
    if dataset is None:
        if not backend.startswith("replay:"):
            raise typer.BadParameter("--dataset is required unless --backend is replay:PATH")
        dataset = backend.removeprefix("replay:")
    if kind not in (None, "math", "code"):
        raise typer.BadParameter(f"--kind must be math or code, got {kind!r}")
    try:
        rules = AllocatorConfig.load(allocator) if allocator else AllocatorConfig.bundled()
        changes = {k: v for k, v in (("threshold", threshold), ("min_step", min_step)) if v is not None}
        if changes:
            rules = rules.with_rule(algorithm, **changes)
    except (ConfigError, OSError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    stem = re.sub(r"[^\w.-]+", "_", Path(dataset).name.split(".")[0]) or "dataset"
    out = out or Path("runs") / f"eval-{stem}-{algorithm}"
    config = EvalConfig(
        dataset=dataset,
        algorithm=algorithm,
        params=params,
        backend=backend,
        model=model,
        policy=policy,
        allocator=rules,
        limit=limit,
        concurrency=concurrency,
        out=out,
        compare_baseline=compare_baseline,
        seed=seed,
        profile=sim_profile,
        kind=kind,
        fields=_pairs(field, "--field"),
        split=split,
        grade_timeout=grade_timeout,
        unsafe_exec=unsafe_exec,
        scorer=None if scorer == "none" else scorer,
    )
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        console=console,
    )
    tally = {"n": 0, "right": 0, "tokens": 0, "base_right": 0, "base_tokens": 0}
    ids: set[str] = set()

    def on_start(total: int, done: int) -> None:
        progress.start()
        progress.add_task("eval", total=total, completed=done, stats=f"resuming: {done} on file" if done else "")

    def on_result(record: dict[str, Any]) -> None:
        tally["n"] += 1
        tally["right"] += bool(record["correct"])
        tally["tokens"] += int(record["tokens"])
        stats = f"acc {tally['right'] / tally['n']:.1%}  tokens {tally['tokens']:,}"
        if record.get("baseline"):
            tally["base_right"] += bool(record["baseline"]["correct"])
            tally["base_tokens"] += int(record["baseline"]["tokens"])
            stats += f"  | fixed acc {tally['base_right'] / tally['n']:.1%}  tokens {tally['base_tokens']:,}"
        progress.update(progress.task_ids[0], advance=1, stats=stats)

    try:
        try:
            from eval import load_problems

            problems = load_problems(dataset, split=split, fields=config.fields, kind=kind)  # type: ignore[arg-type]
            if limit is not None:
                problems = problems[:limit]
            ids = {p.id for p in problems}
            _, spec = run_eval(config, problems=problems, on_start=on_start, on_result=on_result)
        finally:
            progress.stop()
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    summary = finalize(out, ids=ids, plots=plots)
    Console().print(render_table(summary))
    files = ["results.jsonl", "summary.json"]
    files += ["profile.jsonl"] if summary.get("profile_records") else []
    console.print(escape(f"[{spec.kind}] results in {out}/: " + ", ".join(files + summary.get("plots", []))))


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
