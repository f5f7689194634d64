"""The Twilio adapter, table-driven from captured-shape payloads in the package's ``fixtures/``.

Each send case is: the message, Twilio's canned answer, the exact request we must have made, and
the result or error we must return. Webhook signatures are cross-checked against Twilio's own
``RequestValidator``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlencode

import httpx
import pytest
from twilio.request_validator import RequestValidator

from tests.providers.fake_http import send_over_the_wire, wire_answer
from textdesk.domain.states import MessageStatus
from textdesk.httpclient import ProviderHttp
from textdesk.providers import registry, twilio
from textdesk.providers.base import (
    AmbiguousFailure,
    AuthFailure,
    ChannelContext,
    InboundSms,
    InvalidNumber,
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

FIXTURES = Path(twilio.__file__).parent / "fixtures"

SID = "ACa1b2c3d4e5f60718293a4b5c6d7e8f90"
TOKEN = "5f4dcc3b5aa765d61d8327deb882cf99"
SERVICE = "MG11112222333344445555666677778888"
API = "https://twilio.test"
MESSAGES_URL = f"{API}/2010-04-01/Accounts/{SID}/Messages.json"
BASE_URL = "https://textdesk.example.com"
CONFIG = {"account_sid": SID, "auth_token": TOKEN, "api_base": API}
CONTEXT = ChannelContext(channel_id=7, sender="+14155550100", base_url=BASE_URL)
NOW = datetime(2024, 5, 14, 17, 0, tzinfo=UTC)
BASIC = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
CREATED_SID = "SM0f1e2d3c4b5a69788796a5b4c3d2e1f0"

SMS = OutboundSms(
    message_id=42,
    sender="+14155550100",
    to="+14155550123",
    body="Hi Dana, your table for 4 is confirmed for 7pm.",
    idempotency_key="msg-42",
    status_callback_url=f"{BASE_URL}/webhooks/twilio/7/status",
)
FORM = {
    "To": SMS.to,
    "From": SMS.sender,
    "Body": SMS.body,
    "StatusCallback": SMS.status_callback_url,
}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# --- send ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Canned:
    """What the fake Twilio answers: a response, or a transport error raised instead."""

    status: int = 201
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
    url: str = MESSAGES_URL
    form: Mapping[str, str] = field(default_factory=lambda: FORM)


def error(name: str, status: int, headers: Mapping[str, str] | None = None) -> Canned:
    return Canned(status, fixture(name), {"Content-Type": "application/json", **(headers or {})})


CREATED = Canned(201, fixture("message_created.json"), {"Content-Type": "application/json"})
SENT = SendResult(provider_message_id=CREATED_SID, status=MessageStatus.SENT, segments=1)

SEND_CASES = [
    SendCase("created", CREATED, SENT),
    SendCase(
        "default api base",
        CREATED,
        SENT,
        config={"api_base": None},
        url=f"https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json",
    ),
    SendCase(
        "messaging service replaces From",
        CREATED,
        SENT,
        config={"messaging_service_sid": SERVICE},
        form={**{k: v for k, v in FORM.items() if k != "From"}, "MessagingServiceSid": SERVICE},
    ),
    SendCase(
        "validity in two hours",
        CREATED,
        SENT,
        sms=replace(SMS, valid_until=NOW + timedelta(hours=2, milliseconds=500)),
        form={**FORM, "ValidityPeriod": "7200"},
    ),
    SendCase(
        "validity clamped to Twilio's 10 hours",
        CREATED,
        SENT,
        sms=replace(SMS, valid_until=NOW + timedelta(days=2)),
        form={**FORM, "ValidityPeriod": "36000"},
    ),
    SendCase(
        "validity already passed clamps to 1 second",
        CREATED,
        SENT,
        sms=replace(SMS, valid_until=NOW - timedelta(minutes=5)),
        form={**FORM, "ValidityPeriod": "1"},
    ),
    SendCase(
        "naive validity is UTC",
        CREATED,
        SENT,
        sms=replace(SMS, valid_until=datetime(2024, 5, 14, 17, 1)),
        form={**FORM, "ValidityPeriod": "60"},
    ),
    SendCase(
        "segments from num_segments",
        Canned(
            201,
            json.dumps(
                {**json.loads(fixture("message_created.json")), "num_segments": "3"}
            ).encode(),
        ),
        replace(SENT, segments=3),
    ),
    SendCase(
        "201 without a sid",
        Canned(201, b'{"status": "queued"}'),
        Raises(AmbiguousFailure, "twilio:bad_response"),
    ),
    SendCase(
        "20003 bad credentials", error("error_20003.json", 401), Raises(AuthFailure, "twilio:20003")
    ),
    SendCase("401 without a body", Canned(401), Raises(AuthFailure, "twilio:http_401")),
    SendCase(
        "20429 with Retry-After seconds",
        error("error_20429.json", 429, {"Retry-After": "3"}),
        Raises(Throttled, "twilio:20429", retry_after=3.0),
    ),
    SendCase("429 without a body", Canned(429), Raises(Throttled, "twilio:http_429")),
    SendCase(
        "20500 internal error",
        error("error_20500.json", 500),
        Raises(TemporaryFailure, "twilio:20500"),
    ),
    SendCase(
        "503 with Retry-After",
        Canned(503, b"<html>unavailable</html>", {"Retry-After": "120"}),
        Raises(TemporaryFailure, "twilio:http_503", retry_after=120.0),
    ),
    SendCase(
        "21211 invalid To", error("error_21211.json", 400), Raises(InvalidNumber, "twilio:21211")
    ),
    SendCase(
        "21614 not a mobile number",
        error("error_21614.json", 400),
        Raises(InvalidNumber, "twilio:21614"),
    ),
    SendCase(
        "21610 unsubscribed recipient",
        error("error_21610.json", 400),
        Raises(OptedOut, "twilio:21610"),
    ),
    SendCase(
        "21408 region not enabled",
        error("error_21408.json", 400),
        Raises(PermanentFailure, "twilio:21408"),
    ),
    SendCase(
        "21617 body too long",
        error("error_21617.json", 400),
        Raises(PermanentFailure, "twilio:21617"),
    ),
    SendCase(
        "21611 sender queue full", error("error_21611.json", 400), Raises(Throttled, "twilio:21611")
    ),
    SendCase(
        "unknown 4xx code", error("error_21699.json", 400), Raises(PermanentFailure, "twilio:21699")
    ),
    SendCase(
        "400 that isn't JSON",
        Canned(400, b"Bad Request"),
        Raises(PermanentFailure, "twilio:http_400"),
    ),
    SendCase(
        "connection refused",
        Canned(error=lambda r: httpx.ConnectError("connection refused", request=r)),
        Raises(TemporaryFailure, "twilio:connect"),
    ),
    SendCase(
        "read timeout",
        Canned(error=lambda r: httpx.ReadTimeout("timed out", request=r)),
        Raises(AmbiguousFailure, "twilio:timeout"),
    ),
    SendCase(
        "connection dropped",
        Canned(error=lambda r: httpx.RemoteProtocolError("peer closed", request=r)),
        Raises(AmbiguousFailure, "twilio:network"),
    ),
]


def provider_for(http: ProviderHttp, **config: object) -> twilio.TwilioProvider:
    return twilio.create({**CONFIG, **config}, CONTEXT, http, clock=lambda: NOW)


def _no_calls(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"webhook handling must not call out: {request.url}")


def offline(**config: object) -> twilio.TwilioProvider:
    """An adapter for webhook tests: they are synchronous and must make no HTTP calls."""
    return provider_for(httpx.AsyncClient(transport=httpx.MockTransport(_no_calls)), **config)


@pytest.mark.parametrize("case", SEND_CASES, ids=lambda c: c.id)
def test_send(case: SendCase) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if case.response.error is not None:
            raise case.response.error(request)
        return httpx.Response(
            case.response.status, content=case.response.body, headers=dict(case.response.headers)
        )

    async def run() -> SendResult | ProviderError:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
            provider = provider_for(http, **case.config)
            try:
                return await provider.send(case.sms)
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
    assert headers["authorization"] == BASIC
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    assert headers["accept"] == "application/json"
    sent = parse_qs(body.decode(), keep_blank_values=True)
    assert {k: v[0] for k, v in sent.items()} == dict(case.form)
    assert all(len(v) == 1 for v in sent.values())


def _check_outcome(case: SendCase, outcome: SendResult | ProviderError) -> None:
    if isinstance(case.expect, Raises):
        assert isinstance(outcome, ProviderError)
        assert type(outcome) is case.expect.cls
        assert outcome.code == case.expect.code
        assert outcome.retry_after == case.expect.retry_after
        assert TOKEN not in str(outcome) and TOKEN not in repr(outcome)
        assert outcome.__cause__ is None  # no httpx request (with its auth header) chained on
    else:
        assert outcome == case.expect


def test_twilio_does_not_dedupe() -> None:
    assert twilio.TwilioProvider.dedupes_by_idempotency_key is False
    assert twilio.TwilioProvider.name == "twilio"


def test_registry_builds_it() -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(_no_calls))
    assert isinstance(registry.create("twilio", CONFIG, CONTEXT, http), twilio.TwilioProvider)
    assert registry.validate_config("twilio", CONFIG) == CONFIG
    assert registry.dedupes_by_idempotency_key("twilio") is False


def test_secrets_stay_out_of_repr() -> None:
    provider = offline()
    assert TOKEN not in repr(provider)
    assert "hidden" in repr(provider)
    assert TOKEN not in repr(twilio.config.parse_config(CONFIG))


# --- config ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"auth_token": TOKEN}, "'account_sid' is required"),
        ({**CONFIG, "account_sid": "AC123"}, "'account_sid' must look like AC followed by 32 hex"),
        ({**CONFIG, "account_sid": "SK" + SID[2:]}, "'account_sid' must look like AC"),
        ({"account_sid": SID}, "'auth_token' is required"),
        ({**CONFIG, "auth_token": "   "}, "'auth_token' is required"),
        ({**CONFIG, "auth_token": 1234}, "'auth_token' must be a string"),
        ({**CONFIG, "messaging_service_sid": "MG1"}, "'messaging_service_sid' must look like MG"),
        ({**CONFIG, "api_base": "ftp://x"}, "'api_base' must be an http(s) URL"),
        ({**CONFIG, "public_url": "sms.example.org"}, "'public_url' must be an http(s) URL"),
        ({**CONFIG, "advanced_opt_out": "maybe"}, "'advanced_opt_out' must be true or false"),
        ({**CONFIG, "auth_tokn": TOKEN}, "unknown key 'auth_tokn'"),
    ],
)
def test_validate_config_names_the_bad_key(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=r"^twilio config: ") as info:
        twilio.validate_config(config)
    assert message in str(info.value)
    assert TOKEN not in str(info.value)


def test_validate_config_cleans() -> None:
    cleaned = twilio.validate_config(
        {
            "account_sid": f" {SID} ",
            "auth_token": TOKEN,
            "messaging_service_sid": SERVICE,
            "api_base": "https://api.twilio.com/",
            "public_url": "https://sms.example.org/textdesk/",
            "advanced_opt_out": "true",
        }
    )
    assert cleaned == {
        "account_sid": SID,
        "auth_token": TOKEN,
        "messaging_service_sid": SERVICE,
        "api_base": "https://api.twilio.com",
        "public_url": "https://sms.example.org/textdesk",
        "advanced_opt_out": True,
    }
    assert twilio.validate_config({"account_sid": SID, "auth_token": TOKEN}) == {
        "account_sid": SID,
        "auth_token": TOKEN,
    }


# --- webhook signatures ----------------------------------------------------------------------

INBOUND_URL = f"{BASE_URL}/webhooks/twilio/7/inbound"
STATUS_URL = f"{BASE_URL}/webhooks/twilio/7/status"
VALIDATOR = RequestValidator(TOKEN)


def webhook(url: str, body: bytes, signature: str | None = None) -> WebhookRequest:
    headers = {"content-type": "application/x-www-form-urlencoded"}
    if signature is not None:
        headers["x-twilio-signature"] = signature
    form = dict(parse_qsl(body.decode(), keep_blank_values=True))
    return WebhookRequest(method="POST", url=url, headers=headers, body=body, form=form)


def signed(url: str, body: bytes, *, signed_url: str | None = None) -> WebhookRequest:
    params = dict(parse_qsl(body.decode(), keep_blank_values=True))
    return webhook(url, body, VALIDATOR.compute_signature(signed_url or url, params))


def verify_with(request: WebhookRequest, **config: object) -> None:
    offline(**config).verify(request)


def accepts(request: WebhookRequest, **config: object) -> bool:
    try:
        verify_with(request, **config)
    except SignatureError:
        return False
    return True


def test_valid_signature_passes() -> None:
    verify_with(signed(INBOUND_URL, fixture("inbound.form")))
    verify_with(signed(STATUS_URL, fixture("status_delivered.form")))


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        (webhook(INBOUND_URL, fixture("inbound.form")), "missing X-Twilio-Signature"),
        (
            webhook(
                INBOUND_URL,
                fixture("inbound.form"),
                RequestValidator("0" * 32).compute_signature(
                    INBOUND_URL, dict(parse_qsl(fixture("inbound.form").decode()))
                ),
            ),
            "does not match",
        ),
        (
            replace(
                signed(INBOUND_URL, fixture("inbound.form")),
                body=fixture("inbound.form").replace(b"Yes+7pm", b"No+7pm"),
                form={},
            ),
            "does not match",
        ),
        (
            replace(signed(INBOUND_URL, fixture("inbound.form")), url=STATUS_URL),
            "does not match",
        ),
        (webhook(INBOUND_URL, fixture("inbound.form"), "not base64 at all"), "does not match"),
    ],
    ids=["missing", "wrong token", "tampered body", "other URL", "garbage"],
)
def test_bad_signature_is_refused(request_: WebhookRequest, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        verify_with(request_)


def test_public_url_replaces_the_base_url_behind_a_proxy() -> None:
    public = "https://sms.example.org/textdesk"
    body = fixture("status_sent.form")
    # Twilio called the proxy; textdesk sees its own base URL.
    request = signed(STATUS_URL, body, signed_url=f"{public}/webhooks/twilio/7/status")
    assert accepts(request, public_url=public)
    assert not accepts(request)


SIGNING_URLS = [
    "https://textdesk.example.com/webhooks/twilio/7/inbound",
    "https://textdesk.example.com:443/webhooks/twilio/7/inbound",
    "https://textdesk.example.com:8443/webhooks/twilio/7/inbound",
    "http://textdesk.example.com/webhooks/twilio/7/inbound",
    "http://textdesk.example.com:80/webhooks/twilio/7/inbound",
    "https://textdesk.example.com/webhooks/twilio/7/inbound?channel=7&note=a%20b",
    "https://textdesk.example.com/webhooks/twilio/7/status",
]
PARAM_SETS = [
    {},
    dict(parse_qsl(fixture("inbound.form").decode())),
    {"Body": "ünïcödé ✓ & = + %", "From": "+14155550123", "Empty": ""},
]


@pytest.mark.parametrize("params", PARAM_SETS, ids=["no params", "inbound", "odd characters"])
def test_signature_agrees_with_twilios_validator(params: dict[str, str]) -> None:
    body = urlencode(params).encode()
    for signing_url in SIGNING_URLS:
        signature = VALIDATOR.compute_signature(signing_url, params)
        for request_url in SIGNING_URLS:
            expected = VALIDATOR.validate(request_url, params, signature)
            request = webhook(request_url, body, signature)
            assert accepts(request) is expected, (signing_url, request_url)
            # The same verdict when the web layer passes only the parsed form.
            assert accepts(replace(request, body=b"", form=params)) is expected
        forged = RequestValidator("f" * 32).compute_signature(signing_url, params)
        assert not VALIDATOR.validate(signing_url, params, forged)
        assert not accepts(webhook(signing_url, body, forged))


def test_json_body_signed_with_body_sha256() -> None:
    body = json.dumps({"MessageSid": CREATED_SID, "MessageStatus": "delivered"}).encode()
    url = f"{STATUS_URL}?bodySHA256={hashlib.sha256(body).hexdigest()}"
    signature = VALIDATOR.compute_signature(url, {})
    assert VALIDATOR.validate(url, body.decode(), signature)
    request = WebhookRequest(
        "POST", url, {"x-twilio-signature": signature, "content-type": "application/json"}, body
    )
    assert accepts(request)
    tampered = body.replace(b"delivered", b"failed")
    assert not VALIDATOR.validate(url, tampered.decode(), signature)
    assert not accepts(replace(request, body=tampered))


# --- inbound and status parsing --------------------------------------------------------------


def parse(kind: str, body: bytes) -> InboundSms | StatusReport | None:
    provider = offline()
    if kind == "inbound":
        return provider.parse_inbound(webhook(INBOUND_URL, body))
    return provider.parse_status(webhook(STATUS_URL, body))


def test_parse_inbound() -> None:
    sms = parse("inbound", fixture("inbound.form"))
    assert isinstance(sms, InboundSms)
    assert sms.provider_message_id == "SM9a8b7c6d5e4f30211203f4e5d6c7b8a9"
    assert sms.sender == "+14155550123"
    assert sms.recipient == "+14155550100"
    assert sms.body == "Yes 7pm works, thanks! 👍"
    assert sms.provider_opt_out is None
    assert sms.raw["NumMedia"] == "0"


def test_parse_inbound_advanced_opt_out() -> None:
    sms = parse("inbound", fixture("inbound_stop.form"))
    assert isinstance(sms, InboundSms)
    assert sms.body == "Stop"
    assert sms.provider_opt_out == "STOP"


@pytest.mark.parametrize(
    "body", [fixture("status_sent.form"), b"", b"MessageSid=SM1&From=%2B14155550123"]
)
def test_callbacks_without_a_message_are_not_inbound(body: bytes) -> None:
    assert parse("inbound", body) is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("status_sent.form", StatusReport(CREATED_SID, MessageStatus.SENT)),
        ("status_delivered.form", StatusReport(CREATED_SID, MessageStatus.DELIVERED)),
        (
            "status_undelivered_30003.form",
            StatusReport(
                CREATED_SID,
                MessageStatus.UNDELIVERED,
                "twilio:30003",
                "unreachable destination handset",
            ),
        ),
        (
            "status_failed_30007.form",
            StatusReport(
                CREATED_SID,
                MessageStatus.FAILED,
                "twilio:30007",
                "filtered by the carrier (spam or content rules)",
            ),
        ),
        (
            "status_failed_21610.form",
            StatusReport(
                CREATED_SID,
                MessageStatus.FAILED,
                "twilio:21610",
                "the recipient has unsubscribed (replied STOP)",
                opted_out=True,  # the core records it in the consent ledger
            ),
        ),
    ],
)
def test_parse_status_fixtures(name: str, expected: StatusReport) -> None:
    report = parse("status", fixture(name))
    assert isinstance(report, StatusReport)
    assert replace(report, raw={}) == expected
    assert report.raw["AccountSid"] == SID


@pytest.mark.parametrize(
    ("twilio_status", "ours"),
    [
        ("accepted", None),
        ("scheduled", None),
        ("queued", None),
        ("sending", None),
        ("sent", MessageStatus.SENT),
        ("delivered", MessageStatus.DELIVERED),
        ("undelivered", MessageStatus.UNDELIVERED),
        ("failed", MessageStatus.FAILED),
        ("canceled", MessageStatus.FAILED),
        ("read", None),
        ("receiving", None),
        ("received", None),
        ("something-new", None),
    ],
)
def test_every_twilio_status(twilio_status: str, ours: MessageStatus | None) -> None:
    body = fixture("status_sent.form").replace(b"=sent&", f"={twilio_status}&".encode())
    report = parse("status", body)
    if ours is None:
        assert report is None
    else:
        assert isinstance(report, StatusReport)
        assert report.status is ours
        assert report.error_code is None


def test_unknown_error_code_is_kept() -> None:
    body = fixture("status_failed_30007.form").replace(b"ErrorCode=30007", b"ErrorCode=39999")
    report = parse("status", body)
    assert isinstance(report, StatusReport)
    assert report.error_code == "twilio:39999"
    assert report.error_message is None


def test_every_config_key_is_documented() -> None:
    docs = (Path(__file__).resolve().parents[3] / "docs" / "providers.md").read_text()
    section = docs.split("\n## Twilio\n", 1)[1].split("\n## ", 1)[0]
    missing = [key for key in sorted(twilio.config.KEYS) if f"`{key}`" not in section]
    assert not missing, f"document in docs/providers.md, section Twilio: {missing}"
