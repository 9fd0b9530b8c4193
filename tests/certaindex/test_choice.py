"""Multiple-choice answers: every way of naming an option lands on its letter."""

from __future__ import annotations

import string

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from certaindex import choice_key, extract_answer, extract_option, normalize_options

# (model text, options or None, the letter it settles on)
PINNED = [
    ("Between (A) and (C), the answer is (C).", None, "C"),
    ("The answer is C", None, "C"),
    ("Answer: **D**", None, "D"),
    ("the answer is option B.", None, "B"),
    ("C) is the only one consistent with the data", None, "C"),
    ("so \\boxed{\\text{(B)}}", None, "B"),
    ("\\boxed{E}", None, "E"),
    ("The answer is (b)", None, "B"),
    ("Therefore the answer is 12.", ["10", "12", "14", "16"], "B"),
    ("so the answer is \\boxed{\\frac{1}{2}}", {"A": "0.5", "B": "0.25"}, "A"),
    ("The answer is Paris.", ["Rome", "Paris", "Madrid"], "B"),
    # An article is not a choice; nor is a bare lower-case word.
    ("the answer is a triangle", None, None),
    ("no idea at all", None, None),
    # An option value not among the options maps to nothing.
    ("The answer is 13.", ["10", "12"], None),
]


@pytest.mark.parametrize(("text", "options", "letter"), PINNED)
def test_pinned_examples(text: str, options: list[str] | dict[str, str] | None, letter: str | None) -> None:
    assert extract_option(text, options) == letter


def test_extract_answer_choice_kind() -> None:
    assert extract_answer("I think the answer is (D).", kind="choice") == "D"


letters = st.sampled_from("ABCDE")
dress = st.sampled_from(["{}", "({})", "{})", "{}.", "({}) ", " {} ", "\\text{{({})}}", "\\boxed{{{}}}"])


@given(letters, dress, st.booleans())
@example("C", "({})", True)
def test_a_letter_in_any_dress_keys_to_itself(letter: str, form: str, lower: bool) -> None:
    written = form.format(letter.lower() if lower and "(" in form else letter)
    assert choice_key(written) == letter


option_texts = st.lists(st.text(string.ascii_lowercase, min_size=3, max_size=8), min_size=2, max_size=5, unique=True)


@given(option_texts, st.data())
def test_an_options_text_maps_to_its_letter(options: list[str], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(options) - 1))
    letter = string.ascii_uppercase[i]
    assert choice_key(options[i], options) == letter
    assert choice_key(options[i].upper(), options) == letter  # case does not matter
    assert extract_option(f"Thinking... The answer is {options[i]}.", options) == letter
    # Reordering the options moves the letter with the text.
    reordered = options[::-1]
    assert choice_key(options[i], reordered) == string.ascii_uppercase[len(options) - 1 - i]


def test_keys_are_canonical_for_agreement() -> None:
    keys = {choice_key(a, ["3", "4"]) for a in ["B", "(B)", "b)", "4", "\\text{(B)}", "4.0"]}
    assert keys == {"B"}
    assert choice_key(None) is None
    assert choice_key("F", letters="ABCD") is None


def test_options_are_validated() -> None:
    assert normalize_options({"(a)": "x", "B": "y"}) == {"A": "x", "B": "y"}
    with pytest.raises(ValueError, match="single letters"):
        normalize_options({"AB": "x"})
    with pytest.raises(ValueError, match="at most 26"):
        normalize_options([str(i) for i in range(27)])
