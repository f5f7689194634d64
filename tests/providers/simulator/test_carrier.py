"""The fake carrier itself: its HTTP API, delivery reports, scripted replies, callbacks."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest

from tests.providers.simulator.harness import (
    AUTH,
    FAST,
    INBOUND_URL,
    SENDER,
    SETTLE,
    STATUS_URL,
    harness,
    sms,
)
from textdesk.domain.states import MessageStatus
from textdesk.providers.simulator import SimulatorConfig, script
from textdesk.providers.simulator.state import CarrierState

pytestmark = pytest.mark.anyio

GOOD = {
    "from": SENDER,
    "to": "+12025550123",
    "body": "Hello",
    "idempotency_key": "k",
    "status_callback": STATUS_URL,
    "inbound_url": INBOUND_URL,
}


@pytest.mark.parametrize(
    ("change", "status", "code", "says"),
    [
        ({"to": None}, 400, "21604", "'to'"),
        ({"from": ""}, 400, "21604", "'from'"),
        ({"body": None}, 400, "21604", "'body'"),
        ({"body": ""}, 400, "21602", "empty"),
        ({"body": "é" * 1601}, 400, "21617", "1601"),
        ({"idempotency_key": 5}, 400, "21600", "idempotency_key"),
        ({"status_callback": "file:///etc/passwd"}, 400, "21600", "status_callback"),
        ({"to": "+12025550400"}, 400, "21211", "valid"),
        ({"to": "+12025550410"}, 400, "21610", "opted out"),
        ({"to": "+12025550500"}, 500, "20500", "try again"),
    ],
)
async def test_send_validation_answers_code_and_message(
    change: dict[str, object], status: int, code: str, says: str
) -> None:
    async with harness() as h:
        payload = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
        r = await h.api.post("/v1/messages", json=payload, headers=AUTH)
        assert r.status_code == status
        assert r.json()["code"] == code
        assert says in r.json()["message"]


async def test_malformed_json_is_a_400() -> None:
    async with harness() as h:
        for content in (b"nope", b"[1, 2]"):
            r = await h.api.post("/v1/messages", content=content, headers=AUTH)
            assert (r.status_code, r.json()["code"]) == (400, "21600")


async def test_429_says_when_to_retry() -> None:
    async with harness() as h:
        r = await h.api.post("/v1/messages", json={**GOOD, "to": "+12025550429"}, headers=AUTH)
        assert r.status_code == 429
        assert r.headers["retry-after"] == "1"


async def test_any_key_unless_one_is_configured() -> None:
    async with harness() as h:
        assert (await h.api.post("/v1/messages", json=GOOD)).status_code == 401
        blank = {"Authorization": "Bearer  "}
        assert (await h.api.post("/v1/messages", json=GOOD, headers=blank)).status_code == 401
        anything = {"Authorization": "Bearer anything"}
        assert (await h.api.post("/v1/messages", json=GOOD, headers=anything)).status_code == 200
        assert (await h.api.get("/v1/stats")).status_code == 200  # control routes: open

    async with harness(api_key="sekret") as h:
        r = await h.api.post("/v1/messages", json=GOOD, headers=AUTH)
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "20003"
        assert r.json()["status"] == 401
        assert (await h.api.get("/v1/stats")).status_code == 401
        assert (await h.api.get("/v1/messages/SMx", headers=AUTH)).status_code == 401
        ok = {"Authorization": "Bearer sekret"}
        assert (await h.api.post("/v1/messages", json=GOOD, headers=ok)).status_code == 200
        assert (await h.api.get("/v1/stats", headers=ok)).status_code == 200


async def test_get_message_404() -> None:
    async with harness() as h:
        r = await h.api.get("/v1/messages/SMmissing", headers=AUTH)
        assert (r.status_code, r.json()["code"]) == (404, "20404")


# --- delivery reports ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("to", "status", "error_code"),
    [
        ("+12025550123", "delivered", None),
        ("+12025550601", "undelivered", "30003"),
        ("+12025550602", "failed", "30008"),
    ],
)
async def test_delivery_report_is_posted_signed(
    to: str, status: str, error_code: str | None
) -> None:
    async with harness() as h:
        sent = await h.provider.send(sms(to=to))
        await h.carrier.wait_idle(SETTLE)
        (callback,) = h.receiver.at(STATUS_URL)
        h.provider.verify(callback)
        assert callback.header("content-type") == "application/json"
        data = json.loads(callback.body)
        assert data["id"] == sent.provider_message_id
        assert data["status"] == status
        assert data["error_code"] == error_code
        assert data["timestamp"].endswith("+00:00")
        report = h.provider.parse_status(callback)
        assert report is not None
        assert report.status is MessageStatus(status)
        assert h.carrier.stats()[status] == 1
        assert h.receiver.at(INBOUND_URL) == []  # nobody replies to an undelivered message


async def test_random_outcomes_follow_the_rates() -> None:
    async with harness(delivered_rate=0.5, undelivered_rate=0.3, seed=42) as h:
        for _ in range(400):
            await h.provider.send(sms())
        await h.carrier.wait_idle(SETTLE)
        stats = h.carrier.stats()
        assert stats["delivered"] + stats["undelivered"] + stats["failed"] == 400
        assert 160 < stats["delivered"] < 240
        assert 80 < stats["undelivered"] < 160
        assert 50 < stats["failed"] < 110
        codes = {json.loads(r.body)["error_code"] for r in h.receiver.requests}
        assert codes == {None, "30003", "30005", "30006", "30007", "30008"}


async def test_seeded_runs_repeat() -> None:
    outcomes = []
    for _ in range(2):
        async with harness(delivered_rate=0.6, undelivered_rate=0.2, seed=7) as h:
            for _ in range(30):
                await h.provider.send(sms())
            await h.carrier.wait_idle(SETTLE)
            outcomes.append([json.loads(r.body)["status"] for r in h.receiver.requests])
    assert outcomes[0] == outcomes[1]
    assert len(set(outcomes[0])) == 3


async def test_callbacks_are_retried_then_dropped() -> None:
    async with harness(callback_retries=3) as h:
        h.receiver.statuses = [500, 503]
        await h.provider.send(sms())
        await h.carrier.wait_idle(SETTLE)
        assert len(h.receiver.requests) == 3
        assert h.carrier.stats()["callbacks_failed"] == 0

        h.receiver.requests.clear()
        h.receiver.statuses = [500, 502, 503, 504]
        await h.provider.send(sms())
        await h.carrier.wait_idle(SETTLE)
        assert len(h.receiver.requests) == 4  # 1 + 3 retries
        assert h.carrier.stats()["callbacks_failed"] == 1

        h.receiver.requests.clear()
        h.receiver.statuses = [403]  # refused on purpose: not retried
        await h.provider.send(sms())
        await h.carrier.wait_idle(SETTLE)
        assert len(h.receiver.requests) == 1
        assert h.carrier.stats()["callbacks_failed"] == 2


async def test_unreachable_callback_is_dropped_and_the_status_still_recorded() -> None:
    # The carrier's own client this time (made lazily), against a loopback port nobody uses.
    carrier = CarrierState(SimulatorConfig(**{**FAST, "callback_retries": 1}))
    payload = {**GOOD, "status_callback": f"http://127.0.0.1:{_closed_port()}/status"}
    try:
        answer = await carrier.submit(payload)
        assert answer.status_code == 200
        await carrier.wait_idle(SETTLE)
        assert carrier.stats()["callbacks_failed"] == 1
        record = carrier.lookup(answer.body["id"])
        assert record is not None and record.status == "delivered"
    finally:
        await carrier.aclose()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- customer replies ---------------------------------------------------------------------------


@pytest.mark.parametrize(("suffix", "body"), sorted(script.SCRIPTED_REPLIES.items()))
async def test_scripted_replies_arrive_signed_at_the_inbound_url(suffix: str, body: str) -> None:
    customer = f"+1202555{suffix}"
    async with harness() as h:
        await h.provider.send(sms(to=customer))
        await h.carrier.wait_idle(SETTLE)
        (status,) = h.receiver.at(STATUS_URL)
        (reply,) = h.receiver.at(INBOUND_URL)
        assert h.receiver.requests == [status, reply]  # the report comes first
        h.provider.verify(reply)
        inbound = h.provider.parse_inbound(reply)
        assert inbound is not None
        assert inbound.provider_message_id.startswith("SMIN")
        assert (inbound.sender, inbound.recipient, inbound.body) == (customer, SENDER, body)
        assert h.provider.parse_status(reply) is None
        assert h.carrier.stats()["replies_sent"] == 1


async def test_random_replies_at_reply_rate() -> None:
    async with harness(reply_rate=1.0) as h:
        for _ in range(20):
            await h.provider.send(sms())
        await h.carrier.wait_idle(SETTLE)
        replies = [json.loads(r.body)["body"] for r in h.receiver.at(INBOUND_URL)]
        assert len(replies) == 20
        assert set(replies) <= set(script.RANDOM_REPLIES)

    async with harness() as h:  # reply_rate defaults to 0
        for _ in range(20):
            await h.provider.send(sms())
        await h.carrier.wait_idle(SETTLE)
        assert h.receiver.at(INBOUND_URL) == []


async def test_no_reply_without_an_inbound_url() -> None:
    async with harness() as h:
        payload = {**GOOD, "to": "+12025550700"}
        del payload["inbound_url"]
        assert (await h.api.post("/v1/messages", json=payload, headers=AUTH)).status_code == 200
        await h.carrier.wait_idle(SETTLE)
        assert h.receiver.at(INBOUND_URL) == []


async def test_inject_inbound() -> None:
    async with harness() as h:
        text = {"from": "+12025550188", "to": SENDER, "body": "Hi! Are you open today?"}
        r = await h.api.post(
            "/v1/inject-inbound", json={**text, "inbound_url": INBOUND_URL, "wait": True}
        )
        assert r.status_code == 200
        assert r.json()["delivered"] is True
        (callback,) = h.receiver.requests
        h.provider.verify(callback)
        inbound = h.provider.parse_inbound(callback)
        assert inbound is not None
        assert inbound.provider_message_id == r.json()["id"]
        assert (inbound.sender, inbound.recipient, inbound.body) == (
            text["from"],
            text["to"],
            text["body"],
        )

        r = await h.api.post("/v1/inject-inbound", json={**text, "inbound_url": INBOUND_URL})
        assert r.status_code == 202
        await h.carrier.wait_idle(SETTLE)
        assert len(h.receiver.requests) == 2
        assert h.carrier.stats()["inbound_injected"] == 2

        r = await h.api.post("/v1/inject-inbound", json=text)
        assert (r.status_code, r.json()["code"]) == (400, "21604")


# --- stats and reset ----------------------------------------------------------------------------


async def test_stats_and_reset() -> None:
    async with harness(dlr_delay_ms=60_000) as h:
        await h.provider.send(sms(key="a"))
        await h.provider.send(sms(key="a"))
        await h.provider.send(sms(key="b"))
        stats = (await h.api.get("/v1/stats")).json()
        assert stats == {
            "accepted": 2,
            "duplicates_suppressed": 1,
            "delivered": 0,
            "undelivered": 0,
            "failed": 0,
            "replies_sent": 0,
            "inbound_injected": 0,
            "rejected": 0,
            "callbacks_failed": 0,
            "distinct_keys": 2,
            "max_sends_per_key": 2,
            "repeats_accepted": 1,  # "b" is the same text as "a" under another key
            "pending_callbacks": 2,
        }
        r = await h.api.post("/v1/reset")
        assert r.status_code == 200
        assert set(r.json().values()) == {0}
        await h.carrier.wait_idle(SETTLE)
        assert h.receiver.requests == []  # pending reports were cancelled
        assert h.carrier.messages == {}
        # The key is free again after a reset.
        assert (await h.provider.send(sms(key="a"))).provider_message_id
        assert h.carrier.stats()["accepted"] == 1


async def test_a_message_accepted_again_under_another_key_is_counted_as_a_repeat() -> None:
    """The key counters cannot see a re-send under a new key (or none); the recipient would
    get the text twice, and ``repeats_accepted`` says so."""
    async with harness(dlr_delay_ms=60_000) as h:
        await h.provider.send(sms(key="first", body="Your table is ready"))
        await h.provider.send(sms(key="first", body="Your table is ready"))  # suppressed
        assert h.carrier.stats()["repeats_accepted"] == 0
        await h.provider.send(sms(key="second", body="Your table is ready"))
        no_key = {"from": SENDER, "to": "+12025550123", "body": "Your table is ready"}
        assert (await h.carrier.submit(no_key)).status_code == 200
        await h.provider.send(sms(key="third", body="Your table is ready!"))  # another text
        await h.provider.send(sms(key="fourth", to="+12025550124", body="Your table is ready"))
        stats = h.carrier.stats()
        assert (stats["accepted"], stats["repeats_accepted"]) == (5, 2)
        h.carrier.reset()
        await h.provider.send(sms(key="again", body="Your table is ready"))
        assert h.carrier.stats()["repeats_accepted"] == 0


async def test_records_are_compact() -> None:
    async with harness(dlr_delay_ms=60_000, hang_ms=0) as h:
        for i in range(2_000):
            await h.carrier.submit({"from": SENDER, "to": f"+1202555{i:04d}", "body": "hi"})
        record = next(iter(h.carrier.messages.values()))
        assert not hasattr(record, "__dict__")  # slotted
        assert h.carrier.stats()["accepted"] == 2_000 - len(script.SEND_FAILURES)


def test_config_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEXTDESK_SIMULATOR_LATENCY_MS", "5")
    monkeypatch.setenv("TEXTDESK_SIMULATOR_REPLY_RATE", "0.25")
    monkeypatch.setenv("TEXTDESK_SIMULATOR_SEED", "3")
    config = SimulatorConfig()
    assert (config.latency_ms, config.reply_rate, config.seed) == (5, 0.25, 3)


@pytest.mark.parametrize(
    "bad",
    [
        {"delivered_rate": 0.8, "undelivered_rate": 0.3},
        {"temporary_failure_rate": 0.6, "permanent_failure_rate": 0.6},
        {"reply_rate": 1.5},
        {"latency_ms": -1},
    ],
)
def test_config_refuses_nonsense(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SimulatorConfig(**bad)
