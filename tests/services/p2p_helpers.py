"""Set-up for send-screen tests: an active campaign with its audience already materialized
(rows written directly, so these tests do not depend on the campaign administration code)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from tests.conftest import Org
from textdesk.domain.roles import Role
from textdesk.services import accounts, channels
from textdesk.services.auth import Principal
from textdesk.store.db import Database
from textdesk.store.tables import (
    campaign_agents,
    campaign_contacts,
    campaigns,
    contacts,
    survey_questions,
    utcnow,
)

#: A Wednesday, 09:00 in New York and 06:00 in Los Angeles: New York may be texted, LA not.
NINE_ET = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)
SCRIPT = "Hi {first_name|there}, this is {agent_name} from Acme. Reply STOP to opt out."


@dataclass
class P2P:
    campaign_id: int
    contact_ids: list[int]
    channel_id: int


def daytime_zone(now: datetime | None = None) -> str:
    """A fixed-offset zone where it is about 1 PM now (for tests that run on the real clock:
    with the state New York, only the federal 8 AM-9 PM rule applies, every day)."""
    hour = (now or utcnow()).hour
    offset = (13 - hour + 12) % 24 - 12  # -12..+11 hours from UTC
    # Etc/GMT signs are inverted: Etc/GMT-3 is UTC+3.
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def add_contacts(
    db: Database, org_id: int, n: int, *, start: int = 0, zone: str = "ny"
) -> list[int]:
    area, tz, state = {
        "ny": ("212", "America/New_York", "NY"),
        "la": ("213", "America/Los_Angeles", "CA"),
        "day": ("212", daytime_zone(), "NY"),
    }[zone]
    now = utcnow()
    rows = [
        {
            "org_id": org_id,
            "phone_e164": f"+1{area}555{1000 + start + i:04d}",
            "first_name": f"Person{start + i}",
            "last_name": "Test",
            "time_zone": tz,
            "state": state,
            "fields": {},
            "tags": [],
            "created_at": now,
            "updated_at": now,
        }
        for i in range(n)
    ]
    with db.write() as conn:
        conn.execute(contacts.insert(), rows)
        return list(
            conn.execute(
                sa.select(contacts.c.id)
                .where(
                    contacts.c.org_id == org_id,
                    contacts.c.phone_e164.in_([r["phone_e164"] for r in rows]),
                )
                .order_by(contacts.c.id)
            ).scalars()
        )


def make_campaign(
    db: Database,
    org: Org,
    contact_ids: list[int],
    *,
    status: str = "active",
    script: str = SCRIPT,
    agents: list[int] | None = None,
    **values: Any,
) -> int:
    now = utcnow()
    with db.write() as conn:
        campaign_id = conn.execute(
            campaigns.insert()
            .values(
                org_id=org.org.id,
                name=values.pop("name", "Spring drive"),
                status=status,
                script=script,
                purpose=values.pop("purpose", "marketing"),
                created_at=now,
                updated_at=now,
                started_at=now,
                **values,
            )
            .returning(campaigns.c.id)
        ).scalar_one()
        for user_id in agents if agents is not None else [org.agent.user.id]:
            conn.execute(
                campaign_agents.insert().values(
                    campaign_id=campaign_id, user_id=user_id, created_at=now
                )
            )
        if contact_ids:
            conn.execute(
                campaign_contacts.insert(),
                [
                    {
                        "org_id": org.org.id,
                        "campaign_id": campaign_id,
                        "contact_id": cid,
                        "status": "pending",
                        "created_at": now,
                    }
                    for cid in contact_ids
                ],
            )
    return campaign_id


def setup(db: Database, org: Org, n: int = 5, *, zone: str = "ny", **values: Any) -> P2P:
    channel = channels.create_channel(
        db, org.admin.principal, name="Main", provider="simulator", phone="+12015550100"
    )
    ids = add_contacts(db, org.org.id, n, zone=zone)
    return P2P(make_campaign(db, org, ids, **values), ids, channel.id)


def extra_agent(db: Database, org: Org, campaign_id: int, name: str) -> Principal:
    user = accounts.create_user(
        db,
        org_id=org.org.id,
        email=f"{name.lower()}@{org.org.slug}.test",
        name=name,
        role=Role.AGENT,
        password="correct-horse-battery",
        actor_role=None,
    )
    with db.write() as conn:
        conn.execute(
            campaign_agents.insert().values(
                campaign_id=campaign_id, user_id=user.id, created_at=utcnow()
            )
        )
    return Principal(org_id=org.org.id, role=Role.AGENT, user_id=user.id, name=name)


def add_question(db: Database, org_id: int, campaign_id: int, options: list[dict[str, Any]]) -> int:
    with db.write() as conn:
        return int(
            conn.execute(
                survey_questions.insert()
                .values(
                    org_id=org_id,
                    campaign_id=campaign_id,
                    prompt="Will you come?",
                    options=options,
                    created_at=utcnow(),
                )
                .returning(survey_questions.c.id)
            ).scalar_one()
        )


def rows(db: Database, campaign_id: int) -> dict[int, Any]:
    with db.read() as conn:
        return {
            r.contact_id: r
            for r in conn.execute(
                sa.select(campaign_contacts).where(campaign_contacts.c.campaign_id == campaign_id)
            )
        }
