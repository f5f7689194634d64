"""Provider callbacks: ``POST /webhooks/{provider}/{channel_id}/{inbound|status}``.

Forged or unsigned requests get 403 and change nothing. Unknown or duplicate callbacks answer
200, so providers stop retrying. Bad input is answered 4xx with a problem saying what was wrong,
and changes nothing: a path naming no channel (404), a body over ``MAX_BODY_BYTES`` (413), one
that can't be read (400, 415: ``MalformedWebhook``), a message or report that can't be stored
(422: ``services.provider_input``). Adapters are cached per channel for a minute: a callback storm
(thousands of delivery reports a second) costs one signature check and one UPDATE each.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from urllib.parse import urlsplit

import sqlalchemy as sa
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from textdesk.providers import registry
from textdesk.providers.base import (
    ChannelContext,
    MalformedWebhook,
    Provider,
    SignatureError,
    WebhookRequest,
)
from textdesk.services import messaging, provider_input
from textdesk.services.errors import ServiceError
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import channels
from textdesk.web.batching import StatusBatcher
from textdesk.web.problems import problem, service_problem

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)
_CACHE_SECONDS = 60.0
#: Far beyond any provider's callback (Twilio's and Telnyx's are a few kB; an SMS body is at
#: most 1,600 characters): anything longer is refused before it is read into memory.
MAX_BODY_BYTES = 256 * 1024
_CHANNEL_ID = re.compile(r"[0-9]{1,19}")
_MAX_ID = 2**63 - 1
_TITLES = {400: "Bad request", 415: "Unsupported media type"}


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


def channel_id_of(text: str) -> int | None:
    """The channel id a path segment names: ASCII digits within a 64-bit id. ``str.isdigit``
    and ``int`` also take "²" (a ValueError) and Arabic-Indic digits ("٣" is 3: another way
    to name channel 3), and an id beyond 64 bits makes both databases fail the query."""
    if not _CHANNEL_ID.fullmatch(text):
        return None
    number = int(text)
    return number if number <= _MAX_ID else None


def public_url(request: Request, settings: Settings) -> str:
    """The URL the provider called, which is the URL it signed: ``TEXTDESK_BASE_URL`` (what
    textdesk gives providers and the operator configures at them), then the path and query
    exactly as received (percent-escapes intact, below any ``root_path``).

    ``Host``, ``X-Forwarded-Host``, ``X-Forwarded-Proto`` and ``Forwarded`` play no part, from
    a trusted proxy or not: the client chooses them (a proxy passes the ``Host`` it was sent),
    and honouring them would let a request signed for another URL verify here."""
    scope = request.scope
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    path = raw.decode("latin-1")
    root: str = scope.get("root_path") or ""
    if root and path.startswith(root):
        path = path[len(root) :]
    query: bytes = scope.get("query_string", b"")
    return settings.base_url + path + (f"?{query.decode('latin-1')}" if query else "")


async def _body(request: Request) -> bytes | None:
    """The body, or None once it is longer than a provider ever sends."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _host_hint(request: Request, settings: Settings) -> str:
    """For the log line of a refused signature: a request addressed to another host than
    TEXTDESK_BASE_URL's usually means that setting is not the URL the provider was given."""
    called = request.headers.get("x-forwarded-host") or request.headers.get("host") or ""
    configured = urlsplit(settings.base_url).netloc
    if called and called.split(",")[0].strip().lower() != configured.lower():
        return f" (the request says host {called!r}; TEXTDESK_BASE_URL has {configured!r})"
    return ""


@router.post("/webhooks/{provider}/{channel}/{kind}")
async def webhook(provider: str, channel: str, kind: str, request: Request) -> Response:
    if kind not in ("inbound", "status"):
        return problem(404, "Not found", f"unknown webhook kind {kind!r}")
    channel_id = channel_id_of(channel)
    adapters: _Adapters = request.app.state.webhook_adapters
    found = None
    if channel_id is not None:
        found = adapters.cached(channel_id) or await asyncio.to_thread(
            adapters.get, request, channel_id
        )
    if channel_id is None or found is None or found[0] != provider:
        return problem(404, "Not found", f"no {provider[:20]!r} channel {channel[:30]!r}")
    name, adapter = found
    settings: Settings = request.app.state.settings
    db: Database = request.app.state.db
    body = await _body(request)
    if body is None:
        return problem(413, "Payload too large", f"the body is over {MAX_BODY_BYTES} bytes")
    hook = WebhookRequest(
        method=request.method,
        url=public_url(request, settings),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=body,
    )
    try:
        adapter.verify(hook)
        if kind == "inbound":
            sms = adapter.parse_inbound(hook)
            if sms is not None:
                await asyncio.to_thread(messaging.receive_inbound, db, settings, channel_id, sms)
        else:
            report = adapter.parse_status(hook)
            if report is not None:
                # Checked alone: a report that can't be stored would fail its whole batch.
                report = provider_input.report(report)
                batcher: StatusBatcher = request.app.state.status_batcher
                await batcher.submit((channel_id, report, f"provider:{name}"))
    except SignatureError as exc:
        log.warning(
            "rejected %s webhook for channel %s: %s%s",
            name,
            channel_id,
            exc,
            _host_hint(request, settings),
        )
        return problem(403, "Forbidden", "the webhook signature did not verify")
    except MalformedWebhook as exc:
        log.warning("refused malformed %s %s webhook: %s", name, kind, exc)
        return problem(exc.status, _TITLES.get(exc.status, "Bad request"), str(exc))
    except ServiceError as exc:  # Invalid (the sender, an id), NotFound (channel just deleted)
        log.warning("refused %s %s webhook for channel %s: %s", name, kind, channel_id, exc)
        return service_problem(exc)
    return _ack(name)


class FastPath:
    """ASGI middleware that serves ``POST /webhooks/{provider}/{id}/{kind}`` directly.

    Providers can send thousands of delivery reports a second; FastAPI's route matching (over
    every API route) and its dependency machinery cost more per request than verifying and
    parsing the report. It answers every ``/webhooks/{provider}/{segment}/{kind}`` POST as the
    route would (a segment that is no channel id: 404); anything else goes on to the app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            root: str = scope.get("root_path") or ""
            if root and path.startswith(root):  # mounted below a prefix (uvicorn --root-path)
                path = path[len(root) :]
            parts = path.split("/")
            if len(parts) == 5 and parts[1] == "webhooks":
                response = await webhook(parts[2], parts[3], parts[4], Request(scope, receive))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
