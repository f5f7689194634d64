"""The consent ledger: append-only events per organization and phone number. A contact's
``opted_out`` flag is derived from it and kept in step in the same transaction."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from textdesk.store.tables import consent_events, contacts


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
    contact_id = conn.execute(
        sa.select(contacts.c.id).where(contacts.c.org_id == org_id, contacts.c.phone_e164 == phone)
    ).scalar()
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
