"""Graders: math through math-verify, code in the sandbox (right, wrong, timeouts, escapes)."""

from __future__ import annotations

import time

import pytest

from eval import CodeGrader, Problem, candidate_program, shared_math_grader

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


def test_infinite_loop_times_out_quickly() -> None:
    grader = CodeGrader(timeout=1.0)
    start = time.monotonic()
    grade = grader.grade(ADD, "def add(a, b):\n    while True:\n        pass\n")
    assert grade.status == "timeout" and not grade.correct
    assert time.monotonic() - start < 5.0


def test_fork_bomb_is_contained(grader: CodeGrader) -> None:
    bomb = "import os\ndef add(a, b):\n    return a + b\nwhile True:\n    os.fork()\n"
    start = time.monotonic()
    grade = grader.grade(ADD, bomb)
    assert not grade.correct
    assert time.monotonic() - start < 5.0


def test_multiprocessing_bomb_is_contained(grader: CodeGrader) -> None:
    bomb = (
        "import multiprocessing\ndef add(a, b):\n    return a + b\n"
        "def spin():\n    while True:\n        pass\n"
        "for _ in range(64):\n    multiprocessing.Process(target=spin).start()\n"
    )
    grade = grader.grade(ADD, bomb)
    assert not grade.correct


def test_socket_is_blocked(grader: CodeGrader) -> None:
    sneaky = (
        "import socket\ndef add(a, b):\n"
        "    socket.create_connection(('127.0.0.1', 8011), timeout=1).close()\n"
        "    return a + b\n"
    )
    grade = grader.grade(ADD, sneaky)
    assert not grade.correct and "PermissionError" in grade.detail


def test_memory_hog_is_stopped() -> None:
    grader = CodeGrader(timeout=5.0, memory_mb=256)
    grade = grader.grade(ADD, "def add(a, b):\n    x = bytearray(2**31)\n    return a + b\n")
    assert not grade.correct and grade.status == "error"


def test_grades_are_cached_per_program(grader: CodeGrader) -> None:
    text = "def add(a, b):\n    return b + a\n"
    first = grader.grade(ADD, text)
    start = time.monotonic()
    assert grader.grade(ADD, text) == first
    assert time.monotonic() - start < 0.05


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
