"""The adapter against the real carrier app, in process: sending, error mapping, webhooks."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.providers.simulator.harness import (
    APP,
    CARRIER,
    CHANNEL,
    INBOUND_URL,
    SETTLE,
    STATUS_URL,
    harness,
    sms,
)
from textdesk.domain.states import MessageStatus
from textdesk.providers import registry
from textdesk.providers.base import (
    AuthFailure,
    InvalidNumber,
    MalformedWebhook,
    OptedOut,
    PermanentFailure,
    ProviderError,
    SignatureError,
    TemporaryFailure,
    Throttled,
    WebhookRequest,
)
from textdesk.providers.simulator import SimulatorProvider, create, signing, validate_config
from textdesk.providers.simulator.adapter import inbound_url_for

pytestmark = pytest.mark.anyio


async def test_send_is_accepted_with_segments_and_webhook_urls() -> None:
    async with harness() as h:
        result = await h.provider.send(sms(body="x" * 161, key="k-1"))
        assert result.provider_message_id.startswith("SM")
        assert len(result.provider_message_id) == 34
        assert result.status is MessageStatus.SENT
        assert result.segments == 2  # 161 GSM-7 characters need two 153-septet segments

        await h.carrier.wait_idle(SETTLE)
        record = await h.api.get(f"/v1/messages/{result.provider_message_id}", headers=_auth())
        assert record.json() == {
            "id": result.provider_message_id,
            "status": "delivered",
            "from": "+12025550143",
            "to": "+12025550123",
            "body": "x" * 161,
            "segments": 2,
            "idempotency_key": "k-1",
            "error_code": None,
        }
        assert [r.url for r in h.receiver.requests] == [STATUS_URL]


async def test_unicode_body_counts_ucs2_segments() -> None:
    async with harness() as h:
        result = await h.provider.send(sms(body="Café ☕ " * 12))  # 84 UCS-2 units
        assert result.segments == 2


async def test_same_idempotency_key_is_accepted_once() -> None:
    async with harness() as h:
        first = await h.provider.send(sms(key="same"))
        again = await h.provider.send(sms(key="same"))
        assert again.provider_message_id == first.provider_message_id
        await h.carrier.wait_idle(SETTLE)
        stats = (await h.api.get("/v1/stats")).json()
        assert stats["accepted"] == 1
        assert stats["duplicates_suppressed"] == 1
        assert stats["distinct_keys"] == 1
        assert stats["max_sends_per_key"] == 2
        assert stats["delivered"] == 1
        assert len(h.receiver.requests) == 1  # one delivery report, not two


async def test_concurrent_sends_with_one_key_are_accepted_once() -> None:
    async with harness(latency_ms=5, latency_jitter_ms=5) as h:
        results = await asyncio.gather(*(h.provider.send(sms(key="race")) for _ in range(8)))
        assert len({r.provider_message_id for r in results}) == 1
        assert h.carrier.stats()["accepted"] == 1
        assert h.carrier.stats()["duplicates_suppressed"] == 7


async def test_a_repeat_after_the_report_carries_the_final_status() -> None:
    async with harness() as h:
        first = await h.provider.send(sms(key="k"))
        await h.carrier.wait_idle(SETTLE)
        again = await h.provider.send(sms(key="k"))
        assert again.provider_message_id == first.provider_message_id
        assert again.status is MessageStatus.DELIVERED


@pytest.mark.parametrize(
    ("to", "error", "code"),
    [
        ("+12025550400", InvalidNumber, "simulator:21211"),
        ("+12025550410", OptedOut, "simulator:21610"),
        ("+12025550429", Throttled, "simulator:20429"),
        ("+12025550500", TemporaryFailure, "simulator:20500"),
        ("12025550123", InvalidNumber, "simulator:21211"),  # not E.164
        ("+1202", InvalidNumber, "simulator:21211"),
    ],
)
async def test_scripted_send_failures(to: str, error: type[ProviderError], code: str) -> None:
    async with harness() as h:
        with pytest.raises(error) as caught:
            await h.provider.send(sms(to=to))
        assert type(caught.value) is error
        assert caught.value.code == code
        assert caught.value.retryable is error.retryable
        assert h.carrier.stats()["accepted"] == 0
        assert h.carrier.stats()["rejected"] == 1


async def test_throttled_carries_retry_after() -> None:
    async with harness() as h:
        with pytest.raises(Throttled) as caught:
            await h.provider.send(sms(to="+12025550429"))
        assert caught.value.retry_after == 1.0


@pytest.mark.parametrize(
    ("body", "code"),
    [("", "simulator:21602"), ("   ", "simulator:21602"), ("x" * 1601, "simulator:21617")],
)
async def test_bad_bodies_are_permanent_failures(body: str, code: str) -> None:
    async with harness() as h:
        with pytest.raises(PermanentFailure) as caught:
            await h.provider.send(sms(body=body))
        assert caught.value.code == code
        assert not isinstance(caught.value, InvalidNumber | OptedOut)


async def test_1600_characters_are_accepted() -> None:
    async with harness() as h:
        assert (await h.provider.send(sms(body="x" * 1600))).segments == 11


async def test_wrong_api_key_is_an_auth_failure() -> None:
    async with harness(provider_config={"api_key": "wrong"}, api_key="right") as h:
        with pytest.raises(AuthFailure) as caught:
            await h.provider.send(sms())
        assert caught.value.code == "simulator:20003"
        assert not caught.value.retryable
        with pytest.raises(AuthFailure):
            await h.provider.lookup("SMnothing")


@pytest.mark.parametrize(
    ("config", "error", "code"),
    [
        ({"temporary_failure_rate": 1.0}, TemporaryFailure, "simulator:20503"),
        ({"permanent_failure_rate": 1.0}, PermanentFailure, "simulator:21408"),
    ],
)
async def test_random_failure_rates(
    config: dict[str, Any], error: type[ProviderError], code: str
) -> None:
    async with harness(**config) as h:
        with pytest.raises(error) as caught:
            await h.provider.send(sms())
        assert caught.value.code == code


async def test_connection_errors_are_temporary() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        provider = create({"url": CARRIER}, CHANNEL, http)
        with pytest.raises(TemporaryFailure) as caught:
            await provider.send(sms())
        assert caught.value.code == "simulator:connection"


async def test_unreadable_success_is_temporary() -> None:
    async with httpx.AsyncClient(
        transport=httpx.MockTransport(lambda _r: httpx.Response(200, text="<html>"))
    ) as http:
        with pytest.raises(TemporaryFailure, match="bad_response"):
            await create({"url": CARRIER}, CHANNEL, http).send(sms())


async def test_hang_times_out_then_reconciles_by_lookup_and_key() -> None:
    """0504: the carrier accepts but answers too late; the message is out, the client doesn't
    know. Lookup finds it, and an idempotent re-send gets the same id at once."""
    # The carrier would answer after an hour: an answer at all means the client gave up on its
    # own, which no wall-clock bound has to show (a loaded machine may take seconds for 0.2).
    async with harness(hang_ms=3_600_000) as h:
        impatient = create({"url": CARRIER, "timeout": 0.2}, CHANNEL, h.api)
        message = sms(to="+12025550504", key="hung")
        with pytest.raises(TemporaryFailure) as caught:
            await impatient.send(message)
        assert caught.value.code == "simulator:timeout"
        (record,) = h.carrier.messages.values()
        report = await h.provider.lookup(record.id)
        assert report is not None
        assert report.provider_message_id == record.id
        again = await h.provider.send(message)
        assert again.provider_message_id == record.id


async def test_lookup() -> None:
    async with harness(dlr_delay_ms=60_000) as h:
        sent = await h.provider.send(sms(to="+12025550601"))
        report = await h.provider.lookup(sent.provider_message_id)
        assert report is not None
        assert report.status is MessageStatus.SENT  # accepted, no report yet
        assert await h.provider.lookup("SM" + "0" * 32) is None

    async with harness() as h:
        sent = await h.provider.send(sms(to="+12025550601"))
        await h.carrier.wait_idle(SETTLE)
        report = await h.provider.lookup(sent.provider_message_id)
        assert report is not None
        assert report.status is MessageStatus.UNDELIVERED
        assert report.error_code == "simulator:30003"


# --- webhooks -----------------------------------------------------------------------------------


#: The one clock of these tests: requests are signed at NOW and checked by a provider whose clock
#: reads NOW, so no result depends on when (or how long after collection) a test runs.
NOW = 1_750_000_000


def _signed(body: bytes, *, using: str = "simulator-secret", at: int = NOW) -> WebhookRequest:
    headers = signing.headers(using, at, body)
    return WebhookRequest("POST", STATUS_URL, {k.lower(): v for k, v in headers.items()}, body)


def test_verify_accepts_a_good_signature() -> None:
    provider = _provider()
    provider.verify(_signed(b'{"id":"SM1","status":"delivered"}'))


@pytest.mark.parametrize(
    ("make_request", "reason"),
    [
        (lambda: _signed(b"{}", using="other"), "signature mismatch"),
        (lambda: WebhookRequest("POST", STATUS_URL, {}, b"{}"), "missing"),
        (
            lambda: WebhookRequest(
                "POST",
                STATUS_URL,
                {"x-simulator-timestamp": "soon", "x-simulator-signature": "00"},
                b"{}",
            ),
            "malformed",
        ),
    ],
    ids=["wrong secret", "no headers", "malformed timestamp"],
)
def test_verify_refuses_bad_signatures(
    make_request: Callable[[], WebhookRequest], reason: str
) -> None:
    # Built here, not at collection: a signature is only good near the clock that checks it.
    with pytest.raises(SignatureError, match=reason):
        _provider().verify(make_request())


def test_verify_refuses_a_tampered_body() -> None:
    good = _signed(b'{"id":"SM1","status":"failed"}')
    tampered = WebhookRequest(
        good.method, good.url, good.headers, b'{"id":"SM1","status":"delivered"}'
    )
    with pytest.raises(SignatureError, match="mismatch"):
        _provider().verify(tampered)


def test_verify_refuses_stale_and_future_timestamps() -> None:
    provider = _provider()
    provider.verify(_signed(b"{}", at=NOW - 299))
    with pytest.raises(SignatureError, match="from now"):
        provider.verify(_signed(b"{}", at=NOW - 301))
    with pytest.raises(SignatureError, match="from now"):
        provider.verify(_signed(b"{}", at=NOW + 301))


def test_verify_checks_against_the_real_clock_by_default() -> None:
    provider = create({"url": CARRIER}, CHANNEL, httpx.AsyncClient())
    provider.verify(_signed(b"{}", at=int(time.time())))
    with pytest.raises(SignatureError, match="from now"):
        provider.verify(_signed(b"{}"))  # NOW is long past


def test_verify_uses_the_configured_secret() -> None:
    provider = create({"url": CARRIER, "webhook_secret": "s3"}, CHANNEL, httpx.AsyncClient())
    now = int(time.time())  # create() checks against the real clock
    provider.verify(_signed(b"{}", using="s3", at=now))
    with pytest.raises(SignatureError, match="mismatch"):
        provider.verify(_signed(b"{}", at=now))


def test_parse_status_and_inbound_tell_the_kinds_apart() -> None:
    provider = _provider()
    report = _signed(
        json.dumps(
            {
                "id": "SMab",
                "status": "failed",
                "error_code": "30008",
                "error_message": "unknown error",
                "timestamp": "2025-06-01T12:00:00.000+00:00",
            }
        ).encode()
    )
    inbound = _signed(
        json.dumps(
            {
                "id": "SMINcd",
                "from": "+12025550123",
                "to": "+12025550143",
                "body": "Yes 👍",
                "timestamp": "2025-06-01T12:00:00.000+00:00",
            }
        ).encode()
    )
    status = provider.parse_status(report)
    assert status is not None
    assert (status.provider_message_id, status.status) == ("SMab", MessageStatus.FAILED)
    assert (status.error_code, status.error_message) == ("simulator:30008", "unknown error")
    assert provider.parse_inbound(report) is None

    sms_in = provider.parse_inbound(inbound)
    assert sms_in is not None
    assert (sms_in.provider_message_id, sms_in.sender, sms_in.recipient, sms_in.body) == (
        "SMINcd",
        "+12025550123",
        "+12025550143",
        "Yes 👍",
    )
    assert sms_in.received_at is not None and sms_in.received_at.year == 2025
    assert provider.parse_status(inbound) is None

    for junk in (b"[]", b'{"id": "SM1", "status": "exploded"}'):
        request = _signed(junk)
        assert provider.parse_status(request) is None
        assert provider.parse_inbound(request) is None
    for unreadable in (b"", b"not json", b"\xff", b"[" * 100_000):
        request = _signed(unreadable)
        with pytest.raises(MalformedWebhook):
            provider.parse_status(request)
        with pytest.raises(MalformedWebhook):
            provider.parse_inbound(request)


# --- configuration and registry -----------------------------------------------------------------


def test_validate_config_fills_defaults() -> None:
    assert validate_config({}) == {
        "api_key": "demo",
        "webhook_secret": "simulator-secret",
        "timeout": 10.0,
    }
    assert validate_config({"url": "http://127.0.0.1:9100/", "timeout": 3})["url"] == (
        "http://127.0.0.1:9100"
    )


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"url": "ftp://x"}, "url"),
        ({"url": 3}, "url"),
        ({"api_key": ""}, "api_key"),
        ({"webhook_secret": None}, "webhook_secret"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": "10"}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"apikey": "x"}, "apikey"),
    ],
)
def test_validate_config_names_the_bad_key(config: dict[str, object], key: str) -> None:
    with pytest.raises(ValueError, match=f"^{key}:"):
        validate_config(config)


def test_registry_builds_the_adapter_with_the_mounted_url_by_default() -> None:
    provider = registry.create("simulator", {}, CHANNEL, httpx.AsyncClient())
    assert isinstance(provider, SimulatorProvider)
    assert provider.url == f"{APP}/simulator"
    assert provider.name == "simulator"
    assert provider.dedupes_by_idempotency_key is True
    assert "demo" not in repr(provider)
    assert registry.validate_config("simulator", {"timeout": 5})["timeout"] == 5.0


def test_inbound_url_is_derived_from_the_status_url() -> None:
    assert inbound_url_for(STATUS_URL, CHANNEL) == INBOUND_URL
    assert inbound_url_for(f"{STATUS_URL}?sig=1", CHANNEL) == f"{INBOUND_URL}?sig=1"
    assert inbound_url_for("http://elsewhere/cb", CHANNEL) == INBOUND_URL


def _provider(**kwargs: object) -> SimulatorProvider:
    options: dict[str, Any] = {"webhook_secret": "simulator-secret", "clock": lambda: NOW}
    return SimulatorProvider(
        url=CARRIER,
        api_key="demo",
        timeout=10,
        http=httpx.AsyncClient(),
        context=CHANNEL,
        **{**options, **kwargs},
    )


def _auth() -> dict[str, str]:
    return {"Authorization": "Bearer demo"}
