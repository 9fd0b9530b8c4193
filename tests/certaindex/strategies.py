"""Hypothesis strategies shared by the certaindex tests."""

from __future__ import annotations

from hypothesis import strategies as st

# Cluster labels of one query's samples: a few small ints, None for unanswered samples.
labels = st.lists(st.one_of(st.none(), st.integers(0, 4)), min_size=0, max_size=24)
answered_labels = st.lists(st.integers(0, 4), min_size=1, max_size=24)

# Plain numbers written in the ways models write them.
integers = st.integers(-10_000, 10_000)
fractions = st.tuples(st.integers(-50, 50), st.integers(1, 50))


def number_forms(num: int, den: int) -> list[str]:
    """Equal values written differently: a/b, \\frac{a}{b}, \\dfrac, and a decimal if exact."""
    sign = "-" if num * den < 0 else ""
    a, b = abs(num), abs(den)
    forms = [f"{num}/{den}", f"{sign}\\frac{{{a}}}{{{b}}}", f"{sign}\\dfrac{{{a}}}{{{b}}}"]
    d = b
    for p in (2, 5):
        while d % p == 0:
            d //= p
    if d == 1:  # terminating decimal
        forms.append(repr(num / den))
    return forms
