"""``dynasor calibrate``: choose stopping rules from profiling records, write the allocator config."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from certaindex import ProfilingRecord, RuleChoice

__all__ = ["register", "render_config", "render_report"]


def render_config(choices: list[RuleChoice], source: str) -> str:
    """The allocator config (YAML) for the chosen rules, with a header saying how it was made.

    An algorithm for which no rule met the target gets ``threshold: null`` (never stop early).
    """
    import yaml

    bounds = sorted({c.config()["bound"] for c in choices})
    lines = [f"# written by dynasor calibrate: {source}, {'; '.join(bounds)}"]
    for c in choices:
        entry = c.config()
        if c.measure is None:
            entry.update(measure=None, threshold=None, min_step=1)
        lines.append(yaml.safe_dump({c.algorithm: entry}, sort_keys=False, width=1000).rstrip())
    return "\n".join(lines) + "\n"


def render_report(choices: list[RuleChoice], source: str) -> str:
    """A short plain-text report: chosen rule, expected saving and loss, bound, notes."""
    out = [f"Calibration from {source}."]
    for c in choices:
        o = c.outcome
        out.append(f"\n[{c.algorithm}] {o.n} queries, baseline accuracy {o.full_accuracy:.3f}")
        if c.measure is None:
            out.append("  rule: none (run to the full budget)")
        else:
            out.append(f"  rule: stop when {c.measure} >= {c.threshold:.4g} at or after step {c.min_step}")
        out.append(
            f"  on these records: tokens saved {o.saving:.1%}, accuracy {o.accuracy:.3f} "
            f"(loss {100 * o.loss:+.2f} points), harms {o.harms}, gains {o.gains}, "
            f"mean stop step {o.mean_stop_step:.2f}"
        )
        out.append(f"  bound: {c.config()['bound']}; harm-rate bound {c.harm_bound:.4f}")
        out.append(f"  rules tried {c.candidates}, certified {c.certified}")
        out.extend(f"  note: {n}" for n in c.notes)
    return "\n".join(out) + "\n"


def register(app: typer.Typer) -> None:
    @app.command()
    def calibrate(
        records: Annotated[Path, typer.Argument(help="Profiling records (JSONL), or traces with --from-traces.")],
        target_loss: Annotated[float, typer.Option(help="Allowed accuracy loss, in points (0.5 = 0.5%).")] = 0.5,
        confidence: Annotated[float, typer.Option(help="Confidence of the bound on the loss.")] = 0.95,
        bound: Annotated[str, typer.Option(help="clopper-pearson (exact binomial) or none (point estimate).")] = (
            "clopper-pearson"
        ),
        out: Annotated[Path, typer.Option(help="Allocator config to write (YAML).")] = Path("config.yaml"),
        report: Annotated[Path | None, typer.Option(help="Also write the report here.")] = None,
        measure: Annotated[list[str] | None, typer.Option(help="Only these measures (repeatable).")] = None,
        min_step: Annotated[list[int] | None, typer.Option(help="Only these check steps (repeatable).")] = None,
        algorithm: Annotated[list[str] | None, typer.Option(help="Only these algorithms (repeatable).")] = None,
        from_traces: Annotated[bool, typer.Option(help="RECORDS is a trace file: replay it first.")] = False,
        trace_algorithm: Annotated[str, typer.Option(help="Algorithm name for replayed traces.")] = "sc",
        round_size: Annotated[int, typer.Option(help="Samples per step when replaying traces.")] = 1,
        max_samples: Annotated[int | None, typer.Option(help="Budget in samples when replaying traces.")] = None,
        reward_scale: Annotated[str, typer.Option(help="Map trace scores to [0,1]: sigmoid, identity.")] = ("sigmoid"),
        approx_tokens: Annotated[
            bool, typer.Option(help="The traces' token counts are approximations (recorded in the records).")
        ] = False,
        save_records: Annotated[Path | None, typer.Option(help="Write the replayed records here.")] = None,
    ) -> None:
        """Choose per-algorithm stopping rules that save the most tokens within an accuracy-loss bound."""
        import certaindex as cx

        if bound not in ("clopper-pearson", "none"):
            raise typer.BadParameter(f"unknown bound {bound!r}: use clopper-pearson or none")
        if from_traces:
            recs = _replay_traces(
                records, trace_algorithm, round_size, max_samples, reward_scale, approx_tokens, save_records
            )
        else:
            recs = cx.read_records(records)
        grouped = cx.group_queries(recs)
        if algorithm:
            grouped = {a: q for a, q in grouped.items() if a in algorithm}
        if not grouped:
            raise typer.BadParameter(f"no profiling records in {records}")
        choices = [
            cx.calibrate(
                queries,
                algorithm=alg,
                target_loss=target_loss / 100.0,
                confidence=confidence,
                bound=bound,  # type: ignore[arg-type]
                measures=measure or None,
                min_steps=min_step or None,
            )
            for alg, queries in sorted(grouped.items())
        ]
        source = str(records)
        out.write_text(render_config(choices, source), encoding="utf-8")
        text = render_report(choices, source)
        if report is not None:
            report.write_text(text, encoding="utf-8")
        typer.echo(text + f"config written to {out}")


def _replay_traces(
    path: Path,
    algorithm: str,
    round_size: int,
    max_samples: int | None,
    reward_scale: str,
    approx_tokens: bool,
    save_to: Path | None,
) -> list[ProfilingRecord]:
    """Profiling records from replaying a trace file (written to ``save_to`` when given)."""
    import gzip
    import json

    import certaindex as cx

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        traces = [json.loads(line) for line in fh if line.strip()]
    eq = cx.Equivalence()
    records = [
        r
        for t in traces
        for r in cx.records_from_trace(
            t,
            algorithm=algorithm,
            round_size=round_size,
            max_samples=max_samples,
            equivalence=eq,
            reward_scale=cx.RewardScale(reward_scale),  # type: ignore[arg-type]
            dataset=path.name,
            tokens_exact=False if approx_tokens else None,
        )
    ]
    eq.close()
    if save_to is not None:
        cx.write_records(records, save_to)
    return records
