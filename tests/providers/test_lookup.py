"""``lookup`` (reconciling ``unknown`` messages) for Twilio and Telnyx, against a fake vendor API on
a loopback port. Table-driven: the vendor's canned answer, the exact request we must send, and
the report or error we must return. Bodies are the captured payloads in each package's
``fixtures/``, adjusted where a case needs another status."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.providers.fake_http import Answer, fake_api
from textdesk.domain.states import MessageStatus as S
from textdesk.httpclient import ProviderClient
from textdesk.providers import registry, telnyx, twilio
from textdesk.providers.base import (
    AuthFailure,
    ChannelContext,
    ProviderError,
    StatusReport,
    TemporaryFailure,
    Throttled,
    offers_lookup,
)


@dataclass(frozen=True)
class Raises:
    cls: type[ProviderError]
    code: str
    retry_after: float | None = None


@dataclass(frozen=True)
class Case:
    id: str
    answer: Answer
    expect: StatusReport | Raises | None  # None: the provider does not know the id


def _check(outcome: StatusReport | ProviderError | None, expect: Case, secret: str) -> None:
    if isinstance(expect.expect, Raises):
        assert isinstance(outcome, ProviderError), outcome
        assert type(outcome) is expect.expect.cls
        assert outcome.code == expect.expect.code
        assert outcome.retry_after == expect.expect.retry_after
        assert secret not in str(outcome) and secret not in repr(outcome)
        return
    if expect.expect is None:
        assert outcome is None
        return
    assert isinstance(outcome, StatusReport), outcome
    got = (outcome.provider_message_id, outcome.status, outcome.error_code, outcome.error_message)
    want = expect.expect
    assert got == (want.provider_message_id, want.status, want.error_code, want.error_message)


async def _ask(provider: Any, message_id: str) -> StatusReport | ProviderError | None:
    try:
        report: StatusReport | None = await provider.lookup(message_id)
        return report
    except ProviderError as exc:
        return exc


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


#: Builds the HTTP client an adapter gets: each lookup case runs through the worker's own
#: client (``ProviderClient``) and through httpx (what the web app and older tests pass).
Client = Callable[[], Any]


@pytest.fixture(params=["worker", "httpx"])
def client(request: pytest.FixtureRequest) -> Client:
    if request.param == "worker":
        return lambda: ProviderClient(4, 5)
    return httpx.AsyncClient


def test_which_providers_offer_lookup() -> None:
    assert {name: registry.offers_lookup(name) for name in registry.PROVIDERS} == {
        "simulator": True,
        "twilio": True,
        "telnyx": True,
        "smpp": False,  # SMPP relies on delivery receipts (see docs/providers.md)
    }
    assert offers_lookup(twilio.TwilioProvider) and not offers_lookup(object())


# --- Twilio ------------------------------------------------------------------------------------

TW_FIXTURES = Path(twilio.__file__).parent / "fixtures"
TW_SID = "ACa1b2c3d4e5f60718293a4b5c6d7e8f90"
TW_TOKEN = "5f4dcc3b5aa765d61d8327deb882cf99"
TW_MSG = "SM0f1e2d3c4b5a69788796a5b4c3d2e1f0"
TW_PATH = f"/2010-04-01/Accounts/{TW_SID}/Messages/{TW_MSG}.json"
TW_CONTEXT = ChannelContext(channel_id=7, sender="+14155550100", base_url="https://td.example")


def tw_message(**changes: Any) -> Answer:
    """The captured Message resource with some fields changed (a later fetch of it)."""
    document = json.loads((TW_FIXTURES / "message_created.json").read_bytes())
    return Answer.json(200, {**document, **changes})


def tw_error(name: str, status: int, **headers: str) -> Answer:
    body = (TW_FIXTURES / name).read_bytes()
    return Answer(status, body, {"Content-Type": "application/json", **headers})


TW_NOT_FOUND = Answer.json(
    404,
    {
        "code": 20404,
        "message": f"The requested resource {TW_PATH} was not found",
        "more_info": "https://www.twilio.com/docs/errors/20404",
        "status": 404,
    },
)

TWILIO_CASES = [
    Case("delivered", tw_message(status="delivered"), StatusReport(TW_MSG, S.DELIVERED)),
    Case(
        "undelivered 30003 uses our description",
        tw_message(
            status="undelivered",
            error_code=30003,
            error_message="Unreachable destination handset",
        ),
        StatusReport(TW_MSG, S.UNDELIVERED, "twilio:30003", "unreachable destination handset"),
    ),
    Case(
        "failed with a code we don't describe keeps Twilio's text",
        tw_message(status="failed", error_code=30999, error_message="Something odd"),
        StatusReport(TW_MSG, S.FAILED, "twilio:30999", "Something odd"),
    ),
    Case(
        "error code as a string, 0 means none",
        tw_message(status="delivered", error_code="0"),
        StatusReport(TW_MSG, S.DELIVERED),
    ),
    # Twilio has it, so it left us: "queued" is no news to a callback but is news here.
    Case("queued at Twilio", tw_message(status="queued"), StatusReport(TW_MSG, S.SENT)),
    Case("accepted by a service", tw_message(status="accepted"), StatusReport(TW_MSG, S.SENT)),
    Case("sent", tw_message(status="sent"), StatusReport(TW_MSG, S.SENT)),
    Case("canceled", tw_message(status="canceled"), StatusReport(TW_MSG, S.FAILED)),
    Case("404: Twilio does not know it", TW_NOT_FOUND, None),
    Case("401 credentials", tw_error("error_20003.json", 401), Raises(AuthFailure, "twilio:20003")),
    Case(
        "429 with Retry-After",
        tw_error("error_20429.json", 429, **{"Retry-After": "7"}),
        Raises(Throttled, "twilio:20429", retry_after=7.0),
    ),
    Case("500", tw_error("error_20500.json", 500), Raises(TemporaryFailure, "twilio:20500")),
    Case(
        "a status we don't know",
        tw_message(status="teleported"),
        Raises(TemporaryFailure, "twilio:bad_response"),
    ),
    Case(
        "not JSON",
        Answer(200, b"<html>hello</html>", {"Content-Type": "text/html"}),
        Raises(TemporaryFailure, "twilio:bad_response"),
    ),
]


@pytest.mark.parametrize("case", TWILIO_CASES, ids=lambda c: c.id)
def test_twilio_lookup(case: Case, client: Client) -> None:
    with fake_api() as api:
        api.answer("GET", TW_PATH, case.answer)
        config = {"account_sid": TW_SID, "auth_token": TW_TOKEN, "api_base": api.url}

        async def run() -> StatusReport | ProviderError | None:
            async with client() as http:
                return await _ask(twilio.create(config, TW_CONTEXT, http), TW_MSG)

        outcome = asyncio.run(run())
    assert len(api.seen) == 1
    request = api.seen[0]
    assert (request.method, request.path) == ("GET", TW_PATH)
    basic = base64.b64encode(f"{TW_SID}:{TW_TOKEN}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {basic}"
    assert request.headers["accept"] == "application/json"
    _check(outcome, case, TW_TOKEN)


def test_twilio_lookup_escapes_the_id_and_reports_a_dead_api(client: Client) -> None:
    with fake_api() as api:
        config = {"account_sid": TW_SID, "auth_token": TW_TOKEN, "api_base": api.url}

        async def run() -> StatusReport | ProviderError | None:
            async with client() as http:
                return await _ask(twilio.create(config, TW_CONTEXT, http), "SM../../x?y")

        assert asyncio.run(run()) is None  # the fake answers 404 to anything unrouted
    assert api.seen[0].path == f"/2010-04-01/Accounts/{TW_SID}/Messages/SM..%2F..%2Fx%3Fy.json"

    dead = {
        "account_sid": TW_SID,
        "auth_token": TW_TOKEN,
        "api_base": f"http://127.0.0.1:{_closed_port()}",
    }

    async def refused() -> StatusReport | ProviderError | None:
        async with client() as http:
            return await _ask(twilio.create(dead, TW_CONTEXT, http), TW_MSG)

    outcome = asyncio.run(refused())
    assert isinstance(outcome, TemporaryFailure) and outcome.code == "twilio:connect"


# --- Telnyx ------------------------------------------------------------------------------------

TX_FIXTURES = Path(telnyx.__file__).parent / "fixtures"
TX_KEY = "KEY0123456789ABCDEF_s3cr3tPartOfTheKey"
TX_PUBLIC = base64.b64encode(bytes(32)).decode()
TX_MSG = "40385f64-5717-4562-b3fc-2c963f66afa6"
TX_PATH = f"/v2/messages/{TX_MSG}"
TX_CONTEXT = ChannelContext(channel_id=9, sender="+14155550100", base_url="https://td.example")


def tx_retrieved(fixture: str) -> Answer:
    """``GET /v2/messages/{id}`` answers ``{"data": <message>}``: the message object a webhook
    event carries as its ``payload`` (or a send answer carries as ``data``)."""
    document = json.loads((TX_FIXTURES / fixture).read_bytes())
    data = document["data"]
    message = data.get("payload", data)
    return Answer.json(200, {"data": message})


def tx_error(name: str, status: int) -> Answer:
    return Answer(status, (TX_FIXTURES / name).read_bytes())


TELNYX_CASES = [
    Case(
        "delivered",
        tx_retrieved("message_finalized_delivered.json"),
        StatusReport(TX_MSG, S.DELIVERED),
    ),
    Case(
        "delivery_failed with its error",
        tx_retrieved("message_finalized_delivery_failed.json"),
        StatusReport(TX_MSG, S.UNDELIVERED, "telnyx:40001", "Not routable"),
    ),
    Case(
        "sending_failed",
        tx_retrieved("message_finalized_sending_failed.json"),
        StatusReport(TX_MSG, S.FAILED, "telnyx:40013", "Invalid source number"),
    ),
    Case(
        "delivery_unconfirmed",
        tx_retrieved("message_finalized_delivery_unconfirmed.json"),
        StatusReport(TX_MSG, S.SENT),
    ),
    Case("sent", tx_retrieved("message_sent.json"), StatusReport(TX_MSG, S.SENT)),
    # Telnyx has it, so it left us.
    Case("queued at Telnyx", tx_retrieved("message_created.json"), StatusReport(TX_MSG, S.SENT)),
    Case(
        "404: Telnyx does not know it",
        Answer.json(
            404,
            {
                "errors": [
                    {
                        "code": "10005",
                        "title": "Resource not found",
                        "detail": "The requested resource or URL could not be found.",
                    }
                ]
            },
        ),
        None,
    ),
    Case("401 bad key", tx_error("error_10009.json", 401), Raises(AuthFailure, "telnyx:10009")),
    Case("429", tx_error("error_10011.json", 429), Raises(Throttled, "telnyx:10011")),
    Case("500", tx_error("error_10007.json", 500), Raises(TemporaryFailure, "telnyx:10007")),
    Case(
        "no recipient status",
        Answer.json(200, {"data": {"id": TX_MSG, "to": []}}),
        Raises(TemporaryFailure, "telnyx:bad_response"),
    ),
]


@pytest.mark.parametrize("case", TELNYX_CASES, ids=lambda c: c.id)
def test_telnyx_lookup(case: Case, client: Client) -> None:
    with fake_api() as api:
        api.answer("GET", TX_PATH, case.answer)
        config = {"api_key": TX_KEY, "public_key": TX_PUBLIC, "api_base": api.url}

        async def run() -> StatusReport | ProviderError | None:
            async with client() as http:
                return await _ask(telnyx.create(config, TX_CONTEXT, http), TX_MSG)

        outcome = asyncio.run(run())
    assert len(api.seen) == 1
    request = api.seen[0]
    assert (request.method, request.path) == ("GET", TX_PATH)
    assert request.headers["authorization"] == f"Bearer {TX_KEY}"
    assert request.headers["accept"] == "application/json"
    _check(outcome, case, TX_KEY)


def test_telnyx_lookup_of_a_dead_api(client: Client) -> None:
    dead = {
        "api_key": TX_KEY,
        "public_key": TX_PUBLIC,
        "api_base": f"http://127.0.0.1:{_closed_port()}",
    }

    async def refused() -> StatusReport | ProviderError | None:
        async with client() as http:
            return await _ask(telnyx.create(dead, TX_CONTEXT, http), TX_MSG)

    outcome = asyncio.run(refused())
    assert isinstance(outcome, TemporaryFailure) and outcome.code == "telnyx:connect"
