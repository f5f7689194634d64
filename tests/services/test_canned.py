"""Canned responses: admins manage, agents use; org-wide and per campaign; prefix search; merge."""

from __future__ import annotations

import pytest

from tests.conftest import Org
from textdesk.services import campaigns, canned, contacts
from textdesk.services.contacts import ContactInput
from textdesk.services.errors import Forbidden, Invalid, NotFound
from textdesk.store.db import Database


def test_admins_manage_agents_do_not(db: Database, acme: Org) -> None:
    admin, agent = acme.admin.principal, acme.agent.principal
    with pytest.raises(Forbidden):
        canned.create(db, agent, title="Hours", body="We open at 9.")
    made = canned.create(db, admin, title=" Hours ", body="We open at 9, {first_name|friend}.")
    assert made.title == "Hours"
    changed = canned.update(db, admin, made.id, title="Opening hours", body="9 to 5.")
    assert (changed.title, changed.body) == ("Opening hours", "9 to 5.")
    with pytest.raises(Forbidden):
        canned.delete(db, agent, made.id)
    canned.delete(db, admin, made.id)
    with db.read() as conn, pytest.raises(NotFound):
        canned.get(conn, acme.org.id, made.id)


@pytest.mark.parametrize(
    ("title", "body", "field"),
    [
        ("", "x", "title"),
        ("t" * 201, "x", "title"),
        ("t", "  ", "body"),
        ("t", "Hi {first_name", "body"),
    ],
)
def test_invalid_input_names_the_field(
    db: Database, acme: Org, title: str, body: str, field: str
) -> None:
    with pytest.raises(Invalid) as bad:
        canned.create(db, acme.admin.principal, title=title, body=body)
    assert bad.value.field == field


def test_campaign_scope_and_tenancy(db: Database, acme: Org, globex: Org) -> None:
    admin = acme.admin.principal
    spring = campaigns.create_campaign(db, admin, name="Spring", script="Hi")
    fall = campaigns.create_campaign(db, admin, name="Fall", script="Hi")
    canned.create(db, admin, title="Org wide", body="a")
    canned.create(db, admin, title="Spring only", body="b", campaign_id=spring.id)
    canned.create(db, admin, title="Fall only", body="c", campaign_id=fall.id)
    with pytest.raises(Invalid) as other:
        canned.create(db, globex.admin.principal, title="x", body="y", campaign_id=spring.id)
    assert other.value.field == "campaign_id"
    with db.read() as conn:
        assert [c.title for c in canned.search(conn, acme.org.id)] == ["Org wide"]
        in_spring = canned.search(conn, acme.org.id, campaign_id=spring.id)
        assert [c.title for c in in_spring] == ["Org wide", "Spring only"]
        assert canned.search(conn, globex.org.id) == []


def test_prefix_search_for_the_slash_picker(db: Database, acme: Org) -> None:
    admin = acme.admin.principal
    canned.create(db, admin, title="Opening hours", body="We open at 9.")
    canned.create(db, admin, title="Directions", body="Parking is behind the building.")
    canned.create(db, admin, title="100% refund", body="Refunds take 5 days.")
    with db.read() as conn:

        def titles(q: str) -> list[str]:
            return [c.title for c in canned.search(conn, acme.org.id, q)]

        assert titles("open") == ["Opening hours"]
        assert titles("HOU") == ["Opening hours"]  # any word of the title, any case
        assert titles("park") == ["Directions"]  # a word of the body
        assert titles("arking") == []  # prefixes, not substrings
        assert titles("100%") == ["100% refund"]  # LIKE wildcards are data
        assert titles("%") == []
        assert titles("") == ["100% refund", "Directions", "Opening hours"]


def test_rendered_for_a_contact(db: Database, acme: Org) -> None:
    admin = acme.admin.principal
    made = canned.create(db, admin, title="Hi", body="Hi {first_name}, {last_name|no surname}!")
    contact = contacts.create_contact(
        db, admin, ContactInput(phone="+12015550199", first_name="Ana")
    )
    with db.read() as conn:
        shown = canned.render(conn, acme.org.id, made.id, contact.id)
    assert shown.text == "Hi Ana, no surname!"
    assert shown.encoding == "GSM-7" and shown.segment_count == 1
