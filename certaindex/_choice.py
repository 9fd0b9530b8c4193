r"""Multiple-choice answers: the option letter a text settles on, and its canonical key.

Models state a choice in many ways: ``(C)``, ``C)``, ``C.``, "the answer is C", ``\boxed{C}``,
``\boxed{\text{(C)}}``, or by the option itself ("the answer is Paris", "... is 42"). When the
question's options are known, a stated option text or value is mapped to its letter, so every
way of naming one option lands in one cluster. The canonical key of a choice is its upper-case
letter; anything else has no key (an abstention, not a new answer).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence

from certaindex._answers import canonical_key, extract_boxed, extract_stated, numeric_value

__all__ = ["Options", "choice_key", "extract_option", "normalize_options"]

Options = Mapping[str, str] | Sequence[str]
"""A question's options: ``{"A": "Paris", ...}`` or ``["Paris", "Rome", ...]`` (lettered A, B, ...)."""

_LETTER_FORMS = (
    # "the answer is (C)", "Answer: C", "answer is option C", "answer: **C**". Upper case only
    # outside parentheses: "the answer is a triangle" states no choice.
    r"(?i:answer)\s*(?:is|:)?\s*:?\s*(?:(?i:option|choice)\s+)?[*_]*(?:\(\s*([{l}])\s*\)|\\?(?:text\{|textbf\{|mathrm\{)?\(?([{L}])\b)",
    r"\\boxed\{\s*\\?(?:text\{|textbf\{|mathrm\{)?\(?([{L}])\)?\}?\s*\}",
    r"\(([{l}])\)",
    r"(?:^|\s)([{L}])[).:](?:\s|$)",
)
_BARE = re.compile(r"^\s*[*_]*\(?\s*([A-Za-z])\s*\)?[*_]*\s*[.:)]?\s*$")


def normalize_options(options: Options | None) -> dict[str, str]:
    """Options as ``{LETTER: text}`` (a sequence is lettered A, B, C, ...).

    >>> normalize_options(["3", "4"])
    {'A': '3', 'B': '4'}
    >>> normalize_options({"a": "x"})
    {'A': 'x'}
    """
    if options is None:
        return {}
    if isinstance(options, Mapping):
        out = {str(k).strip().strip("()").upper(): str(v) for k, v in options.items()}
    else:
        if len(options) > len(string.ascii_uppercase):
            raise ValueError(f"at most 26 options, got {len(options)}")
        out = {string.ascii_uppercase[i]: str(v) for i, v in enumerate(options)}
    bad = [k for k in out if len(k) != 1 or k not in string.ascii_uppercase]
    if bad:
        raise ValueError(f"option labels must be single letters, got {bad}")
    return out


def _text_key(value: str) -> str | None:
    key = canonical_key(value)
    if key is None:
        return None
    return re.sub(r"[^0-9a-z.\-/\\{}^]+", "", key.lower()) or None


def _option_letter(value: str, options: Mapping[str, str]) -> str | None:
    """The letter whose option text or value equals ``value`` (None if none or ambiguous)."""
    wanted = _text_key(value)
    if wanted is None:
        return None
    number = numeric_value(canonical_key(value))
    hits = set()
    for letter, text in options.items():
        if _text_key(text) == wanted or (number is not None and numeric_value(canonical_key(text)) == number):
            hits.add(letter)
    return hits.pop() if len(hits) == 1 else None


def choice_key(answer: str | None, options: Options | None = None, letters: str | None = None) -> str | None:
    r"""Canonical key of a multiple-choice answer: its option letter, or None.

    ``answer`` is an extracted answer or a recorded one: a letter in any dress (``C``, ``(c)``,
    ``C)``, ``\text{(C)}``) or, with ``options``, an option's text or value.

    >>> choice_key("(c)"), choice_key(r"\text{(B)}"), choice_key("D."), choice_key("Paris", ["Rome", "Paris"])
    ('C', 'B', 'D', 'B')
    >>> choice_key("0.5", {"A": "1/2", "B": "1/3"}), choice_key("maybe") is None
    ('A', True)
    """
    if answer is None:
        return None
    opts = normalize_options(options)
    allowed = letters.upper() if letters is not None else ("".join(opts) if opts else string.ascii_uppercase[:10])
    stripped = answer.strip()
    boxed = extract_boxed(stripped)
    for candidate in (stripped, boxed, canonical_key(stripped)):
        if candidate is None:
            continue
        if (m := _BARE.match(candidate)) is not None and m.group(1).upper() in allowed:
            return m.group(1).upper()
    if opts:
        return _option_letter(boxed if boxed is not None else stripped, opts)
    return None


def extract_option(text: str, options: Options | None = None, letters: str | None = None) -> str | None:
    r"""The option letter a model's text settles on (None: no choice stated).

    Order: a stated letter ("the answer is (C)"), a boxed letter, the last ``(X)``, a ``X)``
    or ``X.`` at a word boundary; then, with ``options``, the stated or boxed answer mapped to
    its option by text or value.

    >>> extract_option("Between (A) and (C), the answer is (C).")
    'C'
    >>> extract_option(r"so \boxed{\text{(B)}}"), extract_option("B) is right")
    ('B', 'B')
    >>> extract_option("The answer is 12.", options=["10", "12", "14"])
    'B'
    >>> extract_option("no idea") is None
    True
    """
    opts = normalize_options(options)
    allowed = letters.upper() if letters is not None else ("".join(opts) if opts else "ABCDE")
    both = allowed + allowed.lower()
    for pattern in _LETTER_FORMS:
        regex = pattern.replace("{L}", re.escape(allowed)).replace("{l}", re.escape(both))
        found = ["".join(f) if isinstance(f, tuple) else f for f in re.findall(regex, text, flags=re.M)]
        if found:
            return found[-1].upper()
    if opts:
        for stated in (extract_boxed(text), extract_stated(text)):
            if stated is not None and (letter := choice_key(stated, opts, allowed)) is not None:
                return letter
    return None
