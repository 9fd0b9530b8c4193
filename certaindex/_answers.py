"""Answer extraction and a cheap canonical key for clustering."""

from __future__ import annotations

import re

__all__ = ["canonical_key", "extract_boxed"]

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")


def extract_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` in ``text``, nested braces included.

    >>> extract_boxed(r"so \boxed{\frac{1}{2}} and finally \boxed{3}")
    '3'
    >>> extract_boxed("no answer") is None
    True
    """
    starts = [m.end() for m in _BOXED.finditer(text)]
    for start in reversed(starts):
        depth, i = 1, start
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[start : i - 1].strip()
    return None


_SPACES = re.compile(r"\s+")


def canonical_key(answer: str | None) -> str | None:
    r"""A cheap normal form: equal keys mean equal answers (the converse needs math-verify).

    >>> canonical_key(r" \dfrac{1}{2} ") == canonical_key(r"\frac{1}{2}")
    True
    """
    if answer is None:
        return None
    key = _SPACES.sub("", answer)
    key = key.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("\\left", "")
    key = key.replace("\\right", "").replace("\\!", "").replace("$", "")
    key = key.rstrip(".")
    return key or None
