"""Segment queries compiled to SQL, against real rows on SQLite and PostgreSQL; saved segments."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import Org
from textdesk.services import custom_fields, segments
from textdesk.services.errors import Conflict, Forbidden, Invalid, NotFound
from textdesk.services.segments import QueryInvalid
from textdesk.store.db import Database
from textdesk.store.tables import audit_log, campaign_contacts, campaigns, contacts

NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


PEOPLE: list[dict[str, Any]] = [
    {
        "phone_e164": "+12015550101",
        "first_name": "Ann",
        "last_name": "Lee",
        "email": "ann@example.com",
        "zip": "78701",
        "state": "TX",
        "tags": ["donor", "vip"],
        "fields": {"last_order": "2026-05-01", "spend": 120.5, "plan": "Gold", "member": True},
        "opted_out": False,
        "last_inbound_at": _t("2026-06-14T10:00:00"),
        "created_at": _t("2026-01-10T09:00:00"),
    },
    {
        "phone_e164": "+12015550102",
        "first_name": "Bob",
        "last_name": "Stone",
        "zip": "10001",
        "state": "NY",
        "tags": ["vip"],
        "fields": {"last_order": "2026-06-10", "spend": 40, "plan": "silver", "member": False},
        "opted_out": True,
        "last_outbound_at": _t("2026-06-15T09:00:00"),
        "created_at": _t("2026-06-15T08:00:00"),
    },
    {
        "phone_e164": "+12015550103",
        "first_name": "Cat",
        "last_name": "Diaz",
        "email": "cat@example.org",
        "state": "TX",
        "tags": ["two words"],
        "fields": {},
        "created_at": _t("2025-12-31T23:59:00"),
    },
    {
        "phone_e164": "+12015550104",
        "first_name": "Dan",
        "last_name": "",
        "tags": [],
        "fields": {"spend": 0, "plan": "gold plan"},
        "created_at": _t("2026-06-01T00:00:00"),
    },
]


@dataclass
class World:
    acme: Org
    globex: Org
    ids: dict[str, int]
    campaign_id: int
    globex_campaign_id: int


def _insert_contact(conn: sa.Connection, org_id: int, person: dict[str, Any]) -> int:
    values = {"updated_at": person["created_at"], **person}
    return int(
        conn.execute(
            contacts.insert().values(org_id=org_id, **values).returning(contacts.c.id)
        ).scalar_one()
    )


def _campaign(conn: sa.Connection, org_id: int, name: str) -> int:
    return int(
        conn.execute(
            campaigns.insert()
            .values(org_id=org_id, name=name, created_at=NOW, updated_at=NOW)
            .returning(campaigns.c.id)
        ).scalar_one()
    )


@pytest.fixture
def world(db: Database, acme: Org, globex: Org) -> World:
    for org in (acme, globex):
        admin = org.admin.principal
        custom_fields.create_field(db, admin, key="last_order", label="", type_="date")
        custom_fields.create_field(db, admin, key="spend", label="", type_="number")
        custom_fields.create_field(db, admin, key="plan", label="", type_="text")
        custom_fields.create_field(db, admin, key="member", label="", type_="boolean")
    with db.write() as conn:
        ids = {p["first_name"]: _insert_contact(conn, acme.org.id, p) for p in PEOPLE}
        # Globex holds a twin of every Acme contact: any leak shows in the counts.
        twins = [_insert_contact(conn, globex.org.id, p) for p in PEOPLE]
        campaign_id = _campaign(conn, acme.org.id, "Spring")
        globex_campaign_id = _campaign(conn, globex.org.id, "Globex spring")
        rows = [
            (campaign_id, acme.org.id, ids["Ann"], "sent"),
            (campaign_id, acme.org.id, ids["Cat"], "pending"),
            (campaign_id, acme.org.id, ids["Bob"], "excluded"),
            (globex_campaign_id, globex.org.id, twins[3], "pending"),
        ]
        for cid, org_id, contact_id, status in rows:
            conn.execute(
                campaign_contacts.insert().values(
                    campaign_id=cid,
                    org_id=org_id,
                    contact_id=contact_id,
                    status=status,
                    created_at=NOW,
                )
            )
    return World(acme, globex, ids, campaign_id, globex_campaign_id)


def _names(db: Database, org_id: int, query: str) -> set[str]:
    with db.read() as conn:
        found = segments.sample(conn, org_id, query, limit=100, now=NOW)
        count = segments.count_matching(conn, org_id, query, now=NOW)
    assert count == len(found), f"count {count} != sample {len(found)} for {query!r}"
    return {c.first_name for c in found}


CASES: list[tuple[str, set[str]]] = [
    ("", {"Ann", "Bob", "Cat", "Dan"}),
    # tags
    ("tag:vip", {"Ann", "Bob"}),
    ("tag:VIP", {"Ann", "Bob"}),
    ('tag:"two words"', {"Cat"}),
    ("tag:nobody", set()),
    ("tag:vi", set()),  # no partial matches (the SQLite LIKE pre-filter must not leak)
    ('tag:"vip"', {"Ann", "Bob"}),
    ("NOT tag:vip", {"Cat", "Dan"}),
    # built-in text: every operator
    ('state = "TX"', {"Ann", "Cat"}),
    ('state = "tx"', {"Ann", "Cat"}),
    ('state != "TX"', {"Bob", "Dan"}),
    ('email ~ "EXAMPLE"', {"Ann", "Cat"}),
    ('email ~ ".org"', {"Cat"}),
    ('email ~ "%"', set()),
    ("zip = 78701", {"Ann"}),
    ('first_name > "B"', {"Bob", "Cat", "Dan"}),
    ('first_name >= "Bob"', {"Bob", "Cat", "Dan"}),
    ('first_name < "Bob"', {"Ann"}),
    ('first_name <= "Bob"', {"Ann", "Bob"}),
    ('last_name = ""', {"Dan"}),
    ('phone ~ "5550103"', {"Cat"}),
    # presence
    ("has email", {"Ann", "Cat"}),
    ("NOT has email", {"Bob", "Dan"}),
    ("has zip", {"Ann", "Bob"}),
    ("has last_name", {"Ann", "Bob", "Cat"}),
    ("has fields.spend", {"Ann", "Bob", "Dan"}),
    ("has fields.member", {"Ann", "Bob"}),
    ("has last_inbound", {"Ann"}),
    # consent
    ("opted_out", {"Bob"}),
    ("NOT opted_out", {"Ann", "Cat", "Dan"}),
    ("opted_out = false", {"Ann", "Cat", "Dan"}),
    ("opted_out != true", {"Ann", "Cat", "Dan"}),
    # date custom field, absolute and relative (NOW is 2026-06-15; -30d is 2026-05-16)
    ("fields.last_order < -30d", {"Ann"}),
    ("fields.last_order >= -30d", {"Bob"}),
    ("fields.last_order >= 2026-06-10", {"Bob"}),
    ("fields.last_order > 2026-06-10", set()),
    ("fields.last_order <= 2026-06-10", {"Ann", "Bob"}),
    ("fields.last_order = 2026-05-01", {"Ann"}),
    ("fields.last_order != 2026-05-01", {"Bob", "Cat", "Dan"}),
    ("fields.last_order < -1m", {"Ann"}),
    ("fields.last_order > -2w", {"Bob"}),
    ("fields.last_order < +1y", {"Ann", "Bob"}),
    # number custom field
    ("fields.spend > 100", {"Ann"}),
    ("fields.spend <= 40", {"Bob", "Dan"}),
    ("fields.spend < 40", {"Dan"}),
    ("fields.spend >= 40", {"Ann", "Bob"}),
    ("fields.spend = 40", {"Bob"}),
    ("fields.spend = 40.0", {"Bob"}),
    ("fields.spend = 120.5", {"Ann"}),
    ("fields.spend != 0", {"Ann", "Bob", "Cat"}),
    ("fields.spend > -1", {"Ann", "Bob", "Dan"}),
    # text custom field
    ('fields.plan = "Gold"', {"Ann"}),
    ('fields.plan != "Gold"', {"Bob", "Cat", "Dan"}),
    ('fields.plan ~ "gold"', {"Ann", "Dan"}),
    ('fields.plan < "h"', {"Ann", "Dan"}),
    ('fields.plan > "h"', {"Bob"}),
    # boolean custom field
    ("fields.member", {"Ann"}),
    ("fields.member = true", {"Ann"}),
    ("fields.member = false", {"Bob"}),
    ("fields.member != true", {"Bob", "Cat", "Dan"}),
    ("NOT fields.member", {"Bob", "Cat", "Dan"}),
    # times (whole UTC days)
    ("last_inbound > -7d", {"Ann"}),
    ("last_inbound = -1d", {"Ann"}),
    ("last_inbound < -30d", set()),
    ("last_inbound != -1d", {"Bob", "Cat", "Dan"}),
    ("last_outbound = today", {"Bob"}),
    ("last_outbound >= today", {"Bob"}),
    ("last_outbound > today", set()),
    ("created_at < 2026-01-01", {"Cat"}),
    ("created_at <= 2025-12-31", {"Cat"}),
    ("created_at = 2026-06-15", {"Bob"}),
    ("created_at >= -1m", {"Bob", "Dan"}),
    ("updated_at > 2026-06-01", {"Bob"}),
    # campaign membership (an excluded audience row is not membership)
    ("campaign:{campaign}", {"Ann", "Cat"}),
    ("NOT campaign:{campaign}", {"Bob", "Dan"}),
    # precedence: AND binds tighter than OR; NOT binds tightest
    ('tag:vip OR state = "TX" AND opted_out', {"Ann", "Bob"}),
    ('(tag:vip OR state = "TX") AND opted_out', {"Bob"}),
    ('state = "TX" AND opted_out OR tag:vip', {"Ann", "Bob"}),
    ("NOT tag:vip AND NOT opted_out", {"Cat", "Dan"}),
    ("not (tag:vip or has email)", {"Dan"}),
    ("NOT NOT tag:vip", {"Ann", "Bob"}),
    # NOT is the exact complement, also where values are missing
    ("NOT fields.spend > 100", {"Bob", "Cat", "Dan"}),
    ('NOT fields.plan ~ "gold"', {"Bob", "Cat"}),
    ('NOT fields.plan < "h"', {"Bob", "Cat"}),
    ("NOT fields.last_order < -30d", {"Bob", "Cat", "Dan"}),
    ("NOT last_inbound > -7d", {"Bob", "Cat", "Dan"}),
    ('NOT email ~ "example"', {"Bob", "Dan"}),
    ('NOT first_name > "B"', {"Ann"}),
    ("NOT created_at < 2026-01-01", {"Ann", "Bob", "Dan"}),
    ("NOT campaign:{campaign} AND NOT has fields.spend", set()),
    ("NOT (tag:vip AND fields.spend >= 40)", {"Cat", "Dan"}),
    (
        'tag:vip AND state = "TX" AND fields.last_order < -30d AND NOT opted_out',
        {"Ann"},
    ),
]


@pytest.mark.parametrize(("query", "expected"), CASES, ids=[c[0] or "(empty)" for c in CASES])
def test_query_matches(db: Database, world: World, query: str, expected: set[str]) -> None:
    query = query.replace("{campaign}", str(world.campaign_id))
    assert _names(db, world.acme.org.id, query) == expected


def test_never_matches_another_organizations_contacts(db: Database, world: World) -> None:
    for query, _expected in CASES:
        query = query.replace("{campaign}", str(world.campaign_id))
        with db.read() as conn:
            found = segments.sample(conn, world.acme.org.id, query, limit=100, now=NOW)
            where = segments.contact_filter(conn, world.acme.org.id, query, now=NOW)
            orgs = set(conn.execute(sa.select(contacts.c.org_id).where(where)).scalars())
        assert {c.org_id for c in found} <= {world.acme.org.id}, query
        assert orgs <= {world.acme.org.id}, query


@pytest.mark.parametrize(
    ("query", "position", "words"),
    [
        ("fields.nope = 1", 0, "unknown custom field 'fields.nope'"),
        ('fields.spend = "x"', 15, "expected a number"),
        ("fields.spend ~ 1", 0, "'~' (contains) works on text"),
        ("fields.last_order > 5", 20, "expected a date"),
        ('created_at > "2026"', 13, "expected a date"),
        ("opted_out > true", 0, "expected '=' or '!='"),
        ("fields.plan", 0, "not true/false"),
        ("state =", 7, "expected a value after '=', found end of query"),
        ("campaign:99999", 0, "no campaign 99999"),
    ],
)
def test_errors_name_the_position(
    db: Database, world: World, query: str, position: int, words: str
) -> None:
    with db.read() as conn, pytest.raises(QueryInvalid) as info:
        segments.contact_filter(conn, world.acme.org.id, query, now=NOW)
    assert info.value.position == position
    assert info.value.field == "query"
    assert f"position {position}:" in info.value.message
    assert words in info.value.message


def test_another_organizations_campaign_is_unknown(db: Database, world: World) -> None:
    with db.read() as conn, pytest.raises(QueryInvalid, match="no campaign"):
        segments.contact_filter(conn, world.acme.org.id, f"campaign:{world.globex_campaign_id}")


def test_a_deleted_field_is_no_longer_usable(db: Database, world: World) -> None:
    custom_fields.delete_field(db, world.acme.admin.principal, "spend")
    with db.read() as conn, pytest.raises(QueryInvalid, match="unknown custom field"):
        segments.count_matching(conn, world.acme.org.id, "fields.spend > 1")


def test_matching_pages_walk_every_match_once(db: Database, world: World) -> None:
    seen: list[int] = []
    after = 0
    with db.read() as conn:
        while True:
            page = segments.matching_page(
                conn, world.acme.org.id, "NOT tag:nobody", after_id=after, limit=1
            )
            if not page:
                break
            seen += [c.id for c in page]
            after = page[-1].id
    assert seen == sorted(world.ids.values())


def test_relative_dates_default_to_the_current_time(db: Database, world: World) -> None:
    # 2025-12-31 is long past whenever this runs; "today" moves, the count must not be empty.
    with db.read() as conn:
        assert segments.count_matching(conn, world.acme.org.id, "created_at < today") == 4


# --- saved segments -------------------------------------------------------------------------------


def test_saved_segment_crud(db: Database, world: World) -> None:
    admin = world.acme.admin.principal
    seg = segments.create_segment(db, admin, name=" VIPs ", query=" tag:vip ")
    assert (seg.name, seg.query, seg.created_by) == ("VIPs", "tag:vip", admin.user_id)
    with db.read() as conn:
        assert segments.get_segment(conn, world.acme.org.id, seg.id).query == "tag:vip"
        assert [s.name for s in segments.list_segments(conn, world.acme.org.id)] == ["VIPs"]
        assert segments.list_segments(conn, world.globex.org.id) == []
        with pytest.raises(NotFound):
            segments.get_segment(conn, world.globex.org.id, seg.id)

    with pytest.raises(Conflict) as conflict:
        segments.create_segment(db, admin, name="VIPs", query="")
    assert conflict.value.field == "name"
    # The same name in another organization is fine.
    segments.create_segment(db, world.globex.admin.principal, name="VIPs", query="")

    with pytest.raises(Invalid) as bad:
        segments.create_segment(db, admin, name="Broken", query="tag:vip AND")
    assert bad.value.field == "query" and "position 11" in bad.value.message
    with pytest.raises(Invalid) as empty:
        segments.create_segment(db, admin, name="  ", query="")
    assert empty.value.field == "name"

    updated = segments.update_segment(db, admin, seg.id, query="tag:vip AND NOT opted_out")
    assert updated.query == "tag:vip AND NOT opted_out" and updated.name == "VIPs"
    renamed = segments.update_segment(db, admin, seg.id, name="Best")
    assert renamed.name == "Best"
    with pytest.raises(Invalid):
        segments.update_segment(db, admin, seg.id, query="nonsense")
    with pytest.raises(NotFound):
        segments.update_segment(db, world.globex.admin.principal, seg.id, name="Stolen")
    with pytest.raises(NotFound):
        segments.delete_segment(db, world.globex.admin.principal, seg.id)

    segments.delete_segment(db, admin, seg.id)
    with db.read() as conn:
        with pytest.raises(NotFound):
            segments.get_segment(conn, world.acme.org.id, seg.id)
        actions = list(
            conn.execute(
                sa.select(audit_log.c.action)
                .where(
                    audit_log.c.org_id == world.acme.org.id, audit_log.c.action.like("segment.%")
                )
                .order_by(audit_log.c.id)
            ).scalars()
        )
    assert actions == ["segment.create", "segment.update", "segment.update", "segment.delete"]


def test_agents_read_but_do_not_change_segments(db: Database, world: World) -> None:
    agent = world.acme.agent.principal
    with pytest.raises(Forbidden):
        segments.create_segment(db, agent, name="Mine", query="")
    seg = segments.create_segment(db, world.acme.admin.principal, name="All", query="")
    with pytest.raises(Forbidden):
        segments.update_segment(db, agent, seg.id, name="x")
    with pytest.raises(Forbidden):
        segments.delete_segment(db, agent, seg.id)
