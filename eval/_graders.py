"""Graders: is an answer right? Math through math-verify, code by running it against tests.

Math answers go through :class:`certaindex.Equivalence` (canonical keys and exact numbers
first, math-verify in a killable worker for the rest). Code runs in the sandbox of
:mod:`eval._sandbox`: a fresh temporary directory, a new process group killed on timeout,
address-space, CPU and file-size limits, sockets and subprocesses blocked.

For self-consistency on code, :meth:`CodeGrader.behaviour` runs a candidate on the problem's
visible example calls and returns a *behaviour signature*: two programs have equal
signatures exactly when they return the same values (or raise the same exception types) on
those inputs, so agreement between samples means the programs agree.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from certaindex import Equivalence, extract_answer, extract_code
from eval._datasets import Problem
from eval._sandbox import SandboxResult, run_python

__all__ = ["CodeGrader", "Grade", "MathGrader", "candidate_program", "shared_math_grader"]


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


_SHARED: MathGrader | None = None


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
                ast.parse(attempt)
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


# Runs inside the sandbox after the candidate: each visible call with its own alarm, the
# results written to a duplicate of stdout taken first, so the program cannot hide them.
_BEHAVIOUR = """
import json as _json, os as _os, signal as _signal
_res = _os.fdopen(_os.dup(1), "w")
def _alarm(signum, frame):
    raise TimeoutError
_signal.signal(_signal.SIGALRM, _alarm)
def _call(src, env, seconds):
    _signal.setitimer(_signal.ITIMER_REAL, seconds)
    try:
        return eval(src, env)
    finally:
        _signal.setitimer(_signal.ITIMER_REAL, 0)
_env = {"__name__": "__sandbox__"}
_out = {"loaded": True, "results": []}
_signal.setitimer(_signal.ITIMER_REAL, LOAD_S)
try:
    exec(PROGRAM, _env)
except BaseException:
    _out["loaded"] = False
finally:
    _signal.setitimer(_signal.ITIMER_REAL, 0)
if _out["loaded"]:
    for _c in CALLS:
        try:
            _v = _call(_c, dict(_env), CALL_S)
            _out["results"].append("=" + repr(_v)[:2000])
        except TimeoutError:
            _out["results"].append("!timeout")
        except BaseException as _e:
            _out["results"].append("!" + type(_e).__name__)
_res.write("@@BEHAVIOUR@@" + _json.dumps(_out) + "\\n")
_res.flush()
"""


class CodeGrader:
    """Runs candidate programs against a problem's tests in the sandbox.

    Parameters
    ----------
    timeout:
        Wall-clock seconds one run may take (the process group is killed after).
    memory_mb:
        Address-space limit of a run.
    workers:
        Sandbox runs at once (each is a process; keep it at the core count).
    cache_size:
        Results remembered by (problem, program) hash; repeated grading of the same answer is free.
    """

    def __init__(self, *, timeout: float = 10.0, memory_mb: int = 1024, workers: int = 2, cache_size: int = 4096):
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.cache_size = cache_size
        self._slots = threading.BoundedSemaphore(max(1, workers))
        self._cache: OrderedDict[tuple[str, str, str], object] = OrderedDict()
        self._cache_lock = threading.Lock()

    # -- public --------------------------------------------------------------------------------

    def grade(self, problem: Problem, response: str | None) -> Grade:
        """Run the program in ``response`` followed by the problem's tests; correct when all pass."""
        if problem.tests is None:
            raise ValueError(f"problem {problem.id} has no tests to grade code against")
        code = None if response is None else candidate_program(problem, response)
        if code is None:
            return Grade(False, "no-code")
        hit, cached = self._cached("grade", problem, code)
        if hit:
            return cached  # type: ignore[return-value]
        result = self._run(f"{code}\n\n{problem.tests}")
        grade = Grade(result.status == "ok", result.status, _tail(result.stderr))
        self._store("grade", problem, code, grade)
        return grade

    async def grade_async(self, problem: Problem, response: str | None) -> Grade:
        return await asyncio.to_thread(self.grade, problem, response)

    def behaviour(self, problem: Problem, response: str | None, *, calls: Sequence[str] | None = None) -> str | None:
        """The behaviour signature of the program in ``response`` on the visible examples.

        None when there is no program or it fails to load. Without example calls the
        signature is the program's normalised syntax tree (agreement then means identical code
        up to formatting and comments).
        """
        code = None if response is None else candidate_program(problem, response)
        if code is None:
            return None
        calls = tuple(problem.examples if calls is None else calls)
        if not calls:
            try:
                return "ast:" + _digest(ast.dump(ast.parse(code)))
            except SyntaxError:
                return None
        hit, cached = self._cached("behaviour", problem, code)
        if hit:
            return cached  # type: ignore[return-value]
        script = (
            f"PROGRAM = {code!r}\nCALLS = {list(calls)!r}\n"
            f"LOAD_S = {max(1.0, self.timeout / 4)!r}\nCALL_S = {max(0.5, self.timeout / (2 * len(calls)))!r}\n"
            + _BEHAVIOUR
        )
        result = self._run(script)
        signature: str | None = None
        for line in result.stdout.splitlines():
            if line.startswith("@@BEHAVIOUR@@"):
                out = json.loads(line.removeprefix("@@BEHAVIOUR@@"))
                if out["loaded"]:
                    signature = _digest("\x1f".join(out["results"]))
        self._store("behaviour", problem, code, signature)
        return signature

    async def behaviour_async(self, problem: Problem, response: str | None) -> str | None:
        return await asyncio.to_thread(self.behaviour, problem, response)

    # -- internals -----------------------------------------------------------------------------

    def _run(self, script: str) -> SandboxResult:
        with self._slots:
            return run_python(script, timeout=self.timeout, memory_mb=self.memory_mb)

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


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=8).hexdigest()


def _tail(text: str, limit: int = 400) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]
