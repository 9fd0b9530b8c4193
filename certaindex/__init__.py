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
- multiple choice: :func:`extract_option`, :func:`choice_key` (letters, ``(C)``, option texts);
- stop rules: :class:`StopRule` (one value object), :class:`CertaindexConfig` (one rule per
  algorithm, YAML/JSON), :func:`stop_index` (the one function deciding where a rule stops a
  :class:`Trajectory`), :func:`replay`, the oracles :func:`final_answer_oracle` and
  :func:`first_correct_oracle`, abstention treatments :func:`treat_abstentions`;
- traces: :func:`read_traces` (the one reader of the trace format), :func:`trajectories_from_traces`;
- ordering-averaged replay: :class:`OrderingReplay`, :func:`expected_replay` (a rule's expected outcome
  over the orderings of each query's samples), :class:`Orderings`;
- certification: :func:`certify` (Learn then Test, a bound on the paired accuracy loss; by default on
  the ordering-averaged loss, bounded per query by :func:`loss_range`, tested by :func:`betting_pvalue`);
- calibration of the earlier form: :class:`ProfilingRecord`, :func:`records_from_trace`, :func:`calibrate`;
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
from certaindex._betting import betting_fraction, betting_pvalue
from certaindex._calibration import (
    ProfilingRecord,
    RuleChoice,
    RuleOutcome,
    calibrate,
    clopper_pearson_upper,
    evaluate_rule,
    final_answer_outcome,
    group_queries,
    oracle_outcome,
    read_records,
    write_records,
)
from certaindex._certainty import Certainty
from certaindex._certify import (
    Calibration,
    Family,
    Method,
    WalkStep,
    binomial_pvalue,
    certify,
    certify_ladder,
    choose_rule,
    fixed_sequence,
    loss_pvalue,
    sign_pvalue,
    split_queries,
)
from certaindex._certify_orderings import loss_ceiling
from certaindex._choice import choice_key, extract_option, normalize_options
from certaindex._combine import all_of, any_of
from certaindex._defaults import BETA_STOP_CONFIDENCE, ESC_WINDOW, HESITATION_WORDS
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
from certaindex._orderings import ExpectedOutcome, OrderingReplay, Orderings, distinct_orderings, expected_replay
from certaindex._probe import hesitates, probe_consistency
from certaindex._range import LossRange, loss_range, mc_margin
from certaindex._replay import agreement_measures, records_from_trace
from certaindex._reward import RewardScale, max_reward, mean_reward
from certaindex._rule import (
    ABSTENTIONS,
    AGREEMENT_MEASURES,
    ALGORITHM_MEASURES,
    ANSWER_KINDS,
    KNOWN_MEASURES,
    Abstentions,
    AnswerKind,
    CertaindexConfig,
    Certification,
    RuleError,
    StopRule,
    value_key,
)
from certaindex._stopping import beta_batch, beta_stop, dirichlet_stop, esc_window
from certaindex._tokens import approx_tokens
from certaindex._traces import (
    Trace,
    TraceError,
    TraceSample,
    TraceWarning,
    parse_trace,
    read_traces,
    sample_answers,
    trajectories_from_traces,
)
from certaindex._trajectory import (
    NO_ANSWER,
    ReplayOutcome,
    Stop,
    Trajectory,
    TrajectoryBatch,
    final_answer_oracle,
    first_correct_oracle,
    prefix_values,
    replay,
    stop_index,
    stop_indices,
    treat_abstentions,
)

__all__ = [
    "ABSTENTIONS",
    "AGREEMENT_MEASURES",
    "ALGORITHM_MEASURES",
    "ANSWER_KINDS",
    "BETA_STOP_CONFIDENCE",
    "ESC_WINDOW",
    "HESITATION_WORDS",
    "KNOWN_MEASURES",
    "NO_ANSWER",
    "Abstentions",
    "AnswerKind",
    "Calibration",
    "CertaindexConfig",
    "Certainty",
    "Certification",
    "Equivalence",
    "ExpectedOutcome",
    "Family",
    "LossRange",
    "Method",
    "OrderingReplay",
    "Orderings",
    "ProfilingRecord",
    "ReplayOutcome",
    "RewardScale",
    "RuleChoice",
    "RuleError",
    "RuleOutcome",
    "Stop",
    "StopRule",
    "Trace",
    "TraceError",
    "TraceSample",
    "TraceWarning",
    "Trajectory",
    "TrajectoryBatch",
    "WalkStep",
    "agreement_measures",
    "all_of",
    "answers_equal",
    "any_of",
    "approx_tokens",
    "beta_batch",
    "beta_stop",
    "betting_fraction",
    "betting_pvalue",
    "binomial_pvalue",
    "calibrate",
    "canonical_key",
    "certify",
    "certify_ladder",
    "choice_key",
    "choose_rule",
    "clopper_pearson_upper",
    "cluster_answers",
    "cluster_counts",
    "default_equivalence",
    "dirichlet_stop",
    "distinct_orderings",
    "entropy_batch",
    "esc_window",
    "evaluate_rule",
    "expected_replay",
    "extract_answer",
    "extract_boxed",
    "extract_choice",
    "extract_code",
    "extract_last_number",
    "extract_option",
    "extract_stated",
    "final_answer_oracle",
    "final_answer_outcome",
    "first_correct_oracle",
    "fixed_sequence",
    "group_confidence",
    "group_queries",
    "hesitates",
    "loss_ceiling",
    "loss_pvalue",
    "loss_range",
    "majority_batch",
    "majority_fraction",
    "majority_vote",
    "max_reward",
    "mc_margin",
    "mean_reward",
    "normalize_options",
    "normalized_entropy",
    "numeric_value",
    "oracle_outcome",
    "parse_trace",
    "prefix_values",
    "probe_consistency",
    "read_records",
    "read_traces",
    "records_from_trace",
    "replay",
    "sample_answers",
    "sign_pvalue",
    "split_queries",
    "stop_index",
    "stop_indices",
    "token_confidence",
    "trace_confidence",
    "trajectories_from_traces",
    "treat_abstentions",
    "value_key",
    "warmup_threshold",
    "weighted_consensus",
    "write_records",
]
