"""Gang scheduling: the scheduler (mechanism) and the policies that order its queue.

A policy is one small class with one ``key`` method; :func:`make_policy` builds one from a
name or a spec with knobs (``"dynasor:aging=0.5"``).
"""

from dynasor._state import QueryStats
from dynasor.sched.gang import Gang
from dynasor.sched.policy import (
    DEFAULT_POLICY,
    POLICIES,
    DynasorPolicy,
    FCFSPolicy,
    GangPolicy,
    LeastAttainedServicePolicy,
    QueryFCFSPolicy,
    make_policy,
    parse_policy,
    policy_name,
    split_policies,
)
from dynasor.sched.scheduler import Dispatch, GangScheduler, estimate_prompt_tokens

__all__ = [
    "DEFAULT_POLICY",
    "POLICIES",
    "Dispatch",
    "DynasorPolicy",
    "FCFSPolicy",
    "Gang",
    "GangPolicy",
    "GangScheduler",
    "LeastAttainedServicePolicy",
    "QueryFCFSPolicy",
    "QueryStats",
    "estimate_prompt_tokens",
    "make_policy",
    "parse_policy",
    "policy_name",
    "split_policies",
]
