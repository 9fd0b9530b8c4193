"""Answer equivalence: cheap paths, math-verify in a worker, the timeout, clustering."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from certaindex import Equivalence, canonical_key, numeric_value
from tests.certaindex.strategies import fractions, number_forms


@pytest.fixture(scope="module")
def eq() -> Iterator[Equivalence]:
    e = Equivalence(timeout=2.0)
    yield e
    e.close()


CHEAP = Equivalence(symbolic=False)

EQUAL = [
    ("\\frac12", "1/2"),
    ("\\frac12", "0.5"),
    ("1/2", "0.5"),
    ("\\dfrac{3}{4}", "0.75"),
    ("10\\text{ cm}", "10"),
    ("(1,2]", "(1, 2]"),
    ("\\{1,2\\}", "\\{2,1\\}"),
    ("\\frac{\\sqrt{3}}{2}", "\\frac{\\sqrt3}{2}"),
    ("2\\sqrt{2}", "\\sqrt{8}"),
    ("\\pi/2", "\\frac{\\pi}{2}"),
    ("x=3", "3"),
]
DIFFERENT = [
    ("(1,2]", "[1,2]"),
    ("\\{1,2\\}", "\\{1,3\\}"),
    ("(3,4)", "(4,3)"),
    ("4:30", "4:45"),
    ("\\frac{1}{3}", "0.3"),
    ("A", "B"),
    ("\\sqrt{2}", "2"),
]


@pytest.mark.parametrize(("a", "b"), EQUAL)
def test_equal(eq: Equivalence, a: str, b: str) -> None:
    assert eq.equal(a, b)
    assert eq.equal(b, a)


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_different(eq: Equivalence, a: str, b: str) -> None:
    assert not eq.equal(a, b)
    assert not eq.equal(b, a)


def test_none_equals_nothing() -> None:
    assert not CHEAP.equal(None, None)
    assert not CHEAP.equal("1", None)


@given(fractions)
def test_number_forms_equal_without_symbolic_calls(frac: tuple[int, int]) -> None:
    forms = number_forms(*frac)
    assert all(CHEAP.equal(a, b) for a in forms for b in forms)


def test_numbers_never_reach_math_verify(eq: Equivalence) -> None:
    before = eq.symbolic_calls
    labels = eq.cluster(["1/2", "0.5", "\\frac{1}{2}", "3", "3.0", "-2", "\\dfrac{6}{2}", None])
    assert labels == [0, 0, 0, 1, 1, 2, 1, None]
    assert eq.symbolic_calls == before


def test_cache_avoids_repeat_symbolic_calls(eq: Equivalence) -> None:
    assert eq.equal("\\sqrt{12}", "2\\sqrt{3}")
    calls = eq.symbolic_calls
    for _ in range(5):
        assert eq.equal("2\\sqrt{3}", "\\sqrt{12}")  # either order hits the cache
    assert eq.symbolic_calls == calls


def test_pathological_expression_cannot_hang_a_comparison() -> None:
    eq = Equivalence(timeout=0.5)
    try:
        eq.equal("\\sqrt{4}", "2")  # start the worker outside the timed part
        before = eq.timeouts
        start = time.monotonic()
        assert not eq.equal("9^{9^{9^{9}}}", "1")  # math-verify alone never returns
        assert time.monotonic() - start < 5.0
        assert eq.timeouts == before + 1
        assert eq.equal("\\sqrt{9}", "3")  # a fresh worker takes over
    finally:
        eq.close()


def test_works_outside_the_main_thread(eq: Equivalence) -> None:
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(eq.equal("\\sqrt{16}", "4"))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True, True, True]


def _pairwise_oracle(answers: list[str | None]) -> list[int | None]:
    """Slow reference: first earlier answer that is equal by value or key."""
    labels: list[int | None] = []
    reps: list[str] = []
    for a in answers:
        if canonical_key(a) is None:
            labels.append(None)
            continue
        for i, r in enumerate(reps):
            va, vr = numeric_value(canonical_key(a)), numeric_value(canonical_key(r))
            if canonical_key(a) == canonical_key(r) or (va is not None and va == vr):
                labels.append(i)
                break
        else:
            labels.append(len(reps))
            reps.append(a)  # type: ignore[arg-type]
    return labels


answer_strings = st.one_of(
    st.none(),
    st.sampled_from(["1/2", "0.5", "\\frac{1}{2}", "3", "3.0", "x", " x ", "\\frac{6}{2}", "A", "(A)", "-1"]),
)


@settings(max_examples=200)
@given(st.lists(answer_strings, max_size=20))
def test_cluster_matches_pairwise_oracle(answers: list[str | None]) -> None:
    assert CHEAP.cluster(answers) == _pairwise_oracle(answers)


@given(st.lists(answer_strings, max_size=20), st.randoms())
def test_cluster_partition_is_order_free(answers: list[str | None], rnd: random.Random) -> None:
    order = list(range(len(answers)))
    rnd.shuffle(order)
    a = CHEAP.cluster(answers)
    b = CHEAP.cluster([answers[i] for i in order])
    # Same partition: samples i, j share a label in one run iff they do in the other.
    for x in range(len(order)):
        for y in range(len(order)):
            i, j = order[x], order[y]
            same_a = a[i] is not None and a[i] == a[j]
            same_b = b[x] is not None and b[x] == b[y]
            assert same_a == same_b
