r"""Trajectories and the one function that decides where a rule stops one.

A *trajectory* is what one query looked like at each check: how many samples it had drawn,
every measure's value, whether the answer it would return then is right, and the tokens
spent. :func:`stop_index` applies a :class:`~certaindex.StopRule` to it; :func:`stop_indices`
does the same for many trajectories at once (the same code: :func:`stop_index` is a batch of
one). Calibration, the evidence script and every report replay rules through them, so a
figure printed by one matches the others on the same data.

Abstentions
-----------
A sample without an answer (no boxed value, a program that does not load) is an *abstention*.
:func:`treat_abstentions` gives it one of three explicit treatments before any agreement
measure sees the labels:

``ignore``
    dropped: the measure reads the answered samples only (their count is its ``n``);
``class``
    one "no answer" cluster: abstaining agrees with abstaining;
``distinct``
    each abstention its own cluster (it never agrees with anything; the paper's entropy).

The answer a query returns is always the majority of its *answered* samples.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from certaindex._rule import ABSTENTIONS, RuleError, StopRule

__all__ = [
    "NO_ANSWER",
    "ReplayOutcome",
    "Stop",
    "StopReason",
    "Trajectory",
    "TrajectoryBatch",
    "final_answer_oracle",
    "first_correct_oracle",
    "prefix_values",
    "replay",
    "stop_index",
    "stop_indices",
    "treat_abstentions",
]

StopReason = Literal["confident", "hopeless", "budget", "continue"]
"""``budget``: ran to the end of a complete trajectory; ``continue``: an incomplete one goes on."""

NO_ANSWER = "<no answer>"
"""The cluster label of abstentions under the ``class`` treatment."""


def treat_abstentions(labels: Sequence[Hashable | None], mode: str) -> list[Hashable]:
    """Labels with every ``None`` (abstention) replaced or dropped as ``mode`` says.

    >>> treat_abstentions(["a", None, "a", None], "ignore")
    ['a', 'a']
    >>> treat_abstentions(["a", None, None], "class")
    ['a', '<no answer>', '<no answer>']
    >>> treat_abstentions(["a", None, None], "distinct")
    ['a', ('<no answer>', 1), ('<no answer>', 2)]
    """
    if mode == "ignore":
        return [label for label in labels if label is not None]
    if mode == "class":
        return [NO_ANSWER if label is None else label for label in labels]
    if mode == "distinct":
        return [(NO_ANSWER, i) if label is None else label for i, label in enumerate(labels)]
    raise ValueError(f"abstentions must be one of {', '.join(ABSTENTIONS)}, got {mode!r}")


def _ids(labels: Sequence[Hashable]) -> NDArray[np.int64]:
    """Cluster ids numbered by first appearance."""
    first: dict[Hashable, int] = {}
    return np.array([first.setdefault(label, len(first)) for label in labels], dtype=np.int64)


def _prefix_counts(ids: NDArray[np.int64]) -> NDArray[np.float64]:
    """Row i: cluster sizes among the first i+1 samples."""
    n = ids.size
    k = int(ids.max()) + 1 if n else 1
    onehot = np.zeros((n, k))
    onehot[np.arange(n), ids] = 1.0
    return np.cumsum(onehot, axis=0)


def prefix_values(labels: Sequence[Hashable], measure: str, window: int = 1) -> NDArray[np.float64]:
    r"""A measure's value after each prefix of ``labels`` (no abstentions left: see :func:`treat_abstentions`).

    ``entropy`` :math:`\sum_j c_j \log c_j / (n \log n)` (0 for one sample), ``majority``
    :math:`\max_j c_j / n`, ``beta`` :math:`I_{1/2}(v_2+1, v_1+1)` over the two largest
    clusters, ``dirichlet`` (:func:`~certaindex.dirichlet_stop`), ``esc`` the top share of the
    last ``window`` samples (0 before ``window`` samples).

    >>> prefix_values(["a", "a", "b", "a"], "majority").tolist()
    [1.0, 1.0, 0.6666666666666666, 0.75]
    >>> prefix_values(["a", "b", "b"], "esc", window=2).tolist()
    [0.0, 0.5, 1.0]
    """
    n = len(labels)
    if n == 0:
        return np.zeros(0)
    counts = _prefix_counts(_ids(labels))
    m = np.arange(1, n + 1, dtype=float)
    if measure == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            c_log_c = np.where(counts > 0, counts * np.log(np.where(counts > 0, counts, 1.0)), 0.0).sum(axis=1)
            out = np.where(m > 1, c_log_c / (m * np.log(np.maximum(m, 2.0))), 0.0)
        return np.clip(out, 0.0, 1.0)
    if measure == "majority":
        return np.asarray(counts.max(axis=1) / m)
    if measure == "beta":
        from scipy import special  # lazy: keeps `import certaindex` fast

        top = -np.sort(-counts, axis=1)
        v1 = top[:, 0]
        v2 = top[:, 1] if top.shape[1] > 1 else np.zeros(n)
        return np.asarray(np.clip(special.betainc(v2 + 1.0, v1 + 1.0, 0.5), 0.0, 1.0), dtype=np.float64)
    if measure == "dirichlet":
        from certaindex._stopping import dirichlet_stop

        return np.array([dirichlet_stop(list(labels[: i + 1])).value for i in range(n)])
    if measure == "esc":
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        shifted = np.vstack([np.zeros((window, counts.shape[1])), counts])[:n]
        out = (counts - shifted).max(axis=1) / window
        out[: window - 1] = 0.0
        return np.asarray(out)
    raise ValueError(f"{measure!r} is not an agreement measure")


class _LabelValues(Mapping[str, NDArray[np.float64]]):
    """Agreement measures of one query at every sample count, computed on first use."""

    def __init__(self, labels: Sequence[Hashable | None], extra: Mapping[str, NDArray[np.float64]]) -> None:
        self._labels = list(labels)
        self._answered = np.cumsum([label is not None for label in self._labels])
        self._cache: dict[str, NDArray[np.float64]] = dict(extra)

    def __getitem__(self, key: str) -> NDArray[np.float64]:
        if key not in self._cache:
            self._cache[key] = self._compute(key)
        return self._cache[key]

    def _compute(self, key: str) -> NDArray[np.float64]:
        measure, sep, mode = key.partition("/")
        if not sep or mode not in ABSTENTIONS:
            raise KeyError(key)
        window = 1
        if measure.startswith("esc"):
            window, measure = int(measure[3:] or 1), "esc"
        treated = treat_abstentions(self._labels, mode)
        values = prefix_values(treated, measure, window)
        if mode != "ignore":
            return values
        # Value after s samples = value after the answered ones among them (0 before any).
        padded = np.concatenate([[0.0], values])
        return np.asarray(padded[self._answered])

    def __iter__(self) -> Iterator[str]:
        return iter(self._cache)

    def __len__(self) -> int:
        return len(self._cache)


@dataclass(frozen=True, slots=True, eq=False)  # arrays inside: equality is identity
class Trajectory:
    """One query at each check: samples drawn, measure values, answer correctness, tokens.

    ``values[key]`` holds one value per check (``key`` as :attr:`StopRule.value_key`).
    ``complete`` says the last check is the query's full budget (a trajectory still running
    is not complete: :func:`stop_index` then says ``continue`` when no exit fires).
    """

    samples: NDArray[np.int64]
    values: Mapping[str, NDArray[np.float64]]
    correct: NDArray[np.bool_] | None = None
    tokens: NDArray[np.int64] | None = None
    leaders: NDArray[np.int64] | None = None
    """Cluster id of the answer returned at each check (-1: none); equal ids = equal answers."""
    complete: bool = True
    query_id: str = ""
    dataset: str = ""
    meta: Mapping[str, Any] = field(default_factory=dict)
    labels: tuple[Hashable | None, ...] | None = None
    """Each sample's cluster label in recorded order (``None``: abstention); needed to re-order the samples."""
    sample_correct: NDArray[np.bool_] | None = None
    """Whether each sample's own answer is right, in recorded order."""
    budget: int | None = None
    """The query's full budget in samples (None: the last check's, when complete)."""

    def __len__(self) -> int:
        return int(self.samples.size)

    @classmethod
    def from_labels(
        cls,
        labels: Sequence[Hashable | None],
        *,
        correct: Sequence[bool] | None = None,
        tokens: Sequence[int] | None = None,
        scores: Mapping[str, Sequence[float] | NDArray[np.float64]] | None = None,
        query_id: str = "",
        dataset: str = "",
        meta: Mapping[str, Any] | None = None,
    ) -> Trajectory:
        """A check after every sample, from the samples' cluster labels (``None``: abstention).

        ``correct[i]`` says whether sample ``i``'s answer is right; the answer returned after
        ``s`` samples is the first sample of the leading answered cluster (ties: seen first).
        ``scores`` adds non-agreement measures (``{"reward_max": per-check values}``).

        >>> t = Trajectory.from_labels(["a", None, "b", "b"], correct=[False, False, True, True])
        >>> t.values["majority/ignore"].tolist(), t.correct.tolist()
        ([1.0, 1.0, 0.5, 0.6666666666666666], [False, False, False, True])
        """
        n = len(labels)
        if n == 0:
            raise ValueError("a trajectory needs at least one sample")
        ids = _ids_or_none(labels)
        answered = ids >= 0
        k = int(ids.max()) + 1 if answered.any() else 0
        leaders = np.full(n, -1, dtype=np.int64)
        if k:
            onehot = np.zeros((n, k))
            onehot[np.flatnonzero(answered), ids[answered]] = 1.0
            counts = np.cumsum(onehot, axis=0)
            leaders = np.where(counts.max(axis=1) > 0, counts.argmax(axis=1), -1)
        right = None
        if correct is not None:
            if len(correct) != n:
                raise ValueError(f"{len(correct)} correctness flags for {n} samples")
            first = {int(c): i for i, c in reversed(list(enumerate(ids))) if c >= 0}
            per_cluster = np.array([bool(correct[first[c]]) for c in range(k)], dtype=bool)
            right = np.where(leaders >= 0, per_cluster[np.maximum(leaders, 0)] if k else False, False)
        spent = None
        if tokens is not None:
            if len(tokens) != n:
                raise ValueError(f"{len(tokens)} token counts for {n} samples")
            spent = np.cumsum(np.asarray(tokens, dtype=np.int64))
        extra = {key: np.asarray(v, dtype=float) for key, v in (scores or {}).items()}
        return cls(
            samples=np.arange(1, n + 1, dtype=np.int64),
            values=_LabelValues(labels, extra),
            correct=None if right is None else np.asarray(right, dtype=bool),
            tokens=spent,
            leaders=leaders,
            query_id=query_id,
            dataset=dataset,
            meta=dict(meta or {}),
            labels=tuple(labels),
            sample_correct=None if correct is None else np.asarray(correct, dtype=bool),
        )


def _ids_or_none(labels: Sequence[Hashable | None]) -> NDArray[np.int64]:
    first: dict[Hashable, int] = {}
    return np.array([-1 if x is None else first.setdefault(x, len(first)) for x in labels], dtype=np.int64)


@dataclass(frozen=True, slots=True)
class Stop:
    """Where a rule stops a trajectory: the check's index and why."""

    index: int
    reason: StopReason


_REASONS: tuple[StopReason, ...] = ("confident", "hopeless", "budget", "continue")


class TrajectoryBatch:
    """Many trajectories padded into (queries x checks) arrays for :func:`stop_indices`."""

    def __init__(self, trajectories: Sequence[Trajectory]) -> None:
        if not trajectories:
            raise ValueError("an empty batch of trajectories")
        self.trajectories = list(trajectories)
        self.size = len(self.trajectories)
        self.width = max(len(t) for t in self.trajectories)
        self.last = np.array([len(t) - 1 for t in self.trajectories], dtype=np.int64)
        self.complete = np.array([t.complete for t in self.trajectories], dtype=bool)
        self.samples = self._stack([t.samples for t in self.trajectories], 0).astype(np.int64)
        self.budget = np.array([_budget(t) for t in self.trajectories], dtype=np.int64)
        """Per trajectory: the budget in samples (-1: unknown, a running trajectory that does not say)."""
        self._columns: dict[str, NDArray[np.float64]] = {"samples": self.samples.astype(float)}
        self._values: dict[str, NDArray[np.float64]] = {}
        self._value_source: Callable[[str], NDArray[np.float64]] | None = None

    @classmethod
    def from_arrays(
        cls, samples: NDArray[np.int64], value_source: Callable[[str], NDArray[np.float64]]
    ) -> TrajectoryBatch:
        """Complete trajectories of equal length given as arrays: ``samples`` (rows x checks) and the
        measure values of a key computed on demand by ``value_source(key)`` (same shape).

        For many re-orderings of one query's samples (:mod:`certaindex._orderings`), which would
        cost a :class:`Trajectory` object each; :func:`stop_indices` reads both forms alike.
        """
        batch = cls.__new__(cls)
        batch.trajectories = []
        batch.size, batch.width = samples.shape
        batch.last = np.full(batch.size, batch.width - 1, dtype=np.int64)
        batch.complete = np.ones(batch.size, dtype=bool)
        batch.samples = np.asarray(samples, dtype=np.int64)
        batch.budget = batch.samples[:, -1].copy()
        batch._columns = {"samples": batch.samples.astype(float)}
        batch._values = {}
        batch._value_source = value_source
        return batch

    def _stack(self, rows: Sequence[NDArray[Any]], fill: float) -> NDArray[np.float64]:
        out = np.full((self.size, self.width), fill, dtype=float)
        for i, row in enumerate(rows):
            out[i, : row.size] = row
        return out

    def values(self, key: str) -> NDArray[np.float64]:
        if key not in self._values and self._value_source is not None:
            self._values[key] = self._value_source(key)
        if key not in self._values:
            rows = []
            for t in self.trajectories:
                try:
                    rows.append(np.asarray(t.values[key], dtype=float))
                except KeyError:
                    raise KeyError(f"trajectory {t.query_id!r} has no values for {key!r}") from None
            self._values[key] = self._stack(rows, np.nan)
        return self._values[key]

    def column(self, name: Literal["correct", "tokens", "samples"], index: NDArray[np.int64]) -> NDArray[np.float64]:
        """Per trajectory, ``correct``/``tokens``/``samples`` at check ``index[q]``."""
        if name not in self._columns:
            rows = []
            for t in self.trajectories:
                col = getattr(t, name)
                if col is None:
                    raise ValueError(f"trajectory {t.query_id!r} has no {name!r}")
                rows.append(np.asarray(col, dtype=float))
            self._columns[name] = self._stack(rows, 0.0)
        return self._columns[name][np.arange(self.size), index]

    def has(self, name: Literal["correct", "tokens"]) -> bool:
        return all(getattr(t, name) is not None for t in self.trajectories)

    def subset(self, rows: Sequence[int] | NDArray[np.int64]) -> TrajectoryBatch:
        return TrajectoryBatch([self.trajectories[int(i)] for i in rows])


def _budget(t: Trajectory) -> int:
    if t.budget is not None:
        return int(t.budget)
    return int(t.samples[-1]) if t.complete and t.samples.size else -1


def _min_samples(rule: StopRule, batch: TrajectoryBatch) -> NDArray[np.int64] | int:
    if rule.max_risk is None:
        return rule.min_samples
    if (batch.budget < 0).any():
        raise RuleError(
            f"rule {rule.describe()!r} waits according to the budget: give running trajectories their budget "
            "(Trajectory.budget)"
        )
    need = {int(b): rule.min_samples_at(int(b)) for b in np.unique(batch.budget)}
    return np.array([need[int(b)] for b in batch.budget], dtype=np.int64)[:, None]


def stop_indices(rule: StopRule, batch: TrajectoryBatch) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Check index and reason code (index into ``confident, hopeless, budget, continue``) per trajectory.

    A check counts when its sample count is a multiple of ``rule.round_size``; the last
    check of a complete trajectory is its budget whatever its count. At a check the confident
    exit is tested first, then the hopeless one.
    """
    samples = batch.samples
    cols = np.arange(batch.width)[None, :]
    before_last = cols < batch.last[:, None]
    at_last = cols == batch.last[:, None]
    on_round = (samples % rule.round_size) == 0
    # The last check of a running trajectory is a real check; of a complete one, the budget end.
    check = on_round & (before_last | (at_last & ~batch.complete[:, None]))
    confident = np.zeros_like(check)
    hopeless = np.zeros_like(check)
    if rule.threshold is not None or rule.hopeless_threshold is not None:
        values = batch.values(rule.value_key)
        with np.errstate(invalid="ignore"):
            if rule.threshold is not None:
                confident = check & (samples >= _min_samples(rule, batch)) & (values >= rule.threshold)
            if rule.hopeless_threshold is not None:
                hopeless = check & (samples >= rule.hopeless_after) & (values < rule.hopeless_threshold)
    fire = confident | hopeless
    fired = fire.any(axis=1)
    first = fire.argmax(axis=1)
    rows = np.arange(batch.size)
    index = np.where(fired, first, batch.last)
    end = np.where(batch.complete, 2, 3)
    reason = np.where(fired, np.where(confident[rows, first], 0, 1), end)
    return index.astype(np.int64), reason.astype(np.int64)


def stop_index(rule: StopRule, trajectory: Trajectory) -> Stop:
    """Where ``rule`` stops ``trajectory``: the check's index and the reason.

    >>> t = Trajectory.from_labels(["7", "7", "7", "7"])
    >>> stop_index(StopRule("majority", 1.0, min_samples=3), t)
    Stop(index=2, reason='confident')
    >>> stop_index(StopRule("majority", 1.0, min_samples=3, round_size=2), t)
    Stop(index=3, reason='budget')
    """
    index, reason = stop_indices(rule, TrajectoryBatch([trajectory]))
    return Stop(int(index[0]), _REASONS[int(reason[0])])


@dataclass(frozen=True, slots=True)
class ReplayOutcome:
    """What a rule does on a set of complete trajectories, against their full budget."""

    n: int
    correct: int
    full_correct: int
    harms: int
    """Queries right at the full budget and wrong where the rule stopped."""
    helps: int
    """Queries wrong at the full budget and right where the rule stopped."""
    samples: int
    full_samples: int
    tokens: int
    full_tokens: int
    confident: int
    hopeless: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0

    @property
    def full_accuracy(self) -> float:
        return self.full_correct / self.n if self.n else 0.0

    @property
    def loss(self) -> float:
        """Accuracy lost against the full budget (a fraction; negative = gained)."""
        return (self.full_correct - self.correct) / self.n if self.n else 0.0

    @property
    def samples_saved(self) -> float:
        """Share of the full budget's samples not drawn."""
        return 1.0 - self.samples / self.full_samples if self.full_samples else 0.0

    @property
    def tokens_saved(self) -> float:
        return 1.0 - self.tokens / self.full_tokens if self.full_tokens else 0.0


def _outcome(batch: TrajectoryBatch, index: NDArray[np.int64], reason: NDArray[np.int64]) -> ReplayOutcome:
    last = batch.last
    right = batch.column("correct", index).astype(bool)
    full_right = batch.column("correct", last).astype(bool)
    has_tokens = batch.has("tokens")
    tokens = batch.column("tokens", index).sum() if has_tokens else 0.0
    full_tokens = batch.column("tokens", last).sum() if has_tokens else 0.0
    return ReplayOutcome(
        n=batch.size,
        correct=int(right.sum()),
        full_correct=int(full_right.sum()),
        harms=int((full_right & ~right).sum()),
        helps=int((right & ~full_right).sum()),
        samples=int(batch.column("samples", index).sum()),
        full_samples=int(batch.column("samples", last).sum()),
        tokens=int(tokens),
        full_tokens=int(full_tokens),
        confident=int((reason == 0).sum()),
        hopeless=int((reason == 1).sum()),
    )


def replay(rule: StopRule, trajectories: TrajectoryBatch | Sequence[Trajectory]) -> ReplayOutcome:
    """Replay ``rule`` on complete trajectories: accuracy, harms/helps and cost vs the full budget.

    Each trajectory's recorded samples are drawn in order and at most once: stopping after
    ``s`` samples costs exactly the first ``s``.
    """
    batch = trajectories if isinstance(trajectories, TrajectoryBatch) else TrajectoryBatch(trajectories)
    if not batch.complete.all():
        raise ValueError("replay needs complete trajectories (each one's last check is its full budget)")
    index, reason = stop_indices(rule, batch)
    return _outcome(batch, index, reason)


def final_answer_oracle(trajectories: TrajectoryBatch | Sequence[Trajectory]) -> ReplayOutcome:
    """The *final-answer oracle*: stop at the first check whose answer is the full budget's.

    It knows the final answer, so it spends the fewest samples any rule could spend to return
    exactly the full budget's answers (no harm, no help).
    """
    batch = trajectories if isinstance(trajectories, TrajectoryBatch) else TrajectoryBatch(trajectories)
    index = np.zeros(batch.size, dtype=np.int64)
    for q, t in enumerate(batch.trajectories):
        if t.leaders is None:
            raise ValueError(f"trajectory {t.query_id!r} has no answer ids (leaders)")
        index[q] = int(np.argmax(t.leaders == t.leaders[-1]))
    return _outcome(batch, index, np.zeros(batch.size, dtype=np.int64))


def first_correct_oracle(trajectories: TrajectoryBatch | Sequence[Trajectory]) -> ReplayOutcome:
    """The *first-correct oracle*: stop at the first check whose answer is right.

    Queries never right stop at their first check. It knows the reference, so it bounds the
    accuracy any stopping rule could reach on these samples, at the least cost.
    """
    batch = trajectories if isinstance(trajectories, TrajectoryBatch) else TrajectoryBatch(trajectories)
    index = np.zeros(batch.size, dtype=np.int64)
    for q, t in enumerate(batch.trajectories):
        if t.correct is None:
            raise ValueError(f"trajectory {t.query_id!r} has no correctness")
        index[q] = int(np.argmax(t.correct)) if t.correct.any() else 0
    return _outcome(batch, index, np.zeros(batch.size, dtype=np.int64))
