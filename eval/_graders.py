"""Graders: is an answer right? Math through math-verify, multiple choice by option letter, code
by running it against tests.

Math answers go through :class:`certaindex.Equivalence` (canonical keys and exact numbers
first, math-verify in a killable worker for the rest). Code runs in the OS sandbox of
:mod:`eval._sandbox` (bubblewrap namespaces, seccomp, resource limits; see docs/sandbox.md),
and its grade is the harness's verified report, never the program's exit status.

For self-consistency on code, :meth:`CodeGrader.behaviour` runs a candidate on the problem's
visible example calls and returns a *behaviour signature*: two programs have equal
signatures exactly when they return the same values (or raise the same exception types) on
those inputs, so agreement between samples means the programs agree.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from certaindex import Equivalence, choice_key, extract_answer, extract_code, extract_option
from eval._datasets import Problem
from eval._sandbox import Check, CheckRun, Limits, run_checks

__all__ = ["CodeGrader", "Grade", "MathGrader", "candidate_program", "grade_choice", "shared_math_grader"]


@dataclass(frozen=True, slots=True)
class Grade:
    """Outcome of grading one answer."""

    correct: bool
    status: str
    """``ok``/``wrong``/``no-answer`` (math); ``ok``/``error``/``timeout``/``no-code`` (code)."""
    detail: str = ""


class MathGrader:
    """Compares a math answer with the reference (math-verify behind cheap exact paths).

    Comparisons run one at a time on a private thread, so an event loop never blocks on a
    symbolic comparison and the equivalence cache is never shared between threads.
    """

    def __init__(self, timeout: float = 5.0) -> None:
        self.equivalence = Equivalence(timeout)
        self._lock = threading.Lock()

    def grade(self, problem: Problem, answer: str | None) -> Grade:
        """Grade ``answer`` (an extracted final answer, or a full response text) against the reference.

        >>> from eval._datasets import Problem
        >>> MathGrader().grade(Problem("p", "1/2 = ?", "math", "0.5"), "\\\\frac{1}{2}").correct
        True
        """
        if answer is None or problem.reference is None:
            return Grade(False, "no-answer")
        if "\\boxed" in answer or len(answer) > 200:
            answer = extract_answer(answer) or answer
        with self._lock:
            same = self.equivalence.equal(answer, problem.reference)
        return Grade(same, "ok" if same else "wrong")

    async def grade_async(self, problem: Problem, answer: str | None) -> Grade:
        return await asyncio.to_thread(self.grade, problem, answer)

    def close(self) -> None:
        self.equivalence.close()


def grade_choice(problem: Problem, answer: str | None) -> Grade:
    """Grade a multiple-choice answer: its option letter against the reference's.

    ``answer`` is a letter in any dress (``C``, ``(c)``, ``\\text{(C)}``), an option's text or
    value, or a whole response (the choice it states is read from it).

    >>> p = Problem("q", "Capital of France?", "choice", "B", meta={"options": {"A": "Rome", "B": "Paris"}})
    >>> grade_choice(p, "(b)").correct, grade_choice(p, "Paris").correct, grade_choice(p, "the answer is A").status
    (True, True, 'wrong')
    """
    options = problem.meta.get("options") or None
    if answer is None or problem.reference is None:
        return Grade(False, "no-answer")
    letter = choice_key(answer, options) or choice_key(extract_option(answer, options), options)
    if letter is None:
        return Grade(False, "no-answer")
    same = letter == choice_key(problem.reference, options)
    return Grade(same, "ok" if same else "wrong")


_SHARED: MathGrader | None = None

# CPython 3.11 keeps ast.parse's recursion depth in state shared by all threads: two parses in
# grading threads at once can fail with "AST constructor recursion depth mismatch".
_PARSE_LOCK = threading.Lock()


def _parse(code: str) -> ast.Module:
    with _PARSE_LOCK:
        return ast.parse(code)


def shared_math_grader() -> MathGrader:
    """A process-wide :class:`MathGrader` (its math-verify worker takes seconds to start)."""
    global _SHARED
    if _SHARED is None:
        _SHARED = MathGrader()
    return _SHARED


def candidate_program(problem: Problem, text: str) -> str | None:
    """The program a response proposes: its last code block (or the text itself, when it
    parses as Python), completed with the prompt's stub when it lacks the entry point's ``def``.
    """
    code = extract_code(text)
    if code is None:
        # No code block: the text is a program, or a body completing the prompt's stub.
        for attempt in (text, problem.prompt + text):
            try:
                _parse(attempt)
            except SyntaxError:
                continue
            if problem.entry_point is None or f"def {problem.entry_point}" in attempt:
                return attempt
        return None
    entry = problem.entry_point
    if entry and f"def {entry}" not in code:
        # A completion of the stub (HumanEval style): the body follows the prompt.
        code = problem.prompt + code
    return code


class CodeGrader:
    """Runs candidate programs against a problem's tests in the sandbox.

    Parameters
    ----------
    timeout:
        Wall-clock seconds one run may take (the sandbox and every process in it are killed after).
    memory_mb:
        Address-space limit of each process of a run.
    workers:
        Sandbox runs at once (each is a process; keep it near the core count).
    cache_size:
        Results remembered by (problem, program) hash; repeated grading of the same answer is free.
    unsafe_exec:
        Where no isolation is available, run programs anyway as plain subprocesses (with the same
        limits) instead of raising :class:`~eval._sandbox.SandboxUnavailable`.
    limits:
        Further bounds (processes, output, tmpfs); ``timeout`` and ``memory_mb`` override its fields.
    """

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        memory_mb: int = 1024,
        workers: int = 2,
        cache_size: int = 4096,
        unsafe_exec: bool = False,
        limits: Limits | None = None,
    ):
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.cache_size = cache_size
        self.unsafe_exec = unsafe_exec
        self.limits = replace(limits or Limits(), timeout=timeout, memory_mb=memory_mb)
        self._slots = threading.BoundedSemaphore(max(1, workers))
        self._cache: OrderedDict[tuple[str, str, str], object] = OrderedDict()
        self._cache_lock = threading.Lock()

    # -- public --------------------------------------------------------------------------------

    def grade(self, problem: Problem, response: str | None) -> Grade:
        """Run the program in ``response``, then the problem's tests; correct when the harness
        reports (under this run's token) that the program loaded and the tests ran without raising."""
        if problem.tests is None:
            raise ValueError(f"problem {problem.id} has no tests to grade code against")
        code = None if response is None else candidate_program(problem, response)
        if code is None:
            return Grade(False, "no-code")
        hit, cached = self._cached("grade", problem, code)
        if hit:
            return cached  # type: ignore[return-value]
        run = self._run(code, [Check(problem.tests, seconds=self.timeout)])
        if run.passed:
            grade = Grade(True, "ok")
        else:
            timed_out = run.result.status == "timeout" or "T" in run.outcomes or run.detail == "load: timed out"
            grade = Grade(False, "timeout" if timed_out else "error", _tail(run.detail))
        self._store("grade", problem, code, grade)
        return grade

    async def grade_async(self, problem: Problem, response: str | None) -> Grade:
        return await asyncio.to_thread(self.grade, problem, response)

    def behaviour(self, problem: Problem, response: str | None, *, calls: Sequence[str] | None = None) -> str | None:
        """The behaviour signature of the program in ``response`` on the visible examples.

        None when there is no program, it fails to load, or no verified report came back.
        Without example calls the signature is the program's normalised syntax tree (agreement
        then means identical code up to formatting and comments).
        """
        code = None if response is None else candidate_program(problem, response)
        if code is None:
            return None
        calls = tuple(problem.examples if calls is None else calls)
        if not calls:
            try:
                return "ast:" + _digest(ast.dump(_parse(code)))
            except SyntaxError:
                return None
        hit, cached = self._cached("behaviour", problem, code)
        if hit:
            return cached  # type: ignore[return-value]
        seconds = max(0.5, self.timeout / (2 * len(calls)))
        run = self._run(code, [Check(call, seconds=seconds, mode="eval") for call in calls])
        signature = None
        if run.verified and run.loaded:
            signature = _digest("\x1f".join(_signature_item(o) for o in run.outcomes))
        self._store("behaviour", problem, code, signature)
        return signature

    # -- internals -----------------------------------------------------------------------------

    def _run(self, program: str, checks: list[Check]) -> CheckRun:
        with self._slots:
            return run_checks(program, checks, limits=self.limits, unsafe_exec=self.unsafe_exec)

    def _cached(self, what: str, problem: Problem, code: str) -> tuple[bool, object]:
        key = (problem.id, what, _digest(code))
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return True, self._cache[key]
        return False, None

    def _store(self, what: str, problem: Problem, code: str, value: object) -> None:
        with self._cache_lock:
            self._cache[(problem.id, what, _digest(code))] = value
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)


def _signature_item(outcome: str) -> str:
    """A check's outcome as it enters a behaviour signature: the value, or how it failed."""
    if outcome.startswith("="):
        return outcome
    if outcome == "T":
        return "!timeout"
    return "!" + ("AssertionError" if outcome == "F" else outcome.removeprefix("E"))


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=8).hexdigest()


def _tail(text: str, limit: int = 400) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]
