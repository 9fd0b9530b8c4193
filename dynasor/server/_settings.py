"""What ``dynasor serve`` is configured with (no web framework imported here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dynasor._exceptions import ConfigError
from dynasor.engine.sim import Source
from dynasor.sched.policy import DEFAULT_POLICY, make_policy

__all__ = ["REWARDS", "ServerSettings"]

REWARDS = ("auto", "logprob", "judge", "synthetic", "none")
"""Reward scorer names ``--reward`` takes (or a reward server's URL)."""


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
    replica_seqs: int = 256
    """Sub-requests the scheduler keeps running on each upstream replica; the rest wait in its
    queue, in policy order. Proxy processes sharing replicas split the engine's ``max_num_seqs``
    among them with it (a simulated engine knows its own limit and ignores this)."""
    max_samples: int = 64
    """Largest ``dynasor.max_samples`` a request may ask for."""
    max_tokens: int = 32768
    """Largest ``max_tokens`` a request may ask for."""
    max_n: int = 16
    """Largest ``n`` a request may ask for."""
    replica_retry_s: float = 10.0
    """How long a replica taken out stays out (without probing: before it is tried again)."""
    eject_after: int = 3
    """Failed requests in a row that take a replica answering with errors out (never the last one)."""
    health_interval_s: float = 2.0
    """Seconds between health probes of every replica (0: no probing)."""
    upstream_attempts: int = 3
    """Tries per sub-request on one replica (with backoff) before it counts as failed."""
    stream_interval: int | None = None
    """Tokens per streamed chunk asked of upstream engines for reasoning sub-requests (vLLM's
    per-request ``stream_interval``); None: not asked, one token per chunk on vLLM's default."""
    connect_timeout_s: float = 5.0
    """Seconds to open a connection to an upstream."""
    read_timeout_s: float | None = 300.0
    """Longest silence from an upstream while a request waits for its next bytes (None: none)."""
    request_timeout_s: float | None = 600.0
    """Longest a request may take: a plain one from arrival to its last byte, a reasoning one by
    default (its ``deadline`` may be shorter, never longer). None: no limit."""
    max_passthrough: int = 512
    """Plain requests in flight at once; more get HTTP 429."""
    max_body_bytes: int = 8 * 2**20
    """Largest request body accepted; larger ones get HTTP 413."""
    public_health: bool = False
    """With ``api_key`` set: answer ``/health`` without the key (the status only, no upstream details)."""
    reward: tuple[str, ...] = ("auto",)
    """Reward scorers reasoning programs that score may use, the first the default: ``logprob``,
    ``judge``, ``synthetic`` (simulated engine only), a reward server's URL, ``auto`` (``synthetic``
    over the simulated engine, else ``logprob``) or ``none``."""
    reward_endpoint: Literal["classify", "pooling"] = "classify"
    """The reward server's endpoint (vLLM ``--runner pooling``)."""
    reward_model: str | None = None
    """The reward server's model (None: the first it lists)."""
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
        counts = ("max_active", "replica_seqs", "max_samples", "max_tokens", "max_n", "upstream_attempts")
        for name in (*counts, "eject_after", "max_passthrough", "max_body_bytes", "stream_interval"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1, got {value}")
        for name in ("connect_timeout_s", "read_timeout_s", "request_timeout_s", "replica_retry_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be > 0, got {value}")
        if self.health_interval_s < 0:
            raise ConfigError(f"health_interval_s must be >= 0 (0: no probing), got {self.health_interval_s}")
        self.rewards()  # a ConfigError now, not at the first request

    def rewards(self) -> tuple[str, ...]:
        """The reward scorers to build, ``auto`` resolved (empty: none)."""
        names = tuple(
            "synthetic" if r == "auto" and self.sim_profile else "logprob" if r == "auto" else r for r in self.reward
        )
        if not names or "none" in names:
            if len(names) > 1:
                raise ConfigError("reward 'none' cannot be combined with other reward scorers")
            return ()
        for name in names:
            if name.startswith(("http://", "https://")):
                continue
            if name not in REWARDS:
                choices = ", ".join(REWARDS)
                raise ConfigError(
                    f"unknown reward {name!r}: {choices}, or a reward server's URL (vLLM --runner pooling)"
                )
            if name == "synthetic" and not self.sim_profile:
                raise ConfigError("reward 'synthetic' scores simulated samples; use it with --upstream sim")
            if name == "logprob" and self.sim_profile:
                raise ConfigError(
                    "reward 'logprob' reads the engine's logprobs, which the simulated engine has none of"
                )
        if len(set(names)) != len(names):
            raise ConfigError(f"a reward is named twice: {', '.join(names)}")
        if self.reward_endpoint not in ("classify", "pooling"):
            raise ConfigError(f"reward_endpoint must be classify or pooling, got {self.reward_endpoint!r}")
        return names

    @property
    def sim_profile(self) -> str | None:
        """The cost profile when serving over the simulated engine, else None."""
        if len(self.upstreams) != 1 or not _is_sim(self.upstreams[0]):
            return None
        _, _, profile = self.upstreams[0].partition(":")
        return profile or "h100-llama3-8b"


def _is_sim(url: str) -> bool:
    return url == "sim" or url.startswith("sim:")
