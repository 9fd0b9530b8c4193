"""Default knobs and stopping rules: the one place thresholds live when nothing is calibrated.

``dynasor calibrate`` writes per-workload rules that override :data:`DEFAULT_RULES`. The
defaults prefer rules whose error is controlled by construction (a Bayesian posterior, a
consensus ratio), because thresholds on agreement or reward do not transfer between
workloads.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DEEPCONF_CONSENSUS",
    "DEEPCONF_GROUP_WINDOW",
    "DEEPCONF_KEEP_PERCENT",
    "DEEPCONF_TAIL_TOKENS",
    "DEFAULT_RULES",
    "ESC_WINDOW",
    "HESITATION_WORDS",
    "PROBE_WINDOW",
    "SYMBOLIC_TIMEOUT_S",
]

HESITATION_WORDS: tuple[str, ...] = ("wait", "hold", "but", "okay", "no", "hmm")
"""Dynasor-CoT's hesitation words (matched as whole words here, see :func:`hesitates`)."""

PROBE_WINDOW = 3
"""Consecutive agreeing, unhesitant probe answers needed to exit a chain of thought."""

ESC_WINDOW = 5
"""Window size of Early-Stopping Self-Consistency (the paper's default for math)."""

DEEPCONF_GROUP_WINDOW = 2048
"""Tokens per sliding group of DeepConf's group confidence."""

DEEPCONF_TAIL_TOKENS = 2048
"""Tokens at the end of a trace that DeepConf's tail confidence averages."""

DEEPCONF_KEEP_PERCENT = 10.0
"""DeepConf-low: keep the most confident 10% of warm-up traces (threshold at the 90th pct)."""

DEEPCONF_CONSENSUS = 0.95
"""DeepConf's online stop: confidence-weighted share of the leading answer."""

SYMBOLIC_TIMEOUT_S = 2.0
"""Seconds one symbolic (math-verify) comparison may take before it counts as unequal."""

DEFAULT_RULES: dict[str, dict[str, Any]] = {
    # Adaptive-Consistency's Beta rule at its published 0.95: no calibration data needed.
    "sc": {"measure": "beta", "threshold": 0.95, "min_step": 1, "source": "default"},
    # Dynasor-CoT: PROBE_WINDOW agreeing probes (the probe measure reaches 1).
    "cot": {"measure": "probe", "threshold": 1.0, "min_step": 1, "source": "default"},
    # Reward rules have no scale-free default: these are conservative guesses; calibrate.
    "mcts": {"measure": "reward_mean", "threshold": 0.9, "min_step": 2, "source": "default, uncalibrated"},
    "rebase": {"measure": "reward_max", "threshold": 0.9, "min_step": 2, "source": "default, uncalibrated"},
    "deepconf": {"measure": "deepconf", "threshold": DEEPCONF_CONSENSUS, "min_step": 1, "source": "default"},
}
"""Per-algorithm stopping rules: stop once ``measure >= threshold`` at step ``>= min_step``."""
