"""An approximate token count for texts recorded without one."""

from __future__ import annotations

import re

__all__ = ["approx_tokens"]

# Letter runs, single digits (Qwen/Llama-3 style tokenizers split numbers into digits or
# short groups), and every other non-space character on its own.
_PIECES = re.compile(r"[^\W\d_]+|\d|[^\w\s]|_")
_CHARS_PER_WORD_TOKEN = 6  # long words split into several BPE pieces; ~6 letters a piece


def approx_tokens(text: str) -> int:
    r"""Approximate the number of BPE tokens in ``text`` (for traces without token counts).

    Counts, over ``text``: one token per run of up to 6 letters (a longer word counts
    ``ceil(len / 6)``), one per digit, one per punctuation or symbol character. Whitespace is
    free. It is a rough *approximation*, not checked against a real tokenizer; every figure
    computed from it says so.

    .. math:: t(\text{text}) = \sum_{w \in \text{words}} \lceil |w| / 6 \rceil
        + \#\text{digits} + \#\text{symbols}

    >>> approx_tokens("The answer is 42.")
    6
    >>> approx_tokens("")
    0
    """
    total = 0
    for piece in _PIECES.findall(text):
        n = len(piece)
        total += 1 if n <= _CHARS_PER_WORD_TOKEN else -(-n // _CHARS_PER_WORD_TOKEN)
    return total
