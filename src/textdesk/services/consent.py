"""The consent ledger: append-only events per organization and phone number. A contact's
``opted_out`` flag is derived from it and kept in step in the same transaction."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.domain.roles import Role
from textdesk.services import audit
from textdesk.services.audit import RequestInfo
from textdesk.services.auth import Principal
from textdesk.services.errors import Invalid, NotFound
from textdesk.store.db import Database
from textdesk.store.tables import consent_events, contacts, utcnow


class ConsentKind(StrEnum):
    OPT_IN = "opt_in"
    OPT_OUT = "opt_out"
    RE_OPT_IN = "re_opt_in"
    HELP = "help"


class ConsentSource(StrEnum):
    KEYWORD = "keyword"
    FREE_TEXT = "free_text"
    WEB_FORM = "web_form"
    IMPORT = "import"
    API = "api"
    AGENT = "agent"
    PROVIDER = "provider"


def record(
    conn: Connection,
    *,
    org_id: int,
    phone: str,
    kind: ConsentKind,
    source: ConsentSource,
    actor: str,
    now: datetime,
    evidence: dict[str, Any] | None = None,
    message_id: int | None = None,
    purpose: str = "all",
) -> None:
    find = sa.select(contacts.c.id).where(
        contacts.c.org_id == org_id, contacts.c.phone_e164 == phone
    )
    if conn.dialect.name == "postgresql":
        # Lock the contact before writing its ledger entry: a concurrent import batch (which
        # locks the contacts it merges) then sees this entry, or this one lands after the
        # import's; the ledger's order and contacts.opted_out never disagree.
        find = find.with_for_update()
    contact_id = conn.execute(find).scalar()
    conn.execute(
        consent_events.insert().values(
            org_id=org_id,
            phone_e164=phone,
            contact_id=contact_id,
            kind=kind,
            purpose=purpose,
            source=source,
            evidence=evidence or {},
            message_id=message_id,
            actor=actor,
            created_at=now,
        )
    )
    if contact_id is not None and kind in (
        ConsentKind.OPT_OUT,
        ConsentKind.RE_OPT_IN,
        ConsentKind.OPT_IN,
    ):
        conn.execute(
            sa.update(contacts)
            .where(contacts.c.id == contact_id)
            .values(opted_out=kind is ConsentKind.OPT_OUT, updated_at=now)
        )
        if kind is ConsentKind.OPT_OUT:
            # Every pending automated step for the contact stops with the opt-out, in its
            # transaction (the gate would refuse the messages anyway; this says so at once).
            from textdesk.services.automations import runs

            runs.cancel_for_contact(
                conn,
                org_id,
                contact_id,
                reason="opted_out",
                detail=f"the contact opted out ({source})",
                now=now,
            )


def number_opted_out(conn: Connection, org_id: int, phone: str) -> bool:
    """Whether the ledger's latest word for this number (opt-in, opt-out or re-opt-in; help
    says nothing) is an opt-out. A contact created for a number, or given one, takes its
    ``opted_out`` from here: the ledger outlives deleted contacts, and an opt-out may have been
    recorded before any contact had the number (a STOP from a stranger, a provider's refusal)."""
    kind = conn.execute(
        sa.select(consent_events.c.kind)
        .where(
            consent_events.c.org_id == org_id,
            consent_events.c.phone_e164 == phone,
            consent_events.c.kind != ConsentKind.HELP,
        )
        .order_by(consent_events.c.id.desc())
        .limit(1)
    ).scalar()
    return kind == ConsentKind.OPT_OUT


def provider_opt_out(
    conn: Connection, org_id: int, phone: str, message_id: int, code: str, now: datetime
) -> None:
    """The provider refused a send because the recipient opted out with it (Twilio 21610,
    Telnyx 40300): record it so the gate blocks the next message before the provider has to."""
    record(
        conn,
        org_id=org_id,
        phone=phone,
        kind=ConsentKind.OPT_OUT,
        source=ConsentSource.PROVIDER,
        actor="system:provider",
        now=now,
        evidence={"provider_code": code},
        message_id=message_id,
    )


# --- people acting on consent ------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentEvent:
    id: int
    phone_e164: str
    contact_id: int | None
    kind: str
    purpose: str
    source: str
    evidence: dict[str, Any]
    message_id: int | None
    actor: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> ConsentEvent:
        m = row._mapping
        return cls(**{f: m[f] for f in cls.__dataclass_fields__})


def history(conn: Connection, org_id: int, contact_id: int) -> list[ConsentEvent]:
    phone = _contact_phone(conn, org_id, contact_id)
    rows = conn.execute(
        sa.select(consent_events)
        .where(consent_events.c.org_id == org_id, consent_events.c.phone_e164 == phone)
        .order_by(consent_events.c.id)
    )
    return [ConsentEvent.from_row(r) for r in rows]


def _contact_phone(conn: Connection, org_id: int, contact_id: int) -> str:
    phone = conn.execute(
        sa.select(contacts.c.phone_e164).where(
            contacts.c.id == contact_id, contacts.c.org_id == org_id
        )
    ).scalar()
    if phone is None:
        raise NotFound(f"contact {contact_id} not found")
    return str(phone)


def agent_opt_out(
    db: Database,
    principal: Principal,
    contact_id: int,
    *,
    note: str = "",
    request: RequestInfo | None = None,
) -> None:
    """Any team member may record an opt-out (e.g. the contact asked on the phone)."""
    now = utcnow()
    with db.write() as conn:
        phone = _contact_phone(conn, principal.org_id, contact_id)
        record(
            conn,
            org_id=principal.org_id,
            phone=phone,
            kind=ConsentKind.OPT_OUT,
            source=ConsentSource.AGENT,
            actor=principal.actor,
            now=now,
            evidence={"note": note.strip()} if note.strip() else {},
        )
        audit.record(
            conn,
            org_id=principal.org_id,
            actor=principal.actor,
            action="consent.opt_out",
            target=f"contact:{contact_id}",
            request=request,
        )


def admin_opt_in(
    db: Database,
    principal: Principal,
    contact_id: int,
    *,
    reason: str,
    request: RequestInfo | None = None,
) -> None:
    """Undo an opt-out without the contact's own START: admins only, with a stated reason
    (e.g. "signed the paper consent form on 2026-05-04"), both kept as evidence."""
    principal.require(Role.ADMIN)
    reason = reason.strip()
    if len(reason) < 10:
        raise Invalid(
            "say why (at least 10 characters): this is the consent evidence", field="reason"
        )
    now = utcnow()
    with db.write() as conn:
        phone = _contact_phone(conn, principal.org_id, contact_id)
        record(
            conn,
            org_id=principal.org_id,
            phone=phone,
            kind=ConsentKind.RE_OPT_IN,
            source=ConsentSource.AGENT,
            actor=principal.actor,
            now=now,
            evidence={"reason": reason},
        )
        audit.record(
            conn,
            org_id=principal.org_id,
            actor=principal.actor,
            action="consent.admin_opt_in",
            target=f"contact:{contact_id}",
            request=request,
            detail={"reason": reason},
        )


EXPORT_COLUMNS = (
    "id",
    "created_at",
    "phone_e164",
    "contact_id",
    "kind",
    "purpose",
    "source",
    "actor",
    "message_id",
    "evidence",
)


def export_rows(db: Database, principal: Principal, *, batch: int = 1000) -> Iterator[list[str]]:
    """The whole ledger of the organization, oldest first, for a carrier or a court."""
    principal.require(Role.ADMIN)
    last = 0
    while True:
        with db.read() as conn:
            rows = conn.execute(
                sa.select(consent_events)
                .where(consent_events.c.org_id == principal.org_id, consent_events.c.id > last)
                .order_by(consent_events.c.id)
                .limit(batch)
            ).all()
        if not rows:
            return
        for r in rows:
            yield [
                str(r.id),
                r.created_at.isoformat(),
                r.phone_e164,
                str(r.contact_id or ""),
                r.kind,
                r.purpose,
                r.source,
                r.actor,
                str(r.message_id or ""),
                json.dumps(r.evidence, ensure_ascii=False, sort_keys=True),
            ]
        last = rows[-1].id
