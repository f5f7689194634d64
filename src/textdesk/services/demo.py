"""The demo organization: what `make demo` shows a first-time visitor.

Seeding is idempotent. Run again, it keeps the data and gives the demo users new passwords
(printed), because a hashed password cannot be shown twice.
"""

from __future__ import annotations

import random
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from textdesk.domain.roles import Role
from textdesk.services import (
    accounts,
    campaign_survey,
    campaigns,
    canned,
    channels,
    contacts,
    custom_fields,
    segments,
)
from textdesk.services.auth import Principal
from textdesk.services.automations import definitions as automations
from textdesk.services.automations import events as customer_events
from textdesk.services.contacts import ContactInput
from textdesk.services.passwords import hash_password
from textdesk.store.db import Database
from textdesk.store.tables import contacts as contacts_table
from textdesk.store.tables import organizations, users, utcnow

DEMO_SLUG = "acme-dental"
DEMO_USERS = (
    ("owner@demo.textdesk.test", "Olivia Owner", Role.OWNER),
    ("agent1@demo.textdesk.test", "Sam Agent", Role.AGENT),
    ("agent2@demo.textdesk.test", "Riley Agent", Role.AGENT),
)
DEMO_SCRIPT = (
    "Hi {first_name|there}, it's {agent_name} from Acme Dental. Your 6-month cleaning is due - "
    "want us to book you in? Reply STOP to opt out."
)
DEMO_DRAFT_SCRIPT = (
    "Hi {first_name|there}, Acme Dental here: as a VIP patient you get priority booking this "
    "month. Reply YES and {agent_name} will find you a slot. Reply STOP to opt out."
)
DEMO_REMINDER = (
    "Hi {first_name|there}, a reminder from Acme Dental: your {event.data.service|appointment} "
    "with {event.data.dentist|us} is {event.date} at {event.time}. Reply STOP to opt out."
)
DEMO_HOURS = (
    "Acme Dental is open Mon-Fri 8am-6pm and Sat 9am-1pm. Reply here to book. "
    "Reply STOP to opt out."
)
#: The seeded appointments, as (hours from now, dentist, service): their 24-hours-before
#: reminders are due in 10 minutes, in 2 hours and in 3 days; the 12-hour one is inside its 24
#: hours already, so its reminder goes as soon as a worker runs.
DEMO_APPOINTMENTS = (
    (24 + 1 / 6, "Dr. Lee", "cleaning"),
    (26, "Dr. Patel", "check-up"),
    (96, "Dr. Lee", "filling"),
    (12, "Dr. Patel", "cleaning"),
)
#: Saved segment of the active campaign: about a quarter of the demo contacts carry the tag.
DEMO_SEGMENT = ("Recall due", "tag:recall-due AND NOT opted_out")

_FIRST = [
    "Ana",
    "Ben",
    "Chloe",
    "Dev",
    "Elena",
    "Farid",
    "Grace",
    "Hiro",
    "Ines",
    "Jamal",
    "Kira",
    "Luis",
    "Maya",
    "Noah",
    "Olu",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tara",
]
_LAST = [
    "Garcia",
    "Nguyen",
    "Smith",
    "Okafor",
    "Kowalski",
    "Haddad",
    "Silva",
    "Kim",
    "Cohen",
    "Brown",
    "Rossi",
    "Patel",
    "Dubois",
    "Moreau",
    "Jensen",
    "Ali",
    "Ortiz",
    "Lee",
]
# (area code, state, ZIP): a spread of time zones and quiet-hour rules (FL, TX, WA ...).
_PLACES = [
    ("212", "NY", "10001"),
    ("305", "FL", "33101"),
    ("512", "TX", "78701"),
    ("206", "WA", "98101"),
    ("312", "IL", "60601"),
    ("602", "AZ", "85001"),
    ("303", "CO", "80202"),
    ("415", "CA", "94103"),
    ("405", "OK", "73102"),
    ("410", "MD", "21201"),
]


@dataclass(frozen=True)
class DemoLogin:
    email: str
    name: str
    role: Role
    password: str


@dataclass(frozen=True)
class DemoResult:
    org_id: int
    created: bool
    logins: tuple[DemoLogin, ...]


def _password() -> str:
    return secrets.token_urlsafe(12)


def seed(
    db: Database, *, contact_count: int = 200, rng_seed: int = 7, now: datetime | None = None
) -> DemoResult:
    with db.read() as conn:
        existing = conn.execute(
            sa.select(organizations.c.id).where(organizations.c.slug == DEMO_SLUG)
        ).scalar()
    if existing is not None:
        return DemoResult(org_id=existing, created=False, logins=_reset_passwords(db, existing))

    org = accounts.create_organization(db, "Acme Dental", actor="system:demo")
    logins = []
    for email, name, role in DEMO_USERS:
        password = _password()
        accounts.create_user(
            db,
            org_id=org.id,
            email=email,
            name=name,
            role=role,
            password=password,
            actor="system:demo",
            actor_role=None,
        )
        logins.append(DemoLogin(email, name, role, password))
    system = Principal(org_id=org.id, role=Role.OWNER, name="demo seeder")
    channels.create_channel(
        db,
        system,
        name="Simulator line",
        provider="simulator",
        phone="+12025550143",
        number_type=channels.NumberType.TEN_DLC,
    )
    custom_fields.create_field(
        db, system, key="last_visit_days", label="Days since last visit", type_="number"
    )
    rng = random.Random(rng_seed)  # noqa: S311 - fake demo data, reproducible on purpose
    with db.write() as conn:
        for i in range(contact_count):
            area, state, zip_code = _PLACES[i % len(_PLACES)]
            contacts.create_contact_in(
                conn,
                system,
                ContactInput(
                    # 555-01xx is reserved for fiction in the NANP; these never reach a person.
                    phone=f"+1{area}555{i // 100:02d}{i % 100:02d}",
                    first_name=rng.choice(_FIRST),
                    last_name=rng.choice(_LAST),
                    state=state,
                    zip=zip_code,
                    tags=rng.sample(["patient", "vip", "recall-due", "new"], k=rng.randint(0, 2)),
                    fields={"last_visit_days": rng.randint(10, 400)},
                ),
            )
    _seed_campaigns(db, system)
    _seed_automations(db, system, now or utcnow())
    return DemoResult(org_id=org.id, created=True, logins=tuple(logins))


def _seed_automations(db: Database, system: Principal, now: datetime) -> None:
    """An appointment reminder (24 hours before, with the event's data) with a few booked
    appointments whose reminders wait or are due, and a HOURS keyword answer."""
    automations.create_automation(
        db,
        system,
        {
            "name": "Appointment reminder",
            "trigger": {
                "type": "event",
                "event_types": ["appointment.booked", "appointment.rescheduled"],
            },
            "conditions": {"segment": "NOT opted_out"},
            "steps": [
                {"type": "wait", "before": "24h"},
                {"type": "send", "template": DEMO_REMINDER, "purpose": "transactional"},
                {"type": "tag", "tags": ["reminded"]},
            ],
        },
    )
    automations.create_automation(
        db,
        system,
        {
            "name": "Opening hours (HOURS)",
            "trigger": {"type": "keyword", "keywords": ["HOURS"]},
            "steps": [{"type": "send", "template": DEMO_HOURS, "purpose": "informational"}],
        },
    )
    with db.read() as conn:
        patients = list(
            conn.execute(
                sa.select(contacts_table.c.id)
                .where(contacts_table.c.org_id == system.org_id)
                .order_by(contacts_table.c.id)
                .limit(len(DEMO_APPOINTMENTS))
            ).scalars()
        )
    if not patients:
        return
    customer_events.record_events(
        db,
        system,
        [
            customer_events.EventInput(
                type="appointment.booked",
                contact_id=contact_id,
                key=f"demo-{i + 1}",
                id=f"demo-appointment-{i + 1}",
                occurs_at=now + timedelta(hours=hours),
                data={"dentist": dentist, "service": service},
            )
            for i, (contact_id, (hours, dentist, service)) in enumerate(
                zip(patients, DEMO_APPOINTMENTS, strict=False)
            )
        ],
        batch=True,
        now=now,
    )


def _seed_campaigns(db: Database, system: Principal) -> None:
    """An ACTIVE campaign the demo agent can join at once, and a draft to edit."""
    name, query = DEMO_SEGMENT
    segment = segments.create_segment(db, system, name=name, query=query)
    with db.read() as conn:
        agent_id = conn.execute(
            sa.select(users.c.id).where(
                users.c.org_id == system.org_id, users.c.email == DEMO_USERS[1][0]
            )
        ).scalar_one()
    recall = campaigns.create_draft(
        db,
        system,
        campaigns.CampaignInput(
            name="Spring recall", script=DEMO_SCRIPT, segment_id=segment.id, batch_size=25
        ),
    )
    campaigns.set_agents(db, system, recall.id, [agent_id])
    campaign_survey.add_canned(
        db,
        system,
        recall.id,
        title="Book a slot",
        body="Great, {first_name|there}! We have openings Tue and Thu mornings. Which suits you?",
    )
    for title, body in (
        ("Opening hours", "We're open Mon-Fri 8am-6pm and Sat 9am-1pm."),
        ("Call us", "You can also call the front desk at (202) 555-0143."),
    ):
        canned.create(db, system, title=title, body=body)
    campaign_survey.add_question(
        db,
        system,
        recall.id,
        prompt="Do they want to book?",
        options=[
            {"label": "Yes, book me", "tag": "wants-booking"},
            {"label": "Later", "tag": "call-later"},
            {"label": "No thanks", "tag": "declined-recall"},
        ],
    )
    campaigns.transition(db, system, recall.id, "start")
    campaigns.create_campaign(
        db,
        system,
        name="VIP priority booking",
        script=DEMO_DRAFT_SCRIPT,
        segment_query="tag:vip AND fields.last_visit_days > 180",
    )


def _reset_passwords(db: Database, org_id: int) -> tuple[DemoLogin, ...]:
    logins = []
    with db.write() as conn:
        for email, name, role in DEMO_USERS:
            password = _password()
            updated = conn.execute(
                sa.update(users)
                .where(users.c.email == email, users.c.org_id == org_id)
                .values(password_hash=hash_password(password))
            )
            if updated.rowcount:
                logins.append(DemoLogin(email, name, role, password))
    return tuple(logins)
