r"""Chain of thought with mid-way probes (Dynasor-CoT).

The chain is decoded in chunks of ``chunk_tokens`` (T) tokens, each continuing the assistant
message so far. After each chunk a *probe* asks for the answer right now: the text so far
plus ``probe_suffix``, decoded for ``probe_tokens`` tokens. The probe shares the chunk's
prefix, so the engine's prefix cache makes it cheap, and it runs *concurrently* with the next
chunk (both are started together in a task group), so probing costs no decoding pause. The
certaindex after each probe is :func:`certaindex.probe_consistency`: the share of the last
``window`` (N) probes that give the same answer without hesitating. When all N agree the
chain stops (the program ends itself when ``early_exit`` is set, and the allocator may stop
it on the same report): the in-flight chunk is aborted, the thinking block is closed and a
final-answer block appended.

Knobs and defaults
------------------
``window`` (3), ``chunk_tokens`` (64)
    N and T. Dynasor-CoT's saving-effort levels (mild to crazy) are named settings of these two,
    kept with the other presets in ``dynasor/data/presets.yaml`` (``effort_knobs``); the proxy's
    ``effort`` applies them.
``max_tokens`` (4096)
    Most tokens of the chain (chunks, not probes). A chain that reaches it without agreeing
    probes gets one last probe, whose answer is returned.
``probe_suffix``
    ``"... Oh, I suddenly got the answer to the whole problem, **Final Answer**\n\n\\[ \\boxed{"``.
``probe_tokens`` (20), ``probe_temperature`` (0.6), ``temperature`` (0.6)
``probes`` (True)
    False decodes the same chunks without probing (the baseline).
``early_exit`` (True)
    End the program when the probes agree (False: only report; the allocator decides).
``think_open`` (None), ``think_close`` (``"</think>"``)
    ``think_open`` starts the assistant message (e.g. ``"<think>\n"`` for models whose template
    does not open the block itself); on an early exit an open block is closed with
    ``think_close``.
``final_template``
    The block appended on early exit; ``{answer}`` is the agreed answer.
``answer_kind`` (``math``), ``instruction``
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

from algorithms._common import DEFAULT_INSTRUCTION, chat_prompt, continue_prompt
from algorithms._registry import register_algorithm
from algorithms.protocol import ChatMessage, Completion, Context, GenerateRequest, Program
from certaindex import Certainty, extract_answer, probe_consistency

__all__ = ["DEFAULT_PROBE_SUFFIX", "ProbedChainOfThought"]

DEFAULT_PROBE_SUFFIX = "... Oh, I suddenly got the answer to the whole problem, **Final Answer**\n\n\\[ \\boxed{"


@register_algorithm("cot")
@dataclass
class ProbedChainOfThought(Program):
    """One chain of thought, probed every T tokens, stopped when N probes agree (module docs)."""

    name = "cot"
    window: int = 3
    chunk_tokens: int = 64
    max_tokens: int = 4096
    probe_suffix: str = DEFAULT_PROBE_SUFFIX
    probe_tokens: int = 20
    probe_temperature: float = 0.6
    temperature: float = 0.6
    probes: bool = True
    early_exit: bool = True
    think_open: str | None = None
    think_close: str = "</think>"
    final_template: str = "\n\n**Final Answer**\n\\[ \\boxed{{{answer}}} \\]"
    answer_kind: str = "math"
    instruction: str | None = DEFAULT_INSTRUCTION
    chain: str = field(default="", init=False)
    """The assistant text decoded so far (``think_open`` included)."""
    probe_texts: list[str] = field(default_factory=list, init=False, repr=False)
    probe_answers: list[str | None] = field(default_factory=list, init=False, repr=False)
    finished: bool = field(default=False, init=False)
    """The chain ended on its own (the model stopped), not by a probe."""
    exited: bool = field(default=False, init=False)
    """The probes agreed and the chain was cut there."""
    decoded: int = field(default=0, init=False)
    """Chain tokens decoded (probes not counted)."""

    def __post_init__(self) -> None:
        for knob in ("window", "chunk_tokens", "max_tokens", "probe_tokens"):
            if getattr(self, knob) < 1:
                raise ValueError(f"{knob} must be >= 1, got {getattr(self, knob)}")
        chunks = math.ceil(self.max_tokens / self.chunk_tokens)
        # Chunks plus one probe after each (the last one answers when the budget runs out).
        self.max_samples = chunks * (2 if self.probes else 1)
        self.token_budget = self.max_tokens  # the chain without probes: what the plain model would write
        self.chain = self.think_open or ""

    async def run(self, ctx: Context) -> None:
        messages = chat_prompt(ctx.query, self.instruction)
        chunk = await ctx.generate(self._chunk_request(messages))
        while True:
            self._append(chunk)
            if self.finished:
                return
            if self.decoded >= self.max_tokens:
                if self.probes:
                    # Out of budget: one last probe gives the answer the chain has reached.
                    await self._probe(ctx, self._probe_request(messages), None)
                return
            nxt = self._chunk_request(messages)
            if not self.probes:
                chunk = await ctx.generate(nxt)
                continue
            probe = self._probe_request(messages)
            # The probe of chunk i runs alongside chunk i+1; an agreeing probe cancels the chunk.
            async with asyncio.TaskGroup() as tg:
                next_chunk = tg.create_task(ctx.generate(nxt))
                tg.create_task(self._probe(ctx, probe, next_chunk))
            if self.exited:
                return
            chunk = next_chunk.result()

    def _probe_request(self, messages: list[ChatMessage]) -> GenerateRequest:
        return GenerateRequest(
            continue_prompt(messages, self.chain + self.probe_suffix),
            self.probe_tokens,
            self.probe_temperature,
            continue_final_message=True,
            tag="probe",
        )

    def _chunk_request(self, messages: list[ChatMessage]) -> GenerateRequest:
        size = min(self.chunk_tokens, self.max_tokens - self.decoded)
        if not self.chain:
            return GenerateRequest(messages, size, self.temperature, tag="chunk")
        return GenerateRequest(
            continue_prompt(messages, self.chain), size, self.temperature, continue_final_message=True, tag="chunk"
        )

    def _append(self, chunk: Completion) -> None:
        self.chain += chunk.text
        self.decoded += chunk.completion_tokens
        # Anything but running into max_tokens means the model ended the chain itself.
        self.finished = chunk.finish_reason != "length"

    async def _probe(self, ctx: Context, request: GenerateRequest, next_chunk: asyncio.Task[Completion] | None) -> None:
        done = await ctx.generate(request)
        self.probe_texts.append(done.text)
        # The probe continues "\boxed{", so its answer is read with the suffix in front.
        self.probe_answers.append(extract_answer(self.probe_suffix + done.text, self.answer_kind))  # type: ignore[arg-type]
        certainty = self.certainty()
        ctx.emit({"type": "probe", "index": len(self.probe_texts), "answer": self.probe_answers[-1]})
        if self.early_exit and certainty.value >= 1.0 and next_chunk is not None:
            self.exited = True
            next_chunk.cancel()
        ctx.report(certainty)

    def certainty(self) -> Certainty:
        """Probe consistency over the probes so far (0 before the first probe)."""
        return probe_consistency(self.probe_texts, window=self.window, answers=self.probe_answers)

    def answer(self) -> str | None:
        if self.finished:
            stated = extract_answer(self.chain, self.answer_kind)  # type: ignore[arg-type]
            if stated is not None:
                return stated
        return self.probe_answers[-1] if self.probe_answers else None

    def output(self) -> str:
        """The chain; when it was cut, closed and followed by the final-answer block."""
        if self.finished:
            return self.chain
        answer = self.answer()
        if answer is None:
            return self.chain
        text = self.chain
        opened = self.think_open.strip() if self.think_open else "<think>"
        if opened in text and self.think_close not in text[text.rfind(opened) :]:
            text += f"\n{self.think_close}"
        return text + self.final_template.format(answer=answer)
