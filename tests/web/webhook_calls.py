"""Provider callbacks as each provider builds and signs them, for the route-level webhook tests.

Twilio's are signed with Twilio's own ``RequestValidator`` (the ``twilio`` package, a test
oracle), over the URL the provider was given; Telnyx's with an Ed25519 key over
``timestamp|body``; the simulator's with its HMAC. Timestamps are taken when a request is
signed, never at import.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import FastAPI
from fastapi.testclient import TestClient
from twilio.request_validator import RequestValidator

from tests.delivery.helpers import channel
from textdesk.providers.simulator import signing
from textdesk.services.auth import Principal
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import contacts, messages
from textdesk.web import webhooks
from textdesk.web.app import create_app

TWILIO_SID = "AC" + "a1b2c3d4" * 4
TWILIO_TOKEN = "twilio-auth-token-for-tests"
TELNYX_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
TELNYX_PUBLIC = base64.b64encode(
    TELNYX_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
).decode()
SIMULATOR_SECRET = "simulator-secret"
OUR_NUMBER = "+12015550100"
CUSTOMER = "+12015550999"
PROVIDERS = ("twilio", "telnyx", "simulator")

CONFIGS: dict[str, dict[str, Any]] = {
    "twilio": {"account_sid": TWILIO_SID, "auth_token": TWILIO_TOKEN},
    "telnyx": {"api_key": "KEY0123456789ABCDEF_test", "public_key": TELNYX_PUBLIC},
    "simulator": {},
}


def make_channel(db: Database, admin: Principal, provider: str) -> int:
    return channel(db, admin, provider=provider, phone=OUR_NUMBER, config=CONFIGS[provider])


@dataclass(frozen=True)
class Call:
    """One POST: the path (and query) as sent, headers, body."""

    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Hooks:
    """Builds ``provider``'s callbacks for a channel, signed for ``public`` (the URL prefix the
    provider was given)."""

    provider: str
    channel_id: int
    public: str

    @property
    def content_type(self) -> str:
        if self.provider == "twilio":
            return "application/x-www-form-urlencoded"
        return "application/json"

    def path(self, kind: str, channel: str | None = None) -> str:
        return f"/webhooks/{self.provider}/{channel or self.channel_id}/{kind}"

    # --- bodies ----------------------------------------------------------------------------

    def inbound_body(
        self, message_id: str, text: str, *, sender: str = CUSTOMER, at: str | None = None
    ) -> bytes:
        if self.provider == "twilio":
            form = {
                "MessageSid": message_id,
                "SmsSid": message_id,
                "AccountSid": TWILIO_SID,
                "From": sender,
                "To": OUR_NUMBER,
                "Body": text,
                "NumMedia": "0",
            }
            return urlencode(form).encode()
        if self.provider == "telnyx":
            payload: dict[str, Any] = {
                "record_type": "message",
                "direction": "inbound",
                "id": message_id,
                "from": {"phone_number": sender},
                "to": [{"phone_number": OUR_NUMBER, "status": "webhook_delivered"}],
                "text": text,
            }
            if at is not None:
                payload["received_at"] = at
            event = {"event_type": "message.received", "id": "ev-1", "payload": payload}
            return json.dumps({"data": event, "meta": {"attempt": 1}}).encode()
        data: dict[str, Any] = {"id": message_id, "from": sender, "to": OUR_NUMBER, "body": text}
        if at is not None:
            data["timestamp"] = at
        return json.dumps(data).encode()

    def status_body(self, message_id: str, *, error_code: str | None = None) -> bytes:
        if self.provider == "twilio":
            form = {"MessageSid": message_id, "MessageStatus": "undelivered", "To": CUSTOMER}
            if error_code is not None:
                form["ErrorCode"] = error_code
            return urlencode(form).encode()
        if self.provider == "telnyx":
            payload: dict[str, Any] = {
                "id": message_id,
                "to": [{"phone_number": CUSTOMER, "status": "delivery_failed"}],
                "errors": [] if error_code is None else [{"code": error_code, "title": "x"}],
            }
            event = {"event_type": "message.finalized", "id": "ev-2", "payload": payload}
            return json.dumps({"data": event}).encode()
        data: dict[str, Any] = {"id": message_id, "status": "undelivered"}
        if error_code is not None:
            data["error_code"] = error_code
        return json.dumps(data).encode()

    # --- signing ---------------------------------------------------------------------------

    def sign(
        self,
        path: str,
        body: bytes,
        *,
        signed_url: str | None = None,
        timestamp: str | None = None,
        content_type: str | None = None,
    ) -> Call:
        """``body`` POSTed to ``path``, signed as the provider signs it: Twilio over
        ``signed_url`` (default: ``public`` + ``path``), the others over the body."""
        headers = {"content-type": content_type or self.content_type}
        stamp = timestamp or str(int(time.time()))
        if self.provider == "twilio":
            url = signed_url or self.public + path
            try:
                params = dict(parse_qsl(body.decode(), keep_blank_values=True))
            except UnicodeDecodeError:
                params = {}  # Twilio never sends such a body; what a forger could sign
            headers["X-Twilio-Signature"] = RequestValidator(TWILIO_TOKEN).compute_signature(
                url, params
            )
        elif self.provider == "telnyx":
            signature = TELNYX_KEY.sign(stamp.encode() + b"|" + body)
            headers["telnyx-signature-ed25519"] = base64.b64encode(signature).decode()
            headers["telnyx-timestamp"] = stamp
        else:
            headers[signing.TIMESTAMP_HEADER] = stamp
            headers[signing.SIGNATURE_HEADER] = signing.sign(SIMULATOR_SECRET, stamp, body)
        return Call(path, headers, body)


def post(client: TestClient, call: Call, extra: Mapping[str, str] | None = None) -> Any:
    return client.post(call.path, content=call.body, headers={**call.headers, **(extra or {})})


def stored(db: Database) -> list[tuple[str, str, str]]:
    """Inbound messages: (provider id, body, sender), in id order."""
    with db.read() as conn:
        rows = conn.execute(
            sa.select(messages.c.provider_message_id, messages.c.body, contacts.c.phone_e164)
            .join(contacts, contacts.c.id == messages.c.contact_id)
            .where(messages.c.direction == "in")
            .order_by(messages.c.id)
        ).all()
    return [(r[0], r[1], r[2]) for r in rows]


def contact_phones(db: Database) -> list[str]:
    with db.read() as conn:
        return list(
            conn.execute(sa.select(contacts.c.phone_e164).order_by(contacts.c.id)).scalars()
        )


def without_fast_path(app: FastAPI) -> FastAPI:
    """The app with its webhook FastPath middleware taken out, so callbacks reach the router's
    route (the middleware stack is built on the first request)."""
    app.user_middleware = [m for m in app.user_middleware if m.cls is not webhooks.FastPath]
    return app


@contextmanager
def app_client(
    settings: Settings, db: Database, route: str = "fast_path", **kw: Any
) -> Iterator[TestClient]:
    app = create_app(settings, db)
    if route == "router":
        without_fast_path(app)
    with TestClient(app, raise_server_exceptions=False, **kw) as client:
        yield client
