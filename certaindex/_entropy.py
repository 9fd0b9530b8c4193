r"""Multi-sample agreement measures over answer clusters, single and batched.

A query's samples are described by cluster labels (equal labels = equivalent answers, see
:func:`~certaindex.cluster_answers`); ``None`` (or ``-1`` in the batched form) marks a sample
without an answer.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from certaindex._certainty import Certainty

__all__ = [
    "cluster_counts",
    "entropy_batch",
    "majority_batch",
    "majority_fraction",
    "majority_vote",
    "normalized_entropy",
]


def normalized_entropy(labels: Sequence[Hashable | None]) -> Certainty:
    r"""Paper's multi-sample certaindex: ``(log n - H) / log n`` over answer clusters.

    ``labels`` holds one cluster label per sample (equal labels = equivalent answers);
    ``None`` marks a sample without an answer and counts as a cluster of its own, so
    unanswered samples lower the certainty instead of being ignored.

    .. math:: H = -\sum_i p_i \log p_i, \qquad c = (\log n - H) / \log n

    With one sample the value is 0 (nothing agrees yet).

    >>> normalized_entropy(["4", "4", "4"]).value
    1.0
    >>> round(normalized_entropy(["4", "5"]).value, 3)
    0.0

    References
    ----------
    Fu et al., "Efficiently Serving LLM Reasoning Programs with Certaindex", arXiv 2412.20993.
    """
    n = len(labels)
    if n <= 1:
        return Certainty(0.0, "entropy", {"n": n})
    counts = _cluster_counts(labels)
    h = -sum((c / n) * math.log(c / n) for c in counts.values())
    value = min(1.0, max(0.0, (math.log(n) - h) / math.log(n)))
    leader, top = _leader(labels)
    return Certainty(value, "entropy", {"n": n, "clusters": len(counts), "leader": leader, "top": top})


def majority_fraction(labels: Sequence[Hashable | None]) -> Certainty:
    """Share of samples in the largest answer cluster (``None`` = unanswered, never a majority).

    >>> majority_fraction(["a", "a", "b", None]).value
    0.5
    """
    n = len(labels)
    leader, top = _leader(labels)
    if leader is None:
        return Certainty(0.0, "majority", {"n": n})
    return Certainty(top / n, "majority", {"n": n, "leader": leader, "top": top})


def majority_vote(labels: Sequence[Hashable | None]) -> Hashable | None:
    """The most frequent non-None label; ties go to the label seen first (None if none).

    >>> majority_vote(["b", "a", "a", "b", None])
    'b'
    """
    return _leader(labels)[0]


def cluster_counts(labels: Sequence[Hashable | None]) -> list[int]:
    """Sizes of the answered clusters, largest first (unanswered samples left out).

    >>> cluster_counts(["a", None, "b", "a"])
    [2, 1]
    """
    return sorted(Counter(label for label in labels if label is not None).values(), reverse=True)


def _leader(labels: Sequence[Hashable | None]) -> tuple[Hashable | None, int]:
    counts: dict[Hashable, int] = {}
    for label in labels:
        if label is not None:
            counts[label] = counts.get(label, 0) + 1
    if not counts:
        return None, 0
    # dicts keep insertion order and max() returns the first maximum: first seen wins ties.
    leader = max(counts, key=counts.__getitem__)
    return leader, counts[leader]


def _cluster_counts(labels: Sequence[Hashable | None]) -> Counter[Hashable]:
    counts: Counter[Hashable] = Counter()
    for i, label in enumerate(labels):
        counts[("__none__", i) if label is None else label] += 1
    return counts


def _batch_counts(labels: ArrayLike) -> tuple[NDArray[np.int64], NDArray[np.int64], int]:
    """Per-row cluster sizes of an integer label matrix (``-1`` = unanswered).

    Returns ``(counts, unanswered, n)`` with ``counts`` of shape (queries, n): one bincount
    over row-offset labels, unanswered samples counted in a spare column.
    """
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"labels must be a 2-D (queries x samples) array, got shape {arr.shape}")
    q, n = arr.shape
    if arr.size and (arr.min() < -1 or arr.max() >= n):
        raise ValueError("labels must lie in [-1, n_samples) (cluster ids by first appearance)")
    width = n + 1
    # Column 0 collects the unanswered (-1 + 1), cluster j goes to column j + 1: one add.
    flat = arr + (np.arange(q) * width + 1)[:, None]
    counts = np.bincount(flat.ravel(), minlength=q * width).reshape(q, width)
    return counts[:, 1:], counts[:, 0], n


def entropy_batch(labels: ArrayLike) -> NDArray[np.float64]:
    r""":func:`normalized_entropy` of every row of a (queries x samples) label matrix at once.

    ``labels[q, i]`` is sample ``i``'s cluster id in ``[0, n)`` for query ``q``, or ``-1``
    when the sample has no answer (a singleton cluster, as in the single-query form).

    >>> entropy_batch([[0, 0, 0, 0], [0, 1, 2, 3], [0, 0, -1, -1]]).round(3).tolist()
    [1.0, 0.0, 0.25]
    """
    counts, _, n = _batch_counts(labels)
    if n <= 1:
        return np.zeros(counts.shape[0])
    # With c_j the cluster sizes (unanswered samples are clusters of 1, and 1 log 1 = 0),
    # H = log n - (1/n) sum_j c_j log c_j, so c = sum_j c_j log c_j / (n log n); c log c
    # comes from a lookup table over 0..n.
    c_log_c = np.zeros(n + 1)
    c_log_c[1:] = np.arange(1, n + 1) * np.log(np.arange(1, n + 1))
    return np.asarray(np.clip(c_log_c[counts].sum(axis=1) / (n * math.log(n)), 0.0, 1.0), dtype=np.float64)


def majority_batch(labels: ArrayLike) -> NDArray[np.float64]:
    """:func:`majority_fraction` of every row of a (queries x samples) label matrix.

    >>> majority_batch([[0, 0, 1, -1], [-1, -1, -1, -1]]).tolist()
    [0.5, 0.0]
    """
    counts, _, n = _batch_counts(labels)
    if n == 0:
        return np.zeros(counts.shape[0])
    return np.asarray(counts.max(axis=1) / n, dtype=np.float64)
