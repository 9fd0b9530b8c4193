"""``dynasor eval``: offline batch evaluation of early exit on a math, multiple-choice or code dataset.

On a terminal a progress bar; otherwise (CI, ``nohup``, a pipe) a progress line on stderr every
:data:`PROGRESS_EVERY` queries or :data:`PROGRESS_SECONDS` seconds, whichever comes first.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from dynasor_cli._options import DEFAULT_POLICY, POLICY_HELP, key_values, policy_spec

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from dynasor.allocator import AllocatorConfig
    from eval import EvalConfig

__all__ = ["PROGRESS_EVERY", "PROGRESS_SECONDS", "register"]

PROGRESS_EVERY = 10
"""Queries between two progress lines when stderr is not a terminal."""
PROGRESS_SECONDS = 30.0
"""Seconds between two progress lines when stderr is not a terminal (whichever comes first)."""


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
    policy: Annotated[str, typer.Option(help=POLICY_HELP)] = DEFAULT_POLICY,
    certaindex: Annotated[
        Path | None,
        typer.Option(
            help="Certaindex config (YAML/JSON, as `dynasor calibrate` writes); default: the bundled, certified rules."
        ),
    ] = None,
    threshold: Annotated[float | None, typer.Option(help="Override the rule's certaindex threshold.")] = None,
    min_samples: Annotated[
        int | None, typer.Option(help="Override the samples drawn before the rule may stop.")
    ] = None,
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
    kind: Annotated[
        str | None, typer.Option(help="math, choice (multiple choice) or code, for local files and trace sets.")
    ] = None,
    reextract: Annotated[
        bool,
        typer.Option("--reextract", help="Replay: read answers from the samples' text, not the answers recorded."),
    ] = False,
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

    from dynasor import ConfigError
    from eval import EvalConfig

    policy_spec(policy)
    if dataset is None:
        if not backend.startswith("replay:"):
            raise typer.BadParameter("--dataset is required unless --backend is replay:PATH")
        dataset = backend.removeprefix("replay:")
    if kind not in (None, "math", "choice", "code"):
        raise typer.BadParameter(f"--kind must be math, choice or code, got {kind!r}")
    knobs = dict(
        max_samples=max_samples, samples_per_round=samples_per_round, max_tokens=max_tokens, temperature=temperature
    )
    params = key_values(param, "--param", _yaml_scalar) | {k: v for k, v in knobs.items() if v is not None}
    stem = re.sub(r"[^\w.-]+", "_", Path(dataset).name.split(".")[0]) or "dataset"
    out = out or Path("runs") / f"eval-{stem}-{algorithm}"
    config = EvalConfig(
        dataset=dataset,
        algorithm=algorithm,
        params=params,
        backend=backend,
        model=model,
        policy=policy,
        certaindex=_stop_rules(certaindex, algorithm, threshold=threshold, min_samples=min_samples),
        limit=limit,
        concurrency=concurrency,
        out=out,
        compare_baseline=compare_baseline,
        seed=seed,
        profile=sim_profile,
        kind=kind,
        fields=key_values(field, "--field", str.strip),
        split=split,
        grade_timeout=grade_timeout,
        unsafe_exec=unsafe_exec,
        scorer=None if scorer == "none" else scorer,
        reextract=reextract,
    )
    console = Console(stderr=True)
    try:
        ids, label = _run(config, console)
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    _finish(config, ids, label, plots, console)


def _yaml_scalar(value: str) -> Any:
    """A knob's value as YAML reads it (``8`` -> 8, ``null`` -> None)."""
    import yaml

    return yaml.safe_load(value)


def _stop_rules(path: Path | None, algorithm: str, **changes: float | int | None) -> AllocatorConfig:
    """The early-exit arm's stop rules: the file's (or the bundled ones), with the overrides given."""
    from dynasor import ConfigError
    from dynasor.allocator import AllocatorConfig

    try:
        rules = AllocatorConfig.load(path) if path else AllocatorConfig.bundled()
        given = {k: v for k, v in changes.items() if v is not None}
        return rules.with_rule(algorithm, **given) if given else rules
    except (ConfigError, OSError) as exc:
        raise typer.BadParameter(str(exc)) from exc


class ProgressLines:
    """Progress for a log: a line every ``every`` queries or ``seconds`` seconds, and one at the end."""

    def __init__(self, write: Any, every: int = PROGRESS_EVERY, seconds: float = PROGRESS_SECONDS) -> None:
        self.write, self.every, self.seconds = write, every, seconds
        self.total = self.resumed = 0
        self.started = self.last = time.monotonic()
        self.since = 0

    def start(self, total: int, done: int) -> None:
        self.total, self.resumed = total, done
        self.started = self.last = time.monotonic()
        self.write(f"eval: {total} queries, {done} already on file" if done else f"eval: {total} queries")

    def update(self, finished: int, stats: str) -> None:
        self.since += 1
        now = time.monotonic()
        if self.since >= self.every or now - self.last >= self.seconds or self.resumed + finished >= self.total:
            elapsed = now - self.started
            self.write(f"eval: {self.resumed + finished}/{self.total} queries, {stats}, {elapsed:.0f} s")
            self.since, self.last = 0, now


def _run(config: EvalConfig, console: Console) -> tuple[set[str], str]:
    """Run the evaluation with progress; the ids of the problems asked, and how figures were obtained."""
    from eval import load_problems, run_eval

    interactive = console.is_terminal
    progress = _progress_bar(console) if interactive else None
    lines = ProgressLines(lambda text: print(text, file=sys.stderr, flush=True))
    tally = {"n": 0, "right": 0, "tokens": 0, "base_right": 0, "base_tokens": 0}

    def on_start(total: int, done: int) -> None:
        if progress is None:
            lines.start(total, done)
            return
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
        if progress is None:
            lines.update(tally["n"], stats)
        else:
            progress.update(progress.task_ids[0], advance=1, stats=stats)

    try:
        kind: Any = config.kind
        problems = load_problems(config.dataset, split=config.split, fields=config.fields, kind=kind)
        if config.limit is not None:
            problems = problems[: config.limit]
        _, spec = run_eval(config, problems=problems, on_start=on_start, on_result=on_result)
    finally:
        if progress is not None:
            progress.stop()
    return {p.id for p in problems}, spec.kind


def _progress_bar(console: Console) -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        console=console,
    )


def _finish(config: EvalConfig, ids: set[str], label: str, plots: bool, console: Console) -> None:
    """Summarise the results file, print the table and say where everything went."""
    from rich.console import Console
    from rich.markup import escape

    from eval import finalize, render_table

    summary = finalize(config.out, ids=ids, plots=plots)
    screen = Console()
    (screen if screen.is_terminal else Console(width=160)).print(render_table(summary))
    for warning in summary.get("warnings") or ():
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
    files = ["results.jsonl", "summary.json"]
    files += [summary["calibration_file"]] if summary.get("calibration_file") else []
    console.print(escape(f"[{label}] results in {config.out}/: " + ", ".join(files + summary.get("plots", []))))


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
