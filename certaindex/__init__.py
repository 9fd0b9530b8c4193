"""Certaindex: how certain a reasoning program already is of its answer.

Pure library (numpy/scipy + math-verify); it knows nothing of servers or engines.

- answers: :func:`extract_answer` and friends, :func:`canonical_key`, :func:`numeric_value`;
- equivalence: :class:`Equivalence` (cheap paths, then math-verify in a killable worker),
  :func:`cluster_answers`;
- measures, each returning a :class:`Certainty`: :func:`normalized_entropy`,
  :func:`majority_fraction`, :func:`beta_stop`, :func:`dirichlet_stop`, :func:`esc_window`,
  :func:`mean_reward`, :func:`max_reward`, :func:`probe_consistency`,
  :func:`weighted_consensus`; batched :func:`entropy_batch`, :func:`majority_batch`;
  combinations :func:`all_of`, :func:`any_of`;
- calibration: :class:`ProfilingRecord`, :func:`records_from_trace`, :func:`calibrate`;
- defaults: the measures' knobs live in :mod:`certaindex._defaults`.
"""

from certaindex._answers import (
    canonical_key,
    extract_answer,
    extract_boxed,
    extract_choice,
    extract_code,
    extract_last_number,
    extract_stated,
    numeric_value,
)
from certaindex._calibration import (
    ProfilingRecord,
    RuleChoice,
    RuleOutcome,
    calibrate,
    clopper_pearson_upper,
    evaluate_rule,
    group_queries,
    oracle_outcome,
    read_records,
    write_records,
)
from certaindex._certainty import Certainty
from certaindex._combine import all_of, any_of
from certaindex._defaults import HESITATION_WORDS
from certaindex._entropy import (
    cluster_counts,
    entropy_batch,
    majority_batch,
    majority_fraction,
    majority_vote,
    normalized_entropy,
)
from certaindex._equivalence import Equivalence, answers_equal, cluster_answers, default_equivalence
from certaindex._logprob import (
    group_confidence,
    token_confidence,
    trace_confidence,
    warmup_threshold,
    weighted_consensus,
)
from certaindex._probe import hesitates, probe_consistency
from certaindex._replay import agreement_measures, records_from_trace
from certaindex._reward import RewardScale, max_reward, mean_reward
from certaindex._stopping import beta_batch, beta_stop, dirichlet_stop, esc_window
from certaindex._tokens import approx_tokens

__all__ = [
    "HESITATION_WORDS",
    "Certainty",
    "Equivalence",
    "ProfilingRecord",
    "RewardScale",
    "RuleChoice",
    "RuleOutcome",
    "agreement_measures",
    "all_of",
    "answers_equal",
    "any_of",
    "approx_tokens",
    "beta_batch",
    "beta_stop",
    "calibrate",
    "canonical_key",
    "clopper_pearson_upper",
    "cluster_answers",
    "cluster_counts",
    "default_equivalence",
    "dirichlet_stop",
    "entropy_batch",
    "esc_window",
    "evaluate_rule",
    "extract_answer",
    "extract_boxed",
    "extract_choice",
    "extract_code",
    "extract_last_number",
    "extract_stated",
    "group_confidence",
    "group_queries",
    "hesitates",
    "majority_batch",
    "majority_fraction",
    "majority_vote",
    "max_reward",
    "mean_reward",
    "normalized_entropy",
    "numeric_value",
    "oracle_outcome",
    "probe_consistency",
    "read_records",
    "records_from_trace",
    "token_confidence",
    "trace_confidence",
    "warmup_threshold",
    "weighted_consensus",
    "write_records",
]
