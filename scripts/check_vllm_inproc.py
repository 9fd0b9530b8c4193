"""Exercise the in-process ``vllm`` backend on the CPU build, with the engine venv's python.

    PYTHONPATH=. $DYNASOR_ENGINE_HOME/vllm-env/bin/python scripts/check_vllm_inproc.py MODEL_DIR

Serves MODEL_DIR (``smollm2-tiny`` from ``scripts/vllm_setup.sh``: random weights, loaded with
``load_format=dummy``) in this process and checks completion, chat, logprobs, token counts,
priority order and abort on cancel. Prints one JSON line of results; exits 1 on a failed check.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from algorithms.protocol import GenerateRequest
from dynasor.engine.base import EngineRequest
from dynasor.engine.vllm_inproc import VLLMBackend


async def main(model: str) -> dict[str, object]:
    results: dict[str, object] = {}
    args = {"load_format": "dummy", "max_model_len": 1024, "enforce_eager": True, "dtype": "bfloat16"}
    args["max_num_seqs"] = 2
    t0 = time.monotonic()
    async with VLLMBackend(model, engine_args=args, served_model_name="smollm2-tiny") as backend:
        engine = await backend.start()
        results["start_s"] = round(time.monotonic() - t0, 1)
        cap = backend.capacity()
        results["capacity"] = cap is not None and cap.max_seqs == 2
        long = {"extra": {"ignore_eos": True}}

        deltas: list[str] = []
        c = await backend.generate(
            EngineRequest("c1", "q", GenerateRequest("a b c", max_tokens=12, logprobs=2, on_text=deltas.append, **long))
        )
        results["completion"] = c.completion_tokens == 12 and c.finish_reason == "length" and c.prompt_tokens > 0
        results["streamed"] = "".join(deltas) == c.text and len(deltas) > 1
        results["logprobs"] = c.logprobs is not None and len(c.logprobs) == 12

        chat = await backend.generate(
            EngineRequest("c2", "q", GenerateRequest([{"role": "user", "content": "hi"}], max_tokens=5, **long))
        )
        results["chat"] = chat.completion_tokens == 5 and chat.prompt_tokens > 5

        # Priority: 2 running, 4 queued at priority 10, then one at priority 0.
        t1 = time.monotonic()

        async def timed(rid: str, prio: int) -> float:
            await backend.generate(EngineRequest(rid, "q", GenerateRequest("x", max_tokens=32, **long), priority=prio))
            return time.monotonic() - t1

        async with asyncio.TaskGroup() as tg:
            early = [tg.create_task(timed(f"e{i}", 10)) for i in range(6)]
            await asyncio.sleep(0.3)
            late = tg.create_task(timed("late", 0))
        results["priority_overtakes"] = sum(t.result() > late.result() for t in early)
        results["priority"] = results["priority_overtakes"] >= 3  # type: ignore[operator]

        seen = asyncio.Event()
        request = GenerateRequest("x", max_tokens=900, on_text=lambda t: seen.set(), **long)
        async with asyncio.TaskGroup() as tg:  # a cancelled child leaves the group quietly
            task = tg.create_task(backend.generate(EngineRequest("long", "q", request)))
            await asyncio.wait_for(seen.wait(), 60)
            running = engine.output_processor.get_num_unfinished_requests()
            task.cancel()
        await asyncio.sleep(0.5)
        left = engine.output_processor.get_num_unfinished_requests()
        results["abort"] = running == 1 and left == 0
    return results


if __name__ == "__main__":
    out = asyncio.run(main(sys.argv[1]))
    print(json.dumps(out))
    checks = ("capacity", "completion", "streamed", "logprobs", "chat", "priority", "abort")
    sys.exit(0 if all(out[k] is True for k in checks) else 1)
