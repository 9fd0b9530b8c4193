"""Engine backends: one small class per engine behind :class:`Backend`."""

from dynasor.engine.base import Backend, Capacity, EngineRequest, Scorer, UsageMeter
from dynasor.engine.openai import OpenAIBackend, PriorityConvention, RetryPolicy
from dynasor.engine.sim import CostProfile, SimBackend, SimEngine, load_profile, profile_names
from dynasor.engine.sources import FixedSource, ReplaySource, Source, SyntheticSource
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
