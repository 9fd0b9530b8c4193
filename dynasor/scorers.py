"""Reward scorers behind ``ctx.score``: one interface, chosen per query or per runtime.

======================  ===========================================================================
``http``                a reward / process-reward / classification model served by vLLM over HTTP
                        (``POST /classify``, ``POST /pooling``): :class:`HttpRewardScorer`
``judge``               LLM-as-judge with any backend (the generator itself): :class:`JudgeScorer`
``logprob``             the generator's own certainty in each response, from its token logprobs
                        (no second model): :class:`LogprobScorer`
``replay``              the reward recorded in a trace (``completion.meta["score"]``): :class:`ReplayScorer`
``synthetic``           the simulated engine's score, or a seeded noisy model: :class:`SyntheticScorer`
======================  ===========================================================================

Build one by name with :func:`make_scorer`; :class:`ScorerRouter` holds several and picks one
per query from the program's ``scorer`` knob (``{"algorithm": "bon", "scorer": "judge"}``).
Scores are "higher is better"; their scale depends
on the scorer (a classifier's probability, a judge's 0-1 grade, a reward model's logit), and
programs that turn them into a certaindex map them with :class:`certaindex.RewardScale`.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from algorithms.protocol import ChatMessage, Completion, GenerateRequest, QueryInfo
from dynasor._exceptions import ConfigError, EngineError
from dynasor.engine.base import Backend, EngineRequest, Scorer, prompt_text
from dynasor.engine.sim import query_rng

__all__ = [
    "SCORERS",
    "HttpRewardScorer",
    "JudgeScorer",
    "LogprobScorer",
    "ReplayScorer",
    "ScorerRouter",
    "SyntheticScorer",
    "make_scorer",
    "parse_grade",
]


def _conversation(prompt: str | Sequence[ChatMessage], response: str) -> str:
    """The text a reward model reads: the prompt (chat contents joined) and the response."""
    return f"{prompt_text(prompt)}\n{response}"


class HttpRewardScorer(Scorer):
    """Scores from a reward or classification model served by vLLM.

    vLLM serves any sequence-classification or reward model (or a causal LM converted with
    ``--runner pooling --convert classify``) with ``POST /classify``, whose answer gives the
    class probabilities of each input (``data[i]["probs"]``), and ``POST /pooling``, whose
    answer gives the pooled output (``data[i]["data"]``: a vector, or one per token for a
    process-reward model). The score of a response is the probability of class ``label``
    (default: the last class, "good"); for per-token or per-step output, that of the last
    position.

    Parameters
    ----------
    base_url:
        Server root, e.g. ``http://127.0.0.1:8012``.
    model:
        Served model name (None: the first one the server lists).
    endpoint:
        ``classify`` or ``pooling``.
    label:
        Index of the class whose probability is the reward (negative counts from the end).
    template:
        Builds the model's input from the prompt and the response text.
    timeout:
        Longest silence while waiting for the server's answer (None: none).
    api_key:
        Sent as a bearer token when given.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        endpoint: Literal["classify", "pooling"] = "classify",
        label: int = -1,
        template: Callable[[str | Sequence[ChatMessage], str], str] = _conversation,
        timeout: float | None = 60.0,
        api_key: str | None = None,
    ) -> None:
        from dynasor.engine.openai import OpenAIBackend  # aiohttp-based; only scorers over HTTP need it

        if endpoint not in ("classify", "pooling"):
            raise ConfigError(f"unknown reward endpoint {endpoint!r}: classify or pooling")
        self.endpoint = endpoint
        self.label = label
        self.template = template
        self.model = model
        self._http = OpenAIBackend(base_url, model, api_key=api_key, read_timeout=timeout)

    async def score(
        self, query: QueryInfo, prompt: str | Sequence[ChatMessage], responses: Sequence[Completion]
    ) -> list[float]:
        if not responses:
            return []
        if self.model is None:
            served = await self._http.models()
            if not served:
                raise EngineError("the reward server lists no model")
            self.model = served[0]
        inputs = [self.template(prompt, r.text) for r in responses]
        body = await self._http.post_json(f"/{self.endpoint}", {"model": self.model, "input": inputs})
        try:
            rows = sorted(body["data"], key=lambda row: row.get("index", 0))
            scores = [self._value(row) for row in rows]
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise EngineError(f"unexpected /{self.endpoint} answer: {str(body)[:300]}") from exc
        if len(scores) != len(responses):
            raise EngineError(f"/{self.endpoint} scored {len(scores)} inputs, {len(responses)} sent")
        return scores

    def _value(self, row: Mapping[str, Any]) -> float:
        values: Any = row["probs"] if self.endpoint == "classify" else row["data"]
        while isinstance(values, list) and values and isinstance(values[0], list):
            values = values[-1]  # per-token / per-step output: the last position
        if isinstance(values, int | float):
            return float(values)
        if len(values) == 1:
            return float(values[0])
        return float(values[self.label])

    async def aclose(self) -> None:
        await self._http.aclose()


JUDGE_PROMPT = (
    "You are grading a solution to a problem.\n\n"
    "Problem:\n{question}\n\nSolution:\n{response}\n\n"
    "How likely is the solution to be correct? Reply with one integer from 0 (certainly wrong) "
    "to 10 (certainly right), nothing else.\nScore:"
)

_GRADE_FRACTION = re.compile(r"(-?\d+(?:\.\d+)?)\s*(?:/|out of)\s*(\d+(?:\.\d+)?)", re.IGNORECASE)
_GRADE_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_GRADE_WORDS = {"correct": 1.0, "right": 1.0, "yes": 1.0, "incorrect": 0.0, "wrong": 0.0, "no": 0.0}


def parse_grade(text: str, scale: float = 10.0) -> float | None:
    """A judge's grade in [0, 1] from its free-text reply (None when there is none).

    Reads ``7/10`` or ``7 out of 10`` first, then the first number (on ``scale``), then a
    verdict word. Out-of-range numbers are clipped.

    >>> parse_grade(" 8"), parse_grade("Score: 3/4"), parse_grade("Incorrect."), parse_grade("??")
    (0.8, 0.75, 0.0, None)
    """
    if (m := _GRADE_FRACTION.search(text)) is not None and float(m.group(2)) > 0:
        return min(1.0, max(0.0, float(m.group(1)) / float(m.group(2))))
    if (m := _GRADE_NUMBER.search(text)) is not None:
        return min(1.0, max(0.0, float(m.group()) / scale))
    for word in re.findall(r"[a-z]+", text.lower()):
        if word in _GRADE_WORDS:
            return _GRADE_WORDS[word]
    return None


class JudgeScorer(Scorer):
    """LLM-as-judge: the backend's model grades each response with a scoring prompt.

    Judge calls go straight to the backend (they are not sub-requests of the query, so the
    scheduler and the query's usage do not see them). A reply without a readable grade
    scores ``default``.

    Parameters
    ----------
    backend:
        Where the judge runs (often the generator's own backend).
    prompt:
        Template with ``{question}`` and ``{response}``.
    scale:
        The grade's maximum (a bare number is divided by it).
    max_tokens, temperature:
        Sampling of the judge's reply.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        prompt: str = JUDGE_PROMPT,
        scale: float = 10.0,
        max_tokens: int = 8,
        temperature: float = 0.0,
        default: float = 0.5,
    ) -> None:
        if "{response}" not in prompt:
            raise ConfigError("a judge prompt needs a {response} field")
        self.backend = backend
        self.prompt = prompt
        self.scale = scale
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.default = default
        self._ids = itertools.count()

    async def score(
        self, query: QueryInfo, prompt: str | Sequence[ChatMessage], responses: Sequence[Completion]
    ) -> list[float]:
        question = prompt_text(query.prompt)

        async def grade(response: Completion) -> float:
            text = self.prompt.format(question=question, response=response.text)
            request = GenerateRequest(
                [{"role": "user", "content": text}], self.max_tokens, self.temperature, tag="judge"
            )
            done = await self.backend.generate(EngineRequest(f"judge-{next(self._ids)}", query.id, request))
            value = parse_grade(done.text, self.scale)
            return self.default if value is None else value

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(grade(r)) for r in responses]
        return [t.result() for t in tasks]


class LogprobScorer(Scorer):
    r"""The model's own certainty in a response: the geometric-mean probability of its tokens.

    .. math:: s = \exp\Big(\frac{1}{T}\sum_{t=1}^{T} \log p(x_t \mid x_{<t})\Big) \in (0, 1]

    read from the logprobs the engine returned with the response (``needs_logprobs``: whoever
    runs the query asks for them; vLLM returns them at little cost). No second model and no
    extra request: what a plain vLLM serves is enough. It ranks a confidently written answer
    above a hesitant one; it is not a verifier, and its scale is the model's own (a small
    model's scores sit well below 1).

    >>> from algorithms import Completion, TokenLogprob
    >>> sure = Completion("4", 1, 2, "stop", logprobs=(TokenLogprob("4", -0.01), TokenLogprob(".", -0.01)))
    >>> import asyncio; round(asyncio.run(LogprobScorer().score(None, "", [sure]))[0], 3)
    0.99
    """

    needs_logprobs = 0

    async def score(
        self, query: QueryInfo | None, prompt: str | Sequence[ChatMessage], responses: Sequence[Completion]
    ) -> list[float]:
        scores = []
        for response in responses:
            if not response.logprobs:
                if response.completion_tokens == 0:
                    scores.append(0.0)  # nothing written: nothing to be certain of
                    continue
                raise EngineError(
                    "the logprob reward needs the engine's token logprobs, and a response came without them"
                )
            values = [t.logprob for t in response.logprobs if not math.isnan(t.logprob)]
            mean = math.fsum(values) / len(values) if values else -math.inf
            scores.append(math.exp(mean) if mean > -math.inf else 0.0)
        return scores


class ReplayScorer(Scorer):
    """The reward recorded in the trace a completion was replayed from (``meta["score"]``).

    A completion without one (not replayed) scores ``missing``; None makes that an error.
    """

    def __init__(self, *, missing: float | None = None) -> None:
        self.missing = missing

    async def score(
        self, query: QueryInfo, prompt: str | Sequence[ChatMessage], responses: Sequence[Completion]
    ) -> list[float]:
        scores = []
        for response in responses:
            value = response.meta.get("score")
            if value is None:
                if self.missing is None:
                    raise ConfigError("replay scorer: a completion carries no recorded score (not from a trace?)")
                value = self.missing
            scores.append(float(value))
        return scores


class SyntheticScorer(Scorer):
    """Scores for the simulated engine: the source's ``meta["score"]`` when it drafted one.

    Otherwise a seeded noisy reward model: ``N(0.75, sd)`` for a completion marked correct,
    ``N(0.45, sd)`` for one marked wrong, uniform when correctness is unknown; clipped to
    [0, 1] and a function of (seed, query, text), so a rerun gives the same scores.
    """

    def __init__(self, *, seed: int = 0, sd: float = 0.12, use_meta: bool = True) -> None:
        self.seed = seed
        self.sd = sd
        self.use_meta = use_meta

    async def score(
        self, query: QueryInfo, prompt: str | Sequence[ChatMessage], responses: Sequence[Completion]
    ) -> list[float]:
        scores = []
        for response in responses:
            meta = response.meta
            if self.use_meta and isinstance(meta.get("score"), int | float) and not math.isnan(meta["score"]):
                scores.append(float(meta["score"]))
                continue
            rng = query_rng(self.seed, "score", query.id, response.text)
            correct = meta.get("correct")
            if correct is None:
                scores.append(rng.random())
            else:
                scores.append(min(1.0, max(0.0, rng.gauss(0.75 if correct else 0.45, self.sd))))
        return scores


class ScorerRouter(Scorer):
    """Several scorers by name; each query uses the one its ``scorer`` knob names.

    Programs that score (``sc`` with ``vote="reward"``, ``bon``, ``mcts``, ``rebase``) take a
    ``scorer`` knob; a query that leaves it unset gets ``default``.

    >>> router = ScorerRouter({"replay": ReplayScorer(), "synthetic": SyntheticScorer()}, default="synthetic")
    >>> sorted(router.scorers)
    ['replay', 'synthetic']
    """

    def __init__(self, scorers: Mapping[str, Scorer], default: str | None = None) -> None:
        if not scorers:
            raise ConfigError("a scorer router needs at least one scorer")
        if default is not None and default not in scorers:
            raise ConfigError(f"default scorer {default!r} is not one of {', '.join(sorted(scorers))}")
        self.scorers = dict(scorers)
        self.default = default

    def pick(self, query: QueryInfo) -> Scorer:
        """The scorer for ``query`` (ConfigError naming the choices when there is none)."""
        name = query.params.get("scorer") or self.default
        if name is None or name not in self.scorers:
            choices = ", ".join(sorted(self.scorers))
            raise ConfigError(f"query {query.id} asks for scorer {name!r}; configured: {choices}")
        return self.scorers[name]

    async def score(
        self, query: QueryInfo, prompt: str | Sequence[ChatMessage], responses: Sequence[Completion]
    ) -> list[float]:
        return await self.pick(query).score(query, prompt, responses)

    async def aclose(self) -> None:
        for scorer in self.scorers.values():
            await scorer.aclose()


SCORERS: dict[str, Callable[..., Scorer]] = {
    "http": HttpRewardScorer,
    "judge": JudgeScorer,
    "logprob": LogprobScorer,
    "replay": ReplayScorer,
    "synthetic": SyntheticScorer,
}
"""Scorer classes by name."""


def make_scorer(name: str, **options: Any) -> Scorer:
    """Build the scorer called ``name`` with ``options`` (its constructor's arguments).

    Raises ConfigError for an unknown name or options, listing the valid names.

    >>> type(make_scorer("replay", missing=0.0)).__name__
    'ReplayScorer'
    """
    try:
        factory = SCORERS[name]
    except KeyError:
        raise ConfigError(f"Unknown scorer: {name!r} (choose from {', '.join(sorted(SCORERS))})") from None
    try:
        return factory(**options)
    except TypeError as exc:
        raise ConfigError(f"bad options for scorer {name!r}: {exc}") from exc
