"""CSV exports: streamed in keyset pages, defused against formula injection, audited, admin-only."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.conftest import Org
from tests.delivery.helpers import channel
from textdesk.providers.base import InboundSms
from textdesk.services import consent, contacts, custom_fields, exports, messaging, segments
from textdesk.services.contacts import ContactInput
from textdesk.services.errors import Forbidden, Invalid, NotFound
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import audit_log, messages


def table(export: exports.Export) -> list[dict[str, str]]:
    text = b"".join(export.chunks).decode("utf-8")
    return list(csv.DictReader(io.StringIO(text)))


def add(db: Database, acme: Org, phone: str, first: str = "", **kw: object) -> int:
    return contacts.create_contact(
        db,
        acme.admin.principal,
        ContactInput(phone=phone, first_name=first, **kw),  # type: ignore[arg-type]
    ).id


def audit_actions(db: Database, org_id: int) -> list[str]:
    with db.read() as conn:
        return list(
            conn.execute(
                sa.select(audit_log.c.action)
                .where(audit_log.c.org_id == org_id, audit_log.c.action.like("export.%"))
                .order_by(audit_log.c.id)
            ).scalars()
        )


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("+12015550123", "+12015550123"),  # a phone number stays importable
        ("-3", "-3"),
        ("-2.5", "-2.5"),
        ("Ann", "Ann"),
        ("a=b", "a=b"),
        (None, ""),
        (True, "true"),
        (42, "42"),
    ],
)
def test_safe_cell(value: object, cell: str) -> None:
    assert exports.safe_cell(value) == cell


def test_contacts_export_columns_fields_tags_and_injection(db: Database, acme: Org) -> None:
    admin = acme.admin.principal
    custom_fields.create_field(db, admin, key="score", label="Score", type_="number")
    custom_fields.create_field(db, admin, key="joined", label="Joined", type_="date")
    custom_fields.create_field(db, admin, key="vip", label="VIP", type_="boolean")
    add(
        db,
        acme,
        "+12015550101",
        "=cmd|'/C calc'!A0",
        last_name="Smith",
        email="@evil.example",
        tags=["VIP", "donor"],
        fields={"score": -3, "joined": "01/31/2026", "vip": "yes"},
    )
    add(db, acme, "+12015550102", "Ann")
    rows = table(exports.export_contacts(db, admin))
    assert list(rows[0]) == [
        *exports.CONTACT_COLUMNS,
        "fields.joined",
        "fields.score",
        "fields.vip",
    ]
    first, second = rows
    assert first["first_name"] == "'=cmd|'/C calc'!A0"
    assert first["email"] == "'@evil.example"
    assert first["phone_e164"] == "+12015550101"
    assert first["tags"] == "donor;vip"
    assert (first["fields.score"], first["fields.joined"], first["fields.vip"]) == (
        "-3",
        "2026-01-31",
        "true",
    )
    assert first["opted_out"] == "false"
    assert second["first_name"] == "Ann" and second["fields.score"] == "" and second["tags"] == ""
    assert audit_actions(db, acme.org.id) == ["export.contacts"]


def test_contacts_export_is_streamed_in_pages(db: Database, acme: Org) -> None:
    with db.write() as conn:
        for i in range(23):
            contacts.create_contact_in(
                conn,
                acme.admin.principal,
                ContactInput(phone=f"+1201555{i:04d}", first_name=f"P{i}"),
            )
    export = exports.export_contacts(db, acme.admin.principal, page=5)
    # Nothing has been read yet: a contact added now is in the file (pages are read lazily).
    add(db, acme, "+12015559999", "Late")
    rows = table(export)
    assert [r["first_name"] for r in rows] == [*(f"P{i}" for i in range(23)), "Late"]
    assert len({r["id"] for r in rows}) == 24


def test_big_export_comes_in_several_chunks(db: Database, acme: Org) -> None:
    with db.write() as conn:
        for i in range(400):
            contacts.create_contact_in(
                conn,
                acme.admin.principal,
                ContactInput(phone=f"+1201555{i:04d}", first_name="x" * 190, last_name="y" * 190),
            )
    chunks = list(exports.export_contacts(db, acme.admin.principal, page=100).chunks)
    assert len(chunks) >= 2
    assert all(len(c) < exports.CHUNK * 2 for c in chunks)
    assert b"".join(chunks).count(b"\r\n") == 401


def test_segment_export(db: Database, acme: Org) -> None:
    admin = acme.admin.principal
    add(db, acme, "+12015550101", "Vip", tags=["vip"], state="TX")
    add(db, acme, "+12015550102", "Plain", state="TX")
    add(db, acme, "+12015550103", "Vip2", tags=["vip"], state="CA")
    rows = table(exports.export_contacts(db, admin, query="tag:vip"))
    assert [r["first_name"] for r in rows] == ["Vip", "Vip2"]
    saved = segments.create_segment(db, admin, name="Texans", query='state = "TX"')
    export = exports.export_contacts(db, admin, segment_id=saved.id)
    assert export.filename.startswith(f"segment-{saved.id}-")
    assert [r["first_name"] for r in table(export)] == ["Vip", "Plain"]
    both = exports.export_contacts(db, admin, segment_id=saved.id, query="tag:vip")
    assert [r["first_name"] for r in table(both)] == ["Vip"]


def test_segment_export_errors_come_before_any_byte(db: Database, acme: Org, globex: Org) -> None:
    admin = acme.admin.principal
    with pytest.raises(Invalid) as bad:
        exports.export_contacts(db, admin, query="state = ")
    assert bad.value.field == "query"
    other = segments.create_segment(db, globex.admin.principal, name="Theirs", query="")
    with pytest.raises(NotFound) as missing:
        exports.export_contacts(db, admin, segment_id=other.id)
    assert missing.value.field == "segment_id"
    assert audit_actions(db, acme.org.id) == []


def test_exports_are_for_admins(db: Database, acme: Org) -> None:
    agent = acme.agent.principal
    for export in (exports.export_contacts, exports.export_messages, exports.export_consent):
        with pytest.raises(Forbidden):
            export(db, agent)
    assert audit_actions(db, acme.org.id) == []


def test_tenancy(db: Database, acme: Org, globex: Org) -> None:
    add(db, acme, "+12015550101", "AcmeOnly")
    contacts.create_contact(
        db, globex.admin.principal, ContactInput(phone="+12015550101", first_name="GlobexOnly")
    )
    assert [
        r["first_name"] for r in table(exports.export_contacts(db, globex.admin.principal))
    ] == ["GlobexOnly"]


def _inbound(db: Database, settings: Settings, ch: int, sender: str, body: str, n: int) -> int:
    received = messaging.receive_inbound(
        db,
        settings,
        ch,
        InboundSms(
            provider_message_id=f"x-{n}", sender=sender, recipient="+12015550100", body=body
        ),
    )
    assert received.message is not None
    return received.message.id


def test_messages_export_with_date_range(db: Database, settings: Settings, acme: Org) -> None:
    admin = acme.admin.principal
    ch = channel(db, admin)
    ids = [
        _inbound(db, settings, ch, "+12015550101", body, n)
        for n, body in enumerate(["=1+1 old", "middle", "new"])
    ]
    sent = messaging.send_message(
        db, settings, admin, contact_id=contacts_id(db, acme, "+12015550101"), body="Reply"
    ).message
    base = datetime(2026, 3, 1, 12, tzinfo=UTC)
    with db.write() as conn:
        for i, message_id in enumerate(ids):
            conn.execute(
                sa.update(messages)
                .where(messages.c.id == message_id)
                .values(created_at=base + timedelta(days=i))
            )
    rows = table(exports.export_messages(db, admin))
    assert list(rows[0]) == list(exports.MESSAGE_COLUMNS)
    assert [r["id"] for r in rows] == [str(i) for i in [*ids, sent.id]]
    assert rows[0]["body"] == "'=1+1 old"
    assert rows[0]["direction"] == "in" and rows[0]["contact_phone"] == "+12015550101"
    assert rows[3]["direction"] == "out" and rows[3]["status"] == sent.status
    assert rows[3]["gate_code"] == (sent.gate_code or "")
    ranged = table(
        exports.export_messages(
            db, admin, since=base + timedelta(days=1), until=base + timedelta(days=2)
        )
    )
    assert [r["body"] for r in ranged] == ["middle"]
    naive = table(exports.export_messages(db, admin, since=datetime(2026, 3, 2, 12)))
    assert [r["body"] for r in naive][:2] == ["middle", "new"]
    with pytest.raises(Invalid) as bad:
        exports.export_messages(db, admin, since=base, until=base)
    assert bad.value.field == "until"
    assert audit_actions(db, acme.org.id) == ["export.messages"] * 3


def contacts_id(db: Database, acme: Org, phone: str) -> int:
    with db.read() as conn:
        return next(
            c.id
            for c in contacts.list_contacts(conn, acme.org.id, limit=500)
            if c.phone_e164 == phone
        )


def test_consent_ledger_export_reuses_the_ledger(
    db: Database, settings: Settings, acme: Org
) -> None:
    admin = acme.admin.principal
    cid = add(db, acme, "+12015550101", "Ann")
    consent.agent_opt_out(db, admin, cid, note="=asked on the phone")
    rows = table(exports.export_consent(db, admin))
    assert list(rows[0]) == list(consent.EXPORT_COLUMNS)
    assert [(r["kind"], r["phone_e164"], r["contact_id"]) for r in rows] == [
        ("opt_out", "+12015550101", str(cid))
    ]
    assert "=asked on the phone" in rows[0]["evidence"]
    assert audit_actions(db, acme.org.id) == ["export.consent"]


def test_empty_exports_have_a_header(db: Database, acme: Org) -> None:
    admin = acme.admin.principal
    for export in (exports.export_contacts, exports.export_messages, exports.export_consent):
        text = b"".join(export(db, admin).chunks).decode()
        assert text.count("\r\n") == 1 and text.startswith("id,")
