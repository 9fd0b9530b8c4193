"""Profiling records from recorded traces: replay each query's samples in rounds of k.

Trace format (DESIGN.md), one question a line::

    {"id", "prompt", "reference", "samples": [{"text", "answer", "tokens", "correct", "score",
     "probes": [{"at_token", "answer"}]}]}

Self-consistency is replayed in the recorded sample order: step ``s`` has seen the first
``s * k`` samples. Every multi-sample measure is computed at every step, so calibration can
compare them on the same run.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from certaindex._calibration import ProfilingRecord
from certaindex._defaults import ESC_WINDOW
from certaindex._entropy import majority_fraction, majority_vote, normalized_entropy
from certaindex._equivalence import Equivalence, default_equivalence
from certaindex._reward import RewardScale, max_reward, mean_reward
from certaindex._stopping import beta_stop, dirichlet_stop, esc_window
from certaindex._tokens import approx_tokens
from certaindex._traces import parse_trace, sample_answers

__all__ = ["agreement_measures", "records_from_trace"]


def agreement_measures(labels: Sequence[Hashable | None], *, esc: int = ESC_WINDOW) -> dict[str, float]:
    """Every answer-agreement certaindex of one query's samples so far, by measure name.

    >>> agreement_measures(["a", "a", "a"], esc=3)["esc"]
    1.0
    """
    return {
        "entropy": normalized_entropy(labels).value,
        "majority": majority_fraction(labels).value,
        "beta": beta_stop(labels).value,
        "dirichlet": dirichlet_stop(labels).value,
        "esc": esc_window(labels, esc).value,
    }


def _score(sample: Mapping[str, Any]) -> float | None:
    score = sample.get("score")
    if isinstance(score, list | tuple):  # some traces keep one score per step
        score = score[-1] if score else None
    return None if score is None else float(score)


def records_from_trace(
    trace: Mapping[str, Any],  # a decoded trace line (see :func:`~certaindex.read_traces`)
    *,
    algorithm: str = "sc",
    round_size: int = 1,
    max_samples: int | None = None,
    equivalence: Equivalence | None = None,
    reward_scale: RewardScale | None = None,
    esc: int = ESC_WINDOW,
    dataset: str | None = None,
    tokens_exact: bool | None = None,
) -> list[ProfilingRecord]:
    """Profiling records of one recorded query, one per round of ``round_size`` samples.

    A sample's answer is its ``answer`` field (extracted from ``text`` when the field is
    absent); its correctness is ``correct``, else equivalence with ``reference``. The answer
    at a step is the majority cluster's first sample (ties: the cluster seen first).
    Reward measures (``reward_mean``, ``reward_max``) are added when every sample has a
    ``score``, mapped through ``reward_scale``. Token counts are the samples' ``tokens``;
    where missing, :func:`~certaindex.approx_tokens` of the text (``tokens_exact`` false; so
    too when the trace says ``"tokens_approx": true``, or when ``tokens_exact=False``).

    >>> trace = {"id": "q1", "reference": "2", "samples": [
    ...     {"text": "so \\\\boxed{2}", "tokens": 5}, {"text": "\\\\boxed{3}", "tokens": 4},
    ...     {"text": "\\\\boxed{2}", "tokens": 6}]}
    >>> [(r.step, r.tokens, r.answer, r.correct) for r in records_from_trace(
    ...     trace, equivalence=Equivalence(symbolic=False))]
    [(1, 5, '2', True), (2, 9, '2', True), (3, 15, '2', True)]
    """
    if round_size < 1:
        raise ValueError(f"round_size must be >= 1, got {round_size}")
    eq = equivalence or default_equivalence()
    parse_trace(trace, where=f"trace {trace.get('id')!r}")  # a TraceError, not a KeyError, for a bad line
    samples = list(trace["samples"])[:max_samples]
    if not samples:
        return []
    answers, _ = sample_answers(parse_trace({**trace, "samples": samples}))  # recorded answer first
    labels = eq.cluster(answers)
    reference = trace.get("reference")
    correct = [
        bool(s["correct"]) if s.get("correct") is not None else eq.equal(a, reference)
        for s, a in zip(samples, answers, strict=True)
    ]
    exact = not trace.get("tokens_approx", False) and all(s.get("tokens") is not None for s in samples)
    if tokens_exact is not None:
        exact = exact and tokens_exact
    tokens = [int(s["tokens"]) if s.get("tokens") is not None else approx_tokens(s.get("text", "")) for s in samples]
    scores = [_score(s) for s in samples]
    has_scores = all(v is not None for v in scores)
    first_of: dict[Hashable, int] = {}
    for i, label in enumerate(labels):
        first_of.setdefault(label, i)

    steps = []
    for end in range(round_size, len(samples) + round_size, round_size):
        end = min(end, len(samples))
        lab = labels[:end]
        values = agreement_measures(lab, esc=esc)
        if has_scores:
            seen = [v for v in scores[:end] if v is not None]
            values["reward_mean"] = mean_reward(seen, reward_scale).value
            values["reward_max"] = max_reward(seen, reward_scale).value
        leader = majority_vote(lab)
        rep = first_of[leader] if leader is not None else None
        steps.append((end, sum(tokens[:end]), values, answers[rep] if rep is not None else None,
                      correct[rep] if rep is not None else False))  # fmt: skip
        if end == len(samples):
            break
    final_correct = steps[-1][4]
    return [
        ProfilingRecord(
            query_id=str(trace.get("id")),
            algorithm=algorithm,
            step=i,
            samples=end,
            tokens=tok,
            certaindex=values,
            answer=answer,
            correct=ok,
            final_correct=final_correct,
            dataset=dataset,
            tokens_exact=exact,
        )
        for i, (end, tok, values, answer, ok) in enumerate(steps, 1)
    ]
