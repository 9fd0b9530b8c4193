"""Does a stop rule chosen on known data hold on data it never saw? Leave-one-dataset-out (replay).

Pools every recorded trace set in ``dynasor/data/traces/`` (the folder is listed when the
script runs). For each left-out fold the rule is chosen and certified on everything else and
scored on the fold:

- *certified*: :func:`certaindex.certify` (Learn then Test, ``ltt-paired``) at a 0.5-point
  bound, 95% confidence; the promise *holds* on the fold when the fold's measured loss is
  within the bound;
- *point estimate*: :func:`certaindex.choose_rule`, the family member that saves the most
  with observed loss <= 0.5 pt on the other sets (no bound);
- the public rules as :class:`certaindex.StopRule` baselines: ESC windows 3 and 5, the Dynasor
  paper's entropy rule (tau 0.9 from 3 samples), Adaptive-Consistency's Beta rule (c = 0.95),
  and the project's earlier bundled default (entropy >= 0.7 from step 2 in rounds of 2);
- the *final-answer oracle* (fewest samples whose majority is the full budget's).

Folds: each trace set left out whole; where a set records a ``level`` or ``subject``, each
level/subject is also left out in turn (calibrated on all other sets plus the set's other
groups) as an extra fold. Every figure is **replay**: recorded samples in recorded order, each
drawn at most once; "samples saved" is against each query's full recorded budget.

It also compares the abstention treatments (the whole leave-one-out run with the family
restricted to one treatment), the hopeless exit (off vs calibrated), and the two certification
tests, and writes the rule calibrated on all sets pooled to ``--write-config``.

Usage::

    python scripts/certaindex_transfer.py [--out build/certaindex_transfer.md]
        [--write-config certaindex/data/certaindex.yaml]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import certaindex as cx

ROOT = Path(__file__).resolve().parents[1]
TRACES = ROOT / "dynasor" / "data" / "traces"
TARGET = 0.005
CONFIDENCE = 0.95
LADDER = (0.005, 0.01, 0.02, 0.05)
"""Bounds fixed in advance for the fallback row: the tightest one the other sets certify (Bonferroni)."""
GROUP_FIELDS = ("level", "subject")
MIN_GROUP = 10
"""A level or subject with fewer queries is no fold of its own."""


def public_rules() -> list[cx.StopRule]:
    """The published rules, as they are published (no calibration)."""
    return [
        cx.StopRule("esc", 1.0, min_samples=3, round_size=3, abstentions="distinct", name="ESC window 3"),
        cx.StopRule("esc", 1.0, min_samples=5, round_size=5, abstentions="distinct", name="ESC window 5"),
        cx.StopRule("entropy", 0.9, min_samples=3, abstentions="distinct", name="Dynasor entropy 0.9 from 3"),
        cx.StopRule("beta", 0.95, min_samples=1, abstentions="ignore", name="Adaptive-Consistency beta 0.95"),
        cx.StopRule(
            "entropy", 0.7, min_samples=4, round_size=2, abstentions="distinct", name="earlier default (entropy 0.7)"
        ),
    ]


@dataclass
class TraceSet:
    name: str
    kind: str
    trajectories: list[cx.Trajectory]


def answer_kind(name: str, first: cx.Trace) -> cx.AnswerKind:
    declared = first.meta.get("answer_kind") or first.meta.get("kind")
    for kind in ("math", "choice", "code"):
        if declared == kind:
            return kind
    if first.options:
        return "choice"
    if any(word in name.lower() for word in ("code", "humaneval", "mbpp")):
        return "code"
    return "math"


def load_sets(folder: Path, eq: cx.Equivalence) -> tuple[list[TraceSet], list[str]]:
    sets, problems = [], []
    for path in sorted(folder.glob("*.jsonl*")):
        name = path.name.split(".jsonl")[0]
        try:
            traces = cx.read_traces(path)
        except cx.TraceError as exc:
            problems.append(f"{name}: skipped, {exc}")
            continue
        kind = answer_kind(name, traces[0])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", cx.TraceWarning)
            trajectories = cx.trajectories_from_traces(
                traces,
                kind=kind,
                equivalence=eq if kind == "math" else None,
                dataset=name,
            )
        problems += [f"{name}: {w.message}" for w in caught]
        sets.append(TraceSet(name, kind, trajectories))
    return sets, problems


@dataclass(frozen=True)
class Fold:
    name: str
    left_out: list[cx.Trajectory]
    pool: list[cx.Trajectory]


def folds(sets: Sequence[TraceSet]) -> list[Fold]:
    out = []
    everything = [t for s in sets for t in s.trajectories]
    for s in sets:
        out.append(Fold(s.name, s.trajectories, [t for t in everything if t.dataset != s.name]))
    for s in sets:
        for field in GROUP_FIELDS:
            sizes: dict[str, int] = {}
            for t in s.trajectories:
                if t.meta.get(field) is not None:
                    sizes[str(t.meta[field])] = sizes.get(str(t.meta[field]), 0) + 1
            groups = sorted(g for g, n in sizes.items() if n >= MIN_GROUP)
            if len(groups) < 2:
                continue
            for g in groups:
                left = [t for t in s.trajectories if str(t.meta.get(field)) == g]
                ids = {id(t) for t in left}
                out.append(Fold(f"{s.name} {field} {g}", left, [t for t in everything if id(t) not in ids]))
    return out


def pts(x: float) -> str:
    return f"{100 * x:+.1f}"


@dataclass(frozen=True)
class Scored:
    label: str
    rule: str
    outcome: cx.ReplayOutcome
    promise: str = ""


def score_fold(fold: Fold, family: cx.Family, method: cx.Method = "ltt-paired") -> tuple[list[Scored], cx.Calibration]:
    batch = cx.TrajectoryBatch(fold.left_out)
    cal = cx.certify(fold.pool, target=TARGET, confidence=CONFIDENCE, method=method, family=family)
    held = cal.certified and cx.replay(cal.rule, batch).loss <= TARGET
    promise = (
        f"<= {100 * TARGET:g} pt at {CONFIDENCE:g}: {'held' if held else 'broken'}"
        if cal.certified
        else "nothing certified"
    )
    rows = [
        Scored("fixed budget", "all recorded samples", cx.replay(cx.StopRule(), batch)),
        Scored("certified (ltt-paired)", cal.rule.describe(), cx.replay(cal.rule, batch), promise),
    ]
    ladder = cx.certify_ladder(fold.pool, LADDER, confidence=CONFIDENCE, method=method, family=family)
    ladder_label = "certified, tightest of 0.5/1/2/5 pt"
    if ladder.certified and ladder.rule.certification is not None:
        bound = ladder.rule.certification.bound or 0.0
        o = cx.replay(ladder.rule, batch)
        verdict = "held" if o.loss <= bound else "broken"
        promise = f"<= {100 * bound:g} pt at {CONFIDENCE:g}: {verdict}"
        rows.append(Scored(ladder_label, ladder.rule.describe(), o, promise))
    else:
        rows.append(Scored(ladder_label, "no early stop (full budget)", rows[0].outcome, "nothing certified"))
    point, _ = cx.choose_rule(fold.pool, target=TARGET, family=family)
    if point is not None:
        rows.append(Scored("point estimate on other sets", point.describe(), cx.replay(point, batch), "no bound"))
    for rule in public_rules():
        rows.append(Scored(rule.name or "", rule.describe(), cx.replay(rule, batch), "published"))
    rows.append(
        Scored("final-answer oracle", "first check with the full budget's answer", cx.final_answer_oracle(batch))
    )
    return rows, cal


def fold_table(fold: Fold, rows: Sequence[Scored], cal: cx.Calibration) -> list[str]:
    o0 = rows[0].outcome
    head = [
        f"\n#### Left out: {fold.name} ({o0.n} queries, full-budget accuracy {o0.full_accuracy:.3f}); "
        f"calibrated on {len(fold.pool)} queries of the other sets\n",
        "| rule | how | accuracy | vs fixed (pt) | harms/helps | samples saved | promise |",
        "|---|---|---|---|---|---|---|",
    ]
    body = [
        f"| {r.label} | {r.rule} | {r.outcome.accuracy:.3f} | {pts(-r.outcome.loss)} | "
        f"{r.outcome.harms}/{r.outcome.helps} | {r.outcome.samples_saved:.1%} | {r.promise} |"
        for r in rows
    ]
    notes = [f"\n{n}" for n in cal.notes]
    return head + body + notes


def summary(
    results: Sequence[tuple[Fold, list[Scored], cx.Calibration]],
) -> list[str]:
    lines = [
        "| left out | queries | certified at 0.5 pt: saved, vs fixed (pt) | tightest certified bound: saved, "
        "vs fixed (pt), promise | best public rule at >= its accuracy | final-answer oracle | "
        ">= 60% saved at <= 0.5 pt |",
        "|---|---|---|---|---|---|---|",
    ]
    for fold, rows, _ in results:
        cert, ladder = rows[1], rows[2]
        shipped = ladder.outcome
        public = [r for r in rows if r.promise == "published"]
        fair = [r for r in public if r.outcome.correct >= shipped.correct]
        best = max(fair, key=lambda r: r.outcome.samples_saved, default=None)
        best_text = "none" if best is None else f"{best.label}: {best.outcome.samples_saved:.1%}"
        cert_text = (
            "nothing certified"
            if cert.promise == "nothing certified"
            else f"{cert.outcome.samples_saved:.1%}, {pts(-cert.outcome.loss)}"
        )
        ok = max(shipped.samples_saved, cert.outcome.samples_saved) >= 0.6 and shipped.loss <= TARGET
        lines.append(
            f"| {fold.name} | {shipped.n} | {cert_text} | {shipped.samples_saved:.1%}, {pts(-shipped.loss)}, "
            f"{ladder.promise} | {best_text} | {rows[-1].outcome.samples_saved:.1%} | {'yes' if ok else 'no'} |"
        )
    return lines


def compare(label: str, results: dict[str, list[tuple[Fold, list[Scored], cx.Calibration]]]) -> list[str]:
    """Per configuration, over the left-out sets: the certified rows and the point estimate."""
    lines = [
        f"\n| {label} | certified at 0.5 pt | ladder: certified, held | ladder: mean saved, vs fixed (pt) | "
        "point estimate: mean saved, vs fixed (pt), worst set (pt) |",
        "|---|---|---|---|---|",
    ]
    for key, res in results.items():
        if not res:
            continue
        n = len(res)
        exact = sum(cal.certified for _, _, cal in res)
        ladder = [rows[2] for _, rows, _ in res]
        lad_cert = sum(r.promise != "nothing certified" for r in ladder)
        lad_held = sum(r.promise.endswith("held") for r in ladder)
        points = [r for _, rows, _ in res for r in rows if r.label == "point estimate on other sets"]
        lad_saved = sum(r.outcome.samples_saved for r in ladder) / n
        lad_loss = sum(r.outcome.loss for r in ladder) / n
        pt_saved = sum(r.outcome.samples_saved for r in points) / max(len(points), 1)
        pt_loss = sum(r.outcome.loss for r in points) / max(len(points), 1)
        worst = max((r.outcome.loss for r in points), default=0.0)
        lines.append(
            f"| {key} | {exact}/{n} | {lad_cert}/{n}, {lad_held}/{lad_cert} | {lad_saved:.1%}, {pts(-lad_loss)} | "
            f"{pt_saved:.1%}, {pts(-pt_loss)}, {pts(-worst)} |"
        )
    return lines


FIXED_FOR_ABSTENTIONS = (("entropy", 0.9, 3), ("majority", 0.8, 4), ("beta", 0.95, 1))
"""Published-style rules replayed under each abstention treatment (no calibration involved)."""


def abstention_table(sets: Sequence[TraceSet]) -> list[str]:
    lines = [
        "| rule | treatment | " + " | ".join(f"{s.name}: saved, vs fixed (pt)" for s in sets) + " |",
        "|---|---|" + "---|" * len(sets),
    ]
    for measure, threshold, low in FIXED_FOR_ABSTENTIONS:
        for mode in cx.ABSTENTIONS:
            rule = cx.StopRule(measure, threshold, min_samples=low, abstentions=mode)  # type: ignore[arg-type]
            cells = []
            for s in sets:
                o = cx.replay(rule, s.trajectories)
                cells.append(f"{o.samples_saved:.1%}, {pts(-o.loss)}")
            lines.append(f"| {measure} >= {threshold} from {low} | {mode} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--traces", type=Path, default=TRACES)
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "certaindex_transfer.md")
    parser.add_argument("--write-config", type=Path, default=None, help="write the pooled calibrated config here")
    parser.add_argument("--quick", action="store_true", help="whole-set folds only, no comparisons")
    args = parser.parse_args(argv)
    started = time.monotonic()
    eq = cx.Equivalence()
    sets, problems = load_sets(args.traces, eq)
    eq.close()
    lines = [
        "### Trace sets (replay)\n",
        "| set | answer kind | queries | samples per query | first sample right | majority of all right |",
    ]
    lines.append("|---|---|---|---|---|---|")
    for s in sets:
        b = cx.TrajectoryBatch(s.trajectories)
        per = sorted({len(t) for t in s.trajectories})
        first = sum(float(t.correct[0]) for t in s.trajectories if t.correct is not None) / len(s.trajectories)
        lines.append(
            f"| {s.name} | {s.kind} | {b.size} | {per[0] if len(per) == 1 else f'{per[0]}-{per[-1]}'} | "
            f"{first:.3f} | {cx.replay(cx.StopRule(), b).full_accuracy:.3f} |"
        )
    lines += [f"\n{p}" for p in problems]
    if len(sets) < 2:
        print("\n".join([*lines, "\nfewer than two trace sets: nothing to leave out"]))
        return 1
    family = cx.Family()
    all_folds = folds(sets)
    if args.quick:
        all_folds = [f for f in all_folds if f.name in {s.name for s in sets}]
    results = [(f, *score_fold(f, family)) for f in all_folds]
    lines.append("\n### Leave one out: summary\n")
    lines += summary(results)
    for fold, rows, cal in results:
        lines += fold_table(fold, rows, cal)
    set_names = {s.name for s in sets}

    def whole(f: Fold) -> bool:
        return f.name in set_names

    if not args.quick:
        whole_sets = [f for f in all_folds if whole(f)]
        lines.append("\n### Abstentions\n")
        lines.append("Fixed rules replayed on every set under each treatment (no calibration):\n")
        lines += abstention_table(sets)
        lines.append("\nLeave one set out with the family restricted to one treatment:")
        by_mode = {
            mode: [r for r in results if whole(r[0])]
            if (mode,) == family.abstentions
            else [(f, *score_fold(f, replace(family, abstentions=(mode,)))) for f in whole_sets]
            for mode in cx.ABSTENTIONS
        }
        everything_family = replace(family, abstentions=cx.ABSTENTIONS)
        by_mode["all three (calibration chooses)"] = [(f, *score_fold(f, everything_family)) for f in whole_sets]
        lines += compare("abstentions", by_mode)
        lines.append("\n### Hopeless exit: off vs calibrated (leave one set out)")
        by_hope = {
            "off": [(f, *score_fold(f, replace(family, hopeless=(None,)))) for f in whole_sets],
            "calibrated": [r for r in results if whole(r[0])],
        }
        lines += compare("hopeless exit", by_hope)
        lines.append("\n### Certification test: paired (harms and helps) vs harm rate only (leave one set out)")
        by_method = {
            "ltt-paired": [r for r in results if whole(r[0])],
            "ltt-binomial": [(f, *score_fold(f, family, "ltt-binomial")) for f in whole_sets],
        }
        lines += compare("test", by_method)
    everything = [t for s in sets for t in s.trajectories]
    exact = cx.certify(everything, target=TARGET, confidence=CONFIDENCE, family=family)
    pooled = cx.certify_ladder(everything, LADDER, confidence=CONFIDENCE, family=family)
    lines.append("\n### Pooled calibration (all sets)\n")
    lines += ["At 0.5 pt:", "```", exact.report(), "```"]
    lines += ["Tightest of 0.5/1/2/5 pt (the rule written to the bundled config):", "```", pooled.report(), "```"]
    lines.append(f"\n{time.monotonic() - started:.0f} s, {len(everything)} queries in {len(sets)} sets.")
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n", encoding="utf-8")
    if args.write_config is not None:
        sc_rule = pooled.rule if pooled.certified else pooled.rule.with_changes(threshold=None)
        config = cx.CertaindexConfig({"sc": sc_rule}, cx.StopRule("beta", None, name="never early"))
        header = (
            "Certaindex stop rules, certified on every bundled trace set pooled (replay), at the tightest of\n"
            "0.5/1/2/5 pt that the data certifies (0.5 pt needs ~920 queries; see docs/certaindex.md):\n"
            f"{pooled.rule.certification.statement if pooled.rule.certification else 'nothing certified'}\n"
            "Reproduce: python scripts/certaindex_transfer.py --write-config certaindex/data/certaindex.yaml\n"
            "Leave-one-set-out evidence: docs/certaindex.md"
        )
        config.save(args.write_config, header=header)
        print(f"\nconfig written to {args.write_config}")
    print(json.dumps({"folds": len(results), "seconds": round(time.monotonic() - started)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
