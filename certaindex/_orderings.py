r"""Ordering-averaged replay: what a rule does to a query on average over the orders its samples could come in.

Why it is the right average
---------------------------
A query's :math:`N` recorded samples are independent draws from the model, so the recorded order
is one uniformly random ordering of them (the samples are *exchangeable*): every ordering of the
same multiset of answers was exactly as likely to be the recorded one. A rule's expected outcome
on the query (where it stops, whether the answer it returns is right, its paired loss against the
full budget's answer) is therefore the average over orderings of that query's samples. Averaged
over the orderings it is an unbiased estimate of what the rule does to a *fresh* run of the query
at the same budget, with far less noise than the one recorded order: one close race no longer
moves a 59-question set by 1.7 points. Each ordering still draws every sample at most once, so the
baseline and the rule spend prefixes of the same samples.

Two refinements make it exact or cheaper without changing its expectation:

- the answer a query returns is the first sample of its leading cluster, and which sample of a
  cluster comes first is uniform in a random ordering, so a row of cluster labels carries the
  cluster's *mean* correctness (and mean tokens); rows are orderings of labels, not of samples;
- the full budget's answer depends on the ordering only through ties for the plurality (the
  first seen wins), so its expected correctness is computed exactly: the mean over the tied
  clusters.

How the orderings are drawn (:class:`Orderings`): all :math:`N!` orderings (merged where the labels
repeat) when :math:`N \le` ``exact_up_to`` (8), else ``count`` uniformly random orderings per query
(Monte Carlo) from a generator seeded by ``seed`` and the query's data set and id, so a query gets
the same orderings in every call, every fold and for every rule. :attr:`ExpectedOutcome.exact`
says which queries were averaged exactly; :func:`certaindex.mc_margin` turns ``count`` into the
margin the certification adds for the Monte Carlo error.

Everything here goes through :func:`~certaindex.stop_indices`, the one function that decides where
a rule stops, on a batch whose rows are the orderings.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from certaindex._rule import ABSTENTIONS, AGREEMENT_MEASURES, StopRule
from certaindex._trajectory import Trajectory, TrajectoryBatch, _LabelValues, stop_indices

__all__ = [
    "ExpectedOutcome",
    "OrderingReplay",
    "Orderings",
    "expected_replay",
]


@dataclass(frozen=True, slots=True)
class Orderings:
    """Which orderings of a query's samples the average runs over.

    >>> Orderings().describe()
    'exact where a query has at most 50,000 distinct orderings, else 2,000 random orderings (seed 0)'
    """

    count: int = 2000
    """Random orderings per query when the average is not exact."""
    seed: int = 0
    exact_limit: int = 50_000
    r"""Average over every distinct ordering of the labels when there are at most this many
    (:math:`N! / \prod_j c_j!` for cluster sizes :math:`c_j`; every query of 8 samples or fewer)."""

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"count must be >= 1, got {self.count}")
        if self.exact_limit < 0:
            raise ValueError(f"exact_limit must be >= 0, got {self.exact_limit}")

    def describe(self) -> str:
        return (
            f"exact where a query has at most {self.exact_limit:,} distinct orderings, else {self.count:,} random "
            f"orderings (seed {self.seed})"
        )


@dataclass(frozen=True, slots=True)
class _Urn:
    """One query's samples as cluster labels, with what each cluster is worth."""

    ids: NDArray[np.int64]
    """Cluster id of each sample (by first appearance in the recorded order), -1 for an abstention."""
    correct: NDArray[np.float64]
    """Mean correctness of each cluster's samples."""
    tokens: NDArray[np.float64]
    """Mean tokens of each cluster's samples, then of the abstentions (index -1)."""
    final_correct: float
    """Expected correctness of the full budget's answer over orderings (exact)."""
    name: str


def _urn(t: Trajectory) -> _Urn:
    if t.labels is None or t.sample_correct is None:
        raise ValueError(
            f"trajectory {t.query_id!r} has no per-sample labels and correctness; ordering-averaged replay "
            "needs trajectories built from samples (Trajectory.from_labels, trajectories_from_traces)"
        )
    first: dict[Hashable, int] = {}
    ids = np.array([-1 if x is None else first.setdefault(x, len(first)) for x in t.labels], dtype=np.int64)
    k = len(first)
    right = np.asarray(t.sample_correct, dtype=float)
    per_sample_tokens = np.zeros(ids.size)
    if t.tokens is not None and np.array_equal(t.samples, np.arange(1, ids.size + 1)):
        per_sample_tokens = np.diff(np.concatenate([[0.0], np.asarray(t.tokens, dtype=float)]))
    correct = np.zeros(k)
    tokens = np.zeros(k + 1)
    for c in range(k):
        members = ids == c
        correct[c] = right[members].mean()
        tokens[c] = per_sample_tokens[members].mean()
    if (ids < 0).any():
        tokens[k] = per_sample_tokens[ids < 0].mean()
    if k:
        sizes = np.bincount(ids[ids >= 0], minlength=k)
        tied = sizes == sizes.max()
        final = float(correct[tied].mean())
    else:
        final = 0.0
    return _Urn(ids, correct, tokens, final, f"{t.dataset}/{t.query_id}")


def distinct_orderings(ids: NDArray[np.int64]) -> int:
    r"""How many different label sequences the samples make: :math:`N! / \prod_j c_j!`.

    >>> distinct_orderings(np.array([0, 0, 1, -1]))
    12
    """
    _, sizes = np.unique(ids, return_counts=True)
    out = math.factorial(int(ids.size))
    for c in sizes:
        out //= math.factorial(int(c))
    return out


def _every_ordering(ids: NDArray[np.int64]) -> NDArray[np.int64]:
    """Every distinct ordering of the labels, one per row (built position by position)."""
    labels, sizes = np.unique(ids, return_counts=True)
    rows = np.zeros((1, 0), dtype=np.int64)
    left = sizes[None, :].astype(np.int64)
    for _ in range(ids.size):
        grown, remaining = [], []
        for j, label in enumerate(labels):
            ok = left[:, j] > 0
            rest = left[ok].copy()
            rest[:, j] -= 1
            grown.append(np.column_stack([rows[ok], np.full(int(ok.sum()), label, dtype=np.int64)]))
            remaining.append(rest)
        rows, left = np.vstack(grown), np.vstack(remaining)
    return rows


def _rows(urn: _Urn, orderings: Orderings) -> tuple[NDArray[np.int64], NDArray[np.float64], bool]:
    """The orderings of one query's labels and each one's probability (exact: every distinct one)."""
    if distinct_orderings(urn.ids) <= orderings.exact_limit:
        rows = _every_ordering(urn.ids)
        return rows, np.full(rows.shape[0], 1.0 / rows.shape[0]), True
    rng = np.random.default_rng([orderings.seed, zlib.crc32(urn.name.encode())])
    rows = rng.permuted(np.tile(urn.ids, (orderings.count, 1)), axis=1)
    return rows, np.full(orderings.count, 1.0 / orderings.count), False


class _Shuffle:
    """One query's samples in many orders: per row and sample count, the leading clusters and the answer."""

    def __init__(self, urn: _Urn, rows: NDArray[np.int64], weights: NDArray[np.float64], exact: bool) -> None:
        self.urn, self.rows, self.weights, self.exact = urn, rows, weights, exact
        r, n = rows.shape
        k = urn.correct.size
        self.n = n
        self.drawn = np.arange(1, n + 1)
        self.abstained = np.cumsum(rows < 0, axis=1)
        self.top = np.zeros((r, n), dtype=np.int64)
        self.second = np.zeros((r, n), dtype=np.int64)
        self.c_log_c = np.zeros((r, n))
        self.leader = np.full((r, n), -1, dtype=np.int64)
        # One pass over the sample positions, all rows at once: cluster counts (abstentions in the
        # spare column k), the largest and second-largest answered count, the leader (most samples,
        # ties to the cluster seen first, as Trajectory.from_labels), and sum c log c.
        counts = np.zeros((r, k + 1), dtype=np.int64)
        first = np.full((r, k + 1), n, dtype=np.int64)
        top = np.zeros(r, dtype=np.int64)
        second = np.zeros(r, dtype=np.int64)
        leader = np.full(r, -1, dtype=np.int64)
        c_log_c = np.zeros(r)
        grow = np.zeros(n + 1)  # v log v - (v-1) log(v-1)
        v = np.arange(1, n + 1)
        grow[1:] = v * np.log(v) - (v - 1) * np.log(np.maximum(v - 1, 1))
        every = np.arange(r)
        for i in range(n):
            label = rows[:, i]
            answered = label >= 0
            col = np.where(answered, label, k)
            now = counts[every, col] + 1
            counts[every, col] = now
            first[every, col] = np.minimum(first[every, col], i)
            c_log_c = c_log_c + np.where(answered, grow[now], 0.0)
            leads = answered & (col == leader)
            other = answered & ~leads
            takes = other & ((now > top) | ((now == top) & (first[every, col] < first[every, leader])))
            second = np.where(takes, top, np.where(other, np.maximum(second, now), second))
            top = np.where(leads | takes, now, top)
            leader = np.where(takes, col, leader)
            self.top[:, i], self.second[:, i], self.leader[:, i], self.c_log_c[:, i] = top, second, leader, c_log_c
        self.leader_correct = np.where(self.leader >= 0, urn.correct[np.maximum(self.leader, 0)] if k else 0.0, 0.0)
        self.cum_tokens = np.cumsum(urn.tokens[rows], axis=1)
        self._values: dict[str, NDArray[np.float64]] = {}

    def values(self, key: str) -> NDArray[np.float64]:
        """A measure's value after each sample count of every row, as :func:`prefix_values` computes it."""
        if key not in self._values:
            self._values[key] = self._compute(key)
        return self._values[key]

    def _compute(self, key: str) -> NDArray[np.float64]:
        measure, sep, mode = key.partition("/")
        if not sep or mode not in ABSTENTIONS:
            raise ValueError(f"ordering-averaged replay reads agreement measures only, not {key!r}")
        m = self.drawn[None, :].astype(float)
        z = self.abstained
        a, a2, e = self.top, self.second, self.c_log_c
        if measure == "majority":
            if mode == "class":
                return np.asarray(np.maximum(a, z) / m)
            if mode == "distinct":
                return np.asarray(np.maximum(a, np.minimum(z, 1)) / m)
            answered = m - z
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.asarray(np.where(answered > 0, a / np.maximum(answered, 1), 0.0))
        if measure == "entropy":
            if mode == "ignore":
                size = m - z
                total = e
            else:
                size = np.broadcast_to(m, e.shape)
                total = e + (z * np.log(np.maximum(z, 1)) if mode == "class" else 0.0)
            with np.errstate(divide="ignore", invalid="ignore"):
                out = np.where(size > 1, total / (size * np.log(np.maximum(size, 2.0))), 0.0)
            return np.asarray(np.clip(out, 0.0, 1.0))
        if measure == "beta":
            from scipy import special  # lazy: keeps `import certaindex` fast

            if mode == "ignore":
                v1, v2 = a, a2
            else:
                extra = [z] if mode == "class" else [np.minimum(z, 1), np.minimum(np.maximum(z - 1, 0), 1)]
                stacked = np.sort(np.stack([a, a2, *extra], axis=2), axis=2)
                v1, v2 = stacked[:, :, -1], stacked[:, :, -2]
            out = np.clip(special.betainc(v2 + 1.0, v1 + 1.0, 0.5), 0.0, 1.0)
            if mode == "ignore":
                out = np.where(m - z > 0, out, 0.0)
            return np.asarray(out, dtype=np.float64)
        if measure.startswith("esc") and mode != "ignore" and measure[3:].isdigit():
            return self._window(int(measure[3:]), mode)
        return self._slow(key)

    def _window(self, window: int, mode: str) -> NDArray[np.float64]:
        r, n = self.rows.shape
        k = self.urn.correct.size
        out = np.zeros((r, n))
        inside = np.zeros((r, k + 1), dtype=np.int64)  # counts of the last `window` samples
        every = np.arange(r)
        for i in range(n):
            inside[every, np.where(self.rows[:, i] >= 0, self.rows[:, i], k)] += 1
            if i >= window:
                gone = self.rows[:, i - window]
                inside[every, np.where(gone >= 0, gone, k)] -= 1
            abstained = inside[:, k] if mode == "class" else np.minimum(inside[:, k], 1)
            out[:, i] = np.maximum(inside[:, :k].max(axis=1) if k else 0, abstained)
        out /= window
        out[:, : window - 1] = 0.0
        return out

    def _slow(self, key: str) -> NDArray[np.float64]:
        """Any other agreement key, row by row through the trajectories' own code (slow, exact)."""
        out = np.zeros(self.rows.shape)
        for i, row in enumerate(self.rows):
            labels = [None if c < 0 else int(c) for c in row]
            out[i] = _LabelValues(labels, {})[key]
        return out


def _stats(sh: _Shuffle, index: NDArray[np.int64], reason: NDArray[np.int64]) -> NDArray[np.float64]:
    """Per stop column: expected samples, returned correctness, harm, help, tokens, confident, hopeless."""
    rows = np.arange(sh.rows.shape[0])[:, None]
    if index.ndim == 1:
        index, reason = index[:, None], reason[:, None]
    w = sh.weights[:, None]
    last = sh.n - 1
    right = sh.leader_correct[rows, index]
    final = sh.leader_correct[:, last][:, None]
    same = sh.leader[rows, index] == sh.leader[:, last][:, None]
    harm = np.where(same, 0.0, final * (1.0 - right))
    helped = np.where(same, 0.0, (1.0 - final) * right)
    out = np.stack(
        [
            ((index + 1) * w).sum(axis=0),
            (right * w).sum(axis=0),
            (harm * w).sum(axis=0),
            (helped * w).sum(axis=0),
            (sh.cum_tokens[rows, index] * w).sum(axis=0),
            ((reason == 0) * w).sum(axis=0),
            ((reason == 1) * w).sum(axis=0),
        ]
    )
    return np.asarray(out)


_FIELDS = ("samples", "correct", "harm", "help", "tokens", "confident", "hopeless")


def _batch(sh: _Shuffle) -> TrajectoryBatch:
    samples = np.broadcast_to(sh.drawn, sh.rows.shape)
    return TrajectoryBatch.from_arrays(np.ascontiguousarray(samples), sh.values)


def _rule_stats(rule: StopRule, sh: _Shuffle) -> NDArray[np.float64]:
    early = rule.threshold is not None or rule.hopeless_threshold is not None
    if early and rule.measure not in AGREEMENT_MEASURES:
        raise ValueError(f"ordering-averaged replay reads agreement measures only, not {rule.measure!r}")
    index, reason = stop_indices(rule, _batch(sh))
    return _stats(sh, index, reason)


def _sweep_stats(chain: StopRule, thresholds: tuple[float, ...], sh: _Shuffle) -> NDArray[np.float64]:
    """:func:`_rule_stats` for every threshold of one chain at once (same stops as :func:`stop_indices`)."""
    hope = chain.hopeless_threshold
    if hope is not None and any(t < hope for t in thresholds):
        # The hopeless exit is clamped to the threshold there: rule by rule.
        return np.concatenate([_rule_stats(_with(chain, t), sh) for t in thresholds], axis=1)
    values = sh.values(chain.value_key)
    n = sh.n
    drawn = sh.drawn
    check = (drawn % chain.round_size == 0) & (np.arange(n) < n - 1)
    hopeless_at = np.full(values.shape[0], n - 1)
    fired = np.zeros(values.shape[0], dtype=bool)
    if hope is not None:
        fire = (check & (drawn >= chain.hopeless_after))[None, :] & (values < hope)
        fired = fire.any(axis=1)
        hopeless_at = np.where(fired, fire.argmax(axis=1), n - 1)
    limits = np.asarray(thresholds, dtype=float)
    lows = np.array(_lows(chain, thresholds, n))
    rows = values.shape[0]
    confident_at = np.zeros((rows, limits.size), dtype=np.int64)
    for low in np.unique(lows):
        eligible = check & (drawn >= low)
        running = np.maximum.accumulate(np.where(eligible[None, :], values, -np.inf), axis=1)
        # The running maximum never decreases, so the first check reaching t is a binary search; with
        # each row shifted by 3 x its index (values lie in [-1, 1]) one search serves every row.
        shift = 3.0 * np.arange(rows)[:, None]
        flat = (np.maximum(running, -1.0) + shift).ravel()
        group = lows == low
        found = np.searchsorted(flat, (limits[group][None, :] + shift).ravel(), side="left").reshape(rows, -1)
        confident_at[:, group] = found - n * np.arange(rows)[:, None]
    index = np.minimum(confident_at, hopeless_at[:, None])
    reason = np.where(confident_at <= hopeless_at[:, None], 0, np.where(fired[:, None], 1, 2))
    return _stats(sh, index.astype(np.int64), reason)


@lru_cache(maxsize=65536)
def _lows(chain: StopRule, thresholds: tuple[float, ...], budget: int) -> tuple[int, ...]:
    """Per threshold, the fewest samples before the confident exit may fire (the same for every query)."""
    return tuple(_with(chain, t).min_samples_at(budget) for t in thresholds)


def _with(chain: StopRule, threshold: float) -> StopRule:
    hope = chain.hopeless_threshold
    return chain.with_changes(threshold=threshold, hopeless_threshold=None if hope is None else min(hope, threshold))


def _oracle_stats(sh: _Shuffle) -> NDArray[np.float64]:
    final = sh.leader[:, -1][:, None]
    index = (sh.leader == final).argmax(axis=1)
    return _stats(sh, index.astype(np.int64), np.zeros_like(index))


_PER_QUERY = (
    "losses",
    "drawn",
    "budgets",
    "right",
    "full_right",
    "harm_probability",
    "help_probability",
    "tokens_drawn",
    "tokens_budget",
    "confident_probability",
    "hopeless_probability",
    "exact",
)


@dataclass(frozen=True, slots=True, eq=False)
class _Queries:
    budgets: NDArray[np.int64]
    full_right: NDArray[np.float64]
    tokens_budget: NDArray[np.float64]
    exact: NDArray[np.bool_]
    datasets: tuple[str, ...]


@dataclass(frozen=True, slots=True, eq=False)  # arrays inside: equality is identity
class ExpectedOutcome:
    """A rule's ordering-averaged outcome: per query (arrays) and in total (read like :class:`ReplayOutcome`).

    Totals are expected values: ``harms`` is the expected number of queries harmed, ``samples``
    the expected number of samples drawn, ``loss`` the expected accuracy lost.
    """

    losses: NDArray[np.float64]
    """Per query: expected correctness of the full budget's answer minus the rule's (the paired loss)."""
    drawn: NDArray[np.float64]
    """Per query: expected samples drawn."""
    budgets: NDArray[np.int64]
    """Per query: the full budget (samples recorded)."""
    right: NDArray[np.float64]
    """Per query: probability that the rule's answer is right (``full_right``: the full budget's)."""
    full_right: NDArray[np.float64]
    harm_probability: NDArray[np.float64]
    """Per query: probability that the full budget is right and the rule wrong."""
    help_probability: NDArray[np.float64]
    tokens_drawn: NDArray[np.float64]
    tokens_budget: NDArray[np.float64]
    confident_probability: NDArray[np.float64]
    hopeless_probability: NDArray[np.float64]
    exact: NDArray[np.bool_]
    """Per query: averaged over every distinct ordering (else over the Monte Carlo orderings)."""
    orderings: Orderings = field(default_factory=Orderings)
    datasets: tuple[str, ...] = ()

    @property
    def n(self) -> int:
        return int(self.losses.size)

    @property
    def loss(self) -> float:
        """Expected accuracy lost against the full budget (a fraction; negative = gained)."""
        return float(self.losses.mean()) if self.n else 0.0

    @property
    def accuracy(self) -> float:
        return float(self.right.mean()) if self.n else 0.0

    @property
    def full_accuracy(self) -> float:
        return float(self.full_right.mean()) if self.n else 0.0

    @property
    def samples(self) -> float:
        return float(self.drawn.sum())

    @property
    def full_samples(self) -> int:
        return int(self.budgets.sum())

    @property
    def samples_saved(self) -> float:
        """Share of the full budget's samples not drawn (expected)."""
        return 1.0 - self.samples / self.full_samples if self.full_samples else 0.0

    @property
    def tokens(self) -> float:
        return float(self.tokens_drawn.sum())

    @property
    def full_tokens(self) -> float:
        return float(self.tokens_budget.sum())

    @property
    def tokens_saved(self) -> float:
        return 1.0 - self.tokens / self.full_tokens if self.full_tokens else 0.0

    @property
    def harms(self) -> float:
        """Expected number of queries harmed (``helps``: helped)."""
        return float(self.harm_probability.sum())

    @property
    def helps(self) -> float:
        return float(self.help_probability.sum())

    @property
    def confident(self) -> float:
        return float(self.confident_probability.sum())

    @property
    def hopeless(self) -> float:
        return float(self.hopeless_probability.sum())

    def subset(self, rows: Sequence[int] | NDArray[np.int64]) -> ExpectedOutcome:
        """The same outcome restricted to some queries (by position)."""
        idx = np.asarray(rows, dtype=np.int64)
        arrays = {name: getattr(self, name)[idx] for name in _PER_QUERY}
        names = tuple(self.datasets[i] for i in idx) if self.datasets else ()
        return ExpectedOutcome(**arrays, orderings=self.orderings, datasets=names)


class OrderingReplay:
    """Ordering-averaged replay of rules on trajectories, with every query's results kept for reuse.

    One instance shares its work: a query's orderings are built once per call that needs new
    results, and a (query, rule) result once ever (a query is known by identity: keep the
    trajectories alive and unchanged while the instance is used).

    >>> t = Trajectory.from_labels(["a", "a", "b", "a"], correct=[True, True, False, True])
    >>> o = OrderingReplay().outcome(StopRule("majority", 1.0, min_samples=2, abstentions="distinct"), [t])
    >>> # it stops after 2 samples when both are "a" (probability 1/2), else it runs to 4
    >>> round(o.samples_saved, 3), round(o.loss, 3), bool(o.exact[0])
    (0.25, 0.0, True)
    """

    def __init__(self, orderings: Orderings | None = None) -> None:
        self.orderings = orderings or Orderings()
        self._urns: dict[int, _Urn] = {}
        self._alive: dict[int, Trajectory] = {}
        self._results: dict[tuple[int, Hashable], NDArray[np.float64]] = {}
        self._exact: dict[int, bool] = {}
        self._static: dict[tuple[int, ...], _Queries] = {}
        self._aliases: dict[Hashable, tuple[Hashable, int]] = {}

    def _urn(self, t: Trajectory) -> _Urn:
        key = id(t)
        if key not in self._urns:
            self._urns[key] = _urn(t)
            self._alive[key] = t
        return self._urns[key]

    def prepare(
        self,
        requests: Sequence[StopRule | tuple[StopRule, tuple[float, ...]] | Literal["oracle"]],
        trajectories: Sequence[Trajectory],
    ) -> None:
        """Compute every missing (query, request) result in one pass over the queries."""
        keyed = [(_request_key(r), r) for r in requests]
        for t in trajectories:
            urn = self._urn(t)
            missing = []
            for k, r in keyed:
                if (id(t), k) in self._results:
                    continue
                alias = self._aliases.get(k)
                if alias is not None and (id(t), alias[0]) in self._results:
                    # The same rule was computed as one threshold of a sweep (same stops: tests check it).
                    column = alias[1]
                    self._results[(id(t), k)] = self._results[(id(t), alias[0])][:, column : column + 1]
                    continue
                missing.append((k, r))
            if not missing:
                continue
            sh = _Shuffle(urn, *_rows(urn, self.orderings))
            self._exact[id(t)] = sh.exact
            for key, request in missing:
                if request == "oracle":
                    stats = _oracle_stats(sh)
                elif isinstance(request, tuple):
                    stats = _sweep_stats(request[0], request[1], sh)
                    for i, threshold in enumerate(request[1]):
                        self._aliases.setdefault(_request_key(_with(request[0], threshold)), (key, i))
                else:
                    stats = _rule_stats(request, sh)
                self._results[(id(t), key)] = stats

    def _queries(self, trajectories: Sequence[Trajectory]) -> _Queries:
        """What the outcomes need of the queries beside a rule's results (kept per list of queries)."""
        ids = tuple(id(t) for t in trajectories)
        if ids not in self._static:
            urns = [self._urn(t) for t in trajectories]
            self._static[ids] = _Queries(
                budgets=np.array([u.ids.size for u in urns], dtype=np.int64),
                full_right=np.array([u.final_correct for u in urns], dtype=float),
                tokens_budget=np.array([float(u.tokens[np.where(u.ids < 0, -1, u.ids)].sum()) for u in urns]),
                exact=np.array([self._exact[id(t)] for t in trajectories], dtype=bool),
                datasets=tuple(t.dataset for t in trajectories),
            )
        return self._static[ids]

    def _collect(self, key: Hashable, trajectories: Sequence[Trajectory], columns: int = 1) -> list[ExpectedOutcome]:
        if trajectories:
            every = np.stack([self._results[(id(t), key)] for t in trajectories])  # queries x fields x columns
        else:
            every = np.zeros((0, len(_FIELDS), columns))
        q = self._queries(trajectories)
        out = []
        for column in range(columns):
            stats = every[:, :, column]
            right = stats[:, 1]
            out.append(
                ExpectedOutcome(
                    losses=q.full_right - right,
                    drawn=stats[:, 0],
                    budgets=q.budgets,
                    right=right,
                    full_right=q.full_right,
                    harm_probability=stats[:, 2],
                    help_probability=stats[:, 3],
                    tokens_drawn=stats[:, 4],
                    tokens_budget=q.tokens_budget,
                    confident_probability=stats[:, 5],
                    hopeless_probability=stats[:, 6],
                    exact=q.exact,
                    orderings=self.orderings,
                    datasets=q.datasets,
                )
            )
        return out

    def outcome(self, rule: StopRule, trajectories: Sequence[Trajectory]) -> ExpectedOutcome:
        """``rule`` averaged over the orderings of each query's samples."""
        self.prepare([rule], trajectories)
        return self._collect(_request_key(rule), trajectories)[0]

    def sweep(
        self, chain: StopRule, thresholds: Sequence[float], trajectories: Sequence[Trajectory]
    ) -> list[ExpectedOutcome]:
        """``chain`` at each of ``thresholds`` (its own threshold ignored), one outcome per threshold."""
        request = (chain, tuple(float(t) for t in thresholds))
        self.prepare([request], trajectories)
        return self._collect(_request_key(request), trajectories, len(request[1]))

    def oracle(self, trajectories: Sequence[Trajectory]) -> ExpectedOutcome:
        """The final-answer oracle on the same orderings: the first check whose answer is the full budget's."""
        self.prepare(["oracle"], trajectories)
        return self._collect("oracle", trajectories)[0]


def _request_key(request: StopRule | tuple[StopRule, tuple[float, ...]] | str) -> Hashable:
    if isinstance(request, str):
        return request
    if isinstance(request, tuple):
        chain, thresholds = request
        return ("sweep", chain.with_changes(threshold=None, certification=None, name=None), thresholds)
    return request.with_changes(certification=None, name=None)


def expected_replay(
    rule: StopRule, trajectories: Sequence[Trajectory], orderings: Orderings | None = None
) -> ExpectedOutcome:
    """``rule`` on complete trajectories, averaged over the orderings of each query's samples.

    >>> t = Trajectory.from_labels(["7", "7", "9"], correct=[True, True, False])
    >>> o = expected_replay(StopRule("majority", 1.0, min_samples=2, abstentions="distinct"), [t])
    >>> round(float(o.drawn[0]), 4), round(o.loss, 4)  # stops at 2 when both 7s come first (1/3)
    (2.6667, 0.0)
    """
    return OrderingReplay(orderings).outcome(rule, trajectories)
