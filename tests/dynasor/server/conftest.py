"""Run proxies (and small fake upstreams) with uvicorn on free loopback ports, in threads."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn

from dynasor.engine.sim import SyntheticSource
from dynasor.server import ServerSettings, create_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Serve an ASGI app on 127.0.0.1 in a background thread; yields its base URL."""
    port = free_port()
    # A bounded graceful shutdown: a test may leave a request hanging on purpose.
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=10)
        # A server left running keeps logging (and formatting tracebacks) under later tests.
        assert not thread.is_alive(), "the test server did not stop"


def fast_sim(**changes: Any) -> ServerSettings:
    """Proxy settings over the simulated engine with short answers (a sample takes ~0.1 s)."""
    base: dict[str, Any] = {
        "upstreams": ("sim",),
        "sim_source": SyntheticSource(seed=0, min_tokens=5, max_tokens=20),
    }
    return ServerSettings(**(base | changes))


@contextmanager
def proxy(settings: ServerSettings) -> Iterator[tuple[str, Any]]:
    """A proxy on a free port; yields its base URL and the app (``app.state.proxy`` once started)."""
    app = create_app(settings)
    with serve_app(app) as url:
        yield url, app


@pytest.fixture(scope="module")
def sim_proxy() -> Iterator[tuple[str, Any]]:
    with proxy(fast_sim()) as served:
        yield served


@pytest.fixture(scope="session")
def make_proxy() -> Any:
    """``make_proxy(settings)``: context manager serving a proxy, yields ``(url, app)``."""
    return proxy


@pytest.fixture(scope="session")
def sim_settings() -> Any:
    """``sim_settings(**changes)``: proxy settings over a fast simulated engine."""
    return fast_sim


@pytest.fixture(scope="session")
def serve() -> Any:
    """``serve(app)``: context manager serving any ASGI app, yields its base URL."""
    return serve_app
