"""Graders: math through math-verify, code in the sandbox (right, wrong, timeouts, escapes)."""

from __future__ import annotations

import pytest

from eval import CodeGrader, Problem, candidate_program, shared_math_grader
from eval._isolation import isolation
from eval._sandbox import runs_started
from tests.conftest import in_ci

STUB = 'def add(a, b):\n    """Add two numbers.\n    >>> add(2, 3)\n    5\n    >>> add(-1, 1)\n    0\n    """\n'
ADD = Problem(
    id="t/add",
    prompt=STUB,
    kind="code",
    tests="def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(10, -4) == 6\n\ncheck(add)\n",
    entry_point="add",
    examples=("add(2, 3)", "add(-1, 1)"),
)


@pytest.fixture(scope="module")
def grader() -> CodeGrader:
    iso = isolation()
    if not iso.available:
        if in_ci():
            pytest.fail(f"CI must grade code isolated: {iso.reason}", pytrace=False)
        pytest.skip(iso.reason)
    return CodeGrader(timeout=3.0, memory_mb=512)


# -- math -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "reference", "right"),
    [
        ("\\frac{1}{2}", "0.5", True),
        ("1,000", "1000", True),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
        ("The answer is \\boxed{42}.", "42", True),  # a full response: its boxed answer is graded
        ("41", "42", False),
        ("x^2+1", "1+x^2", True),
        (None, "42", False),
    ],
)
def test_math_grader(answer: str | None, reference: str, right: bool) -> None:
    grade = shared_math_grader().grade(Problem("m", "q", "math", reference), answer)
    assert grade.correct is right
    assert grade.status == ("ok" if right else ("no-answer" if answer is None else "wrong"))


# -- code -------------------------------------------------------------------------------------


def test_right_program_passes(grader: CodeGrader) -> None:
    text = "Here it is:\n```python\ndef add(a, b):\n    return a + b\n```"
    grade = grader.grade(ADD, text)
    assert grade.correct and grade.status == "ok"


def test_completion_of_the_stub_passes(grader: CodeGrader) -> None:
    assert grader.grade(ADD, "    return a + b\n").correct


def test_wrong_program_fails_with_the_assertion(grader: CodeGrader) -> None:
    grade = grader.grade(ADD, "```python\ndef add(a, b):\n    return a * b\n```")
    assert not grade.correct and grade.status == "error" and "AssertionError" in grade.detail


def test_no_code_is_wrong(grader: CodeGrader) -> None:
    assert grader.grade(ADD, "I do not know.").status == "no-code"
    assert grader.grade(ADD, None).status == "no-code"


def test_multiprocessing_still_works_inside_the_limits(grader: CodeGrader) -> None:
    program = (
        "import multiprocessing\n"
        "def add(a, b):\n"
        "    with multiprocessing.Pool(2) as pool:\n"
        "        return sum(pool.map(abs, [a, b])) if a >= 0 and b >= 0 else a + b\n"
    )
    assert grader.grade(ADD, program).correct


def test_unloadable_program_fails_with_its_error(grader: CodeGrader) -> None:
    grade = grader.grade(ADD, "def add(a, b):\n    return a + b\nundefined_call()\n")
    assert not grade.correct and grade.status == "error" and "NameError" in grade.detail


def test_grades_are_cached_per_program(monkeypatch: pytest.MonkeyPatch) -> None:
    grader = CodeGrader(timeout=3.0, memory_mb=512)
    text = "def add(a, b):\n    return b + a"
    before = runs_started()
    first = grader.grade(ADD, text)
    assert first.correct and runs_started() - before == 1
    assert grader.grade(ADD, text) == first
    assert grader.grade(ADD, "Here:\n```python\ndef add(a, b):\n    return b + a\n```\n") == first  # same program
    assert runs_started() - before == 1
    grader.grade(ADD, "def add(a, b):\n    return a + b\n")  # another program runs
    assert runs_started() - before == 2


def test_cache_forgets_the_oldest_program() -> None:
    grader = CodeGrader(timeout=3.0, memory_mb=512, cache_size=1)
    one, two = "def add(a, b):\n    return a + b\n", "def add(a, b):\n    return b + a\n"
    before = runs_started()
    for text in (one, two, two, one):
        grader.grade(ADD, text)
    assert runs_started() - before == 3


# -- behaviour signatures ----------------------------------------------------------------------


def test_programs_that_agree_on_examples_share_a_signature(grader: CodeGrader) -> None:
    a = grader.behaviour(ADD, "def add(a, b):\n    return a + b\n")
    b = grader.behaviour(ADD, "def add(x, y):\n    # different code, same values\n    return sum([x, y])\n")
    c = grader.behaviour(ADD, "def add(a, b):\n    return a - b\n")
    assert a is not None and a == b
    assert c is not None and c != a


def test_exceptions_and_hangs_are_part_of_the_signature(grader: CodeGrader) -> None:
    raises = grader.behaviour(ADD, "def add(a, b):\n    raise ValueError\n")
    raises_too = grader.behaviour(ADD, "def add(a, b):\n    raise ValueError('other message')\n")
    hangs = grader.behaviour(ADD, "def add(a, b):\n    while True: pass\n")
    assert raises == raises_too
    assert hangs is not None and hangs != raises


def test_signature_is_cached_per_program(grader: CodeGrader) -> None:
    text = "def add(a, b):\n    return a * 1 + b\n"
    before = runs_started()
    assert grader.behaviour(ADD, text) == grader.behaviour(ADD, text) is not None
    assert runs_started() - before == 1


def test_program_that_does_not_load_has_no_signature(grader: CodeGrader) -> None:
    assert grader.behaviour(ADD, "def add(a, b):\n    return undefined_name\nundefined_call()\n") is None
    assert grader.behaviour(ADD, "no code at all ::") is None


def test_signature_without_examples_is_the_syntax_tree(grader: CodeGrader) -> None:
    bare = Problem("t/x", "def f(x):\n", "code", tests="", entry_point="f")
    one = grader.behaviour(bare, "def f(x):\n    return x  # comment\n")
    same = grader.behaviour(bare, "def f(x):\n\n    return x\n")
    other = grader.behaviour(bare, "def f(x):\n    return -x\n")
    assert one == same != other


def test_candidate_program_prefers_the_code_block() -> None:
    text = "Explanation.\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    assert candidate_program(ADD, text) == "def add(a, b):\n    return a + b"
    assert candidate_program(ADD, "    return a + b").startswith(STUB)
    assert candidate_program(ADD, "not python at all ::") is None
