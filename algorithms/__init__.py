"""Reasoning programs on the program protocol: plain async Python, scheduled by the runtime.

Importing the package registers every bundled algorithm: ``sc`` (self-consistency), ``cot``
(chain of thought with probes, Dynasor-CoT), ``mcts``, ``rebase`` and ``bon`` (best-of-N).
"""

from algorithms import bon, cot, mcts, rebase, sc
from algorithms._common import chat_prompt, continue_prompt, weighted_vote
from algorithms._registry import ALGORITHMS, make_program, register_algorithm
from algorithms.bon import BestOfN
from algorithms.cot import ProbedChainOfThought
from algorithms.mcts import MonteCarloTreeSearch
from algorithms.protocol import Completion, Context, GenerateRequest, Program, QueryInfo, TokenLogprob
from algorithms.rebase import RewardBalancedSearch
from algorithms.sc import SelfConsistency

__all__ = [
    "ALGORITHMS",
    "BestOfN",
    "Completion",
    "Context",
    "GenerateRequest",
    "MonteCarloTreeSearch",
    "ProbedChainOfThought",
    "Program",
    "QueryInfo",
    "RewardBalancedSearch",
    "SelfConsistency",
    "TokenLogprob",
    "bon",
    "chat_prompt",
    "continue_prompt",
    "cot",
    "make_program",
    "mcts",
    "rebase",
    "register_algorithm",
    "sc",
    "weighted_vote",
]
