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

__all__ = ["new_virtual_loop", "run"]

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T], *, virtual: bool = True, start: float = 0.0) -> T:
    """Run ``main`` to completion on a fresh event loop, in virtual time unless told otherwise."""
    if not virtual:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=lambda: new_virtual_loop(start)) as runner:
        return runner.run(main)


def new_virtual_loop(start: float = 0.0) -> asyncio.AbstractEventLoop:
    """A virtual-time event loop.

    ``noop_cycles=1``: looptime's default (42 idle cycles before each jump of the clock, to let
    real I/O land) scans every task on each cycle and costs ~5x the simulated throughput; a
    simulation has no real I/O to wait for.
    """
    return looptime.new_event_loop(start=start, noop_cycles=1)
