"""Answer extraction and canonical keys, on tricky strings taken from the recorded traces."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from certaindex import (
    canonical_key,
    extract_answer,
    extract_boxed,
    extract_choice,
    extract_code,
    extract_last_number,
    extract_stated,
    numeric_value,
)
from tests.certaindex.strategies import fractions, number_forms

MATH_TRACES = Path(__file__).resolve().parents[2] / "dynasor" / "data" / "traces" / "math-qwen25.jsonl"

# Endings of Qwen2.5-Math samples (math-qwen25.jsonl) with the answer the source extracted.
TRACE_ENDINGS = [
    ("Therefore, the answer is \\(\\boxed{4}\\).", "4"),
    ("is \\(\\frac{7+21}{14+42}\\) is \\(\\boxed{\\frac{1}{2}}\\).", "\\frac{1}{2}"),
    ("the rope is:\n\n\\[\n\\boxed{\\sqrt{34} + 3\\sqrt{10}}\n\\]", "\\sqrt{34}+3\\sqrt{10}"),
    ("smallest area is \\(\\boxed{7\\pi}\\).", "7\\pi"),
    # Two boxes: the last one is the answer.
    ("\\[\n\\boxed{9999.857142857143}\n\\] or \\(\\boxed{9999 \\frac{6}{7}}\\).", "9999\\frac{6}{7}"),
    # A degenerate generation: the box comes early, the text then runs into garbage.
    ("so \\(\\boxed{25}\\). Altern.createNewOPT富含='. IK())))\n ”_trajectory embarottes", "25"),
    ("$\\boxed{4:30 \\text{ p.m.}}$", "4:30"),
]


@pytest.mark.parametrize(("text", "expected"), TRACE_ENDINGS)
def test_trace_endings(text: str, expected: str) -> None:
    assert canonical_key(extract_answer(text)) == canonical_key(expected)


def test_agrees_with_source_extraction_on_recorded_traces() -> None:
    if not MATH_TRACES.exists():
        pytest.skip(f"{MATH_TRACES} not present")
    rows = [json.loads(line) for line in MATH_TRACES.open()]
    pairs = [(s["answer"], extract_answer(s["text"])) for r in rows for s in r["samples"]]
    agree = sum(canonical_key(a) == canonical_key(b) for a, b in pairs)
    assert agree == len(pairs), [p for p in pairs if canonical_key(p[0]) != canonical_key(p[1])][:5]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}"),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),
        ("\\boxed{(1, 2]}", "(1, 2]"),
        ("first \\boxed{1} then \\boxed{2", "1"),  # truncated last box
        ("\\fbox{7}", "7"),
        ("\\boxed 5 is it", "5"),
        ("nothing here", None),
    ],
)
def test_extract_boxed(text: str, expected: str | None) -> None:
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 3.5.", "3.5"),
        ("Thus the final answer is $\\frac{3}{4}$. I hope", "\\frac{3}{4}"),
        ("Answer: 12", "12"),
        ("the answer is \\(x^2\\)", "x^2"),
        ("The answer is 7.\nNo: the answer is 5.", "5"),  # the last statement wins
    ],
)
def test_extract_stated(text: str, expected: str) -> None:
    assert extract_stated(text) == expected


@pytest.mark.parametrize("text", ["So the answer is \\boxed{1", "The answer is \\boxed{", "the answer is \\bo"])
def test_box_cut_off_by_max_tokens_is_no_stated_answer(text: str) -> None:
    assert extract_stated(text) is None


# Endings of grade-school-math's example model solutions (shared gsm8k data), with "A: N".
GSM8K_ENDINGS = [
    ("130,000-40,000=$<<130000-40000=90000>>90,000\nA: 90,000", "90000"),
    ("So it takes 2 + 1 = <<2+1=3>>3.0 bolts of blue and white fiber altogether.\nA: 3", "3"),
    ("His profit was 975-130,000 = $<<975-130000=-129025>>-129025\nA: -129025", "-129025"),
]


@pytest.mark.parametrize(("text", "expected"), GSM8K_ENDINGS)
def test_gsm8k_sample_endings(text: str, expected: str) -> None:
    assert extract_answer(text, kind="gsm8k") == expected


def test_gsm8k_and_fallbacks() -> None:
    gsm = "She sold 48/2 = <<48/2=24>>24 clips in May.\n#### 72"
    assert extract_answer(gsm, kind="gsm8k") == "72"
    assert extract_answer(gsm) == "72"  # no box, no "answer is": the #### line
    assert extract_answer("#### 1,000", kind="gsm8k") == "1000"
    assert extract_last_number("costs $1,250.50 and then 3 more.") == "3"
    assert extract_answer("it is 10 or maybe 12") == "12"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Between (A) and (C), the answer is (C).", "C"),
        ("The answer is B", "B"),
        ("\\boxed{D}", "D"),
        ("\\boxed{\\text{(E)}}", "E"),
        ("I pick\nA) because", "A"),
        ("no choice", None),
    ],
)
def test_extract_choice(text: str, expected: str | None) -> None:
    assert extract_choice(text) == expected


def test_extract_code() -> None:
    text = "Plan.\n```python\ndef f(x):\n    return x + 1\n```\nOutput:\n```\n2\n```"
    assert extract_code(text) == "def f(x):\n    return x + 1"
    assert extract_answer(text, kind="code") == "def f(x):\n    return x + 1"
    assert extract_code("```py\nx=1\n```\n```python\ny = 2") == "y = 2"  # unclosed fence counts
    assert extract_code("no code") is None


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("\\dfrac{1}{2}", "\\frac{1}{2}"),
        ("\\left( 1, 2 \\right)", "(1,2)"),
        ("10\\text{ cm}", "10"),
        ("90^\\circ", "90"),
        ("50\\%", "50"),
        ("\\$5", "5"),
        ("1,000", "1000"),
        ("\\text{(B)}", "B"),
        ("(b)", "B"),
        ("$x$.", "x"),
    ],
)
def test_canonical_key_equal(a: str, b: str) -> None:
    assert canonical_key(a) == canonical_key(b)


@pytest.mark.parametrize(("a", "b"), [("(1,2)", "(1,2]"), ("1,2", "12"), ("4:30", "4:45"), ("-1", "1")])
def test_canonical_key_keeps_differences(a: str, b: str) -> None:
    assert canonical_key(a) != canonical_key(b)


@given(st.text(max_size=40))
@example("  ")
@example("$$")
@example("\\\x1f:")  # removing a space uncovered a LaTeX thin space
def test_canonical_key_idempotent(text: str) -> None:
    key = canonical_key(text)
    assert key is None or canonical_key(key) == key


@given(fractions)
@example((1, 2))
@example((-3, 4))
def test_numeric_value_of_every_form(frac: tuple[int, int]) -> None:
    num, den = frac
    for form in number_forms(num, den):
        assert numeric_value(canonical_key(form)) == Fraction(num, den), form


@pytest.mark.parametrize("key", ["\\sqrt{2}", "x", "1/0", "\\frac{1}{0}", "(1,2)", "", None, "1" * 100])
def test_numeric_value_rejects(key: str | None) -> None:
    assert numeric_value(key) is None
