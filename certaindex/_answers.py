r"""Answer extraction from model text, and a cheap canonical key for clustering.

Extraction tries, in order, the forms reasoning models use to state a final answer:
``\boxed{...}`` (the last one, nested braces included), "the answer is ...", GSM8K's
``#### N``, and, as a fallback, the last number in the text. Multiple-choice letters and code
blocks have their own extractors.

The canonical key removes what never changes an answer's meaning (spacing, ``\left``,
``\dfrac`` vs ``\frac``, dollar signs, degree and percent signs, a unit after a number), so
equal keys mean equal answers. The converse needs symbolic comparison
(:mod:`certaindex._equivalence`); :func:`numeric_value` settles the common case of plain
numbers without it.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Literal

__all__ = [
    "canonical_key",
    "extract_answer",
    "extract_boxed",
    "extract_choice",
    "extract_code",
    "extract_last_number",
    "extract_stated",
    "numeric_value",
]

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOXED_BARE = re.compile(r"\\boxed\s+([^\s$]+)")


def extract_boxed(text: str) -> str | None:
    r"""Content of the last ``\boxed{...}`` in ``text``, nested braces included.

    An unclosed last box (a truncated generation) is skipped for the one before it.

    >>> extract_boxed(r"so \boxed{\frac{1}{2}} and finally \boxed{3}")
    '3'
    >>> extract_boxed(r"\boxed{\{1, 2\}}")
    '\\{1, 2\\}'
    >>> extract_boxed("no answer") is None
    True
    """
    starts = [m.end() for m in _BOXED.finditer(text)]
    for start in reversed(starts):
        depth, i = 1, start
        while i < len(text) and depth:
            ch = text[i]
            if ch == "\\" and i + 1 < len(text) and text[i + 1] in "{}":
                i += 2  # an escaped brace (a set) does not open or close the box
                continue
            depth += {"{": 1, "}": -1}.get(ch, 0)
            i += 1
        if depth == 0:
            return text[start : i - 1].strip()
    bare = _BOXED_BARE.findall(text)
    return bare[-1] if bare else None


# "The answer is 5.", "final answer: $\frac12$", "Answer: (B)". The value runs to the end of
# the line; a sentence-ending period is dropped later (not a decimal point: "is 3.5").
_STATED = re.compile(
    r"(?:the\s+)?(?:final\s+)?answer\s*(?:is|:|=)\s*:?\s*(?P<value>[^\n]+)",
    flags=re.IGNORECASE,
)
_GSM8K = re.compile(r"####\s*(?P<value>[^\n]+)")
_GSM8K_A = re.compile(r"^A:\s*(?P<value>[^\n]+)", flags=re.M)  # grade-school-math's sample files
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?|-?\.\d+")


_BOX_START = re.compile(r"\\(?:b(?:o(?:x(?:e(?:d)?)?)?)?|f(?:b(?:o(?:x)?)?)?)?$|\\(?:boxed|fbox)\s*\{")


def _clean_stated(value: str) -> str | None:
    value = value.strip()
    boxed = extract_boxed(value)
    if boxed is not None:
        return boxed
    if _BOX_START.match(value):
        return None  # a box cut off before it closed (truncated at max_tokens): no answer
    value = value.strip().strip("*").strip()
    if value.startswith("$") and value.count("$") >= 2:
        value = value[1 : value.index("$", 1)]
    elif value.startswith("\\(") and "\\)" in value:
        value = value[2 : value.index("\\)")]
    else:
        # Up to the end of the sentence: ". " or a final "." that is not a decimal point.
        value = re.split(r"\.(?:\s|$)", value, maxsplit=1)[0]
    value = value.strip().rstrip(".,;").strip()
    return value or None


def extract_stated(text: str) -> str | None:
    """The value of the last "the answer is ..." (or "Answer: ...") in ``text``.

    >>> extract_stated("Thus, the answer is $\\\\frac{3}{4}$.")
    '\\\\frac{3}{4}'
    >>> extract_stated("The final answer is 3.5. Done")
    '3.5'
    """
    matches = list(_STATED.finditer(text))
    for match in reversed(matches):
        value = _clean_stated(match.group("value"))
        if value is not None:
            return value
    return None


def extract_last_number(text: str) -> str | None:
    """The last number in ``text`` (thousands separators removed), the fallback of last resort.

    >>> extract_last_number("she pays 1,250 dollars, then 3.5 more")
    '3.5'
    """
    numbers = _NUMBER.findall(text)
    if not numbers:
        return None
    return numbers[-1].replace(",", "").rstrip(".") or None


def extract_choice(text: str, letters: str = "ABCDE") -> str | None:
    """The multiple-choice letter a text settles on (stated answer, box, then last ``(X)``).

    Same as :func:`~certaindex.extract_option` without the question's options.

    >>> extract_choice("Between (A) and (C), the answer is (C).")
    'C'
    >>> extract_choice(r"\\boxed{\\text{(B)}}")
    'B'
    """
    from certaindex._choice import extract_option  # _choice builds on this module

    return extract_option(text, letters=letters)


_FENCE = re.compile(r"```[ \t]*(?P<lang>[\w+-]*)[ \t]*\n(?P<body>.*?)(?:```|\Z)", flags=re.S)


def extract_code(text: str, language: str | None = "python") -> str | None:
    """Body of the last fenced code block (of ``language`` if any block is tagged with it).

    An unclosed final fence (a truncated generation) still counts.

    >>> text = "try:\\n```python\\nprint(1)\\n```\\noutput:\\n```\\n1\\n```"
    >>> extract_code(text), extract_code(text, language=None)
    ('print(1)', '1')
    """
    blocks = [(m.group("lang").lower(), m.group("body").strip("\n")) for m in _FENCE.finditer(text)]
    if not blocks:
        return None
    if language is not None:
        tagged = [body for lang, body in blocks if lang == language.lower()]
        untagged = [body for lang, body in blocks if not lang]
        pick = tagged or untagged or [blocks[-1][1]]
        return pick[-1] or None
    return blocks[-1][1] or None


Kind = Literal["math", "gsm8k", "choice", "code"]


def extract_answer(text: str, kind: Kind = "math") -> str | None:
    r"""The final answer a model states in ``text``.

    ``math``: last ``\boxed{}``, else the last "answer is ...", else GSM8K's ``#### N``,
    else the last number. ``gsm8k``: ``#### N`` (or a final ``A: N`` line, as in OpenAI's
    grade-school-math sample files) first, then as ``math``. ``choice``: a
    letter (:func:`extract_choice`). ``code``: the last code block (:func:`extract_code`).

    >>> extract_answer(r"We get $x = 2$, so \boxed{2}. The answer is 3")
    '2'
    >>> extract_answer("Natalia sold 48 + 24 = 72 clips.\n#### 72", kind="gsm8k")
    '72'
    >>> extract_answer("no digits here") is None
    True
    """
    if kind == "code":
        return extract_code(text)
    if kind == "choice":
        return extract_choice(text)
    if kind == "gsm8k":
        gsm = _GSM8K.findall(text) or _GSM8K_A.findall(text)
        if gsm:
            return _clean_stated(gsm[-1].replace(",", ""))
    boxed = extract_boxed(text)
    if boxed is not None:
        return boxed
    stated = extract_stated(text)
    if stated is not None:
        return stated
    gsm = _GSM8K.findall(text)
    if gsm:
        return _clean_stated(gsm[-1].replace(",", ""))
    return extract_last_number(text)


# --- canonical key --------------------------------------------------------------------------

_SPACES = re.compile(r"\s+|\\[,;:! ]|\\quad|\\qquad")
_WRAPPERS = re.compile(r"^\\(?:text|textbf|mathrm|mathbf|boxed)\{(.*)\}$")
_UNIT_AFTER_NUMBER = re.compile(r"^(-?[\d.,/:]+|\\frac\{\d+\}\{\d+\})\\(?:text|mbox|mathrm)\{[a-zA-Z .]+\}$")
_CHOICE = re.compile(r"^\(?([A-Ea-e])\)?$")
_THOUSANDS = re.compile(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_REPLACEMENTS = (
    ("\\dfrac", "\\frac"),
    ("\\tfrac", "\\frac"),
    ("\\left", ""),
    ("\\right", ""),
    ("\\displaystyle", ""),
    ("^\\circ", ""),
    ("^{\\circ}", ""),
    ("\\circ", ""),
    ("\\%", ""),
    ("%", ""),
    ("\\$", ""),
    ("$", ""),
)


def canonical_key(answer: str | None) -> str | None:
    r"""A cheap normal form: equal keys mean equal answers (the converse needs math-verify).

    >>> canonical_key(r" \dfrac{1}{2} ") == canonical_key(r"\frac{1}{2}")
    True
    >>> canonical_key(r"10\text{ cm}"), canonical_key(r"90^\circ"), canonical_key("1,000")
    ('10', '90', '1000')
    >>> canonical_key(r"\text{(B)}")
    'B'
    """
    if answer is None:
        return None
    key = answer
    for _ in range(8):  # to a fixed point: removing one thing can uncover another (`\<space>:` -> `\:`)
        again = _normalize(key)
        if again == key:
            break
        key = again
    return key or None


def _normalize(answer: str) -> str:
    key = _SPACES.sub("", answer)
    for old, new in _REPLACEMENTS:
        key = key.replace(old, new)
    key = key.rstrip(".")
    while (m := _WRAPPERS.match(key)) is not None:
        key = m.group(1)
    if (m := _UNIT_AFTER_NUMBER.match(key)) is not None:
        key = m.group(1)
    if (m := _CHOICE.match(key)) is not None:
        key = m.group(1).upper()
    if _THOUSANDS.match(key):
        key = key.replace(",", "")
    return key


_INT_OR_DEC = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
_SLASH = re.compile(r"^([+-]?\d+)/([+-]?\d+)$")
_FRAC = re.compile(r"^([+-]?)\\frac(?:\{([+-]?\d+)\}|(\d))(?:\{(\d+)\}|(\d))$")


def numeric_value(key: str | None) -> Fraction | None:
    r"""The exact rational value of a plain-number key, or None when it is anything else.

    Accepts integers, decimals, ``a/b`` and ``\frac{a}{b}`` (``\frac12`` too), signed. This
    decides most answer comparisons without symbolic algebra.

    >>> numeric_value(r"-\frac{3}{4}") == numeric_value("-0.75") == numeric_value("-3/4")
    True
    >>> numeric_value(r"\sqrt{2}") is None
    True
    """
    if key is None or len(key) > 64:
        return None
    try:
        if _INT_OR_DEC.match(key):
            return Fraction(key)
        if (m := _SLASH.match(key)) is not None:
            den = int(m.group(2))
            return Fraction(int(m.group(1)), den) if den else None
        if (m := _FRAC.match(key)) is not None:
            num = int(m.group(2) or m.group(3))
            den = int(m.group(4) or m.group(5))
            if den == 0:
                return None
            value = Fraction(num, den)
            return -value if m.group(1) == "-" else value
    except (ValueError, ZeroDivisionError):
        return None
    return None
