"""Contacts UI: live search and filters, the edit form with typed custom fields, tags, exports."""

from __future__ import annotations

import csv
import io
import re

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Org
from tests.web.test_ui import login
from textdesk.services import contacts, custom_fields, segments
from textdesk.services.contacts import ContactInput
from textdesk.store.db import Database

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
HX = {"HX-Request": "true"}


def csrf(page_text: str) -> str:
    match = _CSRF.search(page_text)
    assert match is not None
    return match.group(1)


@pytest.fixture
def people(db: Database, acme: Org) -> dict[str, int]:
    admin = acme.admin.principal
    custom_fields.create_field(db, admin, key="score", label="Score", type_="number")
    custom_fields.create_field(db, admin, key="joined", label="Joined", type_="date")
    custom_fields.create_field(db, admin, key="member", label="Member", type_="boolean")
    custom_fields.create_field(db, admin, key="note", label="Note", type_="text")
    made = {}
    for phone, first, last, state, tags in [
        ("+12015550101", "John", "Smith", "TX", ["vip"]),
        ("+12015550102", "Joanna", "Lee", "CA", ["donor"]),
        ("+12015550103", "Mary", "Jones", "TX", []),
    ]:
        made[first] = contacts.create_contact(
            db,
            admin,
            ContactInput(phone=phone, first_name=first, last_name=last, state=state, tags=tags),
        ).id
    return made


def names(html: str) -> list[str]:
    return re.findall(r'<a href="/contacts/\d+">([^<]+)</a>', html)


def test_list_page_has_the_filter_bar_and_exports(
    client: TestClient, acme: Org, people: dict[str, int]
) -> None:
    login(client, acme.admin.user.email)
    page = client.get("/contacts")
    assert page.status_code == 200
    assert 'hx-get="/contacts/list/filters"' in page.text
    assert names(page.text) == ["John Smith", "Joanna Lee", "Mary Jones"]
    assert 'action="/exports/messages.csv"' in page.text
    assert 'action="/exports/consent.csv"' in page.text
    bar = client.get("/contacts/list/filters", headers=HX)
    assert bar.status_code == 200
    assert 'data-testid="contact-search"' in bar.text
    assert '<option value="vip">vip (1)</option>' in bar.text
    assert 'hx-trigger="input changed delay:250ms, search"' in bar.text


def test_agents_see_no_export_buttons(
    client: TestClient, acme: Org, people: dict[str, int]
) -> None:
    login(client, acme.agent.user.email)
    page = client.get("/contacts")
    assert "/exports/" not in page.text
    rows = client.get("/contacts/list/rows", params={"q": "jo"}, headers=HX)
    assert "/exports/" not in rows.text


def test_live_search_tag_and_segment_filters(
    client: TestClient, db: Database, acme: Org, people: dict[str, int]
) -> None:
    login(client, acme.agent.user.email)
    rows = client.get("/contacts/list/rows", params={"q": "jo"}, headers=HX)
    assert rows.status_code == 200
    assert "<html" not in rows.text  # a fragment for htmx
    assert names(rows.text) == ["John Smith", "Joanna Lee", "Mary Jones"]
    assert names(client.get("/contacts/list/rows", params={"q": "joh"}, headers=HX).text) == [
        "John Smith"
    ]
    assert names(
        client.get("/contacts/list/rows", params={"q": "(201) 555-0102"}, headers=HX).text
    ) == ["Joanna Lee"]
    assert names(client.get("/contacts/list/rows", params={"tag": "donor"}, headers=HX).text) == [
        "Joanna Lee"
    ]
    texans = segments.create_segment(db, acme.admin.principal, name="Texans", query='state = "TX"')
    by_segment = client.get(
        "/contacts/list/rows", params={"segment_id": str(texans.id), "q": "m"}, headers=HX
    )
    assert names(by_segment.text) == ["Mary Jones"]
    by_query = client.get(
        "/contacts/list/rows", params={"query": "tag:vip OR tag:donor"}, headers=HX
    )
    assert names(by_query.text) == ["John Smith", "Joanna Lee"]
    empty = client.get("/contacts/list/rows", params={"q": "zzz"}, headers=HX)
    assert "No contact matches." in empty.text


def test_bad_segment_query_is_shown_not_raised(
    client: TestClient, acme: Org, people: dict[str, int]
) -> None:
    login(client, acme.agent.user.email)
    rows = client.get("/contacts/list/rows", params={"query": "state = "}, headers=HX)
    assert rows.status_code == 422
    assert 'data-testid="filter-error"' in rows.text


def test_without_htmx_the_filtered_list_is_a_whole_page(
    client: TestClient, acme: Org, people: dict[str, int]
) -> None:
    login(client, acme.agent.user.email)
    page = client.get("/contacts/list/rows", params={"q": "mary", "tag": ""})
    assert "<html" in page.text and 'value="mary"' in page.text
    assert names(page.text) == ["Mary Jones"]
    restore = client.get(
        "/contacts/list/rows",
        params={"q": "mary"},
        headers={**HX, "HX-History-Restore-Request": "true"},
    )
    assert "<html" in restore.text


def test_pagination_keeps_the_filters(client: TestClient, db: Database, acme: Org) -> None:
    with db.write() as conn:
        for i in range(55):
            contacts.create_contact_in(
                conn, acme.admin.principal, ContactInput(phone=f"+1201555{i:04d}", first_name="Ann")
            )
    login(client, acme.agent.user.email)
    first = client.get("/contacts/list/rows", params={"q": "ann"}, headers=HX)
    assert len(names(first.text)) == 50
    link = re.search(r'href="(/contacts/list/rows\?[^"]+)"', first.text)
    assert link is not None and "q=ann" in link.group(1)
    second = client.get(link.group(1).replace("&amp;", "&"), headers=HX)
    assert len(names(second.text)) == 5


def test_edit_form_shows_typed_inputs(
    client: TestClient, acme: Org, people: dict[str, int]
) -> None:
    login(client, acme.agent.user.email)
    detail = client.get(f"/contacts/{people['John']}")
    assert f'href="/contacts/{people["John"]}/edit"' in detail.text
    page = client.get(f"/contacts/{people['John']}/edit")
    assert page.status_code == 200
    assert 'type="number" name="fields.score"' in page.text
    assert 'type="date" name="fields.joined"' in page.text
    assert '<select name="fields.member"' in page.text
    assert 'type="text" name="fields.note"' in page.text
    assert 'type="tel" name="phone" value="+12015550101"' in page.text
    assert 'type="email" name="email"' in page.text


def _form(page_text: str, **changes: str) -> dict[str, str]:
    data = {
        "csrf_token": csrf(page_text),
        "phone": "+12015550101",
        "first_name": "John",
        "last_name": "Smith",
        "email": "",
        "zip": "",
        "state": "TX",
        "time_zone": "",
        "external_id": "",
        "fields.score": "",
        "fields.joined": "",
        "fields.member": "",
        "fields.note": "",
    }
    data.update(changes)
    return data


def test_edit_saves_built_in_and_custom_fields(
    client: TestClient, db: Database, acme: Org, people: dict[str, int]
) -> None:
    login(client, acme.agent.user.email)
    cid = people["John"]
    page = client.get(f"/contacts/{cid}/edit")
    data = _form(
        page.text,
        first_name="Johnny",
        email="j@example.com",
        **{"fields.score": "7.5", "fields.joined": "2026-02-03", "fields.member": "true"},
    )
    assert client.post(f"/contacts/{cid}/edit", data={**data, "csrf_token": "x"}).status_code == 403
    saved = client.post(f"/contacts/{cid}/edit", data=data)
    assert saved.status_code == 200 and 'data-testid="saved"' in saved.text
    with db.read() as conn:
        john = contacts.get_contact(conn, acme.org.id, cid)
    assert john.first_name == "Johnny" and john.email == "j@example.com" and john.state == "TX"
    assert john.fields == {"score": 7.5, "joined": "2026-02-03", "member": True}
    assert john.tags == ["vip"]  # the form does not touch tags
    # Clearing an input removes the value.
    kept = {"fields.joined": "2026-02-03", "fields.member": "true"}
    client.post(f"/contacts/{cid}/edit", data=_form(page.text, first_name="Johnny", **kept))
    with db.read() as conn:
        assert contacts.get_contact(conn, acme.org.id, cid).fields == {
            "joined": "2026-02-03",
            "member": True,
        }
    detail = client.get(f"/contacts/{cid}")
    assert 'data-testid="custom-fields"' in detail.text
    assert "<dt>member</dt><dd>yes</dd>" in detail.text


@pytest.mark.parametrize(
    ("changes", "field", "status"),
    [
        ({"fields.score": "many"}, "fields.score", 422),
        ({"phone": "12"}, "phone", 422),
        ({"phone": "+12015550102"}, "phone", 409),
        ({"state": "Texas"}, "state", 422),
    ],
)
def test_edit_errors_keep_the_input_and_mark_the_field(
    client: TestClient,
    db: Database,
    acme: Org,
    people: dict[str, int],
    changes: dict[str, str],
    field: str,
    status: int,
) -> None:
    login(client, acme.agent.user.email)
    cid = people["John"]
    page = client.get(f"/contacts/{cid}/edit")
    response = client.post(f"/contacts/{cid}/edit", data=_form(page.text, **changes))
    assert response.status_code == status
    assert 'data-testid="edit-error"' in response.text
    value = next(iter(changes.values()))
    assert f'value="{value}"' in response.text
    assert re.search(
        rf'name="{re.escape(field)}"[^>]*\n?\s*[^>]*aria-invalid="true"', response.text
    )
    with db.read() as conn:
        assert contacts.get_contact(conn, acme.org.id, cid).first_name == "John"


def test_tags_add_and_remove(
    client: TestClient, db: Database, acme: Org, people: dict[str, int]
) -> None:
    login(client, acme.agent.user.email)
    cid = people["Mary"]
    token = csrf(client.get(f"/contacts/{cid}/edit").text)
    added = client.post(
        f"/contacts/{cid}/tags/add", data={"tags": "VIP, donor ,", "csrf_token": token}, headers=HX
    )
    assert added.status_code == 200 and 'id="contact-tags"' in added.text
    assert "Remove tag donor" in added.text and "Remove tag vip" in added.text
    removed = client.post(
        f"/contacts/{cid}/tags/remove", data={"tag": "vip", "csrf_token": token}, headers=HX
    )
    assert "Remove tag vip" not in removed.text
    with db.read() as conn:
        assert contacts.get_contact(conn, acme.org.id, cid).tags == ["donor"]
    bad = client.post(
        f"/contacts/{cid}/tags/add", data={"tags": "x" * 70, "csrf_token": token}, headers=HX
    )
    assert bad.status_code == 422 and 'role="alert"' in bad.text
    forged = client.post(f"/contacts/{cid}/tags/add", data={"tags": "a", "csrf_token": "no"})
    assert forged.status_code == 403


def test_other_organizations_contacts_are_not_found(
    client: TestClient, acme: Org, globex: Org, people: dict[str, int]
) -> None:
    login(client, globex.admin.user.email)
    cid = people["John"]
    assert client.get(f"/contacts/{cid}/edit").status_code == 404
    token = csrf(client.get("/contacts").text)
    assert (
        client.post(
            f"/contacts/{cid}/tags/add", data={"tags": "x", "csrf_token": token}
        ).status_code
        == 404
    )
    rows = client.get("/contacts/list/rows", params={"q": "john"}, headers=HX)
    assert names(rows.text) == []


def _csv(response_text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(response_text)))


def test_export_downloads(client: TestClient, acme: Org, people: dict[str, int]) -> None:
    login(client, acme.admin.user.email)
    token = csrf(client.get("/contacts").text)
    response = client.post(
        "/exports/contacts.csv", data={"csrf_token": token, "tag": "vip", "q": "", "segment_id": ""}
    )
    assert response.status_code == 200
    assert response.headers["content-disposition"].startswith("attachment; filename=")
    assert [r["first_name"] for r in _csv(response.text)] == ["John"]
    response = client.post("/exports/contacts.csv", data={"csrf_token": token, "q": "jones"})
    assert [r["first_name"] for r in _csv(response.text)] == ["Mary"]
    messages = client.post(
        "/exports/messages.csv", data={"csrf_token": token, "since": "2026-01-01", "until": ""}
    )
    assert messages.status_code == 200 and messages.text.startswith("id,created_at,direction")
    bad = client.post("/exports/messages.csv", data={"csrf_token": token, "since": "01/02"})
    assert bad.status_code == 422 and bad.json()["field"] == "since"
    ledger = client.post("/exports/consent.csv", data={"csrf_token": token})
    assert ledger.status_code == 200 and ledger.text.startswith("id,created_at,phone_e164")
    assert client.post("/exports/consent.csv", data={"csrf_token": "forged"}).status_code == 403


def test_agents_cannot_export(client: TestClient, acme: Org, people: dict[str, int]) -> None:
    login(client, acme.agent.user.email)
    token = csrf(client.get("/contacts").text)
    for path in ("/exports/contacts.csv", "/exports/messages.csv", "/exports/consent.csv"):
        assert client.post(path, data={"csrf_token": token}).status_code == 403
