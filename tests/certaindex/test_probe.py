"""Probe consistency for long chains of thought, and hesitation on word boundaries."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from certaindex import Equivalence, hesitates, probe_consistency


@pytest.mark.parametrize(
    "text",
    [
        "it is not above the threshold",  # the reference's substring test fires on "no" and "hold"
        "press the button",  # "but"
        "a nonzero number",  # "no"
        "Okayama is a city",  # "okay"
        "\\boxed{7}",
    ],
)
def test_no_false_hesitation(text: str) -> None:
    assert not hesitates(text)


@pytest.mark.parametrize("text", ["Wait, that is wrong", "hmm. 7", "7, but maybe 8", "No.", "OKAY so 3", "hold on"])
def test_hesitation(text: str) -> None:
    assert hesitates(text)


def test_custom_words() -> None:
    assert hesitates("let me double-check", words=["double-check"])
    assert not hesitates("wait", words=["perhaps"])


def test_probe_rule() -> None:
    probes = ["\\boxed{5}", "\\boxed{7}", "\\boxed{7}", "\\boxed{7}"]
    assert probe_consistency(probes, window=3).value == 1.0
    assert probe_consistency(probes, window=4).value == 0.75
    # Hesitation in the middle breaks the run.
    assert probe_consistency(["\\boxed{7}", "wait \\boxed{7}", "\\boxed{7}"], window=3).value == pytest.approx(1 / 3)
    # An empty probe answer breaks it too.
    assert probe_consistency(["\\boxed{7}", "I am not sure yet", "\\boxed{7}"], window=3).value == pytest.approx(1 / 3)
    assert probe_consistency([], window=3).value == 0.0


def test_equivalent_answers_agree() -> None:
    probes = ["\\boxed{\\frac{1}{2}}", "\\boxed{0.5}", "\\boxed{1/2}"]
    c = probe_consistency(probes, window=3, equivalence=Equivalence(symbolic=False))
    assert c.value == 1.0
    assert c.details["answer"] == "1/2"


def test_given_answers_skip_extraction() -> None:
    assert probe_consistency(["x", "y", "z"], answers=["7", "7", "7"], window=3).value == 1.0
    with pytest.raises(ValueError, match="answers"):
        probe_consistency(["x"], answers=["1", "2"])


@given(
    st.lists(st.sampled_from(["\\boxed{1}", "\\boxed{2}", "wait \\boxed{1}", "none"]), max_size=10), st.integers(1, 5)
)
@example(["\\boxed{1}"] * 3, 3)
def test_in_unit_interval_and_monotone_in_agreement(probes: list[str], window: int) -> None:
    c = probe_consistency(probes, window=window)
    assert 0.0 <= c.value <= 1.0
    # One more probe agreeing with the latest answer never lowers the value.
    if probes and c.details["answer"] is not None:
        more = probe_consistency([*probes, f"\\boxed{{{c.details['answer']}}}"], window=window)
        assert more.value >= c.value
