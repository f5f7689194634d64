"""An inbound message must come from a phone number: every inbound path (the Twilio, Telnyx
and simulator webhooks, SMPP deliver_sm) refuses other senders and never creates a contact
for them, on both engines. The check is one function (``services.provider_input.inbound``,
called by ``messaging.receive_inbound``)."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import Org
from tests.web.webhook_calls import (
    CUSTOMER,
    PROVIDERS,
    Hooks,
    app_client,
    contact_phones,
    make_channel,
    post,
    stored,
)
from textdesk.delivery.dispatcher import _Sink
from textdesk.providers.base import InboundSms
from textdesk.providers.smpp.inbound import Reassembler
from textdesk.providers.smpp.pdu import DeliverSm
from textdesk.providers.smpp.text import gsm_encode
from textdesk.services import messaging
from textdesk.services.errors import Invalid
from textdesk.settings import Settings
from textdesk.store.db import Database

BASE = "http://127.0.0.1:8000"

REFUSED = [
    "",
    "   ",
    "<script>alert(1)</script>",
    "+12015550999<b>",
    "+1 (555) abc",
    "+1 201 555 0999",  # a person's spelling; providers send E.164
    "ACME",  # an alphanumeric sender id
    "Info-SMS",
    "12345",  # a short code
    "+1201555099",  # too short
    "+99912345678",  # no such country code
    "١٢٠١٥٥٥٠٩٩٩",  # Arabic-Indic digits
    "＋１２０１５５５０９９９",  # full-width
    "+1201555O999",  # a letter O
]


@pytest.fixture(params=["fast_path", "router"])
def route(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_webhooks_refuse_senders_that_are_no_phone_number(
    settings: Settings, db: Database, acme: Org, route: str, provider: str
) -> None:
    hooks = Hooks(provider, make_channel(db, acme.admin.principal, provider), BASE)
    wrong: list[str] = []
    with app_client(settings, db, route) as client:
        for n, sender in enumerate(REFUSED):
            call = hooks.sign(
                hooks.path("inbound"), hooks.inbound_body(f"bad-{n}", "STOP", sender=sender)
            )
            answer = post(client, call)
            if answer.status_code != 422 or answer.json().get("field") != "from":
                wrong.append(f"{sender!r}: {answer.status_code} {answer.text[:160]}")
        good = hooks.sign(hooks.path("inbound"), hooks.inbound_body("good", "STOP"))
        assert post(client, good).status_code == 200
    assert not wrong, "\n".join(wrong)
    assert [row[0] for row in stored(db)] == ["good"]
    assert contact_phones(db) == [CUSTOMER]


@pytest.mark.parametrize(
    ("sender", "stored_as"),
    [(CUSTOMER, CUSTOMER), (" +12015550999 ", CUSTOMER), ("+447700900123", "+447700900123")],
)
def test_webhooks_keep_phone_senders_in_e164(
    settings: Settings, db: Database, acme: Org, sender: str, stored_as: str
) -> None:
    hooks = Hooks("simulator", make_channel(db, acme.admin.principal, "simulator"), BASE)
    with app_client(settings, db) as client:
        call = hooks.sign(hooks.path("inbound"), hooks.inbound_body("in-1", "hi", sender=sender))
        assert post(client, call).status_code == 200
    assert contact_phones(db) == [stored_as]


def deliver_sm(source: str, ton: int) -> DeliverSm:
    return DeliverSm(
        sequence=1,
        source_addr=source,
        source_addr_ton=ton,
        destination_addr="12015550100",
        dest_addr_ton=1,
        esm_class=0,
        data_coding=0,
        short_message=gsm_encode("STOP"),
    )


@pytest.mark.parametrize(
    ("source", "ton", "stored_as"),
    [
        ("12015550999", 1, CUSTOMER),  # international
        ("12015550999", 0, CUSTOMER),  # unknown TON, international digits
        ("2015550999", 2, CUSTOMER),  # national, read in the organization's region (US)
        ("ACME", 5, None),  # alphanumeric
        ("<script>", 5, None),
        ("12345", 3, None),  # network-specific (a short code)
        ("", 0, None),
    ],
)
def test_smpp_deliver_sm_senders(
    settings: Settings, db: Database, acme: Org, source: str, ton: int, stored_as: str | None
) -> None:
    """The SMPP path: deliver_sm, reassembly, the worker's sink. A refused sender is logged
    and acknowledged (an SMSC told "error" delivers it again, forever), never a contact."""
    ch = make_channel(db, acme.admin.principal, "simulator")
    sms = Reassembler(60).add(deliver_sm(source, ton))
    assert sms is not None
    asyncio.run(_Sink(db, settings).inbound(ch, sms))
    assert contact_phones(db) == ([stored_as] if stored_as else [])
    assert len(stored(db)) == (1 if stored_as else 0)


def test_receive_inbound_refuses_before_writing(
    settings: Settings, db: Database, acme: Org
) -> None:
    ch = make_channel(db, acme.admin.principal, "simulator")
    with pytest.raises(Invalid, match="phone number") as caught:
        messaging.receive_inbound(db, settings, ch, InboundSms("x-1", "ACME", CUSTOMER, "hi"))
    assert caught.value.field == "from"
    assert contact_phones(db) == []
    assert stored(db) == []
