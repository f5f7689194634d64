"""The FastAPI application factory: API, UI, health check and static files in one process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from textdesk import __version__
from textdesk.delivery.worker import EmbeddedWorker
from textdesk.providers.simulator.config import SimulatorConfig
from textdesk.runtime import freeze_startup_objects
from textdesk.services import events as live_events
from textdesk.services import imports
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.web import (
    api,
    openapi,
    problems,
    ui,
    ui_automations,
    ui_campaigns,
    ui_contacts,
    ui_imports,
    ui_inbox,
    ui_segments,
    ui_send,
    webhooks,
)
from textdesk.web.api.p2p import SendFastPath
from textdesk.web.batching import StatusBatcher
from textdesk.web.send_batching import SendBatcher

STATIC = Path(__file__).parent / "static"

# The UI loads nothing from another origin: no CDN, no inline script.
_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


class SecurityHeaders:
    """Pure ASGI middleware (``@app.middleware("http")`` costs a task group per request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        docs = scope["path"].startswith("/api/docs")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "same-origin")
                if not docs:
                    headers.setdefault("Content-Security-Policy", _CSP)
                    headers.setdefault("X-Frame-Options", "DENY")
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def carrier_close(carrier: FastAPI) -> None:
    state = getattr(carrier.state, "carrier", None)
    if state is not None:
        await state.aclose()


_HEALTH: dict[int | str, dict[str, Any]] = {
    200: {"description": "the database answers: `status` ok, `database`, `version`"},
    503: {
        "description": "the database does not answer: `status` error, `database` the reason",
        "content": {"application/json": {"schema": {"type": "object"}}},
    },
}


def create_app(
    settings: Settings, db: Database | None = None, *, simulator: SimulatorConfig | None = None
) -> FastAPI:
    """The app. ``db`` and ``simulator`` let tests and benchmarks hand in their own."""
    database = db or Database.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.http = httpx.AsyncClient(timeout=settings.provider_timeout_seconds)
        app.state.status_batcher = StatusBatcher(database)
        # Live events: after-commit hooks on this engine; other processes' events via LISTEN.
        live_events.install(database.engine)
        event_listener = live_events.listener_for(settings.database_url)
        if event_listener is not None:
            event_listener.start()
        worker = EmbeddedWorker(settings, database) if settings.embedded_worker else None
        if worker is not None:
            worker.start()
        # CSV imports run in a thread; with the embedded worker it also resumes crashed ones.
        app.state.import_runner = imports.ImportRunner(database)
        if settings.embedded_worker:
            app.state.import_runner.start()
        freeze_startup_objects()  # full collections stop pausing every request
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()
            app.state.import_runner.stop()
            if event_listener is not None:
                event_listener.stop()
            await app.state.status_batcher.aclose()
            await app.state.send_batcher.aclose()
            await app.state.http.aclose()
            if carrier is not None:
                await carrier_close(carrier)
            if db is None:
                database.dispose()

    app = FastAPI(
        title="textdesk",
        version=__version__,
        description="Peer-to-peer SMS: contacts, conversations, campaigns, consent.",
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.db = database
    app.state.webhook_adapters = webhooks._Adapters()
    app.state.send_batcher = SendBatcher(database, settings)

    problems.install(app)
    openapi.install(app)

    @app.exception_handler(ui.LoginRequired)
    async def _login_required(request: Request, _exc: ui.LoginRequired) -> Response:
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": "/login"})
        return RedirectResponse("/login", status_code=303)

    app.add_middleware(SendFastPath)  # inside SecurityHeaders: its answers get the headers
    app.add_middleware(SecurityHeaders)
    app.add_middleware(webhooks.FastPath)  # provider callbacks skip the rest
    if settings.trusted_proxies:
        # Outermost, so every layer sees the client's address (request.client: the lockout,
        # audit rows, sessions). Only a peer listed here may name the client: the rightmost
        # X-Forwarded-For hop that is not itself a trusted proxy. `textdesk serve` turns
        # uvicorn's own handling off (cli.uvicorn_options), which trusts any loopback peer.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)

    @app.get("/healthz", tags=["health"], responses=_HEALTH)
    def healthz() -> JSONResponse:
        try:
            database.ping()
        except Exception as exc:  # any failure of the database is "unhealthy", with the reason
            return JSONResponse(
                {"status": "error", "database": type(exc).__name__}, status_code=503
            )
        return JSONResponse({"status": "ok", "database": database.dialect, "version": __version__})

    app.include_router(api.router())
    app.include_router(webhooks.router)
    app.include_router(ui.router)
    app.include_router(ui_imports.router)
    app.include_router(ui_contacts.router)
    app.include_router(ui_segments.router)
    app.include_router(ui_inbox.router)
    app.include_router(ui_send.router)
    app.include_router(ui_campaigns.router)
    app.include_router(ui_automations.router)
    carrier = None
    if settings.simulator_enabled:
        from textdesk.providers.simulator.carrier import create_carrier_app

        carrier = create_carrier_app(simulator)
        app.mount("/simulator", carrier)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    return app


def app_from_environment() -> FastAPI:
    """The app of one `textdesk serve` worker process when ``TEXTDESK_WEB_WORKERS`` > 1."""
    from textdesk.logs import configure_logging
    from textdesk.settings import get_settings

    settings = get_settings()
    configure_logging(settings)
    return create_app(settings)
