"""Gang-ordering policies: each decides order only, behind one small interface.

The scheduler keeps waiting gangs in a heap on ``policy.key(gang)``; a key must not change
while the gang waits, so a heap stays valid. Aging that grows linearly with waiting time,
``work - a * (now - arrival)``, orders exactly like the time-invariant ``work + a * arrival``,
which is what :class:`DynasorPolicy` uses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

from dynasor._exceptions import PolicyError
from dynasor.sched.gang import Gang

__all__ = [
    "DEFAULT_POLICY",
    "POLICIES",
    "DynasorPolicy",
    "FCFSPolicy",
    "GangPolicy",
    "LeastAttainedServicePolicy",
    "QueryFCFSPolicy",
    "make_policy",
    "parse_policy",
    "policy_name",
    "split_policies",
]


class GangPolicy(ABC):
    """Orders waiting gangs. Lower keys dispatch first; ties go to the earlier submission."""

    name: ClassVar[str]
    split_gangs: ClassVar[bool] = False
    """True for per-request policies: a gang's requests are queued and dispatched one by one."""

    @abstractmethod
    def key(self, gang: Gang) -> tuple[float, ...]:
        """Sort key of ``gang``, fixed while it waits."""

    def gives_up(self, gang: Gang, now: float, token_time: float | None) -> bool:
        """Whether to leave ``gang`` undispatched for good, because its query cannot finish by its
        deadline anyway (the deadline then ends the query, as it would have mid-step).

        ``token_time`` is the scheduler's recent estimate of seconds per generated token of a
        running request (None before any finished). Plain policies never give up.
        """
        return False


class FCFSPolicy(GangPolicy):
    """Per request, in arrival order: what a plain engine does (the baseline)."""

    name = "fcfs"
    split_gangs = True

    def key(self, gang: Gang) -> tuple[float, ...]:
        return (gang.submitted,)


class QueryFCFSPolicy(GangPolicy):
    """Per query, in query arrival order (Parrot-like application FIFO)."""

    name = "query-fcfs"

    def key(self, gang: Gang) -> tuple[float, ...]:
        return (gang.stats.arrival, gang.submitted)


class LeastAttainedServicePolicy(GangPolicy):
    """Program-level least attained service (Autellix PLAS): least tokens so far first."""

    name = "las"

    def key(self, gang: Gang) -> tuple[float, ...]:
        return (gang.stats.attained_tokens, gang.stats.arrival)


@dataclass
class DynasorPolicy(GangPolicy):
    r"""Gang + shortest predicted remaining work + aging.

    .. math:: \text{key} = W \cdot (1 - c) + P_\text{demoted} + a \cdot t_\text{arrival}

    where the remaining work ``W`` is the query's remaining sample budget times its observed
    tokens per sample, ``c`` its latest certaindex (a query near certainty is near its exit),
    ``a`` the aging rate in tokens per second of waiting: a query that has waited ``W / a``
    seconds outranks any newcomer, so no query starves.

    Before a query has reported, its budget says little (most queries exit early): it is
    predicted to use what finished queries of its algorithm used on average, at the tokens per
    sample seen across queries, so new queries rank as the short jobs they usually are.

    Under overload, a gang whose query can no longer finish by its deadline (now plus its
    predicted duration, ``give_up`` times the predicted tokens of a request at the scheduler's
    recent seconds per token, ends past it) is left undispatched: the deadline ends that query
    as it would have mid-step, and the capacity goes to queries that can still make theirs.
    """

    name: ClassVar[str] = "dynasor"
    aging: float = 50.0
    """Tokens of predicted work forgiven per second since arrival."""
    give_up: float = 1.0
    """Leave a gang undispatched when ``give_up`` times its predicted duration ends past its query's
    deadline: the capacity goes to queries that can still make theirs (0: never give up)."""
    demotion_penalty: float = 1e6
    """Work added for demoted (hopeless) queries: served after every healthy one of similar age."""
    unbounded_requests: int = 8
    """Remaining sub-requests assumed for a query without a sample cap."""

    def __post_init__(self) -> None:
        if self.aging < 0 or self.demotion_penalty < 0 or self.unbounded_requests < 1 or self.give_up < 0:
            raise PolicyError(
                "dynasor policy knobs: aging, demotion_penalty and give_up must be >= 0, unbounded_requests >= 1 "
                f"(got {self.aging}, {self.demotion_penalty}, {self.give_up}, {self.unbounded_requests})"
            )

    def key(self, gang: Gang) -> tuple[float, ...]:
        return (self.predicted_work(gang) + self.aging * gang.stats.arrival, gang.submitted)

    def gives_up(self, gang: Gang, now: float, token_time: float | None) -> bool:
        deadline = gang.stats.deadline
        if not self.give_up or deadline is None or token_time is None:
            return False
        return now + self.give_up * self.request_tokens(gang) * token_time > deadline

    def request_tokens(self, gang: Gang) -> float:
        """Predicted completion tokens of one of the gang's requests: the query's mean so far, else
        what other queries' requests made, at most the requests' ``max_tokens``."""
        query = gang.stats
        prior = gang.max_tokens_mean
        if query.prior_request_tokens is not None:
            prior = min(prior, query.prior_request_tokens)
        return min(query.mean_request_tokens(prior=prior), gang.max_tokens_mean)

    def predicted_work(self, gang: Gang) -> float:
        query = gang.stats
        per_request = self.request_tokens(gang)
        if query.max_samples is None:
            remaining = float(max(self.unbounded_requests, len(gang.requests)))
        else:
            remaining = float(max(query.max_samples - query.samples, len(gang.requests)))
        if query.steps == 0 and query.expected_samples is not None:
            remaining = max(min(remaining, query.expected_samples - query.samples), len(gang.requests))
        work = remaining * per_request
        if query.max_tokens is not None:
            work = min(work, max(query.max_tokens - query.attained_tokens, 0))
        work *= 1.0 - query.certaindex
        return work + (self.demotion_penalty if query.demoted else 0.0)


POLICIES: dict[str, Callable[..., GangPolicy]] = {
    cls.name: cls for cls in (FCFSPolicy, QueryFCFSPolicy, LeastAttainedServicePolicy, DynasorPolicy)
}
"""Every policy by name; :func:`make_policy` builds one, the CLI and the config read this."""

DEFAULT_POLICY = DynasorPolicy.name
"""The policy the runtime, the proxy and the commands use unless told otherwise."""


def make_policy(spec: str, **options: float) -> GangPolicy:
    """Build a policy from its name, or a spec with knobs: ``"dynasor:aging=0.5,demotion_penalty=1e5"``.

    ``options`` set knobs too (they win over the spec's). Knob values are numbers.

    >>> make_policy("las").name
    'las'
    >>> make_policy("dynasor:aging=0.5").aging
    0.5
    >>> make_policy("sjf")
    Traceback (most recent call last):
    ...
    dynasor._exceptions.PolicyError: Unknown scheduling policy: 'sjf' (choose from fcfs, query-fcfs, las, dynasor)
    """
    name, knobs = parse_policy(spec)
    try:
        factory = POLICIES[name]
    except KeyError:
        raise PolicyError(f"Unknown scheduling policy: {name!r} (choose from {', '.join(POLICIES)})") from None
    try:
        return factory(**(knobs | options))
    except TypeError as exc:
        raise PolicyError(f"Bad options for policy {name!r}: {exc}") from exc


def parse_policy(spec: str) -> tuple[str, dict[str, float]]:
    """Split a policy spec into its name and knobs.

    >>> parse_policy("dynasor:aging=0.5,unbounded_requests=4")
    ('dynasor', {'aging': 0.5, 'unbounded_requests': 4})
    """
    name, _, rest = spec.strip().partition(":")
    knobs: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise PolicyError(f"policy knob {item!r} in {spec!r} is not KEY=VALUE")
        knobs[key.strip()] = _number(value.strip(), f"policy knob {key.strip()!r} in {spec!r}")
    return name.strip(), knobs


def _number(text: str, what: str) -> float:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    raise PolicyError(f"{what} must be a number, got {text!r}")


def split_policies(text: str) -> list[str]:
    """Policy specs from a comma-separated list; a ``KEY=VALUE`` item is one more knob of the policy before it.

    >>> split_policies("dynasor:aging=0.5,demotion_penalty=1e5,fcfs,las")
    ['dynasor:aging=0.5,demotion_penalty=1e5', 'fcfs', 'las']
    """
    specs: list[str] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        if "=" in item and ":" not in item:
            if not specs:
                raise PolicyError(f"policy knob {item!r} comes before any policy name")
            specs[-1] += f",{item}"
        else:
            specs.append(item)
    return specs


def policy_name(spec: str) -> str:
    """The policy's name in a spec (``"dynasor:aging=0.5"`` -> ``"dynasor"``)."""
    return spec.partition(":")[0].strip()
