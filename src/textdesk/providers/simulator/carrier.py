"""The fake carrier as an HTTP API, shaped like a real SMS provider's.

The main app mounts it at ``/simulator``; ``python -m textdesk.providers.simulator`` serves it
alone (for benchmarks, so the carrier does not share a process with the platform). Routes::

    POST /v1/messages          send (Bearer key; deduplicated by idempotency_key)
    GET  /v1/messages/{id}     one message's record: the lookup used to reconcile ``unknown``
    GET  /v1/stats             counters (accepted, duplicates_suppressed, delivered, ...)
    POST /v1/reset             forget everything (tests, benchmarks)
    POST /v1/inject-inbound    a customer texts first: {from, to, body, inbound_url[, wait]}

A mounted sub-app gets no lifespan events, so nothing here depends on them: the owner of the
app calls ``app.state.carrier.aclose()`` on shutdown (standalone, the lifespan below does).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from textdesk.providers.simulator.config import SimulatorConfig
from textdesk.providers.simulator.script import Code
from textdesk.providers.simulator.state import Answer, CarrierState, error

_PROBLEM = "application/problem+json"


def _respond(answer: Answer) -> JSONResponse:
    return JSONResponse(answer.body, status_code=answer.status_code, headers=dict(answer.headers))


def _unauthorized() -> JSONResponse:
    message = "missing or wrong API key: send 'Authorization: Bearer <api_key>'"
    body = {
        "type": "about:blank",
        "title": "Unauthorized",
        "status": 401,
        "detail": message,
        "code": Code.AUTH.value,
        "message": message,
    }
    return JSONResponse(
        body, status_code=401, media_type=_PROBLEM, headers={"WWW-Authenticate": "Bearer"}
    )


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        return None  # reported as "must be a JSON object" by the state


class _SendFastPath:
    """Serves ``POST /v1/messages`` before FastAPI's routing: a benchmark's load generator is
    this carrier, so its cost per send caps every dispatch figure measured against it."""

    def __init__(self, app: ASGIApp, carrier: CarrierState) -> None:
        self.app = app
        self.carrier = carrier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].endswith("/v1/messages")
            and scope["path"][: -len("/v1/messages")] == scope.get("root_path", "")
        ):
            request = Request(scope, receive)
            if not self.carrier.authorize(request.headers.get("authorization")):
                response = _unauthorized()
            else:
                response = _respond(await self.carrier.submit(await _json(request)))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_carrier_app(
    config: SimulatorConfig | None = None, *, http: httpx.AsyncClient | None = None
) -> FastAPI:
    """The carrier app; its state is ``app.state.carrier``. ``http`` overrides the client that
    posts callbacks (tests route it to an in-process receiver)."""
    carrier = CarrierState(config or SimulatorConfig(), http=http)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield  # runs only standalone; a mounting app must call carrier.aclose() itself
        await carrier.aclose()

    app = FastAPI(
        title="textdesk carrier simulator",
        description="A fake SMS carrier: latency, delivery reports, failures, customer replies.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.carrier = carrier
    app.add_middleware(_SendFastPath, carrier=carrier)

    @app.post("/v1/messages")
    async def send_message(request: Request) -> JSONResponse:
        if not carrier.authorize(request.headers.get("authorization")):
            return _unauthorized()
        return _respond(await carrier.submit(await _json(request)))

    @app.get("/v1/messages/{message_id}")
    async def get_message(message_id: str, request: Request) -> JSONResponse:
        if not carrier.authorize(request.headers.get("authorization")):
            return _unauthorized()
        record = carrier.lookup(message_id)
        if record is None:
            return _respond(error(404, Code.NOT_FOUND, f"no message {message_id!r}"))
        return JSONResponse(record.as_json())

    @app.get("/v1/stats")
    async def stats(request: Request) -> JSONResponse:
        if not carrier.authorize(request.headers.get("authorization"), control=True):
            return _unauthorized()
        return JSONResponse(carrier.stats())

    @app.post("/v1/reset")
    async def reset(request: Request) -> JSONResponse:
        if not carrier.authorize(request.headers.get("authorization"), control=True):
            return _unauthorized()
        carrier.reset()
        return JSONResponse(carrier.stats())

    @app.post("/v1/inject-inbound")
    async def inject_inbound(request: Request) -> JSONResponse:
        if not carrier.authorize(request.headers.get("authorization"), control=True):
            return _unauthorized()
        return _respond(await carrier.inject_inbound(await _json(request)))

    return app
