"""Every knob validated up front by one schema: 400 in milliseconds, ``param`` naming the field, nothing internal.

The bodies below are the bad inputs a new user tried (and a few more of each kind): each must
be refused before any engine work starts, alike on every path (relayed upstream, answered by
the simulated engine, reasoning).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dynasor.server import ServerSettings
from tests.dynasor.server.conftest import serve_app
from tests.dynasor.server.faulty import FaultyUpstream

PROMPT = [{"role": "user", "content": "What is 6 times 7?"}]
INTERNALS = ("Traceback", "TypeError", "AttributeError", "not supported between", "<class", "object at 0x")


@pytest.fixture(scope="module")
def proxies(make_proxy, sim_settings) -> Iterator[dict[str, Any]]:
    """Over the sim, over the sim with no reward scorer, and relaying to a fake upstream."""
    upstream = FaultyUpstream()
    with (
        serve_app(upstream.app()) as up_url,
        make_proxy(sim_settings()) as (sim_url, sim_app),
        make_proxy(sim_settings(reward=("none",))) as (bare_url, _),
        make_proxy(ServerSettings(upstreams=(up_url,))) as (relay_url, _),
    ):
        yield {"sim": sim_url, "bare": bare_url, "relay": relay_url, "upstream": upstream, "sim_app": sim_app}


def refused(url: str, body: dict[str, Any], param: str | None, status: int = 400) -> dict[str, Any]:
    """Post ``body``; assert a fast 4xx in OpenAI's shape naming ``param``; return the error."""
    started = time.monotonic()
    r = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=30)
    elapsed = time.monotonic() - started
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == status and error["type"] == "invalid_request_error"
    assert error["param"] == param, error
    assert not any(word in error["message"] for word in INTERNALS), error["message"]
    assert elapsed < 3.0, f"took {elapsed:.2f} s: not refused up front"  # a shared machine; the work counters decide
    return error


def reasoning(**dynasor: Any) -> dict[str, Any]:
    return {"messages": PROMPT, "dynasor": dynasor}


# The cases of the report, then more of each kind.
REASONING_CASES = [
    (reasoning(max_tokens=1e12), "dynasor.max_tokens", "valid integer"),
    (reasoning(max_tokens=10**12), "dynasor.max_tokens", "exceeds this server's limit"),
    (reasoning(max_tokens=-1), "dynasor.max_tokens", "greater than or equal to 1"),
    (reasoning(temperature="hot"), "dynasor.temperature", "valid number"),
    (reasoning(temperature=-5), "dynasor.temperature", "greater than or equal to 0"),
    (reasoning(certaindex={"measure": "bogus"}), "dynasor.certaindex.measure", "bogus"),
    (reasoning(samples_per_round="x"), "dynasor.samples_per_round", "valid integer"),
    (reasoning(samples_per_round=2.5), "dynasor.samples_per_round", "valid integer"),
    (reasoning(samples_per_round=True), "dynasor.samples_per_round", "valid integer"),
    (reasoning(samples_per_round=0), "dynasor.samples_per_round", "greater than or equal to 1"),
    (reasoning(bogus_knob=1), "dynasor.bogus_knob", "Unknown parameter(s) for sc: bogus_knob (valid: "),
    (reasoning(vote="loudest"), "dynasor.vote", "vote must be one of"),
    (reasoning(algorithm="nope"), "dynasor.algorithm", "choose from bon, cot, mcts, rebase, sc"),
    (reasoning(algorithm=5), "dynasor.algorithm", "valid string"),
    (reasoning(algorithm="mcts", rollout="yes"), "dynasor.rollout", "valid boolean"),
    (reasoning(algorithm="mcts", rollout_tokens=10**6), "dynasor.rollout_tokens", "exceeds this server's limit"),
    (reasoning(algorithm="rebase", balance_temperature=0), "dynasor.balance_temperature", "greater than 0"),
    (reasoning(algorithm="cot", chunk_tokens="64"), "dynasor.chunk_tokens", "valid integer"),
    (reasoning(algorithm="cot", probes="no"), "dynasor.probes", "valid boolean"),
    (reasoning(algorithm="bon", scorer="oracle"), "dynasor.scorer", "Unknown scorer 'oracle'"),
    (reasoning(max_samples="3"), "dynasor.max_samples", "valid integer"),
    (reasoning(max_samples=10_000), "dynasor.max_samples", "exceeds this server's limit"),
    (reasoning(max_total_tokens=0), "dynasor.max_total_tokens", "greater than or equal to 1"),
    (reasoning(deadline=0), "dynasor.deadline", "greater than 0"),
    (reasoning(deadline="soon"), "dynasor.deadline", "valid number"),
    (reasoning(progress="no"), "dynasor.progress", "valid boolean"),
    (reasoning(effort="extreme"), "dynasor.effort", "'mild', 'low', 'mid', 'high' or 'crazy'"),
    (reasoning(certaindex={"threshold": 2}), "dynasor.certaindex.threshold", "threshold"),
    (reasoning(certaindex={"threshold": "high"}), "dynasor.certaindex.threshold", "valid number"),
    (reasoning(certaindex={"nope": 1}), "dynasor.certaindex.nope", "Extra inputs"),
    ({"messages": PROMPT, "n": 2, "dynasor": {}}, "n", "n > 1"),
    ({"messages": PROMPT, "dynasor": "sc"}, "dynasor", "valid dictionary"),
    ({"messages": [], "dynasor": {}}, "messages", "at least 1 item"),
    ({"messages": "hi", "dynasor": {}}, "messages", "valid list"),
]


@pytest.mark.parametrize(("body", "param", "message"), REASONING_CASES)
def test_bad_reasoning_requests_are_refused_up_front(proxies, body, param, message):
    app = proxies["sim_app"]
    engine = app.state.proxy.pool.replicas[0].backend.engine
    before = engine.tokens_generated + engine.running + engine.waiting
    error = refused(proxies["sim"], body, param)
    assert message in error["message"]
    assert engine.tokens_generated + engine.running + engine.waiting == before  # no engine work started


# Fields the proxy acts on in a plain request: one check on every path.
PLAIN_CASES = [
    ({"max_tokens": "12"}, "max_tokens", "valid integer"),
    ({"max_tokens": 12.0}, "max_tokens", "valid integer"),
    ({"max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
    ({"max_tokens": 10**7}, "max_tokens", "exceeds this server's limit"),
    ({"max_completion_tokens": 10**7}, "max_completion_tokens", "exceeds this server's limit"),
    ({"stream": "yes"}, "stream", "valid boolean"),
    ({"stream": 1}, "stream", "valid boolean"),
    ({"n": "2"}, "n", "valid integer"),
    ({"n": 1000}, "n", "exceeds this server's limit"),
    ({"temperature": "hot"}, "temperature", "valid number"),
    ({"temperature": -5}, "temperature", "greater than or equal to 0"),
    ({"stream_options": {"include_usage": "yes"}}, "stream_options.include_usage", "valid boolean"),
    ({"model": 7}, "model", "valid string"),
]


@pytest.mark.parametrize("path", ["sim", "relay"])
@pytest.mark.parametrize(("fields", "param", "message"), PLAIN_CASES)
def test_plain_fields_are_checked_alike_relayed_or_simulated(proxies, path, fields, param, message):
    before = proxies["upstream"].requests
    error = refused(proxies[path], {"messages": PROMPT} | fields, param)
    assert message in error["message"]
    assert proxies["upstream"].requests == before  # nothing was forwarded


@pytest.mark.parametrize(("fields", "param", "message"), PLAIN_CASES)
def test_reasoning_requests_check_the_same_plain_fields(proxies, fields, param, message):
    if param == "n":
        fields = {"n": fields["n"]}  # n is refused with dynasor anyway; the check still names it
    error = refused(proxies["sim"], {"messages": PROMPT, "dynasor": {}} | fields, param)
    assert message in error["message"] or param == "n"


@pytest.mark.parametrize("algorithm", ["bon", "mcts", "rebase"])
def test_a_program_that_scores_is_refused_when_no_scorer_is_configured(proxies, algorithm):
    error = refused(proxies["bare"], reasoning(algorithm=algorithm), "dynasor.algorithm")
    assert f"{algorithm} needs a reward scorer" in error["message"]
    assert "--reward logprob" in error["message"]  # says what to configure


def test_the_same_body_is_accepted_on_every_path(proxies):
    plain = {"messages": PROMPT, "max_tokens": 4, "temperature": 0.5, "stream_options": {"include_usage": True}}
    for path in ("sim", "relay"):
        r = httpx.post(f"{proxies[path]}/v1/chat/completions", json=plain, timeout=30)
        assert r.status_code == 200, (path, r.text)
    r = httpx.post(f"{proxies['sim']}/v1/chat/completions", json=plain | {"dynasor": {"max_samples": 2}}, timeout=30)
    assert r.status_code == 200, r.text


def test_self_consistency_voting_by_reward_is_refused_without_a_scorer(proxies):
    error = refused(proxies["bare"], reasoning(algorithm="sc", vote="reward"), "dynasor.algorithm")
    assert "sc needs a reward scorer" in error["message"]
    r = httpx.post(f"{proxies['bare']}/v1/chat/completions", json=reasoning(algorithm="sc", max_samples=2), timeout=30)
    assert r.status_code == 200  # majority voting needs none


@pytest.mark.parametrize(("max_tokens", "chunk"), [(128, 64), (100, 32)])
def test_cot_reports_the_chain_budget_it_was_given_as_its_cap(proxies, max_tokens, chunk):
    body = {"messages": PROMPT, "max_tokens": max_tokens, "dynasor": {"algorithm": "cot", "chunk_tokens": chunk}}
    r = httpx.post(f"{proxies['sim']}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    usage = r.json()["usage"]["dynasor"]
    assert usage["tokens_cap"] == max_tokens  # the chain without probes, as the plain model would write it
    assert usage["tokens_saved"] == max(max_tokens - usage["tokens_generated"], 0)
