"""``dynasor serve``: the OpenAI-compatible proxy in front of one or more engines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dynasor_cli._options import DEFAULT_POLICY, POLICY_HELP, policy_spec

_KEEP_ALIVE_S = 75


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
    replica_seqs: Annotated[
        int,
        typer.Option(
            help="Sub-requests kept running on each upstream replica; more wait in the scheduler, in policy "
            "order (proxies sharing replicas split the engine's max_num_seqs with it)."
        ),
    ] = 256,
    max_samples: Annotated[int, typer.Option(help="Largest dynasor.max_samples a request may ask.")] = 64,
    max_tokens: Annotated[int, typer.Option(help="Largest max_tokens a request may ask.")] = 32768,
    max_n: Annotated[int, typer.Option(help="Largest n a request may ask.")] = 16,
    reward: Annotated[
        list[str] | None,
        typer.Option(
            help="Reward scorer for programs that score (bon, mcts, rebase, sc with vote=reward); repeat to offer "
            "several, the first the default (a request's dynasor.scorer picks another): 'logprob' (the engine's own "
            "token probabilities, no second model), 'judge' (the served model grades), a reward server's URL "
            "(vLLM --runner pooling), 'synthetic' (sim only), 'none'. Default 'auto': logprob, synthetic over sim."
        ),
    ] = None,
    reward_endpoint: Annotated[
        str, typer.Option(help="The reward server's endpoint: classify or pooling (vLLM).")
    ] = "classify",
    reward_model: Annotated[
        str | None, typer.Option(help="The reward server's model (default: the first it lists).")
    ] = None,
    stream_interval: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Tokens per streamed chunk asked of the upstream for reasoning sub-requests (vLLM's per-request "
            "stream_interval): fewer chunks, less proxy CPU per token; the text and the token meter then advance "
            "that many tokens at a time. Default: not asked (one token per chunk on vLLM's default).",
        ),
    ] = None,
    connect_timeout: Annotated[float, typer.Option(help="Seconds to open a connection to an upstream.")] = 5.0,
    read_timeout: Annotated[
        float, typer.Option(help="Longest silence from an upstream while waiting for its next bytes, in seconds.")
    ] = 300.0,
    request_timeout: Annotated[
        float,
        typer.Option(
            help="Longest a request may take, in seconds: a plain one to its last byte (504, or an error event in a "
            "stream), a reasoning one by default (its dynasor.deadline may be shorter, never longer)."
        ),
    ] = 600.0,
    max_passthrough: Annotated[
        int, typer.Option(help="Plain requests in flight at once (more: HTTP 429 with Retry-After).")
    ] = 512,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body, in MiB (larger: HTTP 413).")] = 8.0,
    health_interval: Annotated[
        float, typer.Option(help="Seconds between health probes of each upstream (0: no probing).")
    ] = 2.0,
    eject_after: Annotated[
        int,
        typer.Option(help="Failed requests in a row that take a replica answering errors out (never the last)."),
    ] = 3,
    public_health: Annotated[
        bool,
        typer.Option(help="With --api-key: answer /health without the key (status only, no upstream details)."),
    ] = False,
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
            replica_seqs=replica_seqs,
            max_samples=max_samples,
            max_tokens=max_tokens,
            max_n=max_n,
            reward=tuple(reward or ("auto",)),
            reward_endpoint=reward_endpoint,  # type: ignore[arg-type]  # checked by the settings
            reward_model=reward_model,
            stream_interval=stream_interval,
            connect_timeout_s=connect_timeout,
            read_timeout_s=read_timeout,
            request_timeout_s=request_timeout,
            max_passthrough=max_passthrough,
            max_body_bytes=max(1, int(max_body_mb * 2**20)),
            health_interval_s=health_interval,
            eject_after=eject_after,
            public_health=public_health,
        )
        if config is not None:
            from dynasor.allocator import AllocatorConfig

            AllocatorConfig.load(config)  # fail now, not at the first request
    except (DynasorError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    # Idle client connections are kept longer than clients keep them (httpx, the OpenAI SDK: 5 s), so a
    # client never sends a request on a connection the proxy is closing (a reset, at uvicorn's default 5 s).
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=_KEEP_ALIVE_S,
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
