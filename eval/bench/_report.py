"""Results of a benchmark: the results file, the printed summary and the plots."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from eval.bench._bench import BenchResult

__all__ = ["ablation_rows", "headline", "plot", "summary_rows", "write_json"]


def write_json(result: BenchResult, path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result.to_dict(), indent=2) + "\n", encoding="utf-8")
    return out


def _fmt(value: float | None, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec)


def headline(result: BenchResult) -> list[str]:
    """The lines that answer "how much more load does dynasor sustain, and why", labelled."""
    meta = result.meta
    scales = meta["search_slo_scales"] or meta["slo_scales"][:1]
    lines = [
        f"{result.label}: workload {meta['workload']}, {meta['arrivals']} arrivals, "
        f"{meta['duration_s']:g} s of scored traffic per run"
        f"{' (arrivals going on until the scored queries are done)' if meta.get('keep_load') else ' (then drained)'}, "
        f"seed {meta['seed']}, "
        f"SLO scale{'s' if len(scales) > 1 else ''} {', '.join(f'{x:g}' for x in scales)}"
    ]
    lines += [f"budget: {note}" for note in meta.get("budget_notes", [])]
    for scale in meta["search_slo_scales"]:
        rates = ", ".join(
            f"{arm} {_fmt(per_scale[scale].rate)}" + ("" if per_scale[scale].failing is not None else " (never failed)")
            for arm, per_scale in result.searches.items()
            if scale in per_scale
        )
        lines.append(
            f"SLO scale {scale:g}: sustainable rate at {meta['target_attainment']:.0%} attainment (queries/s): {rates}"
        )
        by_kind: dict[str, list[str]] = defaultdict(list)
        for c in result.comparisons(scale):
            by_kind[c.kind].append(f"{c.key} = {_fmt(c.ratio, '.2f')}x")
        for kind, items in by_kind.items():
            lines.append(f"SLO scale {scale:g}, {kind}: " + ", ".join(items) + f" [{result.label}]")
    return lines


def ablation_rows(result: BenchResult, slo_scale: float) -> list[dict[str, str]]:
    """The 2x2 ablation at one SLO scale: per policy, its sustainable rate without and with early exit."""
    rows = []
    for policy in result.meta["policies"]:
        row = {"policy": policy}
        for early, column in ((False, "no early exit"), (True, "early exit")):
            arm = f"{policy}+exit" if early else policy
            row[column] = _fmt(result.sustainable(arm, slo_scale)) if arm in result.searches else "not run"
        rows.append(row)
    return rows


def summary_rows(result: BenchResult) -> list[dict[str, str]]:
    """One row per grid point (search probes excluded), for a table."""
    meta = result.meta
    grid = {(r, s) for r in meta["rates"] for s in meta["slo_scales"]}
    rows = []
    for p in result.points:
        if (p.rate, p.slo_scale) not in grid:
            continue
        m = p.metrics
        rows.append(
            {
                "arm": p.arm,
                "rate/s": f"{p.rate:g}",
                "slo": f"{p.slo_scale:g}",
                "queries": str(m["queries"]),
                "attain": f"{m['attainment']:.3f}",
                "lat p50/p90/p99 s": "/".join(_fmt(m[k], ".1f") for k in ("latency_p50", "latency_p90", "latency_p99")),
                "goodput/s": f"{m['goodput']:.3g}",
                "acc": _fmt(m["accuracy"], ".3f"),
                "tok/q": _fmt(m["tokens_per_query"], ".0f"),
                "slowdown p90": _fmt(m["slowdown_p90"], ".2f"),
                "jain": _fmt(m["jain_fairness"], ".3f"),
            }
        )
    return rows


def plot(result: BenchResult, folder: str | Path) -> list[Path]:
    """``attainment_vs_rate.png`` (and ``attainment_vs_slo.png`` with several SLO scales).

    Dashed vertical lines mark each arm's sustainable rate at that SLO scale.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    meta = result.meta
    series: dict[tuple[str, float], list[tuple[float, float]]] = defaultdict(list)
    by_rate: dict[tuple[str, float], list[tuple[float, float]]] = defaultdict(list)
    for p in result.points:
        series[(p.arm, p.slo_scale)].append((p.rate, p.metrics["attainment"]))
        if p.rate in meta["rates"]:
            by_rate[(p.arm, p.rate)].append((p.slo_scale, p.metrics["attainment"]))
    written = []
    scales = meta["slo_scales"]
    fig, axes = plt.subplots(1, len(scales), figsize=(5 * len(scales), 4), squeeze=False)
    for ax, scale in zip(axes[0], scales, strict=True):
        for arm in meta["arms"]:
            pts = sorted(set(series.get((arm, scale), [])))
            if pts:
                (line,) = ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=arm)
                rate = result.sustainable(arm, scale) if scale in result.searches.get(arm, {}) else None
                if rate is not None:
                    ax.axvline(rate, color=line.get_color(), linestyle="--", linewidth=1)
        ax.axhline(meta["target_attainment"], color="grey", linestyle=":", linewidth=1)
        ax.set_xlim(left=0)
        ax.set_xlabel("arrival rate (queries/s)")
        ax.set_ylabel("deadline attainment")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"SLO scale {scale:g}")
        ax.legend()
    fig.suptitle(f"{meta['workload']}: {result.label}", fontsize=10)
    fig.tight_layout()
    path = out / "attainment_vs_rate.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)
    if len(scales) > 1:
        rates = meta["rates"]
        fig, axes = plt.subplots(1, len(rates), figsize=(5 * len(rates), 4), squeeze=False)
        for ax, rate in zip(axes[0], rates, strict=True):
            for arm in meta["arms"]:
                pts = sorted(by_rate.get((arm, rate), []))
                if pts:
                    ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=arm)
            ax.axhline(meta["target_attainment"], color="grey", linestyle=":", linewidth=1)
            ax.set_xlabel("SLO scale (deadline / base deadline)")
            ax.set_ylabel("deadline attainment")
            ax.set_ylim(0, 1.02)
            ax.set_title(f"{rate:g} queries/s")
            ax.legend()
        fig.suptitle(f"{meta['workload']}: {result.label}", fontsize=10)
        fig.tight_layout()
        path = out / "attainment_vs_slo.png"
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path)
    return written
