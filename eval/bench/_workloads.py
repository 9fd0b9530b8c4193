"""Workloads: which queries arrive, which program runs each, and their deadlines.

A workload is a mix of *presets*. A preset fixes an algorithm with its knobs, a prompt pool
(with reference answers, for accuracy), a base deadline, and where the simulated engine
takes its token content from (replayed traces or the synthetic difficulty model). A query's
deadline is ``slo_scale * base_deadline``.

The paper's online settings (arXiv 2412.20993, section 6) are the named presets, with their
base deadlines; the knobs are ours:

========  =========  =================  =============  ===============================
preset    algorithm  prompts            base deadline  simulated content
========  =========  =================  =============  ===============================
sc-math   sc         MATH (100, traces) 240 s          replay of ``math-qwen25`` traces
sc-code   sc         HumanEval (164)    120 s          replay of ``humaneval_codet`` traces
mcts      mcts       GSM8K (200)        60 s           synthetic (the paper uses ASDiv)
rebase    rebase     GSM8K (200)        300 s          synthetic
cot       cot        MATH (100)         240 s          synthetic
========  =========  =================  =============  ===============================

Honest budgets: a replayed query never asks for more samples than its trace recorded
(``max_samples`` is capped at the recorded count, and :meth:`Workload.budget_notes` says so),
so no recorded sample is replayed twice, for any policy.

``mixed`` draws each query from ``sc-math``, ``mcts`` and ``rebase`` with equal weight.
``sc-code`` is not the paper's: a trace set whose samples rarely agree, where early exit is weak
(its base deadline is about ten times a full-budget query's unloaded p90 latency, as sc-math's is).
A FILE is either a trace file (trace format of the design doc: replayed ``sc`` on its
questions), or a JSONL of queries ``{"prompt", "algorithm", "params", "reference",
"base_deadline"}`` (missing fields take the ``sc-math`` preset's values).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from algorithms import ALGORITHMS
from certaindex import approx_tokens, canonical_key
from dynasor import ConfigError
from dynasor.engine.base import EngineRequest, prompt_text
from dynasor.engine.sim import (
    Draft,
    ReplaySource,
    Source,
    SyntheticChainSource,
    SyntheticSource,
    SyntheticStepSource,
    query_rng,
)
from dynasor.engine.traces import TraceRecord, load_traces

__all__ = [
    "PRESETS",
    "WORKLOADS",
    "Preset",
    "Workload",
    "WorkloadQuery",
    "load_workload",
]

Content = Literal["replay", "synthetic", "chain", "steps"]
"""Simulated content: replayed samples, synthetic samples, a synthetic chain of thought (probed
in chunks), or synthetic reasoning steps (tree search)."""


@dataclass(frozen=True, slots=True)
class Prompt:
    """One question of a prompt pool."""

    id: str
    prompt: str
    reference: str | None
    record: TraceRecord | None = None
    """The recorded samples, when the pool comes from traces."""


@dataclass(frozen=True)
class Preset:
    """One algorithm on one prompt pool with a base deadline."""

    name: str
    algorithm: str
    params: Mapping[str, Any]
    base_deadline: float
    """Seconds; a query's deadline is ``slo_scale`` times this."""
    pool: str
    """Prompt pool: a bundled trace set, ``gsm8k-200``, or a file."""
    content: Content = "replay"
    """Where the simulated engine's completions come from."""
    description: str = ""
    synthetic: Mapping[str, Any] = field(default_factory=dict)
    """Options of the synthetic source when ``content`` is not ``replay``."""
    no_early_exit: Mapping[str, Any] = field(default_factory=dict)
    """Knobs that switch off the program's own early exit, for runs without early exit."""


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "sc-math",
            "sc",
            {"max_samples": 8, "samples_per_round": 2, "max_tokens": 2048},
            240.0,
            "math-qwen25",
            "replay",
            "Self-consistency on MATH (the 8 recorded Qwen2.5-Math samples of each question), 240 s base deadline",
        ),
        Preset(
            "sc-code",
            "sc",
            {"max_samples": 16, "samples_per_round": 2, "max_tokens": 300, "answer_kind": "code"},
            120.0,
            "humaneval_codet",
            "replay",
            "Self-consistency on HumanEval (recorded CodeGen-16B programs, answers = behaviour on model-written "
            "tests; low agreement, so early exit saves little), 120 s base deadline",
        ),
        Preset(
            "sc-math-synthetic",
            "sc",
            {"max_samples": 16, "samples_per_round": 2, "max_tokens": 2048},
            240.0,
            "math-qwen25",
            "synthetic",
            "Self-consistency on MATH prompts with synthetic answers and lengths, 240 s base deadline",
        ),
        Preset(
            "mcts",
            "mcts",
            {"iterations": 6, "width": 4},
            60.0,
            "gsm8k-200",
            "steps",
            "MCTS on grade-school math (GSM8K prompts; the paper uses ASDiv), 60 s base deadline",
        ),
        Preset(
            "rebase",
            "rebase",
            {"width": 8},
            300.0,
            "gsm8k-200",
            "steps",
            "REBASE on GSM8K, 300 s base deadline",
        ),
        Preset(
            "cot",
            "cot",
            {"max_tokens": 4096},
            240.0,
            "math-qwen25",
            "chain",
            "Chain of thought with probes on MATH, 240 s base deadline",
            no_early_exit={"early_exit": False},
        ),
    )
}

WORKLOADS: dict[str, tuple[str, ...]] = {name: (name,) for name in PRESETS} | {
    "mixed": ("sc-math", "mcts", "rebase"),
}
"""Named workloads: the presets their queries are drawn from (equal weight)."""


@dataclass(frozen=True, slots=True)
class WorkloadQuery:
    """One query of a run, before it arrives."""

    id: str
    preset: Preset
    prompt: Prompt
    params: Mapping[str, Any]
    algorithm: str

    @property
    def base_deadline(self) -> float:
        return self.preset.base_deadline


@cache
def _bundled_pool(name: str) -> tuple[Prompt, ...]:
    folder = resources.files("eval.bench").joinpath("data")
    path = folder.joinpath(f"{name}.jsonl")
    if path.is_file():
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return tuple(Prompt(str(r["id"]), str(r["prompt"]), r.get("reference")) for r in rows)
    records = load_traces(name)
    return tuple(Prompt(r.id, r.prompt, r.reference, r) for r in records)


def _pool(name: str) -> tuple[Prompt, ...]:
    try:
        return _bundled_pool(name)
    except FileNotFoundError as exc:
        raise ConfigError(f"no prompt pool {name!r}: {exc}") from exc


class Workload:
    """A mix of presets; draws the queries of a run and builds the simulated engine's source.

    Query ``i`` of a run depends on ``(seed, i)`` only, so every policy and rate sees the
    same sequence of questions.
    """

    def __init__(
        self,
        name: str,
        presets: Sequence[Preset],
        pools: Mapping[str, Sequence[Prompt]] | None = None,
        *,
        recorded: Mapping[str, TraceRecord] | None = None,
    ):
        if not presets:
            raise ConfigError("a workload needs at least one preset")
        self.name = name
        self.presets = tuple(presets)
        self._pools = dict(pools or {})
        self.recorded = dict(recorded or {})
        """Samples recorded on a live engine, by query id: replayed instead of the preset's content."""

    def with_recorded(self, path: str | Path) -> Workload:
        """This workload with the samples a real-engine run recorded (``record_traces``) replayed.

        Query ids depend on the seed and the query's index only, so with the same seed the
        simulated twin asks each question the live engine was asked and replays its answers.
        """
        records = {r.id: r for r in load_traces(path)}
        return Workload(self.name, self.presets, self._pools, recorded=records)

    def pool(self, preset: Preset) -> Sequence[Prompt]:
        if preset.pool not in self._pools:
            self._pools[preset.pool] = _pool(preset.pool)
        return self._pools[preset.pool]

    def check(self) -> None:
        """Raise :class:`ConfigError` when a preset's algorithm is not registered."""
        missing = sorted({p.algorithm for p in self.presets} - set(ALGORITHMS))
        if missing:
            raise ConfigError(
                f"workload {self.name!r} needs algorithm(s) {', '.join(missing)}, which are not available "
                f"(registered: {', '.join(sorted(ALGORITHMS))})"
            )

    def draw(
        self, index: int, seed: int, params: Mapping[str, Any] | None = None, *, early_exit: bool = True
    ) -> WorkloadQuery:
        """The ``index``-th query of a run (``params`` override the preset's knobs).

        ``early_exit=False`` also applies the preset's knobs that switch off the program's own
        early exit (the allocator's is switched off by the runner).
        """
        rng = query_rng(seed, "bench-query", index)
        preset = self.presets[rng.randrange(len(self.presets))]
        pool = self.pool(preset)
        prompt = pool[rng.randrange(len(pool))]
        query_id = f"{preset.name}-{index}"
        knobs = {**preset.params, **({} if early_exit else preset.no_early_exit), **(params or {})}
        recorded = self._recorded_samples(query_id, preset, prompt)
        if recorded is not None and "max_samples" in knobs and int(knobs["max_samples"]) > recorded:
            knobs["max_samples"] = recorded  # never replay a recorded sample twice
        return WorkloadQuery(id=query_id, preset=preset, prompt=prompt, params=knobs, algorithm=preset.algorithm)

    def _recorded_samples(self, query_id: str, preset: Preset, prompt: Prompt) -> int | None:
        """How many samples the query's replayed trace holds (None: its content is not replayed)."""
        if query_id in self.recorded:
            return len(self.recorded[query_id].samples)
        if preset.content == "replay" and prompt.record is not None:
            return len(prompt.record.samples)
        return None

    def budget_notes(self, params: Mapping[str, Any] | None = None) -> list[str]:
        """One line per preset whose ``max_samples`` a replayed trace set caps (empty: none capped)."""
        notes = []
        for preset in self.presets:
            asked = {**preset.params, **(params or {})}.get("max_samples")
            if asked is None:
                continue
            counts = sorted(
                {len(p.record.samples) for p in self.pool(preset) if p.record is not None}
                if preset.content == "replay"
                else set()
            )
            if self.recorded:
                counts = sorted({len(r.samples) for r in self.recorded.values()})
            if counts and int(asked) > counts[0]:
                held = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
                notes.append(
                    f"{preset.name}: max_samples {asked} capped at the {held} samples recorded per question "
                    "(no recorded sample is replayed twice)"
                )
        return notes

    def source(self, seed: int) -> BenchSource:
        """Token content for the simulated engine (replayed or synthetic, per preset)."""
        return BenchSource(self, seed)

    @property
    def needs_scorer(self) -> bool:
        return any(p.algorithm in ("mcts", "rebase", "bon") for p in self.presets)


class BenchSource(Source):
    """Routes each query to its preset's source: replay of its assigned trace, or synthetic."""

    def __init__(self, workload: Workload, seed: int) -> None:
        self.workload = workload
        self.seed = seed
        self._queries: dict[str, WorkloadQuery] = {}
        self._replay: dict[str, _AssignedReplay] = {}
        self._synthetic: dict[str, Source] = {}
        self._prompt_tokens: dict[str, int] = {}
        self.replayed_twice = 0
        """Recorded samples drawn a second time for the same query (the budget cap keeps it 0)."""

    def register(self, query: WorkloadQuery) -> None:
        """Tell the source which question ``query.id`` asks (before its first request)."""
        self._queries[query.id] = query

    def _source_for(self, query_id: str) -> Source:
        query = self._queries.get(query_id)
        if query is None:
            raise KeyError(f"query {query_id!r} was not registered with the bench source")
        recorded = self.workload.recorded.get(query_id)
        if recorded is not None:
            replay = self._replay.get("")
            if replay is None:
                # In recorded order: the twin sees each query's samples as the live run did.
                recorded_records = list(self.workload.recorded.values())
                replay = self._replay[""] = _AssignedReplay(recorded_records, seed=self.seed, in_order=True)
            replay.assignment[query_id] = recorded
            return replay
        preset = query.preset
        if preset.content == "replay" and query.prompt.record is not None:
            replay = self._replay.get(preset.pool)
            if replay is None:
                records = [p.record for p in self.workload.pool(preset) if p.record is not None]
                replay = self._replay[preset.pool] = _AssignedReplay(records, seed=self.seed)
            replay.assignment[query_id] = query.prompt.record
            return replay
        synthetic = self._synthetic.get(preset.name)
        if synthetic is None:
            kind = {"chain": SyntheticChainSource, "steps": SyntheticStepSource}.get(preset.content, SyntheticSource)
            synthetic = self._synthetic[preset.name] = kind(seed=self.seed, **preset.synthetic)
        return synthetic

    def draft(self, request: EngineRequest) -> Draft:
        draft = self._source_for(request.query_id).draft(request)
        if draft.meta.get("reused"):
            self.replayed_twice += 1
        if draft.prompt_tokens is not None:
            return draft
        # Every sample of a query has the same prompt: estimate its size once, not per request.
        tokens = self._prompt_tokens.get(request.query_id)
        if tokens is None:
            tokens = self._prompt_tokens[request.query_id] = max(approx_tokens(prompt_text(request.request.prompt)), 1)
        return replace(draft, prompt_tokens=tokens)

    def reference(self, query_id: str) -> str | None:
        query = self._queries.get(query_id)
        if query is None:
            return None
        if query_id in self.workload.recorded:
            return self.workload.recorded[query_id].reference
        if query.preset.content == "replay" and query.prompt.record is not None:
            return query.prompt.reference
        return self._source_for(query_id).reference(query_id)

    def grade(self, query_id: str, answer: str | None) -> bool | None:
        """Whether ``answer`` is right: the recorded correctness of a replayed sample that gave it,
        else equality with the reference (None: no way to tell)."""
        query = self._queries.get(query_id)
        record = self.workload.recorded.get(query_id)
        if record is None and query is not None and query.preset.content == "replay":
            record = query.prompt.record
        if record is not None and answer is not None:
            key = canonical_key(answer)
            for sample in record.samples:
                if sample.correct is not None and sample.answer is not None and canonical_key(sample.answer) == key:
                    return sample.correct
        reference = self.reference(query_id)
        if reference is None:
            return None
        return answer is not None and canonical_key(answer) == canonical_key(reference)


class _AssignedReplay(ReplaySource):
    """A replay source whose query-to-record mapping is given, not guessed from the prompt."""

    def __init__(self, records: Sequence[TraceRecord], *, seed: int, in_order: bool = False) -> None:
        super().__init__(records, seed=seed, in_order=in_order)
        self.assignment: dict[str, TraceRecord] = {}

    def record_for(self, request: EngineRequest) -> TraceRecord:
        return self.assignment.get(request.query_id) or super().record_for(request)


def _load_file(path: Path) -> Workload:
    base = PRESETS["sc-math"]
    if path.suffix == ".gz":  # only trace files come compressed
        row: dict[str, Any] = {"samples": None}
    else:
        first = next((line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()), "")
        try:
            row = json.loads(first)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not JSONL ({exc})") from exc
    if "samples" in row:  # a trace file: replay sc on its questions
        records = load_traces(path)
        pool = [Prompt(r.id, r.prompt, r.reference, r) for r in records]
        preset = Preset(path.stem, "sc", base.params, base.base_deadline, str(path), "replay", f"sc on {path.name}")
        return Workload(path.stem, [preset], {str(path): pool})
    presets: dict[tuple[str, str, float], Preset] = {}
    pools: dict[str, list[Prompt]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            prompt = str(raw["prompt"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}:{number}: not a query line ({exc})") from exc
        algorithm = str(raw.get("algorithm", base.algorithm))
        params = raw.get("params", base.params if algorithm == base.algorithm else {})
        deadline = float(raw.get("base_deadline", base.base_deadline))
        key = (algorithm, json.dumps(params, sort_keys=True), deadline)
        if key not in presets:
            name = f"{path.stem}-{len(presets)}"
            presets[key] = Preset(name, algorithm, params, deadline, f"{path}#{name}", "synthetic", str(path))
        pool = pools.setdefault(presets[key].pool, [])
        pool.append(Prompt(str(raw.get("id", f"{path.stem}-{number}")), prompt, raw.get("reference")))
    if not presets:
        raise ConfigError(f"{path}: no queries")
    return Workload(path.stem, list(presets.values()), pools)


def load_workload(name: str) -> Workload:
    """A named workload (``sc-math``, ``mcts``, ``rebase``, ``cot``, ``mixed``, ...) or a FILE.

    >>> load_workload("mixed").name
    'mixed'
    >>> load_workload("nope")
    Traceback (most recent call last):
    ...
    dynasor._exceptions.ConfigError: Unknown workload 'nope' (choose from sc-math, sc-code, sc-math-synthetic, mcts, \
rebase, cot, mixed, or give a JSONL file)
    """
    if name in WORKLOADS:
        return Workload(name, [PRESETS[p] for p in WORKLOADS[name]])
    path = Path(name)
    if path.is_file():
        return _load_file(path)
    raise ConfigError(f"Unknown workload {name!r} (choose from {', '.join(WORKLOADS)}, or give a JSONL file)")
