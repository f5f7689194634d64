"""Webhooks never answer 5xx to bad input, and bad input never costs a good message.

One table of hostile or broken callbacks, run for each provider (Twilio, Telnyx, simulator),
through the FastPath middleware and through the router's route, on both engines. Each case is
sent between well-formed messages (and their retries); every answer must be the expected 4xx
(or 200 where the message can be kept), and every good message must be stored exactly once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.conftest import Org
from tests.delivery.helpers import people, queue
from tests.web.webhook_calls import (
    PROVIDERS,
    Call,
    Hooks,
    app_client,
    make_channel,
    post,
    stored,
)
from textdesk.delivery import outbox
from textdesk.delivery.outbox import Sent
from textdesk.domain.states import MessageStatus
from textdesk.providers.base import StatusReport
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import messages, orphan_reports
from textdesk.web.batching import StatusBatcher
from textdesk.web.webhooks import MAX_BODY_BYTES

BASE = "http://127.0.0.1:8000"  # the settings fixture's TEXTDESK_BASE_URL
JSON_PROVIDERS = frozenset({"telnyx", "simulator"})
ALL = frozenset(PROVIDERS)


@pytest.fixture(params=["fast_path", "router"])
def route(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Hooks], Call]
    #: The answer expected, per provider (one value: the same for all).
    status: int | dict[str, int]
    #: The provider id this case's message is stored under, when it is kept (repaired).
    keeps: str | None = None
    providers: frozenset[str] = ALL

    def expected(self, provider: str) -> int:
        return self.status if isinstance(self.status, int) else self.status[provider]


def inbound(h: Hooks, message_id: str, text: str = "hi", **kw: str) -> Call:
    return h.sign(h.path("inbound"), h.inbound_body(message_id, text, **kw))


def to_path(h: Hooks, segment: str) -> Call:
    call = inbound(h, "misrouted")
    return Call(h.path("inbound", channel=segment), call.headers, call.body)


def arabic_indic(number: int) -> str:
    return "".join(chr(0x0660 + int(digit)) for digit in str(number))


def with_body(h: Hooks, body: bytes, **kw: str) -> Call:
    return h.sign(h.path("inbound"), body, **kw)


def huge(h: Hooks) -> Call:
    return inbound(h, "huge", "x" * (MAX_BODY_BYTES + 1))


def timestamp_header(value: str) -> Callable[[Hooks], Call]:
    return lambda h: h.sign(h.path("inbound"), h.inbound_body("stamped", "hi"), timestamp=value)


def surrogate(h: Hooks) -> Call:
    """A JSON escape of half a UTF-16 pair: valid JSON, but no string either engine can store."""
    body = h.inbound_body("surrogate", "a\x01b").replace(b"\\u0001", b"\\ud800")
    return with_body(h, body)


def not_utf8(h: Hooks) -> Call:
    return with_body(h, h.inbound_body("bad-utf8", "hi").replace(b"hi", b"h\xffi"))


def forged(h: Hooks) -> Call:
    call = inbound(h, "forged")
    bad = {"X-Twilio-Signature": "AAAA", "telnyx-signature-ed25519": "AAAA"}
    bad["X-Simulator-Signature"] = "00"
    return Call(call.path, {**call.headers, **bad}, call.body)


CASES = [
    Case("channel id beyond 64 bits", lambda h: to_path(h, str(2**64)), 404),
    Case("channel id of 20 digits", lambda h: to_path(h, "9" * 20), 404),
    Case("superscript digit as channel id", lambda h: to_path(h, "²"), 404),
    # "٣".isdigit() and int("٣") == 3: this named the real channel (stored, 200, before).
    Case("Arabic-Indic channel id", lambda h: to_path(h, arabic_indic(h.channel_id)), 404),
    Case(
        "unknown provider", lambda h: Call(f"/webhooks/nope/{h.channel_id}/inbound", {}, b""), 404
    ),
    Case("unknown kind", lambda h: Call(f"/webhooks/{h.provider}/{h.channel_id}/x", {}, b""), 404),
    Case("400-digit timestamp header", timestamp_header("9" * 400), 403, providers=JSON_PROVIDERS),
    Case("negative timestamp header", timestamp_header("-1"), 403, providers=JSON_PROVIDERS),
    Case(
        "naive timestamp (UTC)",
        lambda h: inbound(h, "naive", at="2024-01-01T10:00:00"),
        200,
        keeps="naive",
        providers=JSON_PROVIDERS,
    ),
    Case(
        "timestamp beyond year 9999 in UTC",
        lambda h: inbound(h, "future", at="9999-12-31T23:59:59-14:00"),
        200,
        keeps="future",
        providers=JSON_PROVIDERS,
    ),
    Case(
        "400-digit timestamp in the payload",
        lambda h: inbound(h, "digits", at="9" * 400),
        200,
        keeps="digits",
        providers=JSON_PROVIDERS,
    ),
    Case(
        "JSON nested 100,000 deep",
        lambda h: with_body(h, b"[" * 100_000 + b"]" * 100_000, content_type="application/json"),
        {"twilio": 415, "telnyx": 400, "simulator": 400},
    ),
    Case("not UTF-8", not_utf8, 400),
    Case("not JSON", lambda h: with_body(h, b"{'id': 1}"), 400, providers=JSON_PROVIDERS),
    Case(
        "a JSON array: nothing for us", lambda h: with_body(h, b"[]"), 200, providers=JSON_PROVIDERS
    ),
    Case(
        "wrong content type",
        lambda h: h.sign(
            h.path("inbound"), h.inbound_body("plain", "hi"), content_type="text/plain"
        ),
        415,
    ),
    Case("body over the limit", huge, 413),
    Case("NUL in the text", lambda h: inbound(h, "nul", "a\x00b"), 200, keeps="nul"),
    Case("lone surrogate in the text", surrogate, 200, keeps="surrogate", providers=JSON_PROVIDERS),
    Case("id of 201 characters", lambda h: inbound(h, "i" * 201), 422),
    Case("id with a newline", lambda h: inbound(h, "in\n1"), 422),
    Case("forged", forged, 403),
]

KEPT_TEXT = {"nul": "a\ufffdb", "surrogate": "a\ufffdb"}


@pytest.mark.parametrize("provider", PROVIDERS)
def test_bad_inbound_callbacks_get_4xx_and_good_ones_are_stored_once(
    settings: Settings, db: Database, acme: Org, route: str, provider: str
) -> None:
    hooks = Hooks(provider, make_channel(db, acme.admin.principal, provider), BASE)
    cases = [case for case in CASES if provider in case.providers]
    wrong: list[str] = []
    with app_client(settings, db, route) as client:
        assert post(client, inbound(hooks, "good-0", "first")).status_code == 200
        for number, case in enumerate(cases, 1):
            answer = post(client, case.build(hooks))
            expected = case.expected(provider)
            if answer.status_code != expected:
                wrong.append(f"{case.name}: {answer.status_code} {answer.text[:200]}")
            elif answer.status_code >= 400:
                problem = answer.json()
                if answer.headers["content-type"] != "application/problem+json" or not problem.get(
                    "detail"
                ):
                    wrong.append(f"{case.name}: not a problem saying what was wrong")
            # A good message and a provider's retry of the previous one, after each case.
            assert post(client, inbound(hooks, f"good-{number}", "STOP")).status_code == 200
            assert post(client, inbound(hooks, f"good-{number - 1}", "STOP")).status_code == 200
    assert not wrong, "\n".join(wrong)
    kept = [case.keeps for case in cases if case.keeps]
    ids = [row[0] for row in stored(db)]
    good = [f"good-{n}" for n in range(len(cases) + 1)]
    assert sorted(ids) == sorted(good + kept), "each good message stored exactly once"
    texts = {row[0]: row[1] for row in stored(db)}
    for message_id in kept:
        assert texts[message_id] == KEPT_TEXT.get(message_id, "hi")
    now = datetime.now(UTC)
    with db.read() as conn:
        created = dict(
            conn.execute(sa.select(messages.c.provider_message_id, messages.c.created_at)).all()
        )
    assert all(at <= now for at in created.values()), "no message dated in the future"
    if "naive" in created:
        assert created["naive"] == datetime(2024, 1, 1, 10, tzinfo=UTC)
    for message_id in ("future", "digits"):
        if message_id in created:
            assert now - created[message_id] < timedelta(hours=1)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_bad_status_reports_are_refused_alone(
    settings: Settings, db: Database, acme: Org, route: str, provider: str
) -> None:
    """A report whose id or code can't be stored gets 422 by itself (PostgreSQL failed the
    whole batch with a 500 before, SQLite parked it); the good report is applied."""
    admin = acme.admin.principal
    hooks = Hooks(provider, make_channel(db, admin, provider), BASE)
    [mid] = queue(db, settings, admin, people(db, admin, 1))
    [claimed] = outbox.claim(db, settings, worker_id="w", limit=1).claimed
    outbox.record(db, [Sent(claimed, "OUT-1")], actor="w")
    wrong: list[str] = []
    with app_client(settings, db, route) as client:
        for name, body in (
            ("id of 201 characters", hooks.status_body("o" * 201)),
            ("id with a NUL", hooks.status_body("OUT\x00")),
            ("error code of 100 characters", hooks.status_body("OUT-1", error_code="9" * 100)),
        ):
            answer = post(client, hooks.sign(hooks.path("status"), body))
            if answer.status_code != 422:
                wrong.append(f"{name}: {answer.status_code} {answer.text[:200]}")
        good = hooks.sign(hooks.path("status"), hooks.status_body("OUT-1"))
        assert post(client, good).status_code == 200
    assert not wrong, "\n".join(wrong)
    with db.read() as conn:
        status = conn.execute(sa.select(messages.c.status).where(messages.c.id == mid)).scalar()
        orphans = conn.execute(sa.select(sa.func.count()).select_from(orphan_reports)).scalar()
    assert (status, orphans) == ("undelivered", 0)


def test_a_report_that_cannot_be_written_fails_alone(
    settings: Settings, db: Database, acme: Org
) -> None:
    """Reports that arrive together are written together; one the database refuses (a lone
    surrogate can't be encoded for either engine) used to fail every report of its batch."""
    admin = acme.admin.principal
    ch = make_channel(db, admin, "simulator")
    [mid] = queue(db, settings, admin, people(db, admin, 1))
    [claimed] = outbox.claim(db, settings, worker_id="w", limit=1).claimed
    outbox.record(db, [Sent(claimed, "SM-good")], actor="w")
    good = StatusReport("SM-good", MessageStatus.DELIVERED)
    poison = StatusReport("SM-\ud800", MessageStatus.DELIVERED)

    async def both() -> list[bool | BaseException]:
        batcher = StatusBatcher(db)
        try:
            # Submitted in one turn of the loop: they are handed over as one batch.
            return await asyncio.gather(
                batcher.submit((ch, good, "provider:simulator")),
                batcher.submit((ch, poison, "provider:simulator")),
                return_exceptions=True,
            )
        finally:
            await batcher.aclose()

    first, second = asyncio.run(both())
    assert first is True
    assert isinstance(second, Exception)
    with db.read() as conn:
        status = conn.execute(sa.select(messages.c.status).where(messages.c.id == mid)).scalar()
    assert status == "delivered"


def test_json_body_helpers_used_by_the_cases_are_sound() -> None:
    """The table's own inputs are what they claim to be (a case must be able to fail)."""
    hooks = Hooks("simulator", 1, BASE)
    with pytest.raises(RecursionError):
        json.loads(b"[" * 100_000 + b"]" * 100_000)
    assert b"\\ud800" in surrogate(hooks).body
    assert len(huge(hooks).body) > MAX_BODY_BYTES
