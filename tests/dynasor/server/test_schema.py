"""Property-based requests generated from the proxy's own OpenAPI schema: never a 5xx.

Written against schemathesis' documented pytest integration: the schema is loaded when the
module is imported (``schemathesis.openapi.from_dict`` on the app's own ``openapi()``) and
``@schema.parametrize()`` makes one test per operation; the live proxy comes from an ordinary
fixture and each case is sent to it with ``case.call(base_url=...)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from dynasor.server import create_app
from dynasor.server.app import ProxyState
from tests.dynasor.server.conftest import fast_sim, proxy

schemathesis = pytest.importorskip("schemathesis")

# Small limits keep each generated reasoning request to a few simulated samples.
SETTINGS = fast_sim(max_samples=4, max_tokens=64, max_n=2)
schema = schemathesis.openapi.from_dict(create_app(SETTINGS).openapi())
EXAMPLES = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))


def _own_deadline_passed(case: Any, response: Any) -> bool:
    """A 504 is the documented answer to a query whose own ``dynasor.deadline`` passed before any
    answer (a generated deadline may be 5e-324 s); any other 5xx is a server error."""
    options = case.body.get("dynasor") if isinstance(case.body, dict) else None
    return (
        response.status_code == 504
        and isinstance(options, dict)
        and options.get("deadline") is not None
        and response.json()["error"]["type"] == "upstream_timeout"
    )


def check_no_server_error(case: Any, base_url: str) -> None:
    """The property: any request the schema allows gets a non-5xx answer, errors in the OpenAI shape."""
    response = case.call(base_url=base_url, timeout=30)
    if not _own_deadline_passed(case, response):
        assert response.status_code < 500, f"{case.method} {case.path} -> {response.status_code}: {response.text[:500]}"
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["code"] == response.status_code and error["message"]


@pytest.fixture(scope="module")
def proxy_url() -> Iterator[str]:
    with proxy(SETTINGS) as (url, _):
        yield url


@pytest.mark.slow
@schema.parametrize()
@EXAMPLES
def test_no_server_errors(case: Any, proxy_url: str) -> None:
    check_no_server_error(case, proxy_url)


@pytest.mark.slow
def test_a_broken_route_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same property fails when a route crashes on some valid inputs: the check can find a 5xx."""
    checked = ProxyState.check_limits

    def crash_on_streams(self: ProxyState, body: Any) -> None:
        checked(self, body)
        if body.stream:
            raise RuntimeError("deliberately broken route")

    monkeypatch.setattr(ProxyState, "check_limits", crash_on_streams)
    operation = schema["/v1/completions"]["POST"]
    with proxy(SETTINGS) as (url, _):
        # Derandomized, with room to reach a valid streaming body: the check must find the crash
        # every run, not in most runs.
        @given(case=operation.as_strategy())
        @settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        def generated(case: Any) -> None:
            check_no_server_error(case, url)

        with pytest.raises(AssertionError, match=r"-> 500"):
            generated()
