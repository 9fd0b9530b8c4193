"""Evaluation datasets: the bundled math and code sets, local files, hub names, trace sets.

Every source becomes a list of :class:`Problem`. Files are read through Hugging Face
``datasets`` (its ``json`` and ``parquet`` loaders), so a hub name such as ``openai/gsm8k``
works too on a machine that reaches the hub. Bundled sets live in ``eval/data/<name>/`` with
their PROVENANCE.md (source commit, licence):

=========  ====  =====  ===============================================================
name       kind  rows   content
=========  ====  =====  ===============================================================
gsm8k      math  1319   GSM8K test (reference: the number after ``####``)
math500    math  500    MATH-500 (PRM800K test split of MATH)
aime24     math  30     AIME 2024 I + II
aime25     math  30     AIME 2025 I + II
amc23      math  40     AMC 2023
humaneval  code  164    HumanEval (tests: ``check(entry_point)``)
mbpp       code  427    MBPP sanitized (tests: ``test_list``)
=========  ====  =====  ===============================================================

A recorded trace set (``math-qwen25``, ``humaneval_codet`` or a trace file, see
:mod:`dynasor.engine.traces`) is a dataset too: its questions and references.

Multiple choice (kind ``choice``): a local file with the question, its options (a list lettered
A, B, ... or a ``{letter: text}`` mapping, in an ``options`` or ``choices`` column) and the
answer (a letter in any dress, an option's text, or a 0-based index). The reference becomes the
option letter, the options are listed under the question when it does not show them, and
answers are graded and clustered by letter (:func:`certaindex.choice_key`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from certaindex import choice_key, normalize_options
from dynasor import ConfigError

__all__ = [
    "BUNDLED",
    "KINDS",
    "DatasetSpec",
    "Problem",
    "choice_prompt",
    "entry_calls",
    "load_problems",
]

Kind = Literal["math", "code", "choice"]
KINDS: tuple[str, ...] = ("math", "code", "choice")

DATA = Path(__file__).parent / "data"


@dataclass(frozen=True, slots=True)
class Problem:
    """One evaluation question."""

    id: str
    prompt: str
    """What the model is asked (a plain question, or a function stub for code)."""
    kind: Kind
    reference: str | None = None
    """Math: the correct answer. Code: a reference solution, when known (never graded against)."""
    tests: str | None = None
    """Code: a script that raises unless the candidate program, run before it, is right."""
    entry_point: str | None = None
    """Code: the function the candidate must define."""
    examples: tuple[str, ...] = ()
    """Code: visible calls of the entry point (from the prompt); candidates that return the same
    values on them are the same answer for self-consistency."""
    meta: Mapping[str, Any] = field(default_factory=dict)


# --- row converters ---------------------------------------------------------------------------


def _number_text(value: Any) -> str | None:
    """A reference as text; a float that is an integer loses its ``.0`` (AMC stores 27.0)."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def entry_calls(text: str, entry_point: str) -> tuple[str, ...]:
    """Call expressions of ``entry_point`` in ``text`` (its definition excluded), deduplicated.

    >>> entry_calls("def f(x):\\n    '''>>> f(1)\\n    2\\n    f([1, (2)]) == 3'''", "f")
    ('f(1)', 'f([1, (2)])')
    """
    calls: list[str] = []
    for match in re.finditer(rf"(?<![\w.]){re.escape(entry_point)}\s*\(", text):
        before = text[max(0, match.start() - 4) : match.start()]
        if before.endswith("def "):
            continue
        depth, i = 0, match.end() - 1
        while i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
            if depth == 0:
                break
        call = " ".join(text[match.start() : i].split())
        if depth == 0 and call not in calls:
            try:
                compile(call, "<example>", "eval")
            except SyntaxError:
                continue
            calls.append(call)
    return tuple(calls)


def _gsm8k(row: Mapping[str, Any], index: int) -> Problem:
    answer = str(row["answer"])
    final = answer.rsplit("####", 1)[-1].strip().replace(",", "")
    return Problem(f"gsm8k-{index}", str(row["question"]).strip(), "math", final, meta={"solution": answer})


def _math500(row: Mapping[str, Any], index: int) -> Problem:
    meta = {k: row[k] for k in ("subject", "level") if k in row}
    return Problem(str(row.get("unique_id") or f"math500-{index}"), row["problem"], "math", row["answer"], meta=meta)


def _competition(prefix: str) -> Callable[[Mapping[str, Any], int], Problem]:
    def convert(row: Mapping[str, Any], index: int) -> Problem:
        prompt = str(row.get("problem") or row.get("prompt") or row.get("question"))
        # The QwQ copy of AIME 2025 carries the instruction in the prompt; programs add their own.
        prompt = prompt.split("\nPlease reason step by step")[0].strip()
        ident = row.get("id")
        return Problem(f"{prefix}-{ident if ident is not None else index}", prompt, "math", _number_text(row["answer"]))

    return convert


def _humaneval(row: Mapping[str, Any], index: int) -> Problem:
    entry = str(row["entry_point"])
    return Problem(
        id=str(row["task_id"]),
        prompt=str(row["prompt"]),
        kind="code",
        reference=str(row.get("canonical_solution") or "") or None,
        tests=f"{row['test']}\n\ncheck({entry})\n",
        entry_point=entry,
        examples=entry_calls(str(row["prompt"]), entry),
    )


def _mbpp(row: Mapping[str, Any], index: int) -> Problem:
    tests = [str(t) for t in row["test_list"]]
    code = str(row.get("code") or "")
    names = re.findall(r"^def\s+(\w+)\s*\(", code, flags=re.M)
    entry = next((n for n in reversed(names) if any(f"{n}(" in t for t in tests)), names[-1] if names else None)
    visible = tests[0] if tests else ""
    prompt = f"{str(row['prompt']).strip()}\nYour code should pass this test:\n{visible}"
    imports = "\n".join(str(i) for i in row.get("test_imports") or ())
    return Problem(
        id=f"Mbpp/{row['task_id']}",
        prompt=prompt,
        kind="code",
        reference=code or None,
        tests=f"{imports}\n" + "\n".join(tests) + "\n",
        entry_point=entry,
        examples=entry_calls(visible, entry) if entry else (),
    )


@dataclass(frozen=True, slots=True)
class DatasetSpec:
    """A bundled dataset: its file under ``eval/data`` and how a row becomes a :class:`Problem`."""

    name: str
    kind: Kind
    path: Path
    convert: Callable[[Mapping[str, Any], int], Problem]
    description: str


def _spec(name: str, kind: Kind, convert: Callable[[Mapping[str, Any], int], Problem], description: str) -> DatasetSpec:
    return DatasetSpec(name, kind, DATA / name / "test.jsonl.gz", convert, description)


BUNDLED: dict[str, DatasetSpec] = {
    s.name: s
    for s in (
        _spec("gsm8k", "math", _gsm8k, "GSM8K test, 1319 grade-school word problems (MIT)"),
        _spec("math500", "math", _math500, "MATH-500, the PRM800K test split of MATH (MIT)"),
        _spec("aime24", "math", _competition("aime24"), "AIME 2024 I+II, 30 problems"),
        _spec("aime25", "math", _competition("aime25"), "AIME 2025 I+II, 30 problems"),
        _spec("amc23", "math", _competition("amc23"), "AMC 2023, 40 problems"),
        _spec("humaneval", "code", _humaneval, "HumanEval, 164 Python functions (MIT)"),
        _spec("mbpp", "code", _mbpp, "MBPP sanitized, 427 Python tasks (CC BY 4.0)"),
    )
}
"""Bundled datasets by name."""


# --- generic files ----------------------------------------------------------------------------

# Column names tried, in order, when a local file comes without a field mapping.
_DEFAULT_FIELDS: dict[str, tuple[str, ...]] = {
    "id": ("id", "task_id", "unique_id", "idx", "problem_id"),
    "options": ("options", "choices"),
    "prompt": ("prompt", "problem", "question", "input"),
    "reference": ("reference", "answer", "gt", "solution", "target"),
    "tests": ("tests", "test"),
    "entry_point": ("entry_point",),
}


def _hf_rows(source: str, split: str) -> list[dict[str, Any]]:
    import datasets

    datasets.disable_progress_bars()
    path = Path(source)
    suffixes = "".join(path.suffixes).lower()
    if path.exists():
        builder = "parquet" if ".parquet" in suffixes else "json"
        dataset = datasets.load_dataset(builder, data_files=str(path), split="train")
    else:
        dataset = datasets.load_dataset(source, split=split)
    return [dict(row) for row in dataset]


def _map_row(row: Mapping[str, Any], index: int, fields: Mapping[str, str], kind: Kind) -> Problem:
    def pick(name: str) -> Any:
        if name in fields:
            column = fields[name]
            if column not in row:
                raise ConfigError(f"field {name}={column}: no column {column!r} (columns: {', '.join(row)})")
            return row[column]
        return next((row[c] for c in _DEFAULT_FIELDS[name] if row.get(c) is not None), None)

    prompt = pick("prompt")
    if prompt is None:
        raise ConfigError(f"no prompt column in {', '.join(row)}; map one with --field prompt=COLUMN")
    ident = pick("id")
    entry = pick("entry_point")
    tests = pick("tests")
    if kind == "choice":
        return _choice_problem(str(ident) if ident is not None else f"row-{index}", str(prompt), pick, row)
    reference = _number_text(pick("reference"))
    if kind == "math" and reference is not None and "####" in reference:
        reference = reference.rsplit("####", 1)[-1].strip().replace(",", "")
    if kind == "code" and tests is not None and entry and "check(" in str(tests) and f"check({entry})" not in tests:
        tests = f"{tests}\n\ncheck({entry})\n"
    return Problem(
        id=str(ident) if ident is not None else f"row-{index}",
        prompt=str(prompt),
        kind=kind,
        reference=reference,
        tests=None if tests is None else str(tests),
        entry_point=None if entry is None else str(entry),
        examples=entry_calls(str(prompt), str(entry)) if kind == "code" and entry else (),
    )


def _choice_problem(ident: str, question: str, pick: Callable[[str], Any], row: Mapping[str, Any]) -> Problem:
    raw = pick("options")
    if raw is None and all(c in row for c in "AB"):
        raw = {c: row[c] for c in "ABCDEFGHIJ" if row.get(c) is not None}  # one column per option
    try:
        options = normalize_options(raw)
    except ValueError as exc:
        raise ConfigError(f"{ident}: options: {exc}") from None
    if not options:
        raise ConfigError(f"{ident}: a multiple-choice row needs its options (an options/choices column)")
    return Problem(
        ident, choice_prompt(question, options), "choice", _choice_reference(pick("reference"), options),
        meta={"options": options},
    )  # fmt: skip


def choice_prompt(question: str, options: Mapping[str, str]) -> str:
    """The question with its options listed under it, unless it already shows them.

    >>> print(choice_prompt("Capital of France?", {"A": "Rome", "B": "Paris"}))
    Capital of France?
    (A) Rome
    (B) Paris
    """
    if all(f"({letter})" in question or f"{letter})" in question for letter in options):
        return question
    return question.rstrip() + "\n" + "\n".join(f"({letter}) {text}" for letter, text in options.items())


def _choice_reference(raw: Any, options: Mapping[str, str]) -> str | None:
    """The reference's option letter: an integer is a 0-based index, anything else a letter or option text."""
    if raw is None:
        return None
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw < len(options):
        return list(options)[raw]
    return choice_key(str(raw), options)


def _is_trace_file(path: Path) -> bool:
    if not any(s in (".jsonl", ".json") for s in path.suffixes):
        return False
    opener: Any = open
    if path.suffix == ".gz":
        import gzip

        opener = gzip.open
    with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip():
                try:
                    first = json.loads(line)
                except ValueError:
                    return False
                return isinstance(first, dict) and isinstance(first.get("samples"), list)
    return False


def _trace_kind(ids: Sequence[str], meta: Sequence[Mapping[str, Any]]) -> Kind:
    if any("n_generated_tests" in m for m in meta) or all(i.startswith(("HumanEval/", "Mbpp")) for i in ids):
        return "code"
    return "math"


def _from_traces(path: str | Path, kind: Kind | None) -> list[Problem]:
    from dynasor.engine.traces import load_traces

    records = load_traces(path)
    if kind is None and any(r.options for r in records):
        kind = "choice"
    kind = kind or _trace_kind([r.id for r in records], [r.meta for r in records])
    code_sets: dict[str, Problem] = {}
    if kind == "code":
        # Join recorded code traces to the bundled problems for their tests and examples.
        for name in ("humaneval", "mbpp"):
            code_sets.update({p.id: p for p in load_problems(name)})
    problems = []
    for record in records:
        known = code_sets.get(record.id)
        if known is not None:
            problems.append(known)
        elif kind == "choice":
            options = dict(record.options)
            reference = _choice_reference(record.reference, options) if options else choice_key(record.reference)
            prompt = choice_prompt(record.prompt, options) if options else record.prompt
            problems.append(Problem(record.id, prompt, kind, reference, meta={"trace": True, "options": options}))
        else:
            problems.append(Problem(record.id, record.prompt, kind, record.reference, meta={"trace": True}))
    return problems


def _trace_path(name: str) -> Path | None:
    from dynasor.engine.traces import bundled_traces

    try:
        return bundled_traces(name)
    except FileNotFoundError:
        return None


def load_problems(
    source: str | Path,
    *,
    split: str = "test",
    fields: Mapping[str, str] | None = None,
    kind: Kind | None = None,
    limit: int | None = None,
) -> list[Problem]:
    """Load an evaluation dataset as problems.

    Parameters
    ----------
    source:
        A bundled name (:data:`BUNDLED`), a bundled trace set (``math-qwen25``), a local
        ``.jsonl``/``.json``/``.parquet`` file (optionally gzipped), or a Hugging Face hub name.
    split:
        Split of a hub dataset.
    fields:
        Column mapping for files and hub sets: ``{"prompt": "question", "reference": "answer"}``;
        keys ``id``, ``prompt``, ``reference``, ``tests``, ``entry_point``. Unmapped keys are
        looked up under common column names.
    kind:
        ``math``, ``code`` or ``choice`` (default: the bundled set's; for files ``code`` when a
        ``tests`` column is mapped or present, ``choice`` when an ``options``/``choices`` column
        is, else ``math``; for trace sets ``choice`` when the traces carry options).
    limit:
        Keep the first ``limit`` problems.

    Raises
    ------
    ConfigError
        Unknown source, or a mapping that names a missing column.
    """
    name = str(source)
    if name in BUNDLED and not Path(name).exists():
        spec = BUNDLED[name]
        rows = _hf_rows(str(spec.path), split)
        problems = [spec.convert(row, i) for i, row in enumerate(rows)]
        if kind is not None and kind != spec.kind:
            raise ConfigError(f"{name} is a {spec.kind} dataset, not {kind}")
    else:
        path = Path(name)
        trace = _trace_path(name) if not path.exists() else (path if _is_trace_file(path) else None)
        if trace is not None:
            problems = _from_traces(trace, kind)
        else:
            try:
                rows = _hf_rows(name, split)
            except Exception as exc:  # the hub or a loader failed: say what was tried
                raise ConfigError(
                    f"cannot load dataset {name!r}: not bundled ({', '.join(BUNDLED)}), "
                    f"not a readable file, and the hub load failed ({type(exc).__name__}: {exc})"
                ) from exc
            mapping = dict(fields or {})
            if kind is None:
                has = {
                    name: bool(rows) and (name in mapping or any(c in rows[0] for c in _DEFAULT_FIELDS[name]))
                    for name in ("tests", "options")
                }
                kind = "code" if has["tests"] else "choice" if has["options"] else "math"
            problems = [_map_row(row, i, mapping, kind) for i, row in enumerate(rows)]
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{name}: problem ids are not unique; map a unique column with --field id=COLUMN")
    return problems[:limit] if limit is not None else problems
