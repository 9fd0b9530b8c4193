"""The operational endpoints behind the API key: /health, /metrics, /openapi.json, /docs."""

from __future__ import annotations

import httpx
import pytest

KEY = {"authorization": "Bearer s3cret"}


@pytest.mark.parametrize("path", ["/health", "/metrics", "/openapi.json", "/docs"])
def test_ops_endpoints_need_the_key_when_one_is_set(make_proxy, sim_settings, path):
    with make_proxy(sim_settings(api_key="s3cret")) as (url, _):
        denied = httpx.get(f"{url}{path}")
        assert denied.status_code == 401
        assert denied.json()["error"]["type"] == "authentication_error"
        assert httpx.get(f"{url}{path}", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(f"{url}{path}", headers=KEY).status_code == 200


@pytest.mark.parametrize("path", ["/health", "/metrics", "/openapi.json", "/docs"])
def test_ops_endpoints_are_open_without_a_key(make_proxy, sim_settings, path):
    with make_proxy(sim_settings()) as (url, _):
        assert httpx.get(f"{url}{path}").status_code == 200


def test_public_health_shows_the_status_only(make_proxy, sim_settings):
    with make_proxy(sim_settings(api_key="s3cret", public_health=True)) as (url, _):
        anonymous = httpx.get(f"{url}/health")
        assert anonymous.status_code == 200 and anonymous.json() == {"status": "ok"}  # no upstream URLs or errors
        detailed = httpx.get(f"{url}/health", headers=KEY).json()
        assert detailed["status"] == "ok" and detailed["upstreams"][0]["url"].startswith("sim:")
        assert httpx.get(f"{url}/metrics").status_code == 401  # the rest stays behind the key


def test_schema_lists_the_api_and_not_the_ops_routes(make_proxy, sim_settings):
    with make_proxy(sim_settings()) as (url, _):
        paths = httpx.get(f"{url}/openapi.json").json()["paths"]
    assert {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics"} <= set(paths)
    assert "/openapi.json" not in paths and "/docs" not in paths
