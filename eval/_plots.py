"""PNG plots of an evaluation run (matplotlib, Agg backend: no display needed).

- ``pareto.png``: accuracy against mean tokens per query over the threshold sweep (every
  minimum sample count and threshold), the Pareto front, the fixed budget, the early-exit run
  and the two oracles (first-correct, final-answer);
- ``savings.png``: histogram of per-query token savings of early exit against the fixed budget;
- ``trajectories.png``: certaindex after each report, for queries answered right and wrong.

Every title carries the run's label (``replay``, ``simulated``, ``real engine``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["write_plots"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(out: str | Path, records: Sequence[Mapping[str, Any]], summary: Mapping[str, Any]) -> list[Path]:
    """Write the plots the run's data allows into ``out``; returns their paths."""
    out = Path(out)
    plt = _pyplot()
    label = f"[{summary.get('label', '?')}] {summary.get('config', {}).get('dataset', '')}"
    written = []
    if summary.get("sweep"):
        written.append(_pareto(plt, out / "pareto.png", summary, label))
        written.append(_savings(plt, out / "savings.png", records, label))
    if records:
        written.append(_trajectories(plt, out / "trajectories.png", records, summary, label))
    return written


def _pareto(plt: Any, path: Path, summary: Mapping[str, Any], label: str) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    sweep = summary["sweep"]
    ax.scatter(
        [p["tokens_mean"] for p in sweep],
        [100 * p["accuracy"] for p in sweep],
        s=10,
        color="0.7",
        label="sweep: threshold x minimum samples",
    )
    front = summary["pareto"]
    ax.plot([p["tokens_mean"] for p in front], [100 * p["accuracy"] for p in front], "-o", ms=3, label="Pareto front")
    fixed, early = summary["fixed_budget"], summary["early_exit"]
    ax.scatter([fixed["tokens_mean"]], [100 * fixed["accuracy"]], marker="s", s=60, color="k", label="fixed budget")
    ax.scatter([early["tokens_mean"]], [100 * early["accuracy"]], marker="D", s=60, color="C3", label="early exit")
    for key, marker, color, name in (
        ("first_correct_oracle", "*", "C2", "first-correct oracle"),
        ("final_answer_oracle", "P", "C4", "final-answer oracle"),
    ):
        orc = summary.get(key)
        if orc:
            ax.scatter([orc["tokens_mean"]], [100 * orc["accuracy"]], marker=marker, s=120, color=color, label=name)
    ax.set_xlabel("mean completion tokens per query")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{label}: accuracy vs tokens")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _savings(plt: Any, path: Path, records: Sequence[Mapping[str, Any]], label: str) -> Path:
    savings = [
        100.0 * (1.0 - r["tokens"] / r["baseline"]["tokens"])
        for r in records
        if r.get("baseline") and r["baseline"]["tokens"]
    ]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(savings, bins=20, range=(min(0.0, *savings) if savings else 0.0, 100.0), color="C0", edgecolor="white")
    ax.set_xlabel("tokens saved by early exit (% of the query's fixed-budget tokens)")
    ax.set_ylabel("queries")
    ax.set_title(f"{label}: per-query savings")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _trajectories(
    plt: Any, path: Path, records: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], label: str
) -> Path:
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4.5))
    shown = {True: False, False: False}
    # Certaindex takes few distinct values: a little jitter keeps overlapping paths visible.
    rng = np.random.default_rng(0)
    for record in records:
        arm = record.get("baseline") or record
        traj = arm.get("trajectory") or []
        if not traj:
            continue
        right = bool(arm["correct"])
        dx, dy = rng.uniform(-0.08, 0.08), rng.uniform(-0.015, 0.015)
        ax.plot(
            [p["samples"] + dx for p in traj],
            [p["value"] + dy for p in traj],
            color="C2" if right else "C3",
            alpha=0.25,
            lw=1,
            label=None if shown[right] else ("answered right" if right else "answered wrong"),
        )
        shown[right] = True
    rule = summary.get("early_exit_rule") or {}
    if rule.get("threshold") is not None:
        ax.axhline(rule["threshold"], color="k", ls="--", lw=1, label=f"threshold {rule['threshold']}")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("samples drawn")
    ax.set_ylabel("certaindex")
    ax.set_ylim(-0.05, 1.05)
    arm_name = "fixed-budget" if records and records[0].get("baseline") else "early-exit"
    ax.set_title(f"{label}: certaindex trajectories ({arm_name} arm)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
