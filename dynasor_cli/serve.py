"""``dynasor serve``: the OpenAI-compatible proxy in front of one or more engines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dynasor_cli._options import DEFAULT_POLICY, POLICY_HELP, policy_spec


def serve(
    upstream: Annotated[
        list[str],
        typer.Option(
            help="OpenAI-compatible engine URL (repeat for replicas), or 'sim' / 'sim:PROFILE' (simulated engine)."
        ),
    ],
    host: Annotated[str, typer.Option(help="Address to bind (only this one).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8001,
    api_key: Annotated[
        str | None, typer.Option(envvar="DYNASOR_API_KEY", help="Clients must send it as a bearer token.")
    ] = None,
    upstream_api_key: Annotated[
        str | None, typer.Option(envvar="DYNASOR_UPSTREAM_API_KEY", help="Bearer token sent to the upstream.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Upstream model for reasoning (default: the first listed).")] = None,
    policy: Annotated[str, typer.Option(help=POLICY_HELP)] = DEFAULT_POLICY,
    config: Annotated[
        Path | None,
        typer.Option(
            "--certaindex",
            "--config",
            help="Certaindex config (stop rules, YAML or JSON, as `dynasor calibrate` writes); default: bundled.",
        ),
    ] = None,
    max_queries: Annotated[int, typer.Option(help="Reasoning queries admitted at once (more: HTTP 429).")] = 256,
    max_samples: Annotated[int, typer.Option(help="Largest dynasor.max_samples a request may ask.")] = 64,
    max_tokens: Annotated[int, typer.Option(help="Largest max_tokens a request may ask.")] = 32768,
    max_n: Annotated[int, typer.Option(help="Largest n a request may ask.")] = 16,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the OpenAI API: plain requests pass through, requests with a `dynasor` object reason."""
    import uvicorn

    from dynasor import DynasorError
    from dynasor.server import ServerSettings, create_app

    policy_spec(policy)
    try:
        settings = ServerSettings(
            upstreams=tuple(upstream),
            host=host,
            port=port,
            api_key=api_key,
            upstream_api_key=upstream_api_key,
            model=model,
            policy=policy,
            allocator_config=config,
            max_active=max_queries,
            max_samples=max_samples,
            max_tokens=max_tokens,
            max_n=max_n,
        )
        if config is not None:
            from dynasor.allocator import AllocatorConfig

            AllocatorConfig.load(config)  # fail now, not at the first request
    except (DynasorError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, access_log=False)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
