"""Contacts API: list filters, PATCH, tags, typed custom fields; search and export endpoints."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Org
from textdesk.services import custom_fields, segments
from textdesk.store.db import Database

CONTACTS = [
    {"phone": "+12015550101", "first_name": "John", "last_name": "Smith", "tags": ["vip"]},
    {"phone": "(201) 555-0102", "first_name": "Joanna", "state": "tx", "tags": ["VIP", "donor"]},
    {"phone": "201.555.0103", "first_name": "Mary", "state": "TX"},
]


@pytest.fixture
def people(client: TestClient, db: Database, acme: Org) -> list[dict[str, Any]]:
    admin = acme.admin.principal
    custom_fields.create_field(db, admin, key="score", label="Score", type_="number")
    custom_fields.create_field(db, admin, key="joined", label="Joined", type_="date")
    made = []
    for body in CONTACTS:
        response = client.post("/api/v1/contacts", json=body, headers=acme.admin.headers)
        assert response.status_code == 201, response.text
        made.append(response.json())
    return made


def first_names(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [c["first_name"] for c in response.json()["items"]]


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return body


def test_list_filters(client: TestClient, acme: Org, people: list[dict[str, Any]]) -> None:
    h = acme.agent.headers
    get = lambda **params: client.get("/api/v1/contacts", params=params, headers=h)  # noqa: E731
    assert first_names(get()) == ["John", "Joanna", "Mary"]
    assert first_names(get(q="jo")) == ["John", "Joanna"]
    assert first_names(get(q="201-555-0103")) == ["Mary"]
    assert first_names(get(tag="VIP")) == ["John", "Joanna"]
    assert first_names(get(tag="donor", q="jo")) == ["Joanna"]
    assert first_names(get(query='state = "TX"')) == ["Joanna", "Mary"]
    assert first_names(get(query='state = "TX"', tag="vip")) == ["Joanna"]
    page = get(q="jo", limit=1).json()
    assert [c["first_name"] for c in page["items"]] == ["John"]
    rest = get(q="jo", limit=1, after=page["next_after"])
    assert first_names(rest) == ["Joanna"]


def test_list_by_saved_segment(
    client: TestClient, db: Database, acme: Org, globex: Org, people: list[dict[str, Any]]
) -> None:
    saved = segments.create_segment(db, acme.admin.principal, name="Texans", query='state = "TX"')
    response = client.get(
        "/api/v1/contacts", params={"segment_id": saved.id}, headers=acme.agent.headers
    )
    assert first_names(response) == ["Joanna", "Mary"]
    theirs = segments.create_segment(db, globex.admin.principal, name="All", query="")
    body = problem(
        client.get(
            "/api/v1/contacts", params={"segment_id": theirs.id}, headers=acme.agent.headers
        ),
        404,
    )
    assert body["field"] == "segment_id"


def test_bad_segment_query_names_the_position(
    client: TestClient, acme: Org, people: list[dict[str, Any]]
) -> None:
    body = problem(
        client.get("/api/v1/contacts", params={"query": "state = "}, headers=acme.agent.headers),
        422,
    )
    assert body["field"] == "query"
    assert "8" in body["detail"] or "position" in body["detail"] or "end" in body["detail"]


def test_patch_changes_only_what_is_sent(
    client: TestClient, acme: Org, people: list[dict[str, Any]]
) -> None:
    john = people[0]
    url = f"/api/v1/contacts/{john['id']}"
    response = client.patch(
        url,
        json={"email": "john@example.com", "fields": {"score": "12", "joined": "3/4/26"}},
        headers=acme.agent.headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["email"] == "john@example.com"
    assert body["first_name"] == "John" and body["last_name"] == "Smith"
    assert body["tags"] == ["vip"] and body["phone_e164"] == "+12015550101"
    assert body["fields"] == {"score": 12, "joined": "2026-03-04"}
    # fields merge key by key; null removes a key.
    body = client.patch(url, json={"fields": {"score": None}}, headers=acme.agent.headers).json()
    assert body["fields"] == {"joined": "2026-03-04"}
    body = client.patch(
        url, json={"phone": "201 555 0199", "email": None}, headers=acme.agent.headers
    ).json()
    assert body["phone_e164"] == "+12015550199" and body["email"] is None
    assert body["fields"] == {"joined": "2026-03-04"}


@pytest.mark.parametrize(
    ("patch", "status", "field"),
    [
        ({"fields": {"score": "lots"}}, 422, "fields.score"),
        ({"fields": {"joined": "31/31/2026"}}, 422, "fields.joined"),
        ({"fields": {"nope": 1}}, 422, "fields.nope"),
        ({"phone": "12"}, 422, "phone"),
        ({"phone": "+12015550102"}, 409, "phone"),
        ({"state": "Texas"}, 422, "state"),
        ({"time_zone": "Mars/Olympus"}, 422, "time_zone"),
        ({"first_name": None}, 422, "first_name"),
        ({"tags": ["x" * 65]}, 422, "tags[0]"),
        ({"nickname": "Jo"}, 422, "nickname"),
        ({"first_name": "x" * 201}, 422, "first_name"),
    ],
)
def test_patch_errors_name_the_field(
    client: TestClient,
    acme: Org,
    people: list[dict[str, Any]],
    patch: dict[str, Any],
    status: int,
    field: str,
) -> None:
    url = f"/api/v1/contacts/{people[0]['id']}"
    body = problem(client.patch(url, json=patch, headers=acme.agent.headers), status)
    assert body["field"] == field, body
    assert client.get(url, headers=acme.agent.headers).json() == people[0]


def test_create_and_replace_validate_custom_fields(
    client: TestClient, acme: Org, people: list[dict[str, Any]]
) -> None:
    body = problem(
        client.post(
            "/api/v1/contacts",
            json={"phone": "+12015550150", "fields": {"score": "high"}},
            headers=acme.agent.headers,
        ),
        422,
    )
    assert body["field"] == "fields.score"
    made = client.post(
        "/api/v1/contacts",
        json={"phone": "+12015550150", "fields": {"score": "1,200", "joined": ""}},
        headers=acme.agent.headers,
    ).json()
    assert made["fields"] == {"score": 1200}
    body = problem(
        client.put(
            f"/api/v1/contacts/{made['id']}",
            json={"phone": "+12015550150", "fields": {"undefined": "x"}},
            headers=acme.agent.headers,
        ),
        422,
    )
    assert body["field"] == "fields.undefined"


def test_tag_and_untag(client: TestClient, acme: Org, people: list[dict[str, Any]]) -> None:
    mary = people[2]
    url = f"/api/v1/contacts/{mary['id']}/tags"
    response = client.post(
        url, json={"tags": [" Donor ", "vip", "VIP"]}, headers=acme.agent.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["tags"] == ["donor", "vip"]
    again = client.post(url, json={"tags": ["vip"]}, headers=acme.agent.headers).json()
    assert again["tags"] == ["donor", "vip"]
    removed = client.delete(f"{url}/VIP", headers=acme.agent.headers)
    assert removed.status_code == 200 and removed.json()["tags"] == ["donor"]
    absent = client.delete(f"{url}/never", headers=acme.agent.headers)
    assert absent.status_code == 200 and absent.json()["tags"] == ["donor"]
    assert first_names(
        client.get("/api/v1/contacts", params={"tag": "donor"}, headers=acme.agent.headers)
    ) == ["Joanna", "Mary"]
    assert (
        problem(client.post(url, json={"tags": []}, headers=acme.agent.headers), 422)["field"]
        == "tags"
    )
    assert (
        problem(client.post(url, json={"tags": ["  "]}, headers=acme.agent.headers), 422)["field"]
        == "tags"
    )
    assert (
        problem(client.post(url, json={"tags": ["ok", "y" * 65]}, headers=acme.agent.headers), 422)[
            "field"
        ]
        == "tags[1]"
    )
    problem(
        client.post(
            "/api/v1/contacts/999999/tags", json={"tags": ["x"]}, headers=acme.agent.headers
        ),
        404,
    )


def test_search_endpoints(client: TestClient, acme: Org, people: list[dict[str, Any]]) -> None:
    h = acme.agent.headers
    hits = client.get("/api/v1/search/contacts", params={"q": "smi"}, headers=h)
    assert first_names(hits) == ["John"]
    hits = client.get("/api/v1/search/contacts", params={"q": '"O\'Brien" AND ('}, headers=h)
    assert first_names(hits) == []
    messages = client.get("/api/v1/search/messages", params={"q": "hello"}, headers=h)
    assert messages.status_code == 200 and messages.json() == {"items": []}
    body = problem(client.get("/api/v1/search/contacts", headers=h), 422)
    assert body["field"] == "q"


def _csv(response: Any) -> list[dict[str, str]]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text)))


def test_exports(client: TestClient, db: Database, acme: Org, people: list[dict[str, Any]]) -> None:
    h = acme.admin.headers
    response = client.get("/api/v1/exports/contacts.csv", headers=h)
    assert response.headers["content-disposition"].startswith('attachment; filename="contacts-')
    rows = _csv(response)
    assert [r["first_name"] for r in rows] == ["John", "Joanna", "Mary"]
    assert rows[1]["tags"] == "donor;vip"
    assert "fields.score" in rows[0]
    rows = _csv(
        client.get("/api/v1/exports/contacts.csv", params={"query": "tag:donor"}, headers=h)
    )
    assert [r["first_name"] for r in rows] == ["Joanna"]
    saved = segments.create_segment(db, acme.admin.principal, name="Texans", query='state = "TX"')
    rows = _csv(
        client.get("/api/v1/exports/contacts.csv", params={"segment_id": saved.id}, headers=h)
    )
    assert [r["first_name"] for r in rows] == ["Joanna", "Mary"]
    assert (
        problem(
            client.get("/api/v1/exports/contacts.csv", params={"query": "tag:"}, headers=h), 422
        )["field"]
        == "query"
    )
    rows = _csv(
        client.get(
            "/api/v1/exports/messages.csv",
            params={"since": "2026-01-01T00:00:00Z", "until": "2099-01-01"},
            headers=h,
        )
    )
    assert rows == []
    assert (
        problem(
            client.get("/api/v1/exports/messages.csv", params={"since": "yesterday"}, headers=h),
            422,
        )["field"]
        == "since"
    )
    log = client.get("/api/v1/audit-log", headers=h).json()
    actions = [e["action"] for e in (log["items"] if isinstance(log, dict) else log)]
    assert actions.count("export.contacts") == 3 and actions.count("export.messages") == 1


def test_exports_are_admin_only(client: TestClient, acme: Org) -> None:
    for path in ("/api/v1/exports/contacts.csv", "/api/v1/exports/messages.csv"):
        problem(client.get(path, headers=acme.agent.headers), 403)
