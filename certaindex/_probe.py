r"""Probe-in-the-middle consistency for long chains of thought (Dynasor-CoT).

Every so many tokens the runtime appends a probe ("... the final answer is \boxed{") to the
chain of thought and samples a few tokens. The chain is done when its last ``window`` probe
answers are present, equivalent, and none of the probe texts hesitates.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from certaindex._answers import extract_answer
from certaindex._certainty import Certainty
from certaindex._defaults import HESITATION_WORDS, PROBE_WINDOW
from certaindex._equivalence import Equivalence

__all__ = ["hesitates", "probe_consistency"]


def _hesitation_pattern(words: Sequence[str]) -> re.Pattern[str]:
    alternatives = sorted((re.escape(w.strip()) for w in words if w.strip()), key=len, reverse=True)
    # Whole words only: the reference's substring test fires on "not" ("no"), "threshold"
    # ("hold") and "button" ("but").
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", flags=re.IGNORECASE)


_DEFAULT_PATTERN = _hesitation_pattern(HESITATION_WORDS)


def hesitates(text: str, words: Sequence[str] | None = None) -> bool:
    """Whether ``text`` contains a hesitation word (whole words, case-insensitive).

    >>> hesitates("Wait, let me re-check"), hesitates("it is not above the threshold")
    (True, False)
    """
    pattern = _DEFAULT_PATTERN if words is None else _hesitation_pattern(words)
    return pattern.search(text) is not None


def probe_consistency(
    probes: Sequence[str],
    *,
    window: int = PROBE_WINDOW,
    answers: Sequence[str | None] | None = None,
    words: Sequence[str] | None = None,
    equivalence: Equivalence | None = None,
    extract: Callable[[str], str | None] = extract_answer,
) -> Certainty:
    r"""How many of the last ``window`` probes agree confidently, as a share of ``window``.

    The value is :math:`k / w`, where :math:`k` is the length of the trailing run of probes
    (at most :math:`w`) that have an answer, whose answer is equivalent to the latest one,
    and whose text shows no hesitation. Dynasor-CoT exits when :math:`k = w` (value 1).

    Parameters
    ----------
    probes:
        Probe outputs in order, oldest first.
    window:
        :math:`w`, the number of consecutive agreeing probes needed to exit.
    answers:
        The probes' answers if already extracted; else ``extract(probe)`` for each.
    words:
        Hesitation words (default: :data:`certaindex.HESITATION_WORDS`).
    equivalence:
        Answer comparison (default: keys and numbers only, no symbolic calls: probes are
        checked every few hundred tokens and must stay cheap).

    >>> probe_consistency(["\\boxed{7}", "Wait, \\boxed{7}", "\\boxed{7}", "\\boxed{7}"]).value
    0.6666666666666666
    >>> probe_consistency(["7", "7", "7"], answers=["7", "7", "7"]).value
    1.0

    References
    ----------
    Fu et al., "Efficiently Serving LLM Reasoning Programs with Certaindex" (Dynasor-CoT).
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if answers is not None and len(answers) != len(probes):
        raise ValueError(f"got {len(answers)} answers for {len(probes)} probes")
    eq = equivalence or _CHEAP
    pattern = _DEFAULT_PATTERN if words is None else _hesitation_pattern(words)
    got = list(answers) if answers is not None else [extract(p) for p in probes]
    latest = got[-1] if got else None
    run = 0
    for text, answer in zip(reversed(probes), reversed(got), strict=True):
        if run == window or answer is None or pattern.search(text) or not eq.equal(answer, latest):
            break
        run += 1
    return Certainty(run / window, "probe", {"window": window, "run": run, "answer": latest})


_CHEAP = Equivalence(symbolic=False)
