"""The conversations and canned-responses API: what each persona may do, and errors that say
what was wrong and where."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.conftest import Org
from tests.delivery.helpers import channel
from textdesk.providers.base import InboundSms
from textdesk.services import messaging
from textdesk.settings import Settings
from textdesk.store.db import Database


def _inbound(db: Database, settings: Settings, ch: int, body: str, sender: str, n: int) -> int:
    sms = InboundSms(
        provider_message_id=f"API-{n}", sender=sender, recipient="+12015550100", body=body
    )
    received = messaging.receive_inbound(db, settings, ch, sms)
    assert received.message is not None and received.message.conversation_id is not None
    return received.message.conversation_id


def test_list_thread_reply_and_idempotency(
    client: TestClient, db: Database, settings: Settings, acme: Org
) -> None:
    ch = channel(db, acme.admin.principal)
    cids = [_inbound(db, settings, ch, f"m{n}", f"+120155509{n:02d}", n) for n in range(3)]
    h = acme.admin.headers
    first = client.get("/api/v1/conversations", params={"limit": 2}, headers=h).json()
    assert [c["id"] for c in first["items"]] == cids[:0:-1]
    assert first["unread"]["unassigned"] == 3
    rest = client.get(
        "/api/v1/conversations", params={"limit": 2, "cursor": first["next_cursor"]}, headers=h
    ).json()
    assert [c["id"] for c in rest["items"]] == [cids[0]] and rest["next_cursor"] is None
    bad = client.get("/api/v1/conversations", params={"cursor": "zzz"}, headers=h)
    assert bad.status_code == 422 and "cursor" in bad.text

    url = f"/api/v1/conversations/{cids[0]}/messages"
    made = client.post(url, json={"body": "Hello!"}, headers={**h, "Idempotency-Key": "a1"})
    again = client.post(url, json={"body": "Hello!"}, headers={**h, "Idempotency-Key": "a1"})
    assert (made.status_code, again.status_code) == (201, 200)
    assert made.json()["id"] == again.json()["id"]
    detail = client.get(f"/api/v1/conversations/{cids[0]}", headers=h).json()
    assert [m["body"] for m in detail["messages"]] == ["m0", "Hello!"]
    assert detail["messages"][1]["status"] in ("queued", "pending")
    empty = client.post(url, json={"body": "   "}, headers=h)
    assert empty.status_code == 422 and "body" in empty.text


def test_agent_key_and_assignment(
    client: TestClient, db: Database, settings: Settings, acme: Org
) -> None:
    ch = channel(db, acme.admin.principal)
    cid = _inbound(db, settings, ch, "hi", "+12015550950", 50)
    base = f"/api/v1/conversations/{cid}"
    # An agent-role API key stands for no person: it cannot take conversations.
    r = client.post(
        f"{base}/assign", json={"assignee_id": acme.agent.user.id}, headers=acme.agent.headers
    )
    assert r.status_code == 403
    r = client.post(
        f"{base}/assign", json={"assignee_id": acme.agent.user.id}, headers=acme.admin.headers
    )
    assert r.status_code == 200 and r.json()["assignee_name"] == acme.agent.user.name
    r = client.post(f"{base}/assign", json={"assignee_id": 999999}, headers=acme.admin.headers)
    assert r.status_code == 422 and "assignee_id" in r.text
    assert client.post(f"{base}/close", headers=acme.admin.headers).json()["status"] == "closed"
    assert client.post(f"{base}/reopen", headers=acme.admin.headers).json()["status"] == "open"
    assert client.post(f"{base}/read", headers=acme.admin.headers).json()["unread_count"] == 0
    note = client.post(f"{base}/notes", json={"body": "call back"}, headers=acme.admin.headers)
    assert note.status_code == 201 and note.json()["body"] == "call back"
    review = client.post(f"{base}/review", json={"action": "confirm"}, headers=acme.admin.headers)
    assert review.status_code == 409
    bad = client.post(f"{base}/review", json={"action": "maybe"}, headers=acme.admin.headers)
    assert bad.status_code == 422 and "action" in bad.text


def test_canned_responses_crud(client: TestClient, acme: Org) -> None:
    made = client.post(
        "/api/v1/canned-responses",
        json={"title": "Hours", "body": "Open 9-5"},
        headers=acme.admin.headers,
    )
    assert made.status_code == 201
    rid = made.json()["id"]
    denied = client.post(
        "/api/v1/canned-responses", json={"title": "x", "body": "y"}, headers=acme.agent.headers
    )
    assert denied.status_code == 403
    listed = client.get("/api/v1/canned-responses", params={"q": "hou"}, headers=acme.agent.headers)
    assert [c["title"] for c in listed.json()] == ["Hours"]
    bad = client.put(
        f"/api/v1/canned-responses/{rid}",
        json={"title": "Hours", "body": "Hi {first_name"},
        headers=acme.admin.headers,
    )
    assert bad.status_code == 422 and "body" in bad.text
    assert (
        client.delete(f"/api/v1/canned-responses/{rid}", headers=acme.admin.headers).status_code
        == 204
    )
    assert (
        client.get(f"/api/v1/canned-responses/{rid}", headers=acme.admin.headers).status_code == 404
    )
