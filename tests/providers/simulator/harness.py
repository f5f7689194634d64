"""An in-process world for the simulator: the carrier app, a webhook receiver standing in for
textdesk, and the adapter, wired with ``httpx.ASGITransport`` (no sockets, no latency)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from textdesk.providers.base import ChannelContext, OutboundSms, WebhookRequest
from textdesk.providers.simulator import SimulatorConfig, SimulatorProvider, create
from textdesk.providers.simulator.carrier import create_carrier_app
from textdesk.providers.simulator.state import CarrierState

CARRIER = "http://carrier.test"
APP = "http://app.test"
SENDER = "+12025550143"
CHANNEL = ChannelContext(channel_id=7, sender=SENDER, base_url=APP)
STATUS_URL = f"{APP}/webhooks/simulator/7/status"
INBOUND_URL = f"{APP}/webhooks/simulator/7/inbound"

#: How long a test lets the carrier finish its callbacks (``wait_idle``): a safety net for a hung
#: test, never a measurement (it returns as soon as the carrier is idle, however loaded the
#: machine).
SETTLE = 60.0

#: No latency, no delays, no backoff: the tests wait on the carrier, not on the clock.
FAST: dict[str, Any] = {
    "latency_ms": 0,
    "latency_jitter_ms": 0,
    "dlr_delay_ms": 0,
    "reply_delay_ms": 0,
    "callback_backoff_ms": 0,
    "seed": 1,
}


@dataclass
class Receiver:
    """An ASGI app recording every callback; answers ``statuses`` in turn, then 200."""

    statuses: list[int] = field(default_factory=list)
    requests: list[WebhookRequest] = field(default_factory=list)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        body = await request.body()
        headers: MutableMapping[str, str] = {k.lower(): v for k, v in request.headers.items()}
        self.requests.append(WebhookRequest("POST", str(request.url), headers, body))
        status = self.statuses.pop(0) if self.statuses else 200
        await Response(status_code=status)(scope, receive, send)

    def at(self, url: str) -> list[WebhookRequest]:
        return [r for r in self.requests if r.url == url]


@dataclass
class Harness:
    app: FastAPI
    carrier: CarrierState
    receiver: Receiver
    api: httpx.AsyncClient  # talks to the carrier app
    provider: SimulatorProvider


@asynccontextmanager
async def harness(
    provider_config: dict[str, Any] | None = None, **config: Any
) -> AsyncIterator[Harness]:
    receiver = Receiver()
    callbacks = httpx.AsyncClient(transport=httpx.ASGITransport(app=receiver))
    app = create_carrier_app(SimulatorConfig(**{**FAST, **config}), http=callbacks)
    api = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=CARRIER)
    provider = create({"url": CARRIER, **(provider_config or {})}, CHANNEL, api)
    carrier: CarrierState = app.state.carrier
    try:
        yield Harness(app, carrier, receiver, api, provider)
    finally:
        await carrier.aclose()
        await api.aclose()
        await callbacks.aclose()


def sms(
    to: str = "+12025550123", body: str = "Hi, this is Dana from Acme.", key: str = ""
) -> OutboundSms:
    return OutboundSms(
        message_id=1,
        sender=SENDER,
        to=to,
        body=body,
        idempotency_key=key or uuid.uuid4().hex,
        status_callback_url=STATUS_URL,
    )


AUTH = {"Authorization": "Bearer demo"}
