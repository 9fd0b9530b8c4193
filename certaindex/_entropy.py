"""Multi-sample agreement measures over answer clusters."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence

from certaindex._certainty import Certainty

__all__ = ["majority_fraction", "normalized_entropy"]


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
    leader, top = counts.most_common(1)[0]
    return Certainty(value, "entropy", {"n": n, "clusters": len(counts), "leader": leader, "top": top})


def majority_fraction(labels: Sequence[Hashable | None]) -> Certainty:
    """Share of samples in the largest answer cluster (``None`` = unanswered, never a majority).

    >>> majority_fraction(["a", "a", "b", None]).value
    0.5
    """
    n = len(labels)
    if n == 0:
        return Certainty(0.0, "majority", {"n": 0})
    counts = Counter(label for label in labels if label is not None)
    if not counts:
        return Certainty(0.0, "majority", {"n": n})
    leader, top = counts.most_common(1)[0]
    return Certainty(top / n, "majority", {"n": n, "leader": leader, "top": top})


def _cluster_counts(labels: Sequence[Hashable | None]) -> Counter[Hashable]:
    counts: Counter[Hashable] = Counter()
    for i, label in enumerate(labels):
        counts[("__none__", i) if label is None else label] += 1
    return counts
