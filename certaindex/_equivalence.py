r"""Answer equivalence and clustering: cheap paths first, symbolic comparison last.

Deciding that ``\frac12``, ``1/2`` and ``0.5`` are one answer takes math-verify about 9 ms a
pair, so clustering 64 answers pairwise would take seconds. :class:`Equivalence` decides in
order of cost:

1. equal :func:`~certaindex.canonical_key` (string normal form): equal;
2. both keys plain numbers (:func:`~certaindex.numeric_value`): compare the numbers;
3. both keys plain words, letters or times (``B``, ``yes``, ``4:30``): different keys differ
   (math-verify reads ``4:30`` as 4);
4. otherwise math-verify in a killable worker (:class:`SymbolicComparer`), with a per-pair
   timeout and a cache of results keyed by the canonical keys.

:meth:`Equivalence.cluster` groups samples by key first, then compares one representative
per key, and only keys that are not both numeric reach the symbolic path.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from fractions import Fraction

from certaindex._answers import canonical_key, numeric_value
from certaindex._defaults import SYMBOLIC_TIMEOUT_S
from certaindex._symbolic import SymbolicComparer

__all__ = ["Equivalence", "answers_equal", "cluster_answers", "default_equivalence"]

_LITERAL = re.compile(r"^(?:[A-Za-z]+|\d+:\d+)$")
_REL_TOL = Fraction(1, 10**6)  # math-verify's default float_rounding is 6 digits


def _numbers_equal(a: Fraction, b: Fraction) -> bool:
    scale: Fraction = max(Fraction(1), abs(a), abs(b))
    return abs(a - b) <= _REL_TOL * scale


class Equivalence:
    """Decides whether two answers are the same, cheapest test first, with a cache.

    Parameters
    ----------
    timeout:
        Seconds one symbolic comparison may take (a hung one counts as not equal).
    symbolic:
        Use math-verify when the cheap paths cannot decide (False: keys and numbers only).
    cache_size:
        Symbolic results remembered (least recently used evicted).
    """

    def __init__(self, timeout: float = SYMBOLIC_TIMEOUT_S, *, symbolic: bool = True, cache_size: int = 65536) -> None:
        self.symbolic = symbolic
        self.cache_size = cache_size
        self._comparer = SymbolicComparer(timeout) if symbolic else None
        self._cache: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self.cache_hits = 0

    @property
    def symbolic_calls(self) -> int:
        """Comparisons that went to math-verify (cache misses)."""
        return self._comparer.calls if self._comparer is not None else 0

    @property
    def timeouts(self) -> int:
        """Symbolic comparisons that ran out of time."""
        return self._comparer.timeouts if self._comparer is not None else 0

    def close(self) -> None:
        """Stop the symbolic worker process."""
        if self._comparer is not None:
            self._comparer.close()

    def equal(self, a: str | None, b: str | None) -> bool:
        r"""Whether answers ``a`` and ``b`` are the same (None, unanswered, equals nothing).

        >>> eq = Equivalence(symbolic=False)
        >>> eq.equal(r"\dfrac{1}{2}", "0.5"), eq.equal("B", "(B)"), eq.equal("4:30", "4:45")
        (True, True, False)
        """
        return self._equal_keys(canonical_key(a), canonical_key(b))

    def _equal_keys(self, ka: str | None, kb: str | None) -> bool:
        if ka is None or kb is None:
            return False
        if ka == kb:
            return True
        va, vb = numeric_value(ka), numeric_value(kb)
        if va is not None and vb is not None:
            return _numbers_equal(va, vb)
        if _LITERAL.match(ka) and _LITERAL.match(kb):
            return ka.lower() == kb.lower()
        if self._comparer is None:
            return False
        pair = (ka, kb) if ka <= kb else (kb, ka)
        cached = self._cache.get(pair)
        if cached is not None:
            self._cache.move_to_end(pair)
            self.cache_hits += 1
            return cached
        # Sorted order: verify(gold, pred) is not symmetric, the answer must not depend on
        # which sample came first.
        result = self._comparer.equal(*pair)
        self._cache[pair] = result
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return result

    def cluster(self, answers: Sequence[str | None]) -> list[int | None]:
        r"""Cluster labels for ``answers``: equal labels for equivalent answers, None if unanswered.

        Labels are numbered in order of first appearance. Each distinct canonical key is
        compared once against each existing cluster (numbers through a value index, without
        symbolic calls), so n samples with k distinct keys cost at most k x clusters checks.

        >>> Equivalence(symbolic=False).cluster(["1/2", None, "0.5", "3", r"\frac{1}{2}"])
        [0, None, 0, 1, 0]
        """
        key_label: dict[str, int] = {}
        reps: list[str] = []  # one canonical key per cluster
        by_value: list[tuple[Fraction, int]] = []
        labels: list[int | None] = []
        for answer in answers:
            key = canonical_key(answer)
            if key is None:
                labels.append(None)
                continue
            label = key_label.get(key)
            if label is None:
                label = self._find_cluster(key, reps, by_value)
                if label is None:
                    label = len(reps)
                    reps.append(key)
                    value = numeric_value(key)
                    if value is not None:
                        by_value.append((value, label))
                key_label[key] = label
            labels.append(label)
        return labels

    def _find_cluster(self, key: str, reps: list[str], by_value: list[tuple[Fraction, int]]) -> int | None:
        value = numeric_value(key)
        if value is not None:
            for other, label in by_value:
                if _numbers_equal(value, other):
                    return label
        numeric_labels = {label for _, label in by_value}
        for label, rep in enumerate(reps):
            if value is not None and label in numeric_labels:
                continue  # two numbers: already decided above
            if self._equal_keys(key, rep):
                return label
        return None


_DEFAULT: Equivalence | None = None


def default_equivalence() -> Equivalence:
    """The process-wide :class:`Equivalence` (default timeout, shared cache), created on first use."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Equivalence()
    return _DEFAULT


def answers_equal(a: str | None, b: str | None) -> bool:
    """Whether two answers are the same, with :func:`default_equivalence`."""
    return default_equivalence().equal(a, b)


def cluster_answers(answers: Sequence[str | None], equivalence: Equivalence | None = None) -> list[int | None]:
    """Cluster labels for ``answers`` (see :meth:`Equivalence.cluster`)."""
    return (equivalence or default_equivalence()).cluster(answers)
