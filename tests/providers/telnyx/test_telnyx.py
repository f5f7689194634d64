"""The Telnyx adapter, table-driven from captured-shape payloads in the package's ``fixtures/``.

Each send case is: the message, Telnyx's canned answer, the exact request we must have made, and
the result or error we must return. Webhooks are signed with a test Ed25519 key pair.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.providers.fake_http import send_over_the_wire, wire_answer
from textdesk.domain.states import MessageStatus
from textdesk.httpclient import ProviderHttp
from textdesk.providers import registry, telnyx
from textdesk.providers.base import (
    AmbiguousFailure,
    AuthFailure,
    ChannelContext,
    InboundSms,
    InvalidNumber,
    MalformedWebhook,
    OptedOut,
    OutboundSms,
    PermanentFailure,
    ProviderError,
    SendResult,
    SignatureError,
    StatusReport,
    TemporaryFailure,
    Throttled,
    WebhookRequest,
)

FIXTURES = Path(telnyx.__file__).parent / "fixtures"

SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC_KEY = base64.b64encode(
    SIGNING_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
).decode()
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))

API_KEY = "KEY0123456789ABCDEF_s3cr3tPartOfTheKey"
PROFILE = "4001767e-ce0f-4cae-9d5f-0d5e636e7809"
API = "https://telnyx.test"
BASE_URL = "https://textdesk.example.com"
CONFIG = {"api_key": API_KEY, "public_key": PUBLIC_KEY, "api_base": API}
CONTEXT = ChannelContext(channel_id=9, sender="+14155550100", base_url=BASE_URL)
NOW = 1_715_706_135.0  # 2024-05-14T17:02:15Z
OUT_ID = "40385f64-5717-4562-b3fc-2c963f66afa6"

SMS = OutboundSms(
    message_id=42,
    sender="+14155550100",
    to="+14155550123",
    body="Hi Dana, your table for 4 is confirmed for 7pm.",
    idempotency_key="msg-42",
    status_callback_url=f"{BASE_URL}/webhooks/telnyx/9/status",
)
PAYLOAD = {
    "from": SMS.sender,
    "to": SMS.to,
    "text": SMS.body,
    "webhook_url": SMS.status_callback_url,
    "use_profile_webhooks": False,
}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _no_calls(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"webhook handling must not call out: {request.url}")


def provider_for(http: ProviderHttp, **config: object) -> telnyx.TelnyxProvider:
    return telnyx.create({**CONFIG, **config}, CONTEXT, http, clock=lambda: NOW)


def offline(**config: object) -> telnyx.TelnyxProvider:
    """An adapter for webhook tests: they are synchronous and must make no HTTP calls."""
    return provider_for(httpx.AsyncClient(transport=httpx.MockTransport(_no_calls)), **config)


# --- send ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Canned:
    """What the fake Telnyx answers: a response, or a transport error raised instead."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    error: Callable[[httpx.Request], Exception] | None = None


@dataclass(frozen=True)
class Raises:
    cls: type[ProviderError]
    code: str
    retry_after: float | None = None


@dataclass(frozen=True)
class SendCase:
    id: str
    response: Canned
    expect: SendResult | Raises
    sms: OutboundSms = SMS
    config: Mapping[str, object] = field(default_factory=dict)
    url: str = f"{API}/v2/messages"
    json: Mapping[str, object] = field(default_factory=lambda: PAYLOAD)
    idempotency_key: str = "msg-42"


def answer(name: str, status: int, headers: Mapping[str, str] | None = None) -> Canned:
    return Canned(status, fixture(name), {"Content-Type": "application/json", **(headers or {})})


def created_with(**data: object) -> Canned:
    body = json.loads(fixture("message_created.json"))
    body["data"].update(data)
    return Canned(200, json.dumps(body).encode(), {"Content-Type": "application/json"})


CREATED = answer("message_created.json", 200)
SENT = SendResult(provider_message_id=OUT_ID, status=MessageStatus.SENT, segments=1)
ODD_KEY = "campaign 7 / contact 9 ✓"

SEND_CASES = [
    SendCase("created", CREATED, SENT),
    SendCase(
        "default api base",
        CREATED,
        SENT,
        config={"api_base": None},
        url="https://api.telnyx.com/v2/messages",
    ),
    SendCase(
        "messaging profile",
        CREATED,
        SENT,
        config={"messaging_profile_id": PROFILE},
        json={**PAYLOAD, "messaging_profile_id": PROFILE},
    ),
    SendCase(
        "validity is not sent (no such field on /v2/messages)",
        CREATED,
        SENT,
        sms=replace(SMS, valid_until=datetime(2024, 5, 14, 19, tzinfo=UTC) + timedelta(hours=1)),
    ),
    SendCase(
        "idempotency key outside Telnyx's format is digested",
        CREATED,
        SENT,
        sms=replace(SMS, idempotency_key=ODD_KEY),
        idempotency_key="textdesk:" + hashlib.sha256(ODD_KEY.encode()).hexdigest(),
    ),
    SendCase("segments from parts", created_with(parts=3), replace(SENT, segments=3)),
    SendCase(
        "200 without data.id",
        Canned(200, b'{"data": {"record_type": "message"}}'),
        Raises(AmbiguousFailure, "telnyx:bad_response"),
    ),
    SendCase(
        "40300 blocked due to STOP",
        answer("error_40300.json", 409),
        Raises(OptedOut, "telnyx:40300"),
    ),
    SendCase(
        "40310 invalid to", answer("error_40310.json", 400), Raises(InvalidNumber, "telnyx:40310")
    ),
    SendCase(
        "10009 bad API key", answer("error_10009.json", 401), Raises(AuthFailure, "telnyx:10009")
    ),
    SendCase("401 without a body", Canned(401), Raises(AuthFailure, "telnyx:http_401")),
    SendCase(
        "40314 messaging disabled on account",
        answer("error_40314.json", 403),
        Raises(AuthFailure, "telnyx:40314"),
    ),
    SendCase(
        "10011 with Retry-After",
        answer("error_10011.json", 429, {"Retry-After": "2"}),
        Raises(Throttled, "telnyx:10011", retry_after=2.0),
    ),
    SendCase("429 without a body", Canned(429), Raises(Throttled, "telnyx:http_429")),
    SendCase(
        "10007 unexpected error",
        answer("error_10007.json", 500),
        Raises(TemporaryFailure, "telnyx:10007"),
    ),
    SendCase(
        "502 from a proxy",
        Canned(502, b"<html>Bad Gateway</html>", {"Content-Type": "text/html"}),
        Raises(TemporaryFailure, "telnyx:http_502"),
    ),
    SendCase(
        "unmapped code is permanent",
        answer("error_40305.json", 422),
        Raises(PermanentFailure, "telnyx:40305"),
    ),
    SendCase(
        "422 that isn't JSON", Canned(422, b"nope"), Raises(PermanentFailure, "telnyx:http_422")
    ),
    SendCase(
        "connection refused",
        Canned(error=lambda r: httpx.ConnectError("connection refused", request=r)),
        Raises(TemporaryFailure, "telnyx:connect"),
    ),
    SendCase(
        "read timeout",
        Canned(error=lambda r: httpx.ReadTimeout("timed out", request=r)),
        Raises(AmbiguousFailure, "telnyx:timeout"),
    ),
    SendCase(
        "connection dropped",
        Canned(error=lambda r: httpx.RemoteProtocolError("peer closed", request=r)),
        Raises(AmbiguousFailure, "telnyx:network"),
    ),
]


@pytest.mark.parametrize("case", SEND_CASES, ids=lambda c: c.id)
def test_send(case: SendCase) -> None:
    seen: list[httpx.Request] = []

    def respond(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if case.response.error is not None:
            raise case.response.error(request)
        return httpx.Response(
            case.response.status, content=case.response.body, headers=dict(case.response.headers)
        )

    async def run() -> SendResult | ProviderError:
        async with httpx.AsyncClient(transport=httpx.MockTransport(respond)) as http:
            try:
                return await provider_for(http, **case.config).send(case.sms)
            except ProviderError as exc:
                return exc

    outcome = asyncio.run(run())

    assert len(seen) == 1
    request = seen[0]
    _check_request(case, request.method, str(request.url), request.headers, request.content)
    _check_outcome(case, outcome)


# The same table through the worker's own client (``ProviderClient``) and a real socket: the
# answer as a loopback server gives it (``wire_answer``), the request as it arrived there.
WIRE_CASES = [c for c in SEND_CASES if c.url.startswith(API)]


@pytest.mark.parametrize("case", WIRE_CASES, ids=lambda c: c.id)
def test_send_through_the_worker_client(case: SendCase) -> None:
    canned = case.response

    async def send(http: ProviderHttp, base: str) -> SendResult | ProviderError:
        try:
            return await provider_for(http, **{**case.config, "api_base": base}).send(case.sms)
        except ProviderError as exc:
            return exc

    answer = wire_answer(canned.status, canned.body, canned.headers, canned.error)
    seen = send_over_the_wire(case.url[len(API) :], answer, send)
    if seen.request is not None:
        request = seen.request
        _check_request(case, request.method, API + request.path, request.headers, request.body)
    _check_outcome(case, seen.outcome)


def _check_request(
    case: SendCase, method: str, url: str, headers: Mapping[str, str], body: bytes
) -> None:
    headers = {k.lower(): v for k, v in headers.items()}
    assert method == "POST"
    assert url == case.url
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert headers["content-type"] == "application/json"
    assert headers["accept"] == "application/json"
    assert headers["idempotency-key"] == case.idempotency_key
    assert json.loads(body) == case.json


def _check_outcome(case: SendCase, outcome: SendResult | ProviderError) -> None:
    if isinstance(case.expect, Raises):
        assert isinstance(outcome, ProviderError)
        assert type(outcome) is case.expect.cls
        assert outcome.code == case.expect.code
        assert outcome.retry_after == case.expect.retry_after
        assert API_KEY not in str(outcome) and API_KEY not in repr(outcome)
        assert outcome.__cause__ is None  # no httpx request (with its auth header) chained on
    else:
        assert outcome == case.expect


def test_telnyx_is_not_trusted_to_dedupe() -> None:
    assert telnyx.TelnyxProvider.dedupes_by_idempotency_key is False
    assert telnyx.TelnyxProvider.name == "telnyx"


def test_registry_builds_it() -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(_no_calls))
    assert isinstance(registry.create("telnyx", CONFIG, CONTEXT, http), telnyx.TelnyxProvider)
    assert registry.validate_config("telnyx", CONFIG) == CONFIG
    assert registry.dedupes_by_idempotency_key("telnyx") is False


def test_secrets_stay_out_of_repr() -> None:
    provider = offline(messaging_profile_id=PROFILE)
    assert API_KEY not in repr(provider)
    assert "hidden" in repr(provider)
    assert API_KEY not in repr(telnyx.config.parse_config(CONFIG))


# --- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"public_key": PUBLIC_KEY}, "'api_key' is required"),
        ({**CONFIG, "api_key": "not-a-v2-key"}, "'api_key' must be a Telnyx API v2 key"),
        ({**CONFIG, "api_key": 42}, "'api_key' must be a string"),
        ({"api_key": API_KEY}, "'public_key' is required"),
        ({**CONFIG, "public_key": "%%%"}, "'public_key' must be base64"),
        (
            {**CONFIG, "public_key": base64.b64encode(b"short").decode()},
            "'public_key' must be a base64 Ed25519 public key (32 bytes)",
        ),
        ({**CONFIG, "messaging_profile_id": "profile-1"}, "'messaging_profile_id' must be a UUID"),
        ({**CONFIG, "api_base": "api.telnyx.com"}, "'api_base' must be an http(s) URL"),
        ({**CONFIG, "timestamp_tolerance": 0}, "'timestamp_tolerance' must be a positive"),
        ({**CONFIG, "timestamp_tolerance": "soon"}, "'timestamp_tolerance' must be a number"),
        ({**CONFIG, "timestamp_tolerance": True}, "'timestamp_tolerance' must be a number"),
        ({**CONFIG, "apikey": API_KEY}, "unknown key 'apikey'"),
    ],
)
def test_validate_config_names_the_bad_key(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=r"^telnyx config: ") as info:
        telnyx.validate_config(config)
    assert message in str(info.value)
    assert API_KEY not in str(info.value)


def test_validate_config_cleans() -> None:
    assert telnyx.validate_config(
        {
            "api_key": f" {API_KEY} ",
            "public_key": PUBLIC_KEY,
            "messaging_profile_id": PROFILE.upper(),
            "api_base": "https://api.telnyx.com/",
            "timestamp_tolerance": "120",
        }
    ) == {
        "api_key": API_KEY,
        "public_key": PUBLIC_KEY,
        "messaging_profile_id": PROFILE,
        "api_base": "https://api.telnyx.com",
        "timestamp_tolerance": 120.0,
    }
    assert telnyx.validate_config({"api_key": API_KEY, "public_key": PUBLIC_KEY}) == {
        "api_key": API_KEY,
        "public_key": PUBLIC_KEY,
    }


# --- webhook signatures ----------------------------------------------------------------------

STATUS_URL = f"{BASE_URL}/webhooks/telnyx/9/status"
INBOUND_URL = f"{BASE_URL}/webhooks/telnyx/9/inbound"


def signed(
    body: bytes,
    *,
    timestamp: float = NOW,
    key: Ed25519PrivateKey = SIGNING_KEY,
    url: str = STATUS_URL,
    headers: Mapping[str, str | None] | None = None,
) -> WebhookRequest:
    ts = str(int(timestamp))
    signature = base64.b64encode(key.sign(ts.encode() + b"|" + body)).decode()
    all_headers: dict[str, str | None] = {
        "content-type": "application/json",
        "telnyx-signature-ed25519": signature,
        "telnyx-timestamp": ts,
        **(headers or {}),
    }
    return WebhookRequest(
        method="POST",
        url=url,
        headers={k: v for k, v in all_headers.items() if v is not None},
        body=body,
    )


BODY = fixture("message_finalized_delivered.json")


@pytest.mark.parametrize(
    ("request_", "config"),
    [
        (signed(BODY), {}),
        (signed(fixture("message_received.json"), url=INBOUND_URL), {}),
        (signed(BODY, timestamp=NOW - 300), {}),  # exactly at the tolerance
        (signed(BODY, timestamp=NOW + 300), {}),  # our clock is behind
        (signed(BODY, timestamp=NOW - 500), {"timestamp_tolerance": 600}),
    ],
    ids=["status", "inbound", "300s old", "300s ahead", "configured tolerance"],
)
def test_valid_signature_passes(request_: WebhookRequest, config: dict[str, object]) -> None:
    offline(**config).verify(request_)


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (signed(BODY, headers={"telnyx-signature-ed25519": None}), "missing telnyx-signature"),
        (signed(BODY, headers={"telnyx-timestamp": None}), "missing telnyx-timestamp"),
        (signed(BODY, timestamp=NOW - 301), "stale or replayed"),
        (signed(BODY, timestamp=NOW + 3600), "stale or replayed"),
        (signed(BODY, key=OTHER_KEY), "does not verify"),
        (
            replace(signed(BODY), body=BODY.replace(b'"delivered"', b'"delivery_failed"')),
            "does not verify",
        ),
        # A captured request replayed with a fresh timestamp: the signature covers the timestamp.
        (signed(BODY, headers={"telnyx-timestamp": str(int(NOW) + 1)}), "does not verify"),
        (signed(BODY, headers={"telnyx-signature-ed25519": "***"}), "not base64"),
        (signed(BODY, headers={"telnyx-timestamp": "2024-05-14T17:02:15Z"}), "not a Unix time"),
    ],
    ids=[
        "missing signature",
        "missing timestamp",
        "expired",
        "from the future",
        "wrong key",
        "tampered body",
        "re-stamped",
        "garbage signature",
        "ISO timestamp",
    ],
)
def test_bad_signature_is_refused(request_: WebhookRequest, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        offline().verify(request_)


# --- inbound and status parsing --------------------------------------------------------------


def request_with(body: bytes | Mapping[str, Any]) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return WebhookRequest("POST", STATUS_URL, {"content-type": "application/json"}, raw)


def test_parse_inbound() -> None:
    sms = offline().parse_inbound(request_with(fixture("message_received.json")))
    assert isinstance(sms, InboundSms)
    assert sms.provider_message_id == "7ee4241c-f127-47e5-9c34-3aac291f8058"
    assert sms.sender == "+14155550123"
    assert sms.recipient == "+14155550100"
    assert sms.body == "Yes 7pm works, thanks! 👍"
    assert sms.received_at == datetime(2024, 5, 14, 17, 5, 41, 870_000, tzinfo=UTC)
    assert sms.provider_opt_out is None
    assert sms.raw["event_type"] == "message.received"


@pytest.mark.parametrize(
    "body",
    [
        fixture("message_sent.json"),
        fixture("message_finalized_delivered.json"),
        b"[]",
        b'{"data": {"event_type": "message.received", "payload": {}}}',
    ],
    ids=["sent event", "finalized event", "not an object", "no payload"],
)
def test_other_callbacks_are_not_inbound(body: bytes) -> None:
    assert offline().parse_inbound(request_with(body)) is None


@pytest.mark.parametrize(
    ("body", "content_type", "status", "reason"),
    [
        (b"not json", "application/json", 400, "not JSON"),
        (b'{"data": "\xff"}', "application/json", 400, "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", 400, "nested too deeply"),
        (fixture("message_received.json"), "text/plain", 415, "must be application/json"),
    ],
    ids=["not json", "not utf-8", "too deep", "wrong media type"],
)
def test_unreadable_callbacks_are_malformed(
    body: bytes, content_type: str, status: int, reason: str
) -> None:
    request = replace(request_with(body), headers={"content-type": content_type})
    for parse in (offline().parse_inbound, offline().parse_status):
        with pytest.raises(MalformedWebhook, match=reason) as caught:
            parse(request)
        assert caught.value.status == status


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("message_sent.json", StatusReport(OUT_ID, MessageStatus.SENT)),
        ("message_finalized_delivered.json", StatusReport(OUT_ID, MessageStatus.DELIVERED)),
        (
            "message_finalized_delivery_failed.json",
            StatusReport(OUT_ID, MessageStatus.UNDELIVERED, "telnyx:40001", "Not routable"),
        ),
        (
            "message_finalized_sending_failed.json",
            StatusReport(OUT_ID, MessageStatus.FAILED, "telnyx:40013", "Invalid source number"),
        ),
        ("message_finalized_delivery_unconfirmed.json", StatusReport(OUT_ID, MessageStatus.SENT)),
    ],
)
def test_parse_status_fixtures(name: str, expected: StatusReport) -> None:
    report = offline().parse_status(request_with(fixture(name)))
    assert isinstance(report, StatusReport)
    assert replace(report, raw={}) == expected
    assert report.raw["id"]


@pytest.mark.parametrize(
    ("telnyx_status", "ours"),
    [
        ("queued", None),
        ("sending", None),
        ("sent", MessageStatus.SENT),
        ("delivered", MessageStatus.DELIVERED),
        ("sending_failed", MessageStatus.FAILED),
        ("delivery_failed", MessageStatus.UNDELIVERED),
        ("delivery_unconfirmed", MessageStatus.SENT),
        ("something_new", None),
    ],
)
def test_every_telnyx_status(telnyx_status: str, ours: MessageStatus | None) -> None:
    event = json.loads(fixture("message_finalized_delivered.json"))
    event["data"]["payload"]["to"][0]["status"] = telnyx_status
    report = offline().parse_status(request_with(event))
    if ours is None:
        assert report is None
    else:
        assert isinstance(report, StatusReport)
        assert report.status is ours


def test_a_stop_block_in_a_webhook_says_opted_out() -> None:
    event = json.loads(fixture("message_finalized_delivery_failed.json"))
    event["data"]["payload"]["errors"] = [{"code": "40300", "title": "Blocked due to STOP"}]
    report = offline().parse_status(request_with(event))
    assert isinstance(report, StatusReport)
    assert report.error_code == "telnyx:40300" and report.opted_out
    other = offline().parse_status(request_with(fixture("message_finalized_delivery_failed.json")))
    assert isinstance(other, StatusReport) and not other.opted_out


def test_error_without_title_uses_our_description() -> None:
    event = json.loads(fixture("message_finalized_delivery_failed.json"))
    event["data"]["payload"]["errors"] = [{"code": "40003"}]
    report = offline().parse_status(request_with(event))
    assert isinstance(report, StatusReport)
    assert report.error_code == "telnyx:40003"
    assert report.error_message == "sending number blocked as spam by the carrier (permanent)"


@pytest.mark.parametrize(
    "body",
    [
        fixture("message_received.json"),
        b'{"data": {"event_type": "message.finalized", "payload": {"to": []}}}',
    ],
    ids=["inbound event", "no recipient"],
)
def test_other_callbacks_are_not_status(body: bytes) -> None:
    assert offline().parse_status(request_with(body)) is None


def test_other_event_types_are_ignored() -> None:
    event = copy.deepcopy(json.loads(fixture("message_sent.json")))
    event["data"]["event_type"] = "number_order.complete"
    assert offline().parse_status(request_with(event)) is None
    assert offline().parse_inbound(request_with(event)) is None


def test_every_config_key_is_documented() -> None:
    docs = (Path(__file__).resolve().parents[3] / "docs" / "providers.md").read_text()
    section = docs.split("\n## Telnyx\n", 1)[1].split("\n## ", 1)[0]
    missing = [key for key in sorted(telnyx.config.KEYS) if f"`{key}`" not in section]
    assert not missing, f"document in docs/providers.md, section Telnyx: {missing}"
