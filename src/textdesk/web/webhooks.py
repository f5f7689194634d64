"""Provider callbacks: ``POST /webhooks/{provider}/{channel_id}/{inbound|status}``.

Forged or unsigned requests get 403 and change nothing. Unknown or duplicate callbacks answer
200, so providers stop retrying. Adapters are cached per channel for a minute: a callback storm
(thousands of delivery reports a second) costs one signature check and one UPDATE each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import parse_qsl

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from textdesk.providers import registry
from textdesk.providers.base import ChannelContext, Provider, SignatureError, WebhookRequest
from textdesk.services import messaging
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import channels
from textdesk.web.batching import StatusBatcher
from textdesk.web.problems import problem

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
_CACHE_SECONDS = 60.0


class _Adapters:
    def __init__(self) -> None:
        self._cache: dict[int, tuple[float, str, Provider]] = {}

    def cached(self, channel_id: int) -> tuple[str, Provider] | None:
        hit = self._cache.get(channel_id)
        if hit is not None and time.monotonic() - hit[0] < _CACHE_SECONDS:
            return hit[1], hit[2]
        return None

    def get(self, request: Request, channel_id: int) -> tuple[str, Provider] | None:
        hit = self.cached(channel_id)
        if hit is not None:
            return hit
        db: Database = request.app.state.db
        settings: Settings = request.app.state.settings
        with db.read() as conn:
            row = conn.execute(sa.select(channels).where(channels.c.id == channel_id)).first()
        if row is None:
            return None
        context = ChannelContext(
            channel_id=row.id, sender=row.phone_e164, base_url=settings.base_url
        )
        adapter = registry.create(row.provider, row.config or {}, context, request.app.state.http)
        self._cache[channel_id] = (time.monotonic(), row.provider, adapter)
        return row.provider, adapter


def _ack(provider: str) -> Response:
    if provider == "twilio":
        # Twilio expects TwiML back; an empty <Response/> means "no reply from here".
        return Response("<Response/>", media_type="text/xml")
    return JSONResponse({"ok": True})


async def _as_webhook(request: Request, settings: Settings) -> WebhookRequest:
    body = await request.body()
    form: dict[str, str] = {}
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return WebhookRequest(
        method=request.method,
        url=settings.base_url + path,  # the URL the provider was given, not our bind address
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
        form=form,
    )


@router.post("/webhooks/{provider}/{channel_id}/{kind}")
async def webhook(provider: str, channel_id: int, kind: str, request: Request) -> Response:
    if kind not in ("inbound", "status"):
        return problem(404, "Not found", f"unknown webhook kind {kind!r}")
    adapters: _Adapters = request.app.state.webhook_adapters
    found = adapters.cached(channel_id) or await asyncio.to_thread(
        adapters.get, request, channel_id
    )
    if found is None or found[0] != provider:
        return problem(404, "Not found", f"no {provider} channel {channel_id}")
    name, adapter = found
    settings: Settings = request.app.state.settings
    db: Database = request.app.state.db
    hook = await _as_webhook(request, settings)
    try:
        adapter.verify(hook)
    except SignatureError as exc:
        log.warning("rejected %s webhook for channel %s: %s", name, channel_id, exc)
        return problem(403, "Forbidden", "the webhook signature did not verify")
    result: dict[str, Any] = {}
    try:
        if kind == "inbound":
            sms = adapter.parse_inbound(hook)
            if sms is not None:
                received = await asyncio.to_thread(
                    messaging.receive_inbound, db, settings, channel_id, sms
                )
                result["duplicate"] = received.duplicate
        else:
            report = adapter.parse_status(hook)
            if report is not None:
                batcher: StatusBatcher = request.app.state.status_batcher
                await batcher.submit((channel_id, report, f"provider:{name}"))
    except ValueError as exc:
        # A malformed callback: say what was wrong, but answer 200 so the provider stops.
        log.warning("ignored malformed %s %s webhook: %s", name, kind, exc)
    return _ack(name)


class FastPath:
    """ASGI middleware that serves ``POST /webhooks/{provider}/{id}/{kind}`` directly.

    Providers can send thousands of delivery reports a second; FastAPI's route matching (over
    every API route) and its dependency machinery cost more per request than verifying and
    parsing the report. Anything else, or a malformed path, goes on to the app as usual.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            parts = scope["path"].split("/")
            if len(parts) == 5 and parts[1] == "webhooks" and parts[3].isdigit():
                response = await webhook(parts[2], int(parts[3]), parts[4], Request(scope, receive))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
