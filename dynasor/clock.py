"""Real or virtual time for the same async code.

Virtual time uses ``looptime``: the event loop's clock jumps to the next timer whenever
every task is waiting, so an hour of simulated traffic takes seconds of wall time and a
run is deterministic for a seed. Everything in Dynasor reads time from the running loop
(``loop.time()``, ``asyncio.timeout``), so the same runtime, scheduler and sim engine run
unchanged under either clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import looptime

__all__ = ["run"]

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T], *, virtual: bool = True, start: float = 0.0) -> T:
    """Run ``main`` to completion on a fresh event loop, in virtual time unless told otherwise."""
    if not virtual:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=lambda: looptime.new_event_loop(start=start)) as runner:
        return runner.run(main)
