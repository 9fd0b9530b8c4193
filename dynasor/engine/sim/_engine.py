"""A simulated continuous-batching engine, event-driven so it runs at millions of tokens/s.

Model: iteration-level batching as in vLLM. Each iteration decodes one token for every
running sequence; sequences admitted before it also prefill their prompt in it. One
iteration costs (see ``profiles.json``)::

    step_base_s + step_per_seq_s * b + step_per_context_token_s * context + prefill_per_token_s * prefill

Admission takes the waiting queue in priority order (lower first, then arrival) while
``max_num_seqs`` and the KV cache allow; when the KV cache fills, the worst-priority running
sequence is preempted (recomputed later, as vLLM v1 does), and a waiting sequence with
strictly better priority preempts the worst running one. Aborting a sequence frees it at
once: it generates no further token.

Automatic prefix caching (on by default, as in vLLM): a prompt's full KV blocks
(``block_size`` tokens, keyed by a hash chain over the prompt) are shared by every sequence
that holds them, so the samples of one query store their common prompt once and only the
first prefills it; a block no sequence holds stays cached, evicted least recently used when
the memory is needed. At least one prompt token is always computed, and generated tokens
are not shared (a preempted sequence recomputes them). Attention still reads each
sequence's whole context: sharing saves memory and prefill, not decode time.

Instead of stepping every iteration, the engine plans a *segment*: the iterations until the
next sequence finishes or the KV cache fills. With ``b`` sequences and ``C`` context tokens
the ``i``-th iteration of a segment costs ``A + B*i`` (``B = step_per_context_token_s * b``, the
context growing by ``b`` each step), so a segment's duration and how many iterations fit in a
span of time have closed forms. Arrivals and aborts cut a segment at the last iteration
boundary. All times are the event loop's, so the same engine runs in real or virtual time.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path

from algorithms.protocol import Completion, GenerateRequest
from certaindex import approx_tokens
from dynasor.engine.base import Backend, Capacity, EngineRequest, prompt_text
from dynasor.engine.sim._sources import Source, SyntheticSource

__all__ = ["CostProfile", "SimBackend", "SimEngine", "SimSequence", "load_profile", "profile_names", "prompt_blocks"]

# Characters per token where a prompt's text is cut into KV blocks (the engine never sees tokens).
_CHARS_PER_TOKEN = 4

# Tolerance when matching elapsed time to iteration boundaries: above looptime's 1 us clock
# resolution, far below any step time.
_EPS = 2e-6


@dataclass(frozen=True, slots=True)
class CostProfile:
    """Per-iteration cost model and limits of a simulated engine (see ``profiles.json``)."""

    name: str
    step_base_s: float
    step_per_seq_s: float
    step_per_context_token_s: float
    prefill_per_token_s: float
    max_num_seqs: int
    kv_tokens: int
    block_size: int = 16
    """Tokens per KV-cache block, the unit of prefix sharing (vLLM: 16 on GPUs, 128 on CPUs)."""
    description: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        terms = (self.step_base_s, self.step_per_seq_s, self.step_per_context_token_s, self.prefill_per_token_s)
        if min(terms) < 0:
            raise ValueError(f"cost profile {self.name!r}: cost terms must be >= 0")
        if self.step_base_s + self.step_per_seq_s <= 0:
            raise ValueError(
                f"cost profile {self.name!r}: an iteration must take time (step_base_s + step_per_seq_s > 0)"
            )
        if self.max_num_seqs < 1 or self.kv_tokens < 1 or self.block_size < 1:
            raise ValueError(f"cost profile {self.name!r}: max_num_seqs, kv_tokens and block_size must be >= 1")

    def step_time(self, running: int, context_tokens: int, prefill_tokens: int = 0) -> float:
        """Seconds one iteration takes."""
        return (
            self.step_base_s
            + self.step_per_seq_s * running
            + self.step_per_context_token_s * context_tokens
            + self.prefill_per_token_s * prefill_tokens
        )


def _profiles_file() -> dict[str, dict[str, object]]:
    text = resources.files("dynasor.engine.sim").joinpath("profiles.json").read_text()
    return json.loads(text)["profiles"]


def profile_names() -> list[str]:
    """Names of the bundled cost profiles."""
    return sorted(_profiles_file())


def load_profile(name_or_path: str | Path) -> CostProfile:
    """A bundled profile by name, or one profile from a JSON file (``{"name": ..., ...}``)."""
    path = Path(name_or_path)
    if path.suffix == ".json" and path.exists():
        entry = json.loads(path.read_text())
        name = str(entry.get("name", path.stem))
    else:
        profiles = _profiles_file()
        if str(name_or_path) not in profiles:
            raise ValueError(f"Unknown cost profile {str(name_or_path)!r} (choose from {', '.join(sorted(profiles))})")
        name, entry = str(name_or_path), profiles[str(name_or_path)]
    known = {f.name for f in fields(CostProfile)} - {"name"}
    return CostProfile(name=name, **{k: v for k, v in entry.items() if k in known})


def prompt_blocks(text: str, prompt_tokens: int, block_size: int) -> tuple[int, ...]:
    """Hashes of a prompt's full KV blocks: block ``i`` covers its ``i``-th ``block_size`` tokens.

    Each hash chains the one before it, as vLLM's do, so two prompts share exactly the blocks of
    their common prefix. Tokens are taken as ``4`` characters of text each.
    """
    width = block_size * _CHARS_PER_TOKEN
    count = min(prompt_tokens // block_size, len(text) // width)
    hashes: list[int] = []
    previous = 0
    for i in range(count):
        previous = hash((previous, text[i * width : (i + 1) * width]))
        hashes.append(previous)
    return tuple(hashes)


@dataclass(eq=False)
class SimSequence:
    """One request inside the simulated engine."""

    id: int
    priority: int
    prompt_tokens: int
    target_tokens: int
    """Tokens it will generate before it stops (its natural length capped by max_tokens)."""
    blocks: tuple[int, ...] = ()
    """Hashes of its prompt's full KV blocks, in order (shared with sequences that hold them)."""
    generated: int = 0
    """Tokens generated before its current admission (kept across preemption)."""
    admitted_at: int = -1
    """Engine iteration it was last admitted at (-1: waiting)."""
    finish_at: int = -1
    """Engine iteration it will finish at if it keeps running."""
    preemptions: int = 0
    aborted: bool = False
    prefilled: int = 0
    """Tokens its current admission prefills (prompt not found in the cache, plus recomputed output)."""
    private: int = 0
    """KV tokens it holds alone (prompt past its shared blocks, and its output)."""
    done: asyncio.Future[int] | None = field(default=None, repr=False)

    @property
    def order(self) -> tuple[int, int]:
        return (self.priority, self.id)


class SimEngine:
    """The simulated engine. :meth:`run` one sequence at a time from as many tasks as you like."""

    def __init__(
        self,
        profile: CostProfile,
        *,
        max_num_seqs: int | None = None,
        kv_tokens: int | None = None,
        prefix_caching: bool = True,
    ) -> None:
        self.profile = profile
        self.max_num_seqs = max_num_seqs or profile.max_num_seqs
        self.kv_tokens = kv_tokens or profile.kv_tokens
        self.block_size = profile.block_size
        self.prefix_caching = prefix_caching
        self._ids = itertools.count()
        self._waiting: list[tuple[tuple[int, int], SimSequence]] = []
        self._running: dict[int, SimSequence] = {}
        # Max-heap of running sequences by (priority, id), stale entries skipped: the
        # preemption victim in O(log n).
        self._victims: list[tuple[int, int, SimSequence]] = []
        self._finish: list[tuple[int, int, SimSequence]] = []
        self.iteration = 0
        self._context = 0
        """Prompt + generated tokens of the running sequences (what attention reads)."""
        self._kv_used = 0
        """KV-cache tokens held by running sequences: shared blocks once, plus private tokens."""
        self._block_refs: dict[int, int] = {}
        """Cached prompt blocks by hash: how many running sequences hold each (0: evictable)."""
        self._evictable: dict[int, None] = {}
        """Cached blocks no running sequence holds, least recently used first."""
        self._prefill = 0
        """Prompt tokens admitted since the last committed iteration."""
        self._segment_start = 0.0
        self._segment_started = False
        self._wakeup: asyncio.Future[None] | None = None
        self._loop_task: asyncio.Task[None] | None = None
        # Counters for tests, metrics and benchmarks.
        self.tokens_generated = 0
        self.prompt_tokens_prefilled = 0
        self.prefix_hit_tokens = 0
        """Prompt tokens found in the prefix cache at admission (not prefilled)."""
        self.iterations_run = 0
        self.busy_time = 0.0
        self.preemptions = 0

    # -- public ------------------------------------------------------------------------------

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    async def run(self, prompt_tokens: int, target_tokens: int, priority: int = 0, blocks: Sequence[int] = ()) -> int:
        """Queue a sequence and wait until it has generated ``target_tokens`` tokens.

        Returns the tokens generated. Cancelling the caller aborts the sequence.
        """
        seq = self.submit(prompt_tokens, target_tokens, priority, blocks)
        assert seq.done is not None
        try:
            return await seq.done
        finally:
            if not seq.done.done() or seq.done.cancelled():
                self.abort(seq)

    def submit(
        self, prompt_tokens: int, target_tokens: int, priority: int = 0, blocks: Sequence[int] = ()
    ) -> SimSequence:
        """Queue a sequence; await ``seq.done`` for its generated-token count.

        ``blocks`` are the hashes of the prompt's full KV blocks (:func:`prompt_blocks`); with
        prefix caching on, blocks another sequence computed are shared, not prefilled again.
        """
        if target_tokens < 1:
            raise ValueError(f"target_tokens must be >= 1, got {target_tokens}")
        loop = asyncio.get_running_loop()
        prompt_tokens = max(prompt_tokens, 1)
        shared = tuple(blocks)[: prompt_tokens // self.block_size] if self.prefix_caching else ()
        seq = SimSequence(next(self._ids), priority, prompt_tokens, target_tokens, shared)
        seq.done = loop.create_future()
        heapq.heappush(self._waiting, (seq.order, seq))
        self._ensure_loop()
        self._wake()
        return seq

    def abort(self, seq: SimSequence) -> int:
        """Stop ``seq`` now; returns the tokens it generated (it generates none afterwards)."""
        if seq.aborted or (seq.done is not None and seq.done.done() and not seq.done.cancelled()):
            return self.generated(seq)
        self._commit(asyncio.get_running_loop().time())
        seq.aborted = True
        if seq.admitted_at >= 0:
            self._evict(seq)
        if seq.done is not None and not seq.done.done():
            seq.done.cancel()
        self._wake()
        return seq.generated

    def generated(self, seq: SimSequence) -> int:
        """Tokens ``seq`` has generated up to the last committed iteration."""
        if seq.admitted_at >= 0:
            return seq.generated + self.iteration - seq.admitted_at
        return seq.generated

    async def aclose(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None

    # -- the engine loop ---------------------------------------------------------------------

    def _ensure_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._engine_loop(), name="sim-engine")

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _engine_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            self._commit(now)
            self._admit()
            if not self._running:
                self._segment_started = False
                await self._sleep(None)
                continue
            if not self._segment_started:
                self._segment_start, self._segment_started = now, True
            iterations = self._plan()
            end = self._segment_start + self._duration(iterations)
            if end > now:
                await self._sleep(end)

    async def _sleep(self, until: float | None) -> None:
        loop = asyncio.get_running_loop()
        self._wakeup = loop.create_future()
        handle = None
        if until is not None:
            handle = loop.call_at(until, self._wake)
        try:
            await self._wakeup
        finally:
            if handle is not None:
                handle.cancel()
            self._wakeup = None

    def _next_finish(self) -> int:
        """Iteration at which the next running sequence finishes (drops stale heap entries)."""
        while True:
            finish_at, _, seq = self._finish[0]
            if seq.admitted_at >= 0 and seq.finish_at == finish_at:
                return finish_at
            heapq.heappop(self._finish)

    def _plan(self) -> int:
        """Iterations until the next event: a sequence finishes or the KV cache fills."""
        until_finish = self._next_finish() - self.iteration
        until_full = (self.kv_tokens - self._kv_used) // len(self._running)
        return max(1, min(until_finish, until_full))

    def _coefficients(self) -> tuple[float, float, float]:
        p, b = self.profile, len(self._running)
        first = p.prefill_per_token_s * self._prefill
        a = p.step_base_s + p.step_per_seq_s * b + p.step_per_context_token_s * self._context
        return first, a, p.step_per_context_token_s * b

    def _duration(self, iterations: int) -> float:
        first, a, b = self._coefficients()
        return first + iterations * a + b * iterations * (iterations - 1) / 2

    def _iterations_within(self, elapsed: float) -> int:
        """Largest j with duration(j) <= elapsed (0 when not even one iteration fits)."""
        first, a, b = self._coefficients()
        budget = elapsed - first
        if budget <= 0:
            return 0
        if b == 0:
            j = int(budget / a) if a > 0 else 1 << 30
        else:
            half = a - b / 2
            j = int((-half + math.sqrt(half * half + 2 * b * budget)) / b)
        while j > 0 and self._duration(j) > elapsed + _EPS:
            j -= 1
        while self._duration(j + 1) <= elapsed + _EPS:
            j += 1
        return j

    def _commit(self, now: float) -> None:
        """Apply the iterations completed since the segment began, then finish sequences."""
        if not self._running or not self._segment_started:
            return
        elapsed = now - self._segment_start
        done = min(self._iterations_within(elapsed), self._next_finish() - self.iteration)
        if done <= 0:
            return
        spent = self._duration(done)
        b = len(self._running)
        self.iteration += done
        self._context += b * done
        self._kv_used += b * done
        self._trim_cache()
        self.tokens_generated += b * done
        self.prompt_tokens_prefilled += self._prefill
        self._prefill = 0
        self.iterations_run += done
        self.busy_time += spent
        self._segment_start += spent
        while self._finish and self._finish[0][0] <= self.iteration:
            finish_at, _, seq = heapq.heappop(self._finish)
            if seq.admitted_at < 0 or seq.finish_at != finish_at:
                continue  # stale entry of a preempted or aborted sequence
            self._evict(seq)
            if seq.done is not None and not seq.done.done():
                seq.done.set_result(seq.generated)

    def _admit(self) -> None:
        # The next iteration needs one KV slot per running sequence: make room first.
        while len(self._running) > 1 and self._kv_used + len(self._running) > self.kv_tokens:
            self._preempt(self._worst_running())
        while self._waiting:
            _, seq = self._waiting[0]
            if seq.aborted:
                heapq.heappop(self._waiting)
                continue
            # What it adds to the cache plus, in the next iteration, one KV slot for every running sequence.
            need = self._kv_needed(seq) + 1 + len(self._running)
            if len(self._running) < self.max_num_seqs and self._kv_used + need <= self.kv_tokens:
                heapq.heappop(self._waiting)
                self._start(seq)
                continue
            if not self._running:  # alone and still too big: run it, the cache is all its own
                heapq.heappop(self._waiting)
                self._start(seq)
                continue
            worst = self._worst_running()
            if seq.order < worst.order:
                self._preempt(worst)
                continue
            break

    def _cached_prefix(self, seq: SimSequence) -> int:
        """How many of ``seq``'s leading prompt blocks are in the cache."""
        hits = 0
        for block in seq.blocks:
            if block not in self._block_refs:
                break
            hits += 1
        return hits

    def _kv_needed(self, seq: SimSequence) -> int:
        """KV tokens admitting ``seq`` would take from the free memory (evictable blocks count as free)."""
        hits = self._cached_prefix(seq)
        reclaimed = sum(1 for block in seq.blocks[:hits] if self._block_refs[block] == 0)
        shared = len(seq.blocks) * self.block_size
        return (len(seq.blocks) - hits + reclaimed) * self.block_size + seq.prompt_tokens - shared + seq.generated

    def _start(self, seq: SimSequence) -> None:
        # A sequence admitted mid-segment joins at the last committed iteration boundary.
        seq.admitted_at = self.iteration
        seq.finish_at = self.iteration + seq.target_tokens - seq.generated
        self._running[seq.id] = seq
        heapq.heappush(self._victims, (-seq.priority, -seq.id, seq))
        hits = self._cached_prefix(seq)
        for block in seq.blocks:
            refs = self._block_refs.get(block, 0)
            if refs == 0:
                self._evictable.pop(block, None)
                self._kv_used += self.block_size
            self._block_refs[block] = refs + 1
        # At least one prompt token is computed, even when the whole prompt is cached.
        cached = min(hits * self.block_size, seq.prompt_tokens - 1)
        self.prefix_hit_tokens += cached
        seq.private = seq.prompt_tokens - len(seq.blocks) * self.block_size + seq.generated
        seq.prefilled = seq.prompt_tokens - cached + seq.generated
        self._kv_used += seq.private
        self._context += seq.prompt_tokens + seq.generated
        self._prefill += seq.prefilled
        self._trim_cache()
        heapq.heappush(self._finish, (seq.finish_at, seq.id, seq))

    def _trim_cache(self) -> None:
        """Evict least recently used unheld blocks while the cache holds more than its size."""
        while self._evictable and self._kv_used + len(self._evictable) * self.block_size > self.kv_tokens:
            block = next(iter(self._evictable))
            del self._evictable[block], self._block_refs[block]

    def _evict(self, seq: SimSequence) -> None:
        """Take a running sequence out, keeping what it generated."""
        if seq.admitted_at == self.iteration:
            # No iteration committed since it was admitted: its prefill never ran, charge none.
            self._prefill -= seq.prefilled
        made = self.iteration - seq.admitted_at
        seq.generated += made
        self._context -= seq.prompt_tokens + seq.generated
        self._kv_used -= seq.private + made
        for block in seq.blocks:
            refs = self._block_refs[block] - 1
            self._block_refs[block] = refs
            if refs == 0:
                self._kv_used -= self.block_size
                self._evictable[block] = None
        seq.admitted_at = -1
        del self._running[seq.id]
        if len(self._victims) > 4 * len(self._running) + 64:  # drop stale entries now and then
            self._victims = [(-s.priority, -s.id, s) for s in self._running.values()]
            heapq.heapify(self._victims)
        if not self._running:
            self._segment_started = False
            self._prefill = 0

    def _preempt(self, seq: SimSequence) -> None:
        self._evict(seq)
        seq.preemptions += 1
        self.preemptions += 1
        heapq.heappush(self._waiting, (seq.order, seq))

    def _worst_running(self) -> SimSequence:
        while True:
            seq = self._victims[0][2]
            if seq.admitted_at >= 0:
                return seq
            heapq.heappop(self._victims)


class SimBackend(Backend):
    """The simulated engine behind the backend interface, its content from a :class:`Source`.

    Text arrives in one piece when the request finishes (``on_text`` is called once).
    Stop strings cut the drafted text at their first occurrence; ``max_tokens`` truncates
    it in proportion (``finish_reason="length"``). Prompts share KV blocks through the
    engine's prefix cache unless ``prefix_caching`` is off.
    """

    def __init__(
        self,
        profile: str | CostProfile = "h100-llama3-8b",
        source: Source | None = None,
        *,
        seed: int = 0,
        max_num_seqs: int | None = None,
        kv_tokens: int | None = None,
        prefix_caching: bool = True,
        model: str = "dynasor-sim",
    ) -> None:
        self.profile = profile if isinstance(profile, CostProfile) else load_profile(profile)
        self.engine = SimEngine(
            self.profile, max_num_seqs=max_num_seqs, kv_tokens=kv_tokens, prefix_caching=prefix_caching
        )
        self.source = source if source is not None else SyntheticSource(seed=seed)
        self.model = model
        self._blocks: dict[tuple[str, int], tuple[int, ...]] = {}

    def capacity(self) -> Capacity:
        return Capacity(max_seqs=self.engine.max_num_seqs, max_kv_tokens=self.engine.kv_tokens)

    async def generate(self, request: EngineRequest) -> Completion:
        params = request.request
        draft = self.source.draft(request)
        text, tokens = draft.text, max(draft.tokens, 1)
        finish: str = "stop"
        for stop in params.stop:
            cut = text.find(stop)
            if cut >= 0:
                tokens = max(1, tokens * cut // max(len(text), 1))
                text = text[:cut]
        if tokens > params.max_tokens:
            text = text[: len(text) * params.max_tokens // tokens]
            tokens, finish = params.max_tokens, "length"
        prompt_tokens = draft.prompt_tokens or max(approx_tokens(prompt_text(params.prompt)), 1)
        request.meter.prompt_tokens = prompt_tokens
        seq = self.engine.submit(prompt_tokens, tokens, request.priority, self._prompt_blocks(params, prompt_tokens))
        assert seq.done is not None
        try:
            generated = await seq.done
        except asyncio.CancelledError:
            request.meter.completion_tokens = self.engine.abort(seq)
            raise
        request.meter.completion_tokens = generated
        if params.on_text is not None:
            params.on_text(text)
        return Completion(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=generated,
            finish_reason=finish,  # type: ignore[arg-type]
            meta=draft.meta,
        )

    def _prompt_blocks(self, params: GenerateRequest, prompt_tokens: int) -> tuple[int, ...]:
        if not self.engine.prefix_caching:
            return ()
        text = prompt_text(params.prompt)
        key = (text, prompt_tokens)
        blocks = self._blocks.get(key)
        if blocks is None:
            if len(self._blocks) > 4096:  # the samples of a query arrive close together
                self._blocks.clear()
            blocks = self._blocks[key] = prompt_blocks(text, prompt_tokens, self.engine.block_size)
        return blocks

    async def aclose(self) -> None:
        await self.engine.aclose()
