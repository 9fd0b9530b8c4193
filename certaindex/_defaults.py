"""Default knobs of the measures: the one place their constants live.

Per-algorithm stopping *rules* (:class:`~certaindex.StopRule`) are not here: they live in a
Certaindex config, the bundled ``certaindex/data/certaindex.yaml`` or what ``dynasor calibrate``
writes, which dynasor's allocator puts on top of its presets (``dynasor/data/presets.yaml``).
"""

from __future__ import annotations

__all__ = [
    "BETA_STOP_CONFIDENCE",
    "DEEPCONF_CONSENSUS",
    "DEEPCONF_GROUP_WINDOW",
    "DEEPCONF_KEEP_PERCENT",
    "DEEPCONF_TAIL_TOKENS",
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

BETA_STOP_CONFIDENCE = 0.95
"""Adaptive-Consistency's published stopping threshold for its Beta rule."""
