"""Every package's ``__all__`` names things that exist (as httpx checks its exports)."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    "module",
    [
        "certaindex",
        "algorithms",
        "algorithms.protocol",
        "dynasor",
        "dynasor.runtime",
        "dynasor.allocator",
        "dynasor.sched.policy",
        "dynasor.sched.scheduler",
        "dynasor.engine.base",
        "dynasor.engine.sim",
        "dynasor.engine.sources",
        "dynasor.engine.traces",
    ],
)
def test_all_names_exist(module: str) -> None:
    mod = importlib.import_module(module)
    missing = [name for name in mod.__all__ if not hasattr(mod, name)]
    assert missing == []
    assert len(set(mod.__all__)) == len(mod.__all__)
