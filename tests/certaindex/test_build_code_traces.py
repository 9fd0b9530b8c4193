"""Pieces of ``scripts/build_code_traces.py``: test filtering, truncation, one sandboxed sample."""

from __future__ import annotations

from types import ModuleType

import pytest

from tests._scripts import load_script


@pytest.fixture(scope="module")
def build() -> ModuleType:
    return load_script("build_code_traces")


def test_generated_tests_keep_runnable_asserts_most_frequent_first(build: ModuleType) -> None:
    row = {
        "samples": [
            "\n    add(1, 2) == 3\nassert add(2, 2) == 4\nassert ____ == add(0, 0)",
            "add(1, 2) == 3\nassert add(1,\n",  # the second assert does not compile
            "unrelated(1) == 1",  # does not call the entry point
        ]
    }
    assert build.generated_tests(row, "add") == ["assert add(1, 2) == 3", "assert add(2, 2) == 4"]


def test_truncate_at_humaneval_stop_sequences(build: ModuleType) -> None:
    assert build.truncate("    return 1\n\ndef helper():\n    pass") == "    return 1\n"
    assert build.truncate("    return 1\nprint(f())") == "    return 1"
    assert build.truncate("    # inner comment\n    return 1") == "    # inner comment\n    return 1"


def test_run_sample_signature_and_correctness(build: ModuleType) -> None:
    prompt = "def add(a, b):\n"
    tests = ["assert add(1, 2) == 3", "assert add(1, 1) == 3", "assert add('a', 1) == 'a1'"]
    check = "def check(candidate):\n    assert candidate(2, 3) == 5\n"
    right = build.run_sample(prompt, "    return a + b\n", tests, check, "add")
    assert right == {"loaded": True, "signature": "PFE", "correct": True}
    wrong = build.run_sample(prompt, "    return a - b\n", tests, check, "add")
    assert wrong["signature"] == "FFE" and not wrong["correct"]
    broken = build.run_sample(prompt, "    return (a +\n", tests, check, "add")
    assert not broken["loaded"]


@pytest.mark.slow  # the real check of a looping program runs into its 5 s limit
def test_run_sample_looping_program(build: ModuleType) -> None:
    tests = ["assert add(1, 2) == 3"] * 5
    check = "def check(candidate):\n    assert candidate(2, 3) == 5\n"
    looping = build.run_sample("def add(a, b):\n", "    while True:\n        pass\n", tests, check, "add")
    assert looping == {"loaded": True, "signature": "TTTTT", "correct": False}
