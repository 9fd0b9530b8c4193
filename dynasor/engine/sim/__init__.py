"""The ``sim`` backend: a simulated continuous-batching engine and where its tokens come from.

The engine (:class:`SimEngine`, behind :class:`SimBackend`) models vLLM's iteration-level
batching with a per-iteration cost profile (``profiles.json``), KV capacity, priority and
preemption, in real or virtual time. A *source* decides what each request "generates":
replayed traces (:class:`ReplaySource`, and per chunk or step for chain of thought and tree
search), or synthetic difficulty models (:class:`SyntheticSource` and its reasoning variants);
:func:`source_for` picks the kind a program reads (samples, a chain, or steps).
Every figure produced on it is labelled simulated.
"""

from dynasor.engine.sim._content import CONTENT_BY_ALGORITHM, ContentKind, content_kind, source_for
from dynasor.engine.sim._engine import (
    CostProfile,
    SimBackend,
    SimEngine,
    SimSequence,
    load_profile,
    profile_names,
    prompt_blocks,
)
from dynasor.engine.sim._reasoning import (
    ReplayChainSource,
    ReplayStepSource,
    SyntheticChainSource,
    SyntheticStepSource,
    continued_text,
)
from dynasor.engine.sim._sources import (
    Difficulty,
    Draft,
    FixedSource,
    ReplaySource,
    Source,
    SyntheticSource,
    query_rng,
)

__all__ = [
    "CONTENT_BY_ALGORITHM",
    "ContentKind",
    "CostProfile",
    "Difficulty",
    "Draft",
    "FixedSource",
    "ReplayChainSource",
    "ReplaySource",
    "ReplayStepSource",
    "SimBackend",
    "SimEngine",
    "SimSequence",
    "Source",
    "SyntheticChainSource",
    "SyntheticSource",
    "SyntheticStepSource",
    "content_kind",
    "continued_text",
    "load_profile",
    "profile_names",
    "prompt_blocks",
    "query_rng",
    "source_for",
]
