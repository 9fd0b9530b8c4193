"""Engine backends: one small class per engine behind :class:`Backend`.

``openai`` (any OpenAI-compatible server, vLLM first), ``sim`` (a simulated engine with its
token sources) and ``vllm_inproc`` (vLLM in process, the ``vllm`` extra).
"""

from dynasor.engine.base import Backend, Capacity, EngineRequest, Scorer, UsageMeter
from dynasor.engine.openai import OpenAIBackend, PriorityConvention, RetryPolicy
from dynasor.engine.sim import (
    CostProfile,
    FixedSource,
    ReplaySource,
    SimBackend,
    SimEngine,
    Source,
    SyntheticSource,
    load_profile,
    profile_names,
)
from dynasor.engine.traces import TraceRecord, TraceSample, load_traces
from dynasor.engine.vllm_inproc import VLLMBackend

__all__ = [
    "Backend",
    "Capacity",
    "CostProfile",
    "EngineRequest",
    "FixedSource",
    "OpenAIBackend",
    "PriorityConvention",
    "ReplaySource",
    "RetryPolicy",
    "Scorer",
    "SimBackend",
    "SimEngine",
    "Source",
    "SyntheticSource",
    "TraceRecord",
    "TraceSample",
    "UsageMeter",
    "VLLMBackend",
    "load_profile",
    "load_traces",
    "profile_names",
]
