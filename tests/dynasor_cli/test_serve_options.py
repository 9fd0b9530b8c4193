"""``dynasor serve``: the reward, timeout, limit and health options reach the proxy's settings."""

from __future__ import annotations

import pytest
import uvicorn
from typer.testing import CliRunner

import dynasor.server
from algorithms.protocol import GenerateRequest
from dynasor.engine.base import EngineRequest
from dynasor_cli import app


@pytest.fixture
def settings_seen(monkeypatch):
    seen: list[dynasor.server.ServerSettings] = []
    build = dynasor.server.create_app
    monkeypatch.setattr(uvicorn, "run", lambda asgi, **kw: None)
    monkeypatch.setattr(dynasor.server, "create_app", lambda settings: seen.append(settings) or build(settings))
    return seen


def test_options_reach_the_settings(settings_seen):
    args = ["serve", "--upstream", "http://127.0.0.1:9", "--reward", "logprob", "--reward", "http://127.0.0.1:8042"]
    args += ["--reward-endpoint", "pooling", "--reward-model", "prm", "--connect-timeout", "2", "--read-timeout", "30"]
    args += ["--request-timeout", "90", "--max-passthrough", "64", "--max-body-mb", "0.5", "--health-interval", "0"]
    args += [
        "--eject-after",
        "5",
        "--api-key",
        "k",
        "--public-health",
        "--replica-seqs",
        "12",
        "--stream-interval",
        "16",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (s,) = settings_seen
    assert s.reward == ("logprob", "http://127.0.0.1:8042") and (s.reward_endpoint, s.reward_model) == (
        "pooling",
        "prm",
    )
    assert (s.connect_timeout_s, s.read_timeout_s, s.request_timeout_s) == (2.0, 30.0, 90.0)
    assert (s.max_passthrough, s.max_body_bytes, s.health_interval_s, s.eject_after) == (64, 2**19, 0.0, 5)
    assert s.public_health and s.api_key == "k"
    assert s.replica_seqs == 12
    from dynasor.server.state import ProxyState

    (replica,) = ProxyState(s).pool.replicas
    sub_request = EngineRequest("r", "q", GenerateRequest("x", max_tokens=1))
    assert replica.backend.build_body(sub_request)[1]["stream_interval"] == 16


def test_each_replica_gives_the_scheduler_its_share(settings_seen):
    from dynasor.server.state import ProxyState

    args = ["serve", "--upstream", "http://127.0.0.1:9", "--upstream", "http://127.0.0.1:10", "--replica-seqs", "3"]
    assert CliRunner().invoke(app, args).exit_code == 0
    capacity = ProxyState(settings_seen[0]).backend.capacity()
    assert capacity is not None and capacity.max_seqs == 6


def test_idle_client_connections_outlive_the_clients_own_keep_alive(monkeypatch):
    seen: list[dict] = []
    monkeypatch.setattr(uvicorn, "run", lambda asgi, **kw: seen.append(kw))
    assert CliRunner().invoke(app, ["serve", "--upstream", "sim"]).exit_code == 0
    assert seen[0]["timeout_keep_alive"] > 5  # httpx and the OpenAI SDK keep idle connections 5 s


def test_the_default_reward_works_against_a_plain_engine(settings_seen):
    assert CliRunner().invoke(app, ["serve", "--upstream", "http://127.0.0.1:9"]).exit_code == 0
    assert settings_seen[0].rewards() == ("logprob",)
    assert CliRunner().invoke(app, ["serve", "--upstream", "sim"]).exit_code == 0
    assert settings_seen[1].rewards() == ("synthetic",)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--upstream", "sim", "--reward", "logprob"], "logprob"),
        (["--upstream", "http://127.0.0.1:9", "--reward", "synthetic"], "synthetic"),
        (["--upstream", "sim", "--reward", "oracle"], "unknown reward"),
        (["--upstream", "sim", "--reward", "none", "--reward", "synthetic"], "none"),
        (["--upstream", "sim", "--reward-endpoint", "embed"], "classify or pooling"),
        (["--upstream", "sim", "--request-timeout", "0"], "request_timeout_s"),
        (["--upstream", "sim", "--max-passthrough", "0"], "max_passthrough"),
        (["--upstream", "sim", "--replica-seqs", "0"], "replica_seqs"),
        (["--upstream", "sim", "--stream-interval", "0"], "stream-interval"),
        (["--upstream", "sim", "--health-interval", "-1"], "health_interval_s"),
    ],
)
def test_bad_options_exit_before_serving(settings_seen, args, message):
    result = CliRunner().invoke(app, ["serve", *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not settings_seen
