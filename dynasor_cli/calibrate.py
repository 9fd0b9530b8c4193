"""``dynasor calibrate``: certify a stop rule on recorded samples and write the Certaindex config.

Input: trace files (the trace format, e.g. a bundled set or the ``traces.jsonl`` that
``dynasor eval --compare-baseline`` writes), read with :func:`certaindex.read_traces` exactly as
``dynasor eval`` replays them (recorded answers first, ``--reextract`` to read the text), or
the ``profile.jsonl`` profiling records eval writes for programs without per-sample answers.
Several files pool their queries (each file is a data set of its own for the split).

The rule is certified with Learn then Test (:func:`certaindex.certify`; several ``--bound``
values: :func:`certaindex.certify_ladder`, the tightest bound certified), or chosen as a point
estimate with ``--no-bound``. The written config (``--out``) is what ``dynasor eval
--certaindex``, ``dynasor serve --certaindex`` and ``AllocatorConfig.load`` read: the rule with
its measure, threshold, minimum samples, round size, answer kind, abstentions, hopeless exit,
and the bound and data it was certified on.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    import certaindex as cx

__all__ = ["load_trajectories", "register", "render_report"]


def _first_line(path: Path) -> Any:
    import gzip

    opener: Any = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    return json.loads(line)
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise typer.BadParameter(f"{path}: cannot read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"{path}:1: not valid JSON ({exc.msg})") from None
    raise typer.BadParameter(f"{path}: empty file")


def _kind(declared: str | None, traces: list[cx.Trace], name: str) -> cx.AnswerKind:
    if declared is not None:
        return declared  # type: ignore[return-value]
    first = traces[0]
    meta_kind = first.meta.get("answer_kind") or first.meta.get("kind")
    if meta_kind in ("math", "choice", "code"):
        return meta_kind
    if first.options:
        return "choice"
    if any(word in name.lower() for word in ("code", "humaneval", "mbpp")):
        return "code"
    return "math"


def _profile_trajectories(path: Path, algorithm: str) -> tuple[list[cx.Trajectory], set[str]]:
    """Trajectories from profiling records: one check per record, the measures it recorded."""
    import numpy as np

    import certaindex as cx

    try:
        records = cx.read_records(path)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    queries = cx.group_queries(records).get(algorithm)
    if not queries:
        found = sorted(cx.group_queries(records))
        raise typer.BadParameter(f"{path}: no profiling records of algorithm {algorithm!r} (found: {', '.join(found)})")
    out, measures = [], set()
    for qid, steps in queries.items():
        names = set.intersection(*(set(r.certaindex) for r in steps))
        measures |= names
        out.append(
            cx.Trajectory(
                samples=np.maximum.accumulate(np.array([max(r.samples, 1) for r in steps], dtype=np.int64)),
                values={cx.value_key(m): np.array([r.certaindex[m] for r in steps], dtype=float) for m in names},
                correct=np.array([r.correct for r in steps[:-1]] + [steps[-1].final_correct], dtype=bool),
                tokens=np.array([r.tokens for r in steps], dtype=np.int64),
                query_id=qid,
                dataset=path.name.split(".")[0],
            )
        )
    return out, measures


def load_trajectories(
    paths: list[Path], *, kind: str | None, algorithm: str, reextract: bool, max_samples: int | None
) -> tuple[list[cx.Trajectory], set[str] | None, str, list[str]]:
    """Trajectories of every file, the measures they carry (None: agreement from answers), the kind, warnings.

    Raises ``typer.BadParameter`` with the file and line for anything unreadable.
    """
    import certaindex as cx

    out: list[cx.Trajectory] = []
    measures: set[str] | None = None
    kinds, notes = set(), []
    eq = cx.Equivalence(symbolic=False)
    for path in paths:
        first = _first_line(path)
        if isinstance(first, dict) and "query_id" in first and "step" in first:
            trajectories, found = _profile_trajectories(path, algorithm)
            measures = found if measures is None else measures & found
            out += trajectories
            continue
        try:
            traces = cx.read_traces(path)
        except cx.TraceError as exc:
            hint = ""
            if isinstance(first, dict) and "samples" not in first and "query_id" not in first:
                hint = " (a trace line has a 'samples' list; profiling records have 'query_id' and 'step')"
            raise typer.BadParameter(f"{exc}{hint}") from None
        name = path.name.split(".jsonl")[0]
        answer_kind = _kind(kind, traces, name)
        kinds.add(answer_kind)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", cx.TraceWarning)
            try:
                out += cx.trajectories_from_traces(
                    traces,
                    kind=answer_kind,
                    reextract=reextract,
                    equivalence=eq if answer_kind == "math" else None,
                    max_samples=max_samples,
                    dataset=name,
                )
            except cx.TraceError as exc:
                raise typer.BadParameter(str(exc)) from None
        notes += [str(w.message) for w in caught]
    eq.close()
    if not out:
        raise typer.BadParameter("no queries in " + ", ".join(map(str, paths)))
    return out, measures, "/".join(sorted(kinds)) or "math", notes


def _family(algorithm: str, measures: set[str] | None, fixed_measure: list[str] | None) -> cx.Family:
    """The family calibration may choose from: only measures the algorithm reports (and the data has)."""
    import certaindex as cx

    allowed = cx.ALGORITHM_MEASURES.get(algorithm)
    base = cx.Family()
    if measures is None:  # trace files: every agreement measure can be computed from the answers
        candidates = list(fixed_measure or base.measures)
    else:
        candidates = sorted(measures) if not fixed_measure else [m for m in fixed_measure if m in measures]
    if allowed is not None:
        refused = [m for m in candidates if m not in allowed]
        if fixed_measure and refused:
            raise typer.BadParameter(
                f"{algorithm} cannot produce {', '.join(refused)} (it reports {', '.join(allowed)})"
            )
        candidates = [m for m in candidates if m in allowed]
    if not candidates:
        raise typer.BadParameter(f"the data carries no measure {algorithm} reports ({', '.join(allowed or ())})")
    if measures is not None:
        # Reported values, one check per report: the measure's own scale, no abstentions, no worst-case cap.
        options: dict[str, Any] = {
            "measures": tuple(candidates),
            "abstentions": ("class",),
            "round_sizes": (1,),
            "min_samples": (1, 2, 3, 4, 6, 8),
            "hopeless": (None,),
            "max_risks": (None,),
            "thresholds": tuple(round(1.0 - i / 50, 4) for i in range(51)),
        }
        known = {f.name for f in fields(cx.Family)}
        return cx.Family(**{k: v for k, v in options.items() if k in known})
    if tuple(candidates) == base.measures:
        return base
    # Another measure: the library's family with that measure, on the full threshold range (the
    # default family's scale-free caps and thresholds above 1/2 are the majority's).
    known = {f.name for f in fields(cx.Family)}
    changes: dict[str, Any] = {
        "measures": tuple(candidates),
        "thresholds": tuple(round(1.0 - i / 50, 4) for i in range(51)),
    }
    if "max_risks" in known:
        changes["max_risks"] = (None,)
    return replace(base, **changes)


def render_report(cal: cx.Calibration, algorithm: str, sources: str, notes: list[str], *, tested: bool = True) -> str:
    """What ``dynasor calibrate`` prints: the rule, its promise in words (never a point estimate
    called a bound), what it does on the calibration queries, how it was tested, the notes."""
    rule, o = cal.rule, cal.outcome
    cert = rule.certification
    lines = [f"[{algorithm}] calibrated on {sources}: {o.n} queries (replay of recorded samples)"]
    lines.append(f"  rule: {rule.describe()}")
    lines.append(
        f"  promise: {cert.statement if cert else 'none: nothing certified, the rule runs to the full budget'}"
    )
    lines.append(
        f"  on these queries: samples saved {o.samples_saved:.1%}, accuracy {o.accuracy:.3f} vs {o.full_accuracy:.3f} "
        f"at the full budget ({100 * -o.loss:+.2f} pt), harms {o.harms:.3g}, helps {o.helps:.3g}"
    )
    if tested:
        lines += ["  " + line for line in cal.report().splitlines()[3:]]
    else:
        lines += [f"  note: {n}" for n in cal.notes]
    lines += [f"  warning: {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _point_estimate(
    trajectories: list[cx.Trajectory], family: cx.Family, target: float, answer_kind: str, data: str
) -> cx.Calibration:
    """The family member saving the most with observed loss within ``target``: no bound, and said so."""
    import certaindex as cx

    rule, _ = cx.choose_rule(trajectories, target=target, family=family, answer_kind=answer_kind)
    full = cx.StopRule(family.measures[0], None, answer_kind=answer_kind)  # type: ignore[arg-type]
    chosen = rule or full
    o = cx.replay(chosen, trajectories)
    notes = [] if rule else [f"no family member keeps the observed loss within {100 * target:g} pt: full budget"]
    if rule is not None:
        cert = cx.Certification(
            None, None, "point-estimate", data, len(trajectories), o.samples_saved, o.loss
        )  # fmt: skip
        chosen = rule.with_changes(certification=cert)
    return cx.Calibration(chosen, False, None, len(trajectories), 0, [], None, o, notes)


def register(app: typer.Typer) -> None:
    @app.command()
    def calibrate(
        data: Annotated[
            list[Path],
            typer.Argument(help="Trace files (or eval's traces.jsonl / profile.jsonl); several pool their queries."),
        ],
        bound: Annotated[
            list[float] | None,
            typer.Option(help="Allowed accuracy loss vs the full budget, in points (repeat: tightest certified)."),
        ] = None,
        confidence: Annotated[float, typer.Option(help="Probability that the promise holds.")] = 0.95,
        method: Annotated[
            str,
            typer.Option(
                help="ltt-paired (harms and helps, in the recorded order), ltt-binomial (harms only), or "
                "ordering-betting (the loss averaged over the orders samples could arrive in, bounded per query)."
            ),
        ] = "ltt-paired",
        orderings: Annotated[
            int, typer.Option(help="ordering-betting: random orderings per query where the exact average is too big.")
        ] = 2000,
        scope: Annotated[
            str,
            typer.Option(help="ordering-betting: the promise covers 'each set' of the data, or the 'pooled' mix."),
        ] = "each set",
        point_estimate: Annotated[
            bool,
            typer.Option(
                "--point-estimate", help="No bound: the rule whose observed loss is within --bound, no promise."
            ),
        ] = False,
        algorithm: Annotated[str, typer.Option(help="Algorithm the rule is for (its measures only).")] = "sc",
        kind: Annotated[str | None, typer.Option(help="Answer kind of trace files: math, choice or code.")] = None,
        measure: Annotated[list[str] | None, typer.Option(help="Only these measures (repeatable).")] = None,
        reextract: Annotated[
            bool, typer.Option("--reextract", help="Read answers from the samples' text, not the answers recorded.")
        ] = False,
        max_samples: Annotated[int | None, typer.Option(help="Budget in samples (the first N of each trace).")] = None,
        seed: Annotated[int, typer.Option(help="Seed of the learn/certify split.")] = 0,
        out: Annotated[Path, typer.Option(help="Certaindex config to write (YAML, or JSON for .json).")] = Path(
            "certaindex.yaml"
        ),
        report: Annotated[Path | None, typer.Option(help="Also write the report here.")] = None,
    ) -> None:
        """Certify a stop rule on recorded samples: the most samples saved within a bound on the accuracy loss."""
        import certaindex as cx
        from dynasor.allocator import AllocatorConfig

        if method not in ("ltt-paired", "ltt-binomial", "ordering-betting"):
            raise typer.BadParameter(
                f"unknown method {method!r}: use ltt-paired, ltt-binomial or ordering-betting", param_hint="--method"
            )
        if scope not in ("each set", "pooled"):
            raise typer.BadParameter(f"--scope must be 'each set' or 'pooled', got {scope!r}")
        if orderings < 1:
            raise typer.BadParameter(f"--orderings must be >= 1, got {orderings}")
        by_orderings: dict[str, Any] = (
            {"orderings": cx.Orderings(count=orderings, seed=seed), "scope": scope}
            if method == "ordering-betting"
            else {}
        )
        if kind not in (None, "math", "choice", "code"):
            raise typer.BadParameter(f"--kind must be math, choice or code, got {kind!r}")
        bounds = sorted(bound or [0.5])
        if any(not 0 < b < 100 for b in bounds) or not 0 < confidence < 1:
            raise typer.BadParameter("bounds lie in (0, 100) points and the confidence in (0, 1)")
        trajectories, measures, answer_kind, notes = load_trajectories(
            data, kind=kind, algorithm=algorithm, reextract=reextract, max_samples=max_samples
        )
        family = _family(algorithm, measures, measure)
        rule_kind = answer_kind if answer_kind in cx.ANSWER_KINDS else "math"
        sources = ", ".join(sorted({t.dataset or "unnamed" for t in trajectories}))
        try:
            if point_estimate:
                described = ", ".join(f"{n} ({k})" for n, k in _counts(trajectories).items())
                cal = _point_estimate(trajectories, family, bounds[0] / 100, rule_kind, described)
            elif len(bounds) == 1:
                cal = cx.certify(
                    trajectories, target=bounds[0] / 100, confidence=confidence, method=method,  # type: ignore[arg-type]
                    family=family, seed=seed, answer_kind=rule_kind, **by_orderings,
                )  # fmt: skip
            else:
                cal = cx.certify_ladder(
                    trajectories, [b / 100 for b in bounds], confidence=confidence, method=method,
                    family=family, seed=seed, answer_kind=rule_kind, **by_orderings,
                )  # fmt: skip
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
        rule = cal.rule.with_changes(answer_kind=rule_kind)
        if rule.threshold is None and rule.hopeless_threshold is None:
            rule = rule.with_changes(name="never early")
        config = AllocatorConfig({algorithm: rule}).certaindex_config()
        cert = rule.certification
        header = "\n".join(
            [
                f"Written by dynasor calibrate from {', '.join(map(str, data))} (replay of recorded samples).",
                f"{algorithm}: {rule.describe()}",
                f"promise: {cert.statement if cert else 'none (nothing certified: the full budget)'}",
            ]
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        config.save(out, header=header)
        text = render_report(replace(cal, rule=rule), algorithm, sources, notes, tested=not point_estimate)
        if report is not None:
            report.write_text(text, encoding="utf-8")
        typer.echo(text + f"config written to {out} (use it with --certaindex {out})")


def _counts(trajectories: list[cx.Trajectory]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in trajectories:
        counts[t.dataset or "unnamed"] = counts.get(t.dataset or "unnamed", 0) + 1
    return counts
