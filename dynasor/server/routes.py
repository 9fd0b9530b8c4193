"""HTTP routes: thin. Each handler hands the request to the services on ``app.state.proxy``.

The completion endpoints are the proxy's hot path, served by :class:`CompletionsFirst` ahead
of the framework's routing, dependency and exception layers (on an instantly answering
upstream those layers were a third of a plain request's cost in the proxy); their routes
below declare them for the schema and the docs, and serve them when that layer is absent.

A handler that answers as a whole races the work against the client's disconnect, and a
disconnect cancels the work: a reasoning query then aborts every sub-request in the
engine, a pass-through request closes its upstream connection (vLLM aborts on that).
A streamed answer races the disconnect the same way (:class:`_EventStream`).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from dynasor._tasks import first_error
from dynasor.server._body import check_depth, parse_json, read_body
from dynasor.server._passthrough import Relay, ServingError
from dynasor.server._shapes import PATHS, Endpoint
from dynasor.server.metrics import CONTENT_TYPE_LATEST
from dynasor.server.protocol import ChatCompletionRequest, CompletionRequest, ErrorResponse, validation_message
from dynasor.server.state import ProxyState
from dynasor.server.upstreams import replica_states

__all__ = ["CompletionsFirst", "api_router", "ops_router"]

T = TypeVar("T")

_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Bad request (OpenAI error shape)."},
    401: {"model": ErrorResponse, "description": "Missing or wrong API key."},
    429: {"model": ErrorResponse, "description": "Too many reasoning queries; see Retry-After."},
    502: {"model": ErrorResponse, "description": "The upstream failed."},
    503: {"model": ErrorResponse, "description": "No upstream available; see Retry-After."},
}


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


def _state(request: Request) -> ProxyState:
    state: ProxyState = request.app.state.proxy
    return state


_UNAUTHORIZED = ServingError(401, "Missing or invalid API key", "authentication_error")


def _authorized(request: Request) -> bool:
    """Whether the request carries the configured key (``Authorization: Bearer KEY``), or none is set."""
    key = _state(request).settings.api_key
    if key is None:
        return True
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(token.strip().encode(), key.encode())


async def require_api_key(request: Request) -> None:
    """401 unless the request carries the configured key."""
    if not _authorized(request):
        raise _UNAUTHORIZED


api_router = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)], responses=_ERRORS)
ops_router = APIRouter()


def _body(model: type[BaseModel]) -> dict[str, Any]:
    # The body is read raw (a plain request is forwarded byte for byte, unparsed by pydantic);
    # the schema is still documented, from the model (see ``app._openapi``).
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}


@api_router.post(
    "/chat/completions",
    summary="Chat completion, plain or with reasoning (`dynasor`).",
    openapi_extra=_body(ChatCompletionRequest),
)
async def chat_completions(request: Request) -> Response:
    return await _handle(request, "chat", ChatCompletionRequest)


@api_router.post(
    "/completions",
    summary="Text completion, plain or with reasoning (`dynasor`).",
    openapi_extra=_body(CompletionRequest),
)
async def completions(request: Request) -> Response:
    return await _handle(request, "completions", CompletionRequest)


@api_router.get("/models", summary="Models the upstream serves.")
async def models(request: Request) -> Response:
    state = _state(request)
    if state.relay is None:
        return JSONResponse(state.sim_models())
    try:
        relay = await _until_disconnect(
            request.receive, state.relay.forward("GET", "/v1/models", b"", {}, stream=False)
        )
    except ServingError as exc:
        return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)
    except ClientGone:
        return Response(status_code=499)
    return _to_response(relay)


@ops_router.get(
    "/health",
    summary="Liveness, and the upstream replicas as the proxy sees them (probed every few seconds).",
    responses={401: _ERRORS[401], 503: {"description": "No upstream replica is usable."}},
)
async def health(request: Request) -> Response:
    state = _state(request)
    detailed = _authorized(request)
    if not detailed and not state.settings.public_health:
        raise _UNAUTHORIZED
    replicas = replica_states(state.pool)
    ok = any(r["up"] for r in replicas)
    body: dict[str, Any] = {"status": "ok" if ok else "degraded"}
    if detailed:
        body["upstreams"] = replicas
    return JSONResponse(body, status_code=200 if ok else 503)


@ops_router.get("/metrics", summary="Prometheus metrics.", dependencies=[Depends(require_api_key)])
async def metrics(request: Request) -> Response:
    return Response(_state(request).metrics.render(), media_type=CONTENT_TYPE_LATEST)


@ops_router.get("/openapi.json", include_in_schema=False, dependencies=[Depends(require_api_key)])
async def openapi_schema(request: Request) -> Response:
    return JSONResponse(request.app.openapi())


@ops_router.get("/docs", include_in_schema=False, dependencies=[Depends(require_api_key)])
async def docs(request: Request) -> Response:
    return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{request.app.title} API")


async def _handle(
    request: Request, endpoint: Endpoint, model: type[ChatCompletionRequest] | type[CompletionRequest]
) -> Response:
    state = _state(request)
    kind = "plain"
    status = 499
    try:
        if not _authorized(request):
            raise _UNAUTHORIZED
        raw = await read_body(request.stream(), request.headers.get("content-length"), state.settings.max_body_bytes)
        data = parse_json(raw)
        if data.get("dynasor") is None and state.relay is not None:
            # Hot path: check only what the proxy acts on, forward the bytes untouched.
            fields = state.plain_fields(data)
            state.check_limits(fields)
            relay = await _until_disconnect(
                request.receive,
                # The endpoint's own path upstream, whatever prefix (a --root-path) the client's had.
                state.relay.forward("POST", PATHS[endpoint], raw, request.headers, stream=fields.stream),
            )
            response = _to_response(relay)
        else:
            check_depth(data)
            try:
                body = model.model_validate(data)
            except ValidationError as exc:
                message, param = validation_message(exc.errors())
                raise ServingError(400, message, param=param) from None
            state.check_limits(body)
            if body.dynasor is None:
                assert state.sim is not None
                response = _to_response(await _until_disconnect(request.receive, state.sim.answer(endpoint, body)))
            else:
                kind = "reasoning"
                plan = state.reasoning.plan(endpoint, body)
                if body.stream:
                    response = _EventStream(state.reasoning.stream(plan), media_type="text/event-stream")
                else:
                    answer = await _until_disconnect(request.receive, state.reasoning.complete(plan))
                    response = JSONResponse(answer)
        status = response.status_code
        return response
    except ServingError as exc:
        status = exc.status
        return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)
    except (ClientGone, ClientDisconnect):  # gone before its answer (or before its body was read)
        return Response(status_code=499)
    finally:
        state.metrics.requests.labels(endpoint, kind, str(status)).inc()


async def _until_disconnect(receive: Receive, work: Coroutine[Any, Any, T]) -> T:
    """Await ``work`` in this task, inside a task group whose one child watches the connection:
    a disconnect fails the child, which cancels the group's body (the work) and raises
    :class:`ClientGone`; the work's end cancels the child. Both have ended when this returns.
    """
    async with first_error(), asyncio.TaskGroup() as group:
        watcher = group.create_task(_watch_connection(receive))
        try:
            return await work
        finally:
            watcher.cancel()


async def _watch_connection(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone


class _EventStream(StreamingResponse):
    """A streamed response sent from the request's own task while one child task watches the
    connection: a disconnect cancels the stream (its generator's cleanup runs, which aborts the
    engine work behind it), and ``close`` runs however the response ends, even one never started.

    Starlette's own streamed response does the same with an anyio task group per response, about
    0.1 ms of CPU: a tenth of a short relayed stream's cost in the proxy.
    """

    def __init__(
        self,
        content: AsyncIterable[bytes],
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(content, status_code=status_code, headers=headers, media_type=media_type)
        self._close = close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await _until_disconnect(receive, self.stream_response(send))
        except (ClientGone, OSError):  # the client went away mid-stream: nobody to tell
            pass
        finally:
            if self._close is not None:
                await self._close()


def _to_response(relay: Relay) -> Response:
    if relay.stream is not None:
        return _EventStream(relay.stream, status_code=relay.status, headers=relay.headers, close=relay.close)
    return Response(relay.body, status_code=relay.status, headers=relay.headers)


_COMPLETIONS: dict[str, tuple[Endpoint, type[ChatCompletionRequest] | type[CompletionRequest]]] = {
    PATHS["chat"]: ("chat", ChatCompletionRequest),
    PATHS["completions"]: ("completions", CompletionRequest),
}


class CompletionsFirst:
    """ASGI middleware: ``POST`` to a completion endpoint is answered here, before routing.

    It does what the route would (the same :func:`_handle`: key, body limits, relay or
    reasoning, errors in the OpenAI shape, metrics); every other request goes on to the app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = _COMPLETIONS.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if target is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        response = await _handle(request, *target)
        await response(scope, receive, send)
