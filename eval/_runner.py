"""The batch evaluator: runs a dataset through the runtime, grades, writes resumable results.

Each query runs in up to two *arms*: ``early`` (the configured Certaindex stop rule) and,
with ``compare_baseline``, ``fixed`` (the same program and knobs, no early exit). Both arms
use their own runtime and backend. On replay they draw the same recorded samples in the same
order; on a real engine a program with per-sample seeds (``sc``) asks for seed ``s + i`` for
its ``i``-th sample, ``s`` drawn from the run's seed and the query's id, so both arms draw the
same samples there too (each sample's text digest is recorded, and the report checks it).
Either way the early-exit run is a prefix of the fixed one.

A program that keeps its samples' answer clusters (``sc``) has every sample recorded: its
cluster, its answer's grade (one grade per cluster), its tokens; the reports, the calibration
traces and the sweep replay those with :func:`certaindex.replay`. Every certaindex report is
graded too (was the answer at that step right?), for programs without per-sample answers.

The program's knobs start from the stop rule's (:func:`dynasor.allocator.rule_knobs`: rounds of
the rule's round size, its measure and abstentions) and the answer kind of the dataset; the
knobs given explicitly win.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from algorithms import ALGORITHMS, make_program
from algorithms.protocol import Completion, Program
from dynasor import Budget, ConfigError, Query, QueryResult
from dynasor.allocator import AllocatorConfig, rule_knobs
from dynasor.engine.base import Scorer
from dynasor.runtime import Runtime
from dynasor.sched import DEFAULT_POLICY
from eval._backends import BackendSpec, parse_backend
from eval._datasets import Problem, load_problems
from eval._graders import CodeGrader, candidate_program, grade_choice, shared_math_grader
from eval._programs import KeyedSelfConsistency, chosen_completion
from eval._results import ResultsFile

__all__ = ["EvalConfig", "Evaluator", "run_eval"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class EvalConfig:
    """What ``dynasor eval`` runs."""

    dataset: str
    algorithm: str = "sc"
    params: Mapping[str, Any] = field(default_factory=dict)
    """The algorithm's knobs (``max_samples``, ``samples_per_round``, ``max_tokens``, ...)."""
    backend: str = "sim"
    model: str | None = None
    policy: str = DEFAULT_POLICY
    """Gang policy, a name or a spec with knobs (``dynasor:aging=0.5``)."""
    certaindex: AllocatorConfig | None = None
    """Stop rules of the early-exit arm (None: the bundled ones, :meth:`AllocatorConfig.bundled`)."""
    limit: int | None = None
    concurrency: int = 8
    out: Path = Path("runs/eval")
    compare_baseline: bool = False
    seed: int = 0
    profile: str = "h100-llama3-8b"
    """Cost profile of the simulated engine (``sim`` and ``replay`` backends)."""
    kind: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)
    split: str = "test"
    grade_timeout: float = 10.0
    unsafe_exec: bool = False
    """Run model-written code without isolation where the sandbox is unavailable (never silently)."""
    reextract: bool = False
    """Replay: read every sample's answer from its text, ignoring the answers the trace recorded."""
    api_key: str | None = None
    scorer: str | None = "auto"
    """Reward scorer behind ``ctx.score`` (``mcts``, ``rebase``, reward votes): a name of
    :data:`dynasor.scorers.SCORERS`, ``auto`` (recorded rewards on replay, the synthetic scorer
    on ``sim``, none on an engine URL) or None."""

    @property
    def rules(self) -> AllocatorConfig:
        return self.certaindex or AllocatorConfig.bundled()

    @property
    def rule(self) -> Any:
        """The early-exit arm's stop rule (a :class:`certaindex.StopRule`)."""
        return self.rules.rule_for(self.algorithm)

    def fingerprint(self) -> dict[str, Any]:
        """What must match for a run to resume into an existing results file."""
        return {
            "dataset": self.dataset,
            "algorithm": self.algorithm,
            "params": dict(self.params),
            "backend": self.backend,
            "model": self.model,
            "policy": self.policy,
            "rule": self.rule.to_dict(),
            "deadline_guard": self.rules.deadline_guard,
            "compare_baseline": self.compare_baseline,
            "seed": self.seed,
            "kind": self.kind,
            "fields": dict(self.fields),
            "scorer": self.scorer,
            "reextract": self.reextract,
        }

    def knobs(self) -> dict[str, Any]:
        """The program's knobs: the stop rule's, then the ones given (which win)."""
        return rule_knobs(self.algorithm, self.rule) | dict(self.params)


Progress = Callable[[dict[str, Any]], None]


class Evaluator:
    """Runs problems through the arms, grades them and appends results (see :func:`run_eval`)."""

    def __init__(self, config: EvalConfig, backend: BackendSpec, results: ResultsFile) -> None:
        self.config = config
        self.backend = backend
        self.results = results
        self.math = shared_math_grader()
        self.code = CodeGrader(timeout=config.grade_timeout, unsafe_exec=config.unsafe_exec)
        self.arms: dict[str, Runtime] = {
            "early": Runtime(backend.make(), policy=config.policy, allocator=config.rules, scorer=self._scorer())
        }
        if config.compare_baseline:
            # No thresholds: the program runs to its full budget.
            fixed = AllocatorConfig(deadline_guard=False)
            self.arms["fixed"] = Runtime(backend.make(), policy=config.policy, allocator=fixed, scorer=self._scorer())
        self._recorded: dict[str, Any] = {r.id: r for r in backend.traces} if backend.traces else {}
        self.failed: list[str] = []
        """Queries whose run hit an engine error (not written; a re-run retries them)."""

    def _scorer(self) -> Scorer | None:
        from dynasor.scorers import make_scorer

        name = self.config.scorer
        if name == "auto":
            name = {"replay": "replay", "simulated": "synthetic"}.get(self.backend.kind)
            if name == "synthetic":
                return make_scorer(name, seed=self.config.seed)
        return None if name is None else make_scorer(name)

    async def run(self, problems: list[Problem], on_result: Progress | None = None) -> None:
        todo: asyncio.Queue[Problem] = asyncio.Queue()
        for problem in problems:
            if problem.id not in self.results.done:
                todo.put_nowait(problem)

        async def worker() -> None:
            while not todo.empty():
                problem = todo.get_nowait()
                record = await self.evaluate(problem)
                if record.get("error") or (record.get("baseline") or {}).get("error"):
                    # An engine failure is not an answer: leave the query for the next run.
                    logger.warning("query %s failed, not recorded: %s", problem.id, record.get("error"))
                    self.failed.append(problem.id)
                else:
                    self.results.append(record)
                if on_result is not None:
                    on_result(record)

        try:
            async with asyncio.TaskGroup() as tg:
                for _ in range(max(1, min(self.config.concurrency, todo.qsize()))):
                    tg.create_task(worker())
        finally:
            for runtime in self.arms.values():
                await runtime.aclose()

    async def evaluate(self, problem: Problem) -> dict[str, Any]:
        """Both arms of one problem, graded; the ``results.jsonl`` record."""
        async with asyncio.TaskGroup() as tg:
            tasks = {name: tg.create_task(self._arm(name, runtime, problem)) for name, runtime in self.arms.items()}
        arms = {name: task.result() for name, task in tasks.items()}
        reference = self._reference(problem)
        record: dict[str, Any] = {"id": problem.id, "kind": problem.kind, "reference": reference, **arms["early"]}
        if "fixed" in arms:
            record["baseline"] = arms["fixed"]
        return record

    # -- one arm -------------------------------------------------------------------------------

    async def _arm(self, arm: str, runtime: Runtime, problem: Problem) -> dict[str, Any]:
        program = self._program(problem, arm)
        chosen: list[Completion | None] = []

        def on_event(event: Mapping[str, Any]) -> None:
            if event.get("type") == "report":
                chosen.append(chosen_completion(program))

        query = Query(
            _query_prompt(problem),
            self.config.algorithm,
            self._params(problem, arm),
            budget=Budget(),
            id=problem.id,
        )
        result = await runtime.run(query, program, on_event=on_event)
        trajectory = []
        for point, pick in zip(result.trajectory, chosen, strict=False):
            correct = await self._correct(problem, point.answer, pick, None)
            trajectory.append(
                {
                    "step": point.step,
                    "samples": point.samples,
                    "tokens": point.tokens,
                    "measure": point.measure,
                    "value": point.value,
                    "answer": _short(point.answer),
                    "correct": correct,
                    "time": point.time,
                }
            )
        correct = await self._correct(problem, result.answer, chosen_completion(program), result.output)
        record = _arm_record(result, correct, trajectory)
        record.update(await self._samples(problem, program))
        return record

    async def _samples(self, problem: Problem, program: Program) -> dict[str, Any]:
        """Every sample of a program that keeps its answer clusters: cluster, answer, grade, tokens, digest.

        One grade per cluster (its first sample's answer), so a cluster is right or wrong as a whole.
        """
        completions = getattr(program, "completions", None)
        labels = getattr(program, "labels", None)
        answers = getattr(program, "keys", None) or getattr(program, "answers", None)
        if not (isinstance(completions, list) and isinstance(labels, list) and isinstance(answers, list)):
            return {}
        if not completions or not len(completions) == len(labels) == len(answers):
            return {}
        first: dict[int, int] = {}
        for i, label in enumerate(labels):
            if label is not None:
                first.setdefault(int(label), i)
        program_answers = getattr(program, "answers", answers)
        extracted = [i for i, c in enumerate(completions) if "answer" not in c.meta]
        grades = {
            label: await self._correct(problem, program_answers[i], completions[i], None) for label, i in first.items()
        }
        return {
            "sample_labels": [None if label is None else int(label) for label in labels],
            "sample_answers": [None if label is None else _short(answers[first[int(label)]]) for label in labels],
            "sample_correct": [label is not None and grades[int(label)] for label in labels],
            "sample_tokens": [int(c.completion_tokens) for c in completions],
            "sample_digests": [_digest(c.text) for c in completions],
            "extracted": len(extracted),
            "extracted_missing": sum(program_answers[i] is None for i in extracted),
        }

    def _params(self, problem: Problem, arm: str = "early") -> dict[str, Any]:
        """The program's knobs for ``problem`` in ``arm``: the run's, the dataset's answer kind, per-sample
        seeds; in the fixed arm a program that can end itself early (cot's ``early_exit``) does not."""
        params = self.config.knobs()
        knobs = _knob_names(self.config.algorithm)
        if arm == "fixed" and "early_exit" in knobs:
            params["early_exit"] = False
        if problem.kind == "choice" and "answer_kind" in knobs:
            params.setdefault("answer_kind", "choice")
            if "options" in knobs and problem.meta.get("options"):
                params.setdefault("options", dict(problem.meta["options"]))
        if "seed" in knobs and "seed" not in self.config.params:
            # The same seeds in both arms: sample i of this query is the same sample in each.
            params["seed"] = _query_seed(self.config.seed, problem.id)
        return params

    def _program(self, problem: Problem, arm: str = "early") -> Program:
        params = self._params(problem, arm)
        try:
            if problem.kind == "code" and self.config.algorithm == "sc" and self.backend.synthetic is None:
                program = KeyedSelfConsistency(**params)
                program.keyer = self._keyer(problem)
                return program
            return make_program(self.config.algorithm, params)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{self.config.algorithm}: {exc}") from exc

    def _keyer(self, problem: Problem) -> Callable[[Completion], Any]:
        recorded = self._recorded

        async def key(completion: Completion) -> tuple[str | None, str | None]:
            code = candidate_program(problem, completion.text)
            trace = recorded.get(str(completion.meta.get("trace_id")))
            if trace is not None and "sample" in completion.meta:
                # Replay: the behaviour signature recorded with the trace.
                return code, trace.samples[int(completion.meta["sample"])].answer
            return code, await self._blocking(self.code.behaviour, problem, completion.text)

        return key

    def _reference(self, problem: Problem) -> str | None:
        if self.backend.synthetic is not None:
            return self.backend.synthetic.reference(problem.id)
        return problem.reference

    async def _correct(
        self, problem: Problem, answer: str | None, chosen: Completion | None, output: str | None
    ) -> bool:
        """Whether ``answer`` is right: recorded correctness for code replays, else the graders."""
        if self.backend.synthetic is not None:
            # Synthetic samples answer a made-up question whose answer the source knows.
            target = replace(problem, kind="math", reference=self._reference(problem))
            return (await self._blocking(self.math.grade, target, answer)).correct
        if problem.kind == "math":
            return (await self._blocking(self.math.grade, problem, answer)).correct
        if problem.kind == "choice":
            return grade_choice(problem, answer if answer else output).correct
        if chosen is not None and chosen.meta.get("correct") is not None:
            return bool(chosen.meta["correct"])
        if problem.tests is None:
            return False
        text = answer if answer else output
        return (await self._blocking(self.code.grade, problem, text)).correct

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a grader call off the loop in real time; inline in virtual time, where a
        thread hop costs more than the call and cannot distort the (simulated) clock."""
        if self.backend.virtual_time:
            return fn(*args)
        return await asyncio.to_thread(fn, *args)


def _query_prompt(problem: Problem) -> str:
    if problem.kind == "code" and problem.entry_point and f"def {problem.entry_point}" in problem.prompt:
        return f"Complete the following Python function.\n\n```python\n{problem.prompt.rstrip()}\n```"
    return problem.prompt


def _knob_names(algorithm: str) -> set[str]:
    factory = ALGORITHMS.get(algorithm)
    return set(getattr(factory, "__dataclass_fields__", {}))


def _query_seed(seed: int, query_id: str) -> int:
    """A query's base seed, from the run's seed and the query's id (stable across processes)."""
    digest = hashlib.blake2b(f"{seed}:{query_id}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x3FFFFFFF


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "replace"), digest_size=6).hexdigest()


def _short(answer: str | None, limit: int = 300) -> str | None:
    if answer is None or len(answer) <= limit:
        return answer
    return answer[:limit] + "..."


def _arm_record(result: QueryResult, correct: bool, trajectory: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "answer": _short(result.answer, 2000),
        "output": _short(result.output, 2000),
        "correct": correct,
        "tokens": result.usage.completion_tokens,
        "prompt_tokens": result.usage.prompt_tokens,
        "tokens_cap": result.usage.tokens_cap,
        "samples": result.samples,
        "steps": result.steps,
        "exit_reason": str(result.exit_reason),
        "certaindex": result.certaindex,
        "latency": result.latency,
        "queue_time": result.queue_time,
        "error": result.error,
        "trajectory": trajectory,
    }


def run_eval(
    config: EvalConfig,
    *,
    problems: list[Problem] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_result: Progress | None = None,
) -> tuple[ResultsFile, BackendSpec]:
    """Evaluate ``config.dataset`` and append to ``config.out/results.jsonl``; resumable.

    Queries already in the results file are skipped. ``on_start(total, done)`` is called
    once before the first query, ``on_result(record)`` after each. Simulated backends
    (``sim``, ``replay:``) run in virtual time.

    Raises
    ------
    ConfigError
        Bad dataset, backend or algorithm, or an existing results file from another configuration.
    """
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    fingerprint = config.fingerprint()
    run_file = out / "run.json"
    if run_file.exists():
        previous = json.loads(run_file.read_text(encoding="utf-8")).get("config", {})
        changed = sorted(k for k in fingerprint if previous.get(k) != fingerprint[k])
        if changed:
            raise ConfigError(
                f"{out} holds results of another configuration (differs in: {', '.join(changed)}); "
                "choose another --out or remove it"
            )
    _check_algorithm(config)
    backend = parse_backend(
        config.backend,
        dataset=config.dataset,
        model=config.model,
        profile=config.profile,
        seed=config.seed,
        api_key=config.api_key,
        reextract=config.reextract,
        algorithm=config.algorithm,
    )
    if problems is None:
        kind: Any = config.kind
        problems = load_problems(config.dataset, split=config.split, fields=config.fields, kind=kind)
    if backend.traces is not None:
        problems = _with_traces(problems, backend.traces)
    if config.limit is not None:
        problems = problems[: config.limit]
    _check_rounds(config)
    backend_info = {"kind": backend.kind, "label": backend.label, "same_samples": backend.same_samples}
    run_file.write_text(
        json.dumps({"config": fingerprint, "backend": backend_info, "tokens": _token_counts(backend)}, indent=2),
        encoding="utf-8",
    )
    results = ResultsFile(out / "results.jsonl")
    wanted = {p.id for p in problems}
    if on_start is not None:
        on_start(len(problems), len(results.done & wanted))
    evaluator = Evaluator(config, backend, results)

    async def main() -> None:
        await evaluator.run(problems, on_result)

    try:
        if backend.virtual_time:
            import looptime

            with asyncio.Runner(loop_factory=lambda: looptime.new_event_loop(start=0.0)) as runner:
                runner.run(main())
        else:
            asyncio.run(main())
    except ExceptionGroup as group:
        # A configuration mistake found while running surfaces as itself, not as a group.
        config_errors = group.subgroup(ConfigError)
        if config_errors is not None and config_errors.exceptions:
            first = config_errors.exceptions[0]
            raise first if isinstance(first, ConfigError) else ConfigError(str(first)) from group
        raise
    if evaluator.failed:
        logger.warning("%d queries failed on the engine and were not recorded; re-run to retry", len(evaluator.failed))
    results.sort([p.id for p in problems])
    return results, backend


def _token_counts(backend: BackendSpec) -> dict[str, Any]:
    """Whether the run's token counts are exact, and where they come from."""
    if backend.traces is not None:
        approx = sum(not s.tokens_exact for r in backend.traces for s in r.samples)
        if approx:
            total = sum(len(r.samples) for r in backend.traces)
            return {"exact": False, "how": f"approximated from the text for {approx} of {total} recorded samples"}
        return {"exact": True, "how": "recorded with the traces"}
    if backend.kind == "simulated":
        return {"exact": True, "how": "drawn by the simulated source"}
    return {"exact": True, "how": "counted by the engine"}


def _with_traces(problems: list[Problem], traces: list[Any]) -> list[Problem]:
    """The problems a trace was recorded for (by id, else by question text); others are skipped,
    since replaying another question's samples would grade nonsense."""
    ids = {t.id for t in traces}
    prompts = {t.prompt.strip() for t in traces}
    kept = [p for p in problems if p.id in ids or p.prompt.strip() in prompts]
    if not kept:
        raise ConfigError("no problem of the dataset has a recorded trace (matched by id or question text)")
    if len(kept) < len(problems):
        logger.warning(
            "%d of %d problems have no recorded trace and are skipped", len(problems) - len(kept), len(problems)
        )
    return kept


def _check_algorithm(config: EvalConfig) -> None:
    try:
        make_program(config.algorithm, config.knobs())
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _check_rounds(config: EvalConfig) -> None:
    """Warn when the program's rounds do not end where the rule checks (it then stops a round late)."""
    rounds = config.knobs().get("samples_per_round")
    rule = config.rule
    if rounds is not None and rule.threshold is not None and int(rounds) % rule.round_size:
        logger.warning(
            "rounds of %s samples, but the stop rule checks every %d: a stop the rule makes inside a round "
            "happens at the round's end (pass --samples-per-round %d to match)",
            rounds,
            rule.round_size,
            rule.round_size,
        )
