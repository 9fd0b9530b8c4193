"""What several commands parse the same way: policy specs and ``KEY=VALUE`` lists."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from dynasor import PolicyError
from dynasor.sched import DEFAULT_POLICY, POLICIES, make_policy, split_policies

__all__ = ["DEFAULT_POLICY", "POLICY_HELP", "key_values", "policy_spec", "policy_specs"]

POLICY_HELP = (
    f"Gang policy: {', '.join(POLICIES)}; knobs as NAME:KEY=VALUE,KEY=VALUE (e.g. {DEFAULT_POLICY}:aging=0.5)."
)


def policy_spec(spec: str, option: str = "--policy") -> str:
    """``spec`` when it names a policy with valid knobs; else a usage error."""
    try:
        make_policy(spec)
    except PolicyError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None
    return spec.strip()


def policy_specs(text: str, option: str = "--policies") -> list[str]:
    """The policy specs of a comma-separated list (``dynasor:aging=0.5,fcfs``), each checked."""
    try:
        specs = split_policies(text)
    except PolicyError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None
    if not specs:
        raise typer.BadParameter("needs at least one policy", param_hint=option)
    return [policy_spec(spec, option) for spec in specs]


def key_values(items: list[str] | None, option: str, parse: Callable[[str], Any]) -> dict[str, Any]:
    """``KEY=VALUE`` options as a dict, each value read by ``parse``."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{option} must look like KEY=VALUE, got {item!r}", param_hint=option)
        out[key.strip()] = parse(value)
    return out
