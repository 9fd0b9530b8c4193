"""The ``vllm`` backend: vLLM's ``AsyncLLM`` in this process (optional extra ``vllm``).

For users with the engine installed next to Dynasor (usually with a GPU): no HTTP hop, and
the engine's own request objects. vLLM is imported lazily, when the engine starts, so the
rest of Dynasor never needs it. Semantics match the ``openai`` backend: a text prompt is
tokenised as ``/v1/completions`` would (special tokens added), chat messages go through the
model's chat template; cancelling the awaiting task makes ``AsyncLLM.generate`` abort the
request; priorities use vLLM's convention already (lower first).

Example
-------
>>> async def main() -> None:  # doctest: +SKIP
...     async with VLLMBackend("Qwen/Qwen2.5-0.5B-Instruct", engine_args={"max_model_len": 4096}) as b:
...         c = await b.generate(EngineRequest("r1", "q1", GenerateRequest("2+2=", max_tokens=8)))
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from algorithms.protocol import Completion, GenerateRequest, TokenLogprob
from dynasor._exceptions import ConfigError, EngineError, EngineUnavailable
from dynasor.engine.base import Backend, Capacity, EngineRequest

if TYPE_CHECKING:
    from vllm.v1.engine.async_llm import AsyncLLM

__all__ = ["VLLMBackend"]

_FINISH = {"stop": "stop", "length": "length", "abort": "abort"}


class VLLMBackend(Backend):
    """Generation on an in-process vLLM ``AsyncLLM``.

    Parameters
    ----------
    model
        Model path or hub id, as for ``vllm serve``.
    engine_args
        Extra ``AsyncEngineArgs`` fields (``max_model_len``, ``enforce_eager``,
        ``max_num_seqs``, ``scheduling_policy`` ...). ``scheduling_policy`` defaults to
        ``"priority"`` so that the scheduler's priorities are honoured.
    served_model_name
        The name :attr:`model` reports (default: ``model``).
    engine
        An already running ``AsyncLLM`` to wrap instead of starting one (the caller owns it).
    """

    def __init__(
        self,
        model: str,
        *,
        engine_args: Mapping[str, Any] | None = None,
        served_model_name: str | None = None,
        engine: AsyncLLM | None = None,
    ) -> None:
        self.model = served_model_name or model
        self._model_path = model
        self._engine_args = {"scheduling_policy": "priority", **(engine_args or {})}
        self._engine: AsyncLLM | None = engine
        self._owns_engine = engine is None
        self._lock = asyncio.Lock()

    async def start(self) -> AsyncLLM:
        """Start the engine if it is not running yet (``generate`` does this on first use)."""
        if self._engine is not None:
            return self._engine
        async with self._lock:
            if self._engine is None:
                try:
                    from vllm.engine.arg_utils import AsyncEngineArgs
                    from vllm.v1.engine.async_llm import AsyncLLM
                except ImportError as exc:
                    raise ConfigError("the vllm backend needs vLLM: pip install 'dynasor-serve[vllm]'") from exc
                args = AsyncEngineArgs(model=self._model_path, **self._engine_args)
                self._engine = AsyncLLM.from_engine_args(args)
        return self._engine

    def capacity(self) -> Capacity | None:
        if self._engine is None:
            return None
        return Capacity(max_seqs=self._engine.vllm_config.scheduler_config.max_num_seqs)

    async def aclose(self) -> None:
        if self._engine is not None and self._owns_engine:
            self._engine.shutdown()
            self._engine = None

    async def generate(self, request: EngineRequest) -> Completion:
        """Run ``request`` on the engine; see :meth:`Backend.generate`."""
        engine = await self.start()
        req = request.request
        prompt = self._prompt(engine, req)
        params = self._sampling_params(req)
        from vllm.exceptions import VLLMClientError
        from vllm.v1.engine.exceptions import EngineDeadError

        parts: list[str] = []
        logprobs: list[TokenLogprob] = []
        tokens = 0
        prompt_tokens = len(prompt["prompt_token_ids"])
        request.meter.prompt_tokens = prompt_tokens
        finish: str | None = None
        cached: int | None = None
        try:
            async for out in engine.generate(prompt, params, request.id, priority=request.priority):
                o = out.outputs[0]
                tokens += len(o.token_ids)
                request.meter.completion_tokens = tokens
                if o.text:
                    parts.append(o.text)
                    if req.on_text is not None:
                        req.on_text(o.text)
                if req.logprobs is not None and o.logprobs:
                    logprobs.extend(_logprobs(o.token_ids, o.logprobs))
                cached = getattr(out, "num_cached_tokens", cached)
                if o.finish_reason is not None:
                    finish = o.finish_reason
        except EngineDeadError as exc:
            raise EngineUnavailable(f"the vLLM engine died: {exc}") from exc
        except (VLLMClientError, ValueError) as exc:
            raise EngineError(f"vLLM rejected the request: {exc}", status=400) from exc
        except Exception as exc:
            raise EngineError(f"vLLM failed the request: {type(exc).__name__}: {exc}") from exc
        meta: dict[str, Any] = {"id": request.id}
        if cached is not None:
            meta["cached_prompt_tokens"] = cached
        return Completion(
            text="".join(parts),
            prompt_tokens=prompt_tokens,
            completion_tokens=tokens,
            finish_reason=_FINISH.get(finish or "", "error"),  # type: ignore[arg-type]
            logprobs=tuple(logprobs) if req.logprobs is not None else None,
            meta=meta,
        )

    @staticmethod
    def _prompt(engine: AsyncLLM, req: GenerateRequest) -> dict[str, Any]:
        tokenizer = engine.get_tokenizer()
        if isinstance(req.prompt, str):
            return {"prompt_token_ids": tokenizer.encode(req.prompt)}
        text = tokenizer.apply_chat_template(
            [dict(m) for m in req.prompt],
            tokenize=False,
            add_generation_prompt=not req.continue_final_message,
            continue_final_message=req.continue_final_message,
        )
        # The template already holds the special tokens.
        return {"prompt_token_ids": tokenizer.encode(text, add_special_tokens=False)}

    @staticmethod
    def _sampling_params(req: GenerateRequest) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        return SamplingParams(
            n=1,
            max_tokens=req.max_tokens,
            temperature=req.temperature,
            top_p=req.top_p,
            stop=list(req.stop) or None,
            seed=req.seed,
            logprobs=req.logprobs,
            output_kind=RequestOutputKind.DELTA,
            **dict(req.extra),
        )


def _logprobs(token_ids: Any, positions: Any) -> list[TokenLogprob]:
    """vLLM's per-position ``{token_id: Logprob}`` as :class:`TokenLogprob` (chosen token first)."""
    out = []
    for tid, pos in zip(token_ids, positions, strict=False):
        chosen = pos[tid]
        top = {(lp.decoded_token or ""): float(lp.logprob) for lp in pos.values()}
        out.append(TokenLogprob(token=chosen.decoded_token or "", logprob=float(chosen.logprob), top=top))
    return out
