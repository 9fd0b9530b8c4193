"""``dynasor serve``: options reach the app, and only the host asked for is bound."""

from __future__ import annotations

import pytest
import uvicorn
from typer.testing import CliRunner

from dynasor_cli import app


@pytest.fixture
def captured(monkeypatch):
    calls: list[tuple[object, dict]] = []
    monkeypatch.setattr(uvicorn, "run", lambda asgi, **kw: calls.append((asgi, kw)))
    return calls


def test_serve_binds_the_host_and_port_asked_for(captured):
    result = CliRunner().invoke(app, ["serve", "--upstream", "sim", "--host", "127.0.0.2", "--port", "9123"])
    assert result.exit_code == 0, result.output
    (asgi, kw) = captured[0]
    assert (kw["host"], kw["port"]) == ("127.0.0.2", 9123)
    assert asgi.openapi()["info"]["title"] == "Dynasor"


def test_serve_defaults_to_loopback(captured):
    assert CliRunner().invoke(app, ["serve", "--upstream", "sim:cpu-tiny"]).exit_code == 0
    assert (captured[0][1]["host"], captured[0][1]["port"]) == ("127.0.0.1", 8001)


@pytest.mark.parametrize(
    "args",
    [
        ["--upstream", "ftp://nowhere"],
        ["--upstream", "sim:no-such-profile"],
        ["--upstream", "sim", "--upstream", "http://127.0.0.1:1"],
        ["--upstream", "sim", "--policy", "nope"],
        ["--upstream", "sim", "--config", "/no/such/file.yaml"],
        ["--upstream", "sim", "--max-samples", "0"],
    ],
)
def test_bad_options_exit_without_serving(captured, args):
    result = CliRunner().invoke(app, ["serve", *args])
    assert result.exit_code == 2
    assert not captured


def test_policy_knobs_reach_the_proxy_s_runtime(captured):
    from dynasor.sched import DynasorPolicy
    from dynasor.server import ServerSettings
    from dynasor.server.state import ProxyState

    assert CliRunner().invoke(app, ["serve", "--upstream", "sim", "--policy", "dynasor:aging=0.5"]).exit_code == 0
    assert ProxyState(ServerSettings(policy="dynasor:aging=0.5")).runtime.policy == DynasorPolicy(aging=0.5)
    bad = CliRunner().invoke(app, ["serve", "--upstream", "sim", "--policy", "dynasor:aging=-1"])
    assert bad.exit_code == 2 and "aging" in bad.output and len(captured) == 1


def test_a_certaindex_config_is_checked_before_serving(captured, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sc: {measure: entropy, threshold: 0.8, min_step: 2}\n")
    refused = CliRunner().invoke(app, ["serve", "--upstream", "sim", "--certaindex", str(bad)])
    assert refused.exit_code == 2 and "min_step" in refused.output and not captured
    good = tmp_path / "rules.yaml"
    good.write_text("version: 1\nsc: {measure: majority, threshold: 0.8, min_samples: 4, round_size: 2}\n")
    assert CliRunner().invoke(app, ["serve", "--upstream", "sim", "--certaindex", str(good)]).exit_code == 0
    assert len(captured) == 1
