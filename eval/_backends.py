"""Backend specs of ``dynasor eval``: ``sim``, ``replay:PATH`` or an engine URL.

Each spec builds a fresh backend per arm of the comparison (fixed budget, early exit), so the
two arms never share engine state; with a replay source both arms draw the same recorded
samples in the same order, which makes the comparison exact.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dynasor import ConfigError
from dynasor.engine.base import Backend
from dynasor.engine.sim import Source
from dynasor.engine.traces import TraceRecord, bundled_traces, load_traces

__all__ = ["BackendSpec", "parse_backend"]


@dataclass
class BackendSpec:
    """How to build the backend of one arm, and how figures from it are labelled."""

    kind: str
    """``replay``, ``simulated`` or ``real engine`` (the label every figure carries)."""
    label: str
    """Human-readable provenance: trace file, cost profile, or server and model."""
    virtual_time: bool
    """Run in looptime's virtual clock (simulated engines) instead of real time."""
    make: Callable[[], Backend]
    traces: list[TraceRecord] | None = None
    """Recorded traces behind a replay backend (for recorded answers and correctness)."""
    synthetic: Source | None = None
    """The synthetic source of a ``sim`` backend (its references replace the dataset's)."""
    same_samples: bool = False
    """Both arms see the same samples (replay, seeded synthetic draws)."""


def _trace_file(name: str) -> Path | None:
    path = Path(name)
    if path.exists():
        return path
    try:
        return bundled_traces(name)
    except FileNotFoundError:
        return None


def parse_backend(
    spec: str,
    *,
    dataset: str | None = None,
    model: str | None = None,
    profile: str = "h100-llama3-8b",
    seed: int = 0,
    api_key: str | None = None,
    reextract: bool = False,
    algorithm: str = "sc",
) -> BackendSpec:
    """Parse ``--backend``: ``sim``, ``replay:PATH`` (a trace file or bundled trace set) or a URL.

    ``sim`` replays ``dataset`` when it is itself a trace set, and draws synthetic content
    otherwise. Either way the content is the kind ``algorithm`` reads (samples, a chain of
    thought continued in chunks, or reasoning steps), as ``dynasor bench`` gives it; an
    algorithm the simulated engine has no content for is refused. ``reextract`` drops the
    traces' recorded answers (programs read the text). Raises :class:`ConfigError` for anything else.
    """
    from dynasor.engine.sim import SimBackend, content_kind, source_for

    simulated = spec == "sim" or spec.startswith("replay:")
    if simulated:
        try:
            content_kind(algorithm)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    if spec.startswith("replay:") or (spec == "sim" and dataset is not None and _trace_file(dataset)):
        name = spec.removeprefix("replay:") if spec.startswith("replay:") else str(dataset)
        path = _trace_file(name)
        if path is None:
            raise ConfigError(f"replay: no trace file or bundled trace set {name!r}")
        try:
            traces = load_traces(path, reextract=reextract)
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc

        def make_replay() -> Backend:
            return SimBackend(profile, source_for(algorithm, traces=traces, seed=seed), model=f"replay:{path.name}")

        return BackendSpec(
            "replay",
            f"recorded traces {path.name}, simulated timing ({profile})",
            True,
            make_replay,
            traces=traces,
            same_samples=True,
        )
    if spec == "sim":
        synthetic = source_for(algorithm, seed=seed)

        def make_sim() -> Backend:
            return SimBackend(profile, source_for(algorithm, seed=seed), model="dynasor-sim")

        return BackendSpec(
            "simulated",
            f"synthetic {content_kind(algorithm)} (seed {seed}), cost profile {profile}",
            True,
            make_sim,
            synthetic=synthetic,
            same_samples=True,
        )
    if spec.startswith(("http://", "https://")):
        from dynasor.engine.openai import OpenAIBackend

        def make_http() -> Backend:
            return OpenAIBackend(spec, model=model, api_key=api_key)

        return BackendSpec("real engine", f"{spec.rstrip('/')} model {model or '(first served)'}", False, make_http)
    raise ConfigError(f"unknown backend {spec!r}: use sim, replay:PATH or an http(s):// engine URL")
