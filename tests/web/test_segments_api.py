"""The segments API: saved segments, the live preview with positioned errors, contact pages."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.conftest import PASSWORD, Org
from textdesk.services import contacts, custom_fields, segments
from textdesk.services.contacts import ContactInput
from textdesk.store.db import Database


def _people(db: Database, org: Org) -> list[int]:
    admin = org.admin.principal
    custom_fields.create_field(db, admin, key="spend", label="Spend", type_="number")
    made = [
        ("+12015550101", "Ann", "TX", ["vip"], {"spend": 120}),
        ("+12015550102", "Bob", "NY", ["vip"], {"spend": 40}),
        ("+12015550103", "Cat", "TX", [], {}),
    ]
    return [
        contacts.create_contact(
            db,
            admin,
            ContactInput(phone=phone, first_name=name, state=state, tags=tags, fields=fields),
        ).id
        for phone, name, state, tags, fields in made
    ]


def test_crud(client: TestClient, db: Database, acme: Org) -> None:
    h = acme.admin.headers
    created = client.post("/api/v1/segments", json={"name": "VIPs", "query": "tag:vip"}, headers=h)
    assert created.status_code == 201, created.text
    seg = created.json()
    assert seg["name"] == "VIPs" and seg["query"] == "tag:vip"
    assert seg["created_by"] is None  # an API key stands for no user

    assert [s["id"] for s in client.get("/api/v1/segments", headers=h).json()] == [seg["id"]]
    assert client.get(f"/api/v1/segments/{seg['id']}", headers=h).json()["query"] == "tag:vip"

    patched = client.patch(
        f"/api/v1/segments/{seg['id']}", json={"query": 'tag:vip AND state = "TX"'}, headers=h
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["query"] == 'tag:vip AND state = "TX"'
    assert patched.json()["name"] == "VIPs"

    dup = client.post("/api/v1/segments", json={"name": "VIPs", "query": ""}, headers=h)
    assert dup.status_code == 409 and dup.json()["field"] == "name"

    gone = client.delete(f"/api/v1/segments/{seg['id']}", headers=h)
    assert gone.status_code == 204
    missing = client.get(f"/api/v1/segments/{seg['id']}", headers=h)
    assert missing.status_code == 404


def test_bad_queries_are_422_with_the_position(client: TestClient, db: Database, acme: Org) -> None:
    h = acme.admin.headers
    cases = [
        ('state = "TX" AND', "position 16: expected a condition"),
        ("state =", "position 7: expected a value after '=', found end of query"),
        ("fields.nope > 3", "position 0: unknown custom field 'fields.nope'"),
    ]
    for query, detail in cases:
        for method, path, body in [
            ("POST", "/api/v1/segments/preview", {"query": query}),
            ("POST", "/api/v1/segments", {"name": "Bad", "query": query}),
        ]:
            r = client.request(method, path, json=body, headers=h)
            assert r.status_code == 422, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            assert r.json()["field"] == "query"
            assert r.json()["detail"].startswith(detail), r.json()["detail"]
    assert client.get("/api/v1/segments", headers=h).json() == []


def test_preview_counts_and_samples(client: TestClient, db: Database, acme: Org) -> None:
    ids = _people(db, acme)
    h = acme.agent.headers  # agents may look, not save
    r = client.post(
        "/api/v1/segments/preview", json={"query": "tag:vip AND fields.spend > 100"}, headers=h
    )
    assert r.status_code == 200, r.text
    assert r.json()["count"] == 1
    assert [c["first_name"] for c in r.json()["sample"]] == ["Ann"]

    everyone = client.post("/api/v1/segments/preview", json={"query": ""}, headers=h).json()
    assert everyone["count"] == 3 and [c["id"] for c in everyone["sample"]] == ids

    limited = client.post(
        "/api/v1/segments/preview", json={"query": "", "limit": 1}, headers=h
    ).json()
    assert limited["count"] == 3 and len(limited["sample"]) == 1

    forbidden = client.post("/api/v1/segments", json={"name": "Mine", "query": ""}, headers=h)
    assert forbidden.status_code == 403


def test_contacts_of_a_segment_in_pages(client: TestClient, db: Database, acme: Org) -> None:
    ids = _people(db, acme)
    h = acme.admin.headers
    seg = client.post(
        "/api/v1/segments", json={"name": "Texans", "query": 'state = "TX"'}, headers=h
    ).json()
    first = client.get(f"/api/v1/segments/{seg['id']}/contacts?limit=1", headers=h).json()
    assert [c["id"] for c in first["items"]] == [ids[0]] and first["next_after"] == ids[0]
    second = client.get(
        f"/api/v1/segments/{seg['id']}/contacts?limit=1&after={first['next_after']}", headers=h
    ).json()
    assert [c["id"] for c in second["items"]] == [ids[2]]
    last = client.get(
        f"/api/v1/segments/{seg['id']}/contacts?limit=1&after={ids[2]}", headers=h
    ).json()
    assert last == {"items": [], "next_after": None}


def test_input_errors_name_the_field(client: TestClient, acme: Org) -> None:
    h = acme.admin.headers
    r = client.post("/api/v1/segments", json={"name": "", "query": ""}, headers=h)
    assert r.status_code == 422 and r.json()["field"] == "name"
    r = client.post("/api/v1/segments", json={"name": "   ", "query": ""}, headers=h)
    assert r.status_code == 422 and r.json()["field"] == "name"
    r = client.post("/api/v1/segments/preview", json={"query": "x" * 5000}, headers=h)
    assert r.status_code == 422 and r.json()["field"] == "query"


# --- the UI -------------------------------------------------------------------------------------

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _login(client: TestClient, org: Org) -> str:
    token = _CSRF.search(client.get("/login").text)
    assert token
    client.post(
        "/login",
        data={"email": org.admin.user.email, "password": PASSWORD, "csrf_token": token.group(1)},
    )
    page = client.get("/segments")
    assert page.status_code == 200
    csrf = _CSRF.search(page.text)
    assert csrf
    return csrf.group(1)


def test_ui_live_preview_and_caret(client: TestClient, db: Database, acme: Org) -> None:
    _people(db, acme)
    _login(client, acme)
    ok = client.get("/segments/preview", params={"query": 'state = "TX"'})
    assert ok.status_code == 200
    assert 'data-testid="segment-count">2<' in ok.text and "Ann" in ok.text and "Bob" not in ok.text
    bad = client.get("/segments/preview", params={"query": "tag:vip AND\nzip ="})
    assert "position 17: expected a value after &#39;=&#39;, found end of query" in bad.text
    # The caret sits under column 5 of the second line ("zip =").
    assert '<pre class="seg-caret" data-testid="segment-caret">zip =\n     ^</pre>' in bad.text
    page = client.get("/segments")
    assert 'hx-get="/segments/preview"' in page.text and "keyup changed delay:300ms" in page.text


def test_ui_save_edit_delete(client: TestClient, db: Database, acme: Org) -> None:
    _people(db, acme)
    csrf = _login(client, acme)
    bad = client.post("/segments", data={"name": "VIPs", "query": "tag:", "csrf_token": csrf})
    assert bad.status_code == 422 and "position 4" in bad.text
    forged = client.post("/segments", data={"name": "VIPs", "query": "", "csrf_token": "x"})
    assert forged.status_code == 403
    r = client.post(
        "/segments",
        data={"name": "VIPs", "query": "tag:vip", "csrf_token": csrf},
        follow_redirects=False,
    )
    assert r.status_code == 303
    url = r.headers["location"].split("?")[0]
    edit = client.get(url)
    assert "VIPs" in edit.text and 'data-testid="segment-count">2<' in edit.text
    r = client.post(
        url, data={"name": "Texan VIPs", "query": 'tag:vip AND state = "TX"', "csrf_token": csrf}
    )
    assert r.status_code == 200 and "Texan VIPs" in r.text
    with db.read() as conn:
        assert [s.query for s in segments.list_segments(conn, acme.org.id)] == [
            'tag:vip AND state = "TX"'
        ]
    r = client.post(f"{url}/delete", data={"csrf_token": csrf}, follow_redirects=False)
    assert r.status_code == 303
    with db.read() as conn:
        assert segments.list_segments(conn, acme.org.id) == []
