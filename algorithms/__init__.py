"""Reasoning programs on the program protocol: plain async Python, scheduled by the runtime."""

from algorithms import sc
from algorithms._registry import ALGORITHMS, make_program, register_algorithm
from algorithms.protocol import Completion, Context, GenerateRequest, Program, QueryInfo, TokenLogprob
from algorithms.sc import SelfConsistency

__all__ = [
    "ALGORITHMS",
    "Completion",
    "Context",
    "GenerateRequest",
    "Program",
    "QueryInfo",
    "SelfConsistency",
    "TokenLogprob",
    "make_program",
    "register_algorithm",
    "sc",
]
