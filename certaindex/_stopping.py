r"""Stopping rules for self-consistency whose error is controlled by construction.

Adaptive-Consistency (Aggarwal et al., 2023) treats the samples' answers as draws from an
unknown distribution over answers and stops once the posterior probability that the current
leader *is* the distribution's mode is high. Early-Stopping Self-Consistency (Li et al., 2024)
samples in windows and stops when one window is unanimous. Both need no calibration data.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from certaindex._certainty import Certainty
from certaindex._entropy import _batch_counts, _leader, cluster_counts

__all__ = ["beta_batch", "beta_stop", "dirichlet_stop", "esc_window"]


def beta_stop(labels: Sequence[Hashable | None], prior: float = 1.0) -> Certainty:
    r"""Posterior probability that the leading answer beats the runner-up (Beta rule).

    With ``v1`` and ``v2`` votes for the two largest clusters (``v2 = 0`` when there is one),
    and a uniform Beta prior,

    .. math:: c = P\left(p > \tfrac12\right), \quad p \sim \mathrm{Beta}(v_1 + \alpha, v_2 + \alpha)
        = 1 - I_{1/2}(v_1 + \alpha, v_2 + \alpha)

    where :math:`I` is the regularised incomplete beta function. Unanswered samples are no
    votes. Ties give at most 0.5.

    >>> round(beta_stop(["a"] * 4).value, 4)
    0.9688
    >>> beta_stop(["a", "b"]).value
    0.5

    References
    ----------
    Aggarwal et al., "Let's Sample Step by Step: Adaptive-Consistency for Efficient Reasoning
    and Coding with LLMs", EMNLP 2023 (the Beta stopping criterion).
    """
    _check_prior(prior)
    counts = cluster_counts(labels)
    if not counts:
        return Certainty(0.0, "beta", {"n": len(labels)})
    v1 = counts[0]
    v2 = counts[1] if len(counts) > 1 else 0
    from scipy import special  # lazy: keeps `import certaindex` fast

    value = float(special.betainc(v2 + prior, v1 + prior, 0.5))  # = 1 - I_{1/2}(v1+a, v2+a)
    leader, _ = _leader(labels)
    return Certainty(_unit(value), "beta", {"n": len(labels), "leader": leader, "votes": [v1, v2]})


def beta_batch(labels: ArrayLike, prior: float = 1.0) -> NDArray[np.float64]:
    """:func:`beta_stop` of every row of a (queries x samples) label matrix (``-1`` = unanswered).

    >>> beta_batch([[0, 0, 0, 0], [0, 1, -1, -1]]).round(4).tolist()
    [0.9688, 0.5]
    """
    from scipy import special  # lazy: keeps `import certaindex` fast

    _check_prior(prior)
    counts, _, n = _batch_counts(labels)
    if n == 0:
        return np.zeros(counts.shape[0])
    # Largest and second-largest cluster per row, then a (n+1) x (n+1) table of the rule.
    rows = np.arange(counts.shape[0])
    lead = counts.argmax(axis=1)
    v1 = counts[rows, lead]
    rest = counts.copy()
    rest[rows, lead] = 0
    v2 = rest.max(axis=1)
    v = np.arange(n + 1, dtype=float)
    table = special.betainc(v[None, :] + prior, v[:, None] + prior, 0.5)  # table[v1, v2]
    table[0, :] = 0.0  # no answer at all
    return np.asarray(np.clip(table[v1, v2], 0.0, 1.0), dtype=np.float64)


def dirichlet_stop(labels: Sequence[Hashable | None], prior: float = 1.0) -> Certainty:
    r"""Posterior probability that the leading answer is the most likely one (Dirichlet rule).

    The answer distribution gets a Dirichlet posterior over the observed clusters plus one
    bucket for answers not seen yet (``counts + alpha``). Writing a Dirichlet draw as
    normalised independent Gamma variables :math:`G_j \sim \Gamma(a_j)`, the probability that
    cluster 1 has the largest share is a one-dimensional integral (Simpson's rule):

    .. math:: c = P(G_1 > G_j\ \forall j \ne 1)
        = \int_0^\infty f_{\Gamma(a_1)}(x) \prod_{j \ne 1} F_{\Gamma(a_j)}(x)\, dx

    With a single observed cluster it equals :func:`beta_stop`.

    >>> round(dirichlet_stop(["a"] * 4).value, 3)
    0.969
    >>> round(dirichlet_stop(["a", "a", "a", "b", "c"]).value, 2)
    0.68

    References
    ----------
    Aggarwal et al., EMNLP 2023 (the Dirichlet stopping criterion).
    """
    _check_prior(prior)
    counts = cluster_counts(labels)
    if not counts:
        return Certainty(0.0, "dirichlet", {"n": len(labels)})
    from scipy import integrate, special  # lazy: keeps `import certaindex` fast

    a1 = counts[0] + prior  # > 1, so the integrand is 0 at x = 0
    others = np.array([*counts[1:], 0], dtype=float) + prior
    # The Gamma(a1) density lives within a1 +- a few sqrt(a1); Simpson on a fixed grid there
    # agrees with adaptive quadrature to ~1e-10 at a hundredth of the cost.
    x = np.linspace(0.0, a1 + 12.0 * np.sqrt(a1) + 12.0, _GRID)
    with np.errstate(divide="ignore"):
        log_pdf = (a1 - 1.0) * np.log(x) - x - special.gammaln(a1)
    cdf = special.gammainc(others[:, None], x[None, :]).prod(axis=0)
    value = float(integrate.simpson(np.exp(log_pdf) * cdf, x=x))
    leader, _ = _leader(labels)
    return Certainty(_unit(value), "dirichlet", {"n": len(labels), "leader": leader, "counts": counts})


def esc_window(labels: Sequence[Hashable | None], window: int = 5) -> Certainty:
    """Share of the last ``window`` samples that give the window's most common answer.

    Early-Stopping Self-Consistency stops when a window is unanimous: ``value == 1``. Before
    ``window`` samples exist the value is 0. Unanswered samples never agree.

    >>> esc_window(["x", "a", "a", "a"], window=3).value
    1.0
    >>> round(esc_window(["a", "a", "b"], window=3).value, 3)
    0.667

    References
    ----------
    Li et al., "Escape Sky-high Cost: Early-stopping Self-Consistency for Multi-step
    Reasoning", ICLR 2024.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if len(labels) < window:
        return Certainty(0.0, "esc", {"n": len(labels), "window": window})
    last = labels[-window:]
    leader, top = _leader(last)
    return Certainty(top / window, "esc", {"n": len(labels), "window": window, "leader": leader})


_GRID = 4097  # Simpson points of the Dirichlet integral


def _check_prior(prior: float) -> None:
    if not prior > 0:
        raise ValueError(f"prior must be > 0, got {prior}")


def _unit(value: float) -> float:
    return min(1.0, max(0.0, value))
