"""The proxy application: assembles the services (:class:`ProxyState`) and the routes (``create_app``)."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from dynasor.server import routes
from dynasor.server._passthrough import ServingError
from dynasor.server._settings import ServerSettings
from dynasor.server.protocol import ChatCompletionRequest, CompletionRequest, error_body, validation_message
from dynasor.server.state import ProxyState

__all__ = ["ProxyState", "create_app"]

logger = logging.getLogger(__name__)


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    """The proxy as an ASGI app; services start with the app's lifespan."""
    settings = settings or ServerSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.proxy = ProxyState(settings)
        async with app.state.proxy.serving():
            yield

    app = FastAPI(
        title="Dynasor",
        summary="OpenAI-compatible proxy that serves LLM reasoning programs with Certaindex early exit.",
        version="0.1.0",
        lifespan=lifespan,
        # The schema and its viewer are routes of ours, behind the API key when one is set.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.include_router(routes.api_router)
    app.include_router(routes.ops_router)
    app.add_middleware(routes.CompletionsFirst)

    @app.exception_handler(ServingError)
    async def _serving_error(request: Request, exc: ServingError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = validation_message(list(exc.errors()))
        return JSONResponse(error_body(message, 400, param=param), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), exc.status_code, kind), exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s", request.url.path)
        return JSONResponse(error_body(f"internal error: {type(exc).__name__}", 500, "server_error"), 500)

    app.openapi = functools.partial(_openapi, app)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI schema, with the request models the routes read raw."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (ChatCompletionRequest, CompletionRequest):
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(model_schema.pop("$defs", {}))
        components[model.__name__] = model_schema
    app.openapi_schema = schema
    return schema
