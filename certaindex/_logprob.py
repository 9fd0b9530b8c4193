r"""Token-logprob confidence (DeepConf): how sure the model was while writing a trace.

Token confidence is the negative mean log-probability of the engine's top-k candidates at a
position: high when the distribution is peaked. Group confidence averages it over a sliding
window of tokens; a trace is summarised by its lowest group, its tail, or its least
confident 10% of groups. Offline, traces vote with confidence weights; online, a warm-up
set fixes a percentile threshold below which a trace is stopped, and sampling stops when
the weighted consensus is high enough.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from certaindex._certainty import Certainty
from certaindex._defaults import DEEPCONF_GROUP_WINDOW, DEEPCONF_KEEP_PERCENT, DEEPCONF_TAIL_TOKENS

__all__ = [
    "group_confidence",
    "token_confidence",
    "trace_confidence",
    "warmup_threshold",
    "weighted_consensus",
]

Summary = Literal["mean", "lowest", "tail", "bottom10"]


def token_confidence(top_logprobs: Sequence[Sequence[float]] | ArrayLike) -> NDArray[np.float64]:
    r"""Per-token confidence :math:`C_i = -\frac1k \sum_{j=1}^{k} \log P_i(j)`.

    ``top_logprobs[i]`` holds the logprobs of the engine's top-k candidates at position
    ``i`` (rows may differ in length; ``-inf`` entries are skipped). Shape ``(T,)``.

    >>> token_confidence([[-0.01, -5.0, -7.0], [-1.0, -1.1]]).round(3).tolist()
    [4.003, 1.05]
    """
    try:
        arr = np.asarray(top_logprobs, dtype=float)
    except ValueError:
        arr = None
    if arr is not None and arr.ndim == 2:
        finite = np.isfinite(arr)
        k = np.maximum(finite.sum(axis=1), 1)
        return np.asarray(-np.where(finite, arr, 0.0).sum(axis=1) / k, dtype=np.float64)
    rows = list(top_logprobs)  # type: ignore[arg-type]  # ragged rows: a sequence of sequences
    out = np.empty(len(rows))
    for i, row in enumerate(rows):
        vals = np.asarray(row, dtype=float)
        vals = vals[np.isfinite(vals)]
        out[i] = -vals.mean() if vals.size else 0.0
    return out


def group_confidence(token_conf: ArrayLike, window: int = DEEPCONF_GROUP_WINDOW) -> NDArray[np.float64]:
    r"""Sliding-window means :math:`C_{G_t} = \frac{1}{|G_t|}\sum_{i \in G_t} C_i` of token confidence.

    Windows of ``window`` consecutive tokens, one per end position; a trace shorter than the
    window is one group.

    >>> group_confidence([1.0, 2.0, 3.0, 4.0], window=2).tolist()
    [1.5, 2.5, 3.5]
    """
    c = np.asarray(token_conf, dtype=float)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if c.size == 0:
        return c
    w = min(window, c.size)
    csum = np.concatenate(([0.0], np.cumsum(c)))
    return (csum[w:] - csum[:-w]) / w


def trace_confidence(
    token_conf: ArrayLike,
    summary: Summary = "lowest",
    *,
    window: int = DEEPCONF_GROUP_WINDOW,
    tail: int = DEEPCONF_TAIL_TOKENS,
) -> float:
    """One confidence for a whole trace.

    ``mean``: average token confidence; ``lowest``: lowest group confidence; ``tail``: mean
    over the last ``tail`` tokens; ``bottom10``: mean of the lowest 10% of groups.

    >>> trace_confidence([5.0, 5.0, 0.5, 5.0], "lowest", window=2)
    2.75
    """
    c = np.asarray(token_conf, dtype=float)
    if c.size == 0:
        return 0.0
    if summary == "mean":
        return float(c.mean())
    if summary == "tail":
        return float(c[-tail:].mean())
    groups = group_confidence(c, window)
    if summary == "lowest":
        return float(groups.min())
    if summary == "bottom10":
        k = max(1, int(np.ceil(0.1 * groups.size)))
        return float(np.sort(groups)[:k].mean())
    raise ValueError(f"unknown summary {summary!r}: use mean, lowest, tail or bottom10")


def warmup_threshold(confidences: ArrayLike, keep_percent: float = DEEPCONF_KEEP_PERCENT) -> float:
    r"""DeepConf's online threshold: the :math:`(100 - \eta)`-th percentile of warm-up traces.

    Traces whose running group confidence falls below it are stopped; ``keep_percent`` =
    :math:`\eta` is the share of warm-up traces that would have survived (10: DeepConf-low,
    90: DeepConf-high).

    >>> round(warmup_threshold(np.arange(1, 101), keep_percent=10), 2)
    90.1
    """
    c = np.asarray(confidences, dtype=float)
    if c.size == 0:
        raise ValueError("need at least one warm-up trace")
    if not 0 < keep_percent <= 100:
        raise ValueError(f"keep_percent must lie in (0, 100], got {keep_percent}")
    return float(np.percentile(c, 100.0 - keep_percent))


def weighted_consensus(labels: Sequence[Hashable | None], weights: ArrayLike) -> Certainty:
    r"""Confidence-weighted share of the leading answer, DeepConf's online stopping signal.

    .. math:: \beta = \frac{V(\hat a)}{\sum_a V(a)}, \qquad V(a) = \sum_{i: a_i = a} w_i

    Unanswered samples (``None``) and negative weights do not vote.

    >>> weighted_consensus(["a", "b", "a"], [1.0, 2.0, 1.0]).value
    0.5
    """
    w = np.asarray(weights, dtype=float)
    if w.shape != (len(labels),):
        raise ValueError(f"need one weight per sample: {len(labels)} labels, weights shape {w.shape}")
    votes: dict[Hashable, float] = {}
    for label, weight in zip(labels, w, strict=True):
        if label is not None and weight > 0:
            votes[label] = votes.get(label, 0.0) + float(weight)
    total = sum(votes.values())
    if total <= 0:
        return Certainty(0.0, "deepconf", {"n": len(labels)})
    leader = max(votes, key=votes.__getitem__)
    return Certainty(min(1.0, votes[leader] / total), "deepconf", {"n": len(labels), "leader": leader})
