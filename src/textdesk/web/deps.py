"""Request-scoped dependencies: the database, settings, who is calling, and from where."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from textdesk.services import auth
from textdesk.services.audit import RequestInfo
from textdesk.services.auth import Principal
from textdesk.services.errors import Unauthenticated
from textdesk.settings import Settings
from textdesk.store.db import Database

SESSION_COOKIE = "td_session"


# The plain look-ups are ``async``: FastAPI runs a plain ``def`` dependency in its thread pool,
# a thread hand-off per request for a dictionary read.
async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def request_info(request: Request) -> RequestInfo:
    return RequestInfo(
        ip=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )


async def api_principal(request: Request, db: Annotated[Database, Depends(get_db)]) -> Principal:
    """REST API callers authenticate with an API key: ``Authorization: Bearer td_...``.

    The API deliberately ignores the UI session cookie, so no API call can be forged
    cross-site by a page a logged-in user visits (no CSRF surface on /api). A key resolved in
    the last few seconds is answered from memory, on the event loop; otherwise the look-up
    runs in the thread pool."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send an API key as 'Authorization: Bearer <key>'")
    principal = auth.cached_api_key(db, token.strip()) or await run_in_threadpool(
        auth.resolve_api_key, db, token.strip()
    )
    if principal is None:
        raise Unauthenticated("the API key is unknown or revoked")
    return principal


def session_principal(request: Request, db: Database) -> Principal | None:
    token = request.cookies.get(SESSION_COOKIE)
    return auth.resolve_session(db, token) if token else None


Db = Annotated[Database, Depends(get_db)]
Config = Annotated[Settings, Depends(get_settings)]
ApiCaller = Annotated[Principal, Depends(api_principal)]
Origin = Annotated[RequestInfo, Depends(request_info)]
