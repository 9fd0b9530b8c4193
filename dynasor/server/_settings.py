"""What ``dynasor serve`` is configured with (no web framework imported here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dynasor._exceptions import ConfigError
from dynasor.engine.sim import Source
from dynasor.sched.policy import DEFAULT_POLICY, make_policy

__all__ = ["ServerSettings"]


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Settings of the proxy; :func:`dynasor.server.create_app` builds an app from them.

    ``upstreams`` are OpenAI-compatible base URLs (``http://host:port``, a trailing ``/v1``
    is accepted), or a single ``sim`` / ``sim:PROFILE`` for the simulated engine.
    """

    upstreams: tuple[str, ...] = ("sim",)
    host: str = "127.0.0.1"
    port: int = 8001
    api_key: str | None = None
    """Clients must send ``Authorization: Bearer <api_key>`` when set."""
    upstream_api_key: str | None = None
    """Bearer token the proxy sends upstream (vLLM ``--api-key``)."""
    model: str | None = None
    """Model name reasoning sub-requests use (None: the first one the upstream lists)."""
    policy: str = DEFAULT_POLICY
    """Gang policy, a name or a spec with knobs (``dynasor:aging=0.5``)."""
    allocator_config: Path | None = None
    """Allocator (stop-rule) YAML/JSON; None: the bundled defaults."""
    max_active: int = 256
    """Reasoning queries admitted at once; more get HTTP 429."""
    max_samples: int = 64
    """Largest ``dynasor.max_samples`` a request may ask for."""
    max_tokens: int = 32768
    """Largest ``max_tokens`` a request may ask for."""
    max_n: int = 16
    """Largest ``n`` a request may ask for."""
    replica_retry_s: float = 10.0
    """How long a failing replica stays out before it is tried again."""
    upstream_attempts: int = 3
    """Tries per sub-request on one replica before it counts as failing."""
    connect_timeout_s: float = 5.0
    read_timeout_s: float | None = 600.0
    streaming_algorithms: tuple[str, ...] = ("cot",)
    """Algorithms whose reasoning text is streamed as it decodes (others stream progress)."""
    sim_source: Source | None = field(default=None, compare=False)
    """Token content of the simulated engine (None: a seeded synthetic source)."""
    sim_seed: int = 0

    def __post_init__(self) -> None:
        if not self.upstreams:
            raise ConfigError("at least one --upstream is needed (a URL, or 'sim')")
        sims = [u for u in self.upstreams if _is_sim(u)]
        if sims and len(self.upstreams) > 1:
            raise ConfigError("'sim' cannot be combined with other upstreams")
        for url in self.upstreams:
            if not _is_sim(url) and not url.startswith(("http://", "https://")):
                raise ConfigError(f"upstream {url!r} is neither an http(s) URL nor 'sim' / 'sim:PROFILE'")
        if self.sim_profile is not None:
            from dynasor.engine.sim import load_profile

            try:
                load_profile(self.sim_profile)
            except ValueError as exc:
                raise ConfigError(str(exc)) from exc
        make_policy(self.policy)  # a PolicyError (a ConfigError) for an unknown name or knob
        for name in ("max_active", "max_samples", "max_tokens", "max_n", "upstream_attempts"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def sim_profile(self) -> str | None:
        """The cost profile when serving over the simulated engine, else None."""
        if len(self.upstreams) != 1 or not _is_sim(self.upstreams[0]):
            return None
        _, _, profile = self.upstreams[0].partition(":")
        return profile or "h100-llama3-8b"


def _is_sim(url: str) -> bool:
    return url == "sim" or url.startswith("sim:")
