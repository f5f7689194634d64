"""The campaigns API end to end with API keys: what an admin can do, what an agent can read,
and errors that name the field."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import Org
from textdesk.services import campaigns, channels, contacts
from textdesk.services.contacts import ContactInput
from textdesk.store.db import Database

SCRIPT = "Hi {first_name|there}, Acme here. Reply STOP to opt out."


def _setup(db: Database, acme: Org) -> None:
    admin = acme.admin.principal
    channels.create_channel(db, admin, name="Line", provider="simulator", phone="+12025550143")
    for i, tags in enumerate((["vip"], ["vip"], ["vip"], ["new"])):
        contacts.create_contact(
            db, admin, ContactInput(phone=f"+1212555{i:04d}", first_name=f"P{i}", tags=tags)
        )


def test_admin_runs_a_campaign_through_the_api(client: TestClient, db: Database, acme: Org) -> None:
    _setup(db, acme)
    h = acme.admin.headers
    created = client.post(
        "/api/v1/campaigns",
        json={"name": "Spring", "script": SCRIPT, "segment_query": "tag:vip", "batch_size": 5},
        headers=h,
    )
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    assert created.json()["status"] == "draft" and created.json()["batch_size"] == 5

    patched = client.patch(f"/api/v1/campaigns/{cid}", json={"purpose": "informational"}, headers=h)
    assert patched.status_code == 200 and patched.json()["purpose"] == "informational"
    assert patched.json()["script"] == SCRIPT  # untouched keys stay

    agents = client.put(
        f"/api/v1/campaigns/{cid}/agents", json={"user_ids": [acme.agent.user.id]}, headers=h
    )
    assert [a["user_id"] for a in agents.json()] == [acme.agent.user.id]

    question = client.post(
        f"/api/v1/campaigns/{cid}/questions",
        json={"prompt": "Coming?", "options": [{"label": "Yes", "tag": "yes"}, {"label": "No"}]},
        headers=h,
    )
    assert question.status_code == 201, question.text
    qid = question.json()["id"]
    assert client.patch(
        f"/api/v1/campaigns/{cid}/questions/{qid}", json={"prompt": "Will you come?"}, headers=h
    ).json()["prompt"] == ("Will you come?")

    canned = client.post(
        f"/api/v1/campaigns/{cid}/canned-responses",
        json={"title": "Hours", "body": "We open at 9."},
        headers=h,
    )
    assert canned.status_code == 201
    assert [
        c["title"]
        for c in client.get(f"/api/v1/campaigns/{cid}/canned-responses", headers=h).json()
    ] == ["Hours"]

    preview = client.post(f"/api/v1/campaigns/{cid}/preview", json={"limit": 2}, headers=h)
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert body["audience"] == 3 and len(body["samples"]) == 2
    assert body["samples"][0]["text"] == "Hi P0, Acme here. Reply STOP to opt out."
    assert body["samples"][0]["segment_count"] == 1

    started = client.post(f"/api/v1/campaigns/{cid}/start", headers=h)
    assert started.status_code == 200, started.text
    assert started.json()["status"] == "active" and started.json()["started_at"]
    progress = client.get(f"/api/v1/campaigns/{cid}/progress", headers=h).json()
    assert progress["totals"]["audience"] == 3 and progress["totals"]["pending"] == 3
    assert progress["questions"][0]["prompt"] == "Will you come?"

    again = client.post(f"/api/v1/campaigns/{cid}/start", headers=h)
    assert again.status_code == 409 and again.json()["field"] == "status"
    frozen = client.patch(f"/api/v1/campaigns/{cid}", json={"script": "New"}, headers=h)
    assert frozen.status_code == 409 and frozen.json()["field"] == "script"
    assert client.post(f"/api/v1/campaigns/{cid}/pause", headers=h).json()["status"] == "paused"
    assert client.post(f"/api/v1/campaigns/{cid}/resume", headers=h).json()["status"] == "active"
    assert client.delete(f"/api/v1/campaigns/{cid}", headers=h).status_code == 409
    assert client.post(f"/api/v1/campaigns/{cid}/archive", headers=h).json()["status"] == "archived"


def test_errors_name_the_field(client: TestClient, db: Database, acme: Org) -> None:
    h = acme.admin.headers
    bad_script = client.post(
        "/api/v1/campaigns", json={"name": "x", "script": "Hi {frist_name}"}, headers=h
    )
    assert bad_script.status_code == 422
    assert bad_script.json()["field"] == "script" and "frist_name" in bad_script.json()["detail"]
    bad_query = client.post(
        "/api/v1/campaigns", json={"name": "x", "segment_query": "tag:"}, headers=h
    )
    assert bad_query.status_code == 422 and bad_query.json()["field"] == "segment_query"
    cid = client.post("/api/v1/campaigns", json={"name": "x"}, headers=h).json()["id"]
    bad_option = client.post(
        f"/api/v1/campaigns/{cid}/questions",
        json={"prompt": "?", "options": [{"label": "a"}, {"label": "b", "tag": "bad tag"}]},
        headers=h,
    )
    assert bad_option.status_code == 422 and bad_option.json()["field"] == "options[1].tag"
    no_script = client.post(f"/api/v1/campaigns/{cid}/start", headers=h)
    assert no_script.status_code == 422 and no_script.json()["field"] == "script"
    assert client.delete(f"/api/v1/campaigns/{cid}", headers=h).status_code == 204
    assert client.get(f"/api/v1/campaigns/{cid}", headers=h).status_code == 404


def test_agent_key_cannot_manage(client: TestClient, db: Database, acme: Org) -> None:
    campaign = campaigns.create_campaign(db, acme.admin.principal, name="Spring", script="Hi")
    h = acme.agent.headers
    assert client.post("/api/v1/campaigns", json={"name": "x"}, headers=h).status_code == 403
    # An agent-role API key stands for no person, so it is assigned to no campaign.
    assert client.get("/api/v1/campaigns", headers=h).json() == []
    assert client.get(f"/api/v1/campaigns/{campaign.id}", headers=h).status_code == 404
    for action in ("start", "pause", "resume", "archive"):
        response = client.post(f"/api/v1/campaigns/{campaign.id}/{action}", headers=h)
        assert response.status_code == 403, response.text
    assert client.get(f"/api/v1/campaigns/{campaign.id}", headers=acme.admin.headers).json()[
        "status"
    ] == ("draft")
