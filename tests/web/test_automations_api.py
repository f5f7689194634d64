"""The events and automations API over HTTP: shapes, status codes, problem documents that
name the field, roles and tenancy; the contact page and the inbox show what automations did."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import Org
from tests.delivery.helpers import channel
from tests.web.test_ui import login
from textdesk.services.automations import timers
from textdesk.settings import Settings
from textdesk.store.db import Database

REMINDER = {
    "name": "Appointment reminder",
    "trigger": {"type": "event", "event_types": ["appointment.booked", "appointment.rescheduled"]},
    "conditions": {"segment": "NOT opted_out"},
    "steps": [
        {"type": "wait", "at": "09:00", "days": -1},
        {
            "type": "send",
            "template": "See you {event.date} at {event.time}.",
            "purpose": "transactional",
        },
    ],
}
EVENT = {
    "type": "appointment.booked",
    "phone": "+12015550111",
    "key": "A-1",
    "occurs_at": "2026-05-06T15:00:00-04:00",
    "data": {"doctor": "Dr. Lee"},
}
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return body


def test_post_one_event_then_its_retry(client: TestClient, acme: Org) -> None:
    h = acme.admin.headers
    made = client.post("/api/v1/automations", json=REMINDER, headers=h)
    assert made.status_code == 201, made.text
    assert made.json()["version"] == 1 and made.json()["status"] == "active"
    first = client.post("/api/v1/events", json=EVENT, headers={**h, "Idempotency-Key": "k-1"})
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["duplicate"] is False and len(body["run_ids"]) == 1
    assert body["occurs_at"].startswith("2026-05-06T19:00:00")
    again = client.post("/api/v1/events", json=EVENT, headers={**h, "Idempotency-Key": "k-1"})
    assert again.status_code == 200
    assert again.json()["id"] == body["id"] and again.json()["duplicate"] is True
    assert again.json()["run_ids"] == body["run_ids"]
    listed = client.get(
        "/api/v1/events", params={"contact_id": body["contact_id"]}, headers=acme.agent.headers
    )
    assert [e["id"] for e in listed.json()["items"]] == [body["id"]]
    run = client.get(f"/api/v1/runs/{body['run_ids'][0]}", headers=acme.agent.headers).json()
    assert run["state"] == "waiting" and run["history"][0]["kind"] == "started"
    runs = client.get(f"/api/v1/automations/{made.json()['id']}/runs", headers=h).json()
    assert [r["id"] for r in runs["items"]] == body["run_ids"]


def test_a_batch_is_all_or_nothing_and_names_the_bad_item(client: TestClient, acme: Org) -> None:
    h = acme.admin.headers
    good = [{**EVENT, "key": f"A-{i}", "phone": f"+1201555011{i}"} for i in range(4)]
    naive = [*good[:3], {**good[3], "occurs_at": "2026-05-06T15:00:00"}]
    refused = problem(client.post("/api/v1/events", json={"events": naive}, headers=h), 422)
    assert refused["field"] == "events[3].occurs_at"
    assert refused["detail"].startswith("events[3].occurs_at: ")
    assert "timezone" in refused["detail"]
    bad_type = [*good[:1], {**good[1], "type": "Booked!"}]
    refused = problem(client.post("/api/v1/events", json={"events": bad_type}, headers=h), 422)
    assert refused["field"] == "events[1].type" and "namespace.name" in refused["detail"]
    one = problem(client.post("/api/v1/events", json={**EVENT, "occurs_at": "x"}, headers=h), 422)
    assert one["field"] == "occurs_at"
    missing = problem(
        client.post("/api/v1/events", json={"events": [{**EVENT, "phone": None}]}, headers=h), 422
    )
    assert missing["field"] == "events[0].contact_id"
    assert client.get("/api/v1/events", headers=h).json()["items"] == []
    made = client.post("/api/v1/events", json={"events": good}, headers=h)
    assert made.status_code == 201
    assert [e["key"] for e in made.json()["events"]] == ["A-0", "A-1", "A-2", "A-3"]


def test_bad_input_is_a_4xx_never_a_5xx(client: TestClient, acme: Org) -> None:
    h = acme.admin.headers
    for body in (
        [],
        "x",
        {"events": []},
        {"events": [EVENT] * 1001},
        {**EVENT, "contact_id": 2**64},
        {**EVENT, "key": "a\x00b"},
        {**EVENT, "data": {"deep": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": 1}}}}}}}}}},
        {**EVENT, "data": {"n": 10**30}},
        {**EVENT, "data": "not an object"},
        {**EVENT, "occurs_at": "9999-12-31T23:59:59-12:00"},
        {**EVENT, "surprise": 1},
    ):
        response = client.post("/api/v1/events", json=body, headers=h)
        assert response.status_code == 422, (body if len(str(body)) < 200 else "", response.text)
    for path in ("/api/v1/runs/0", f"/api/v1/runs/{2**63}", f"/api/v1/automations/{2**64}"):
        assert client.get(path, headers=h).status_code == 422
    assert problem(client.get("/api/v1/runs/99", headers=h), 404)["title"] == "Not found"
    huge = client.get("/api/v1/events", params={"contact_id": 2**63}, headers=h)
    assert huge.status_code == 422
    broken = {**REMINDER, "steps": [{"type": "send", "template": "Hi {frist_name}"}]}
    refused = problem(client.post("/api/v1/automations", json=broken, headers=h), 422)
    assert refused["field"] == "steps[0].template" and "first_name" in refused["detail"]
    marketing = {
        **REMINDER,
        "steps": [{"type": "send", "template": "Sale!", "purpose": "marketing"}],
    }
    refused = problem(client.post("/api/v1/automations", json=marketing, headers=h), 422)
    assert refused["field"] == "steps[0].send" and "queue_for_person" in refused["detail"]
    both = {**REMINDER, "steps": [{"type": "wait", "duration": "1h", "before": "2h"}]}
    assert problem(client.post("/api/v1/automations", json=both, headers=h), 422)["field"] == (
        "steps[0].wait"
    )
    segment = {**REMINDER, "conditions": {"segment": "tag:"}}
    refused = problem(client.post("/api/v1/automations", json=segment, headers=h), 422)
    assert refused["field"] == "conditions.segment"
    nul = {**REMINDER, "name": "a\x00"}
    assert client.post("/api/v1/automations", json=nul, headers=h).status_code == 422


def test_roles_and_tenancy(client: TestClient, acme: Org, globex: Org) -> None:
    assert problem(
        client.post("/api/v1/automations", json=REMINDER, headers=acme.agent.headers), 403
    )
    assert problem(client.post("/api/v1/events", json=EVENT, headers=acme.agent.headers), 403)
    assert problem(client.post("/api/v1/events", json=EVENT), 401)
    made = client.post("/api/v1/automations", json=REMINDER, headers=acme.admin.headers).json()
    event = client.post("/api/v1/events", json=EVENT, headers=acme.admin.headers).json()
    other = globex.admin.headers
    assert problem(client.get(f"/api/v1/automations/{made['id']}", headers=other), 404)
    assert problem(client.get(f"/api/v1/events/{event['id']}", headers=other), 404)
    assert problem(client.get(f"/api/v1/runs/{event['run_ids'][0]}", headers=other), 404)
    assert client.get("/api/v1/automations", headers=other).json() == []
    assert client.get("/api/v1/runs", headers=other).json()["items"] == []
    # Another organization's events with the same id are their own.
    theirs = client.post("/api/v1/events", json={**EVENT, "id": "e-1"}, headers=other)
    mine = client.post("/api/v1/events", json={**EVENT, "id": "e-1"}, headers=acme.admin.headers)
    assert theirs.status_code == mine.status_code == 201


def test_edit_pause_archive(client: TestClient, acme: Org) -> None:
    h = acme.admin.headers
    made = client.post("/api/v1/automations", json=REMINDER, headers=h).json()
    url = f"/api/v1/automations/{made['id']}"
    event = client.post("/api/v1/events", json=EVENT, headers=h).json()
    edited = client.put(url, json={**REMINDER, "name": "Reminder v2"}, headers=h)
    assert edited.status_code == 200 and edited.json()["version"] == 2
    assert edited.json()["name"] == "Reminder v2"
    run = client.get(f"/api/v1/runs/{event['run_ids'][0]}", headers=h).json()
    assert run["state"] == "waiting" and run["version"] == 1
    paused = client.patch(url, json={"status": "paused"}, headers=h)
    assert paused.json()["status"] == "paused"
    more = client.post("/api/v1/events", json={**EVENT, "key": "A-2"}, headers=h).json()
    assert more["run_ids"] == []
    assert client.delete(url, headers=h).status_code == 204
    run = client.get(f"/api/v1/runs/{event['run_ids'][0]}", headers=h).json()
    assert run["state"] == "cancelled" and run["reason"] == "automation_archived"
    assert problem(client.put(url, json=REMINDER, headers=h), 409)["field"] == "status"
    assert client.get("/api/v1/automations", headers=h).json() == []
    listed = client.get("/api/v1/automations", params={"include_archived": True}, headers=h)
    assert [a["status"] for a in listed.json()] == ["archived"]
    assert client.get(url, headers=h).json()["runs"] == {"cancelled": 1}


def test_the_contact_page_shows_events_and_runs_and_the_run_page_its_history(
    client: TestClient, db: Database, acme: Org
) -> None:
    h = acme.admin.headers
    client.post("/api/v1/automations", json=REMINDER, headers=h)
    event = client.post("/api/v1/events", json=EVENT, headers=h).json()
    login(client, acme.agent.user.email)
    page = client.get(f"/contacts/{event['contact_id']}")
    assert page.status_code == 200
    assert 'data-testid="customer-events"' in page.text
    assert "appointment.booked" in page.text and "Dr. Lee" in page.text
    run_id = event["run_ids"][0]
    assert f'href="/automations/runs/{run_id}"' in page.text
    assert "Appointment reminder" in page.text and "waiting" in page.text
    run = client.get(f"/automations/runs/{run_id}")
    assert run.status_code == 200 and "started by event" in run.text
    assert "Appointment reminder" in client.get("/automations").text


def test_a_draft_is_in_the_thread_and_sent_with_one_action(
    client: TestClient, db: Database, settings: Settings, acme: Org
) -> None:
    h = acme.admin.headers
    channel(db, acme.admin.principal)
    offer = {
        "name": "Win-back",
        "trigger": {"event_types": ["order.delivered"]},
        "steps": [{"type": "queue_for_person", "template": "Hi {first_name|there}, 10% off?"}],
    }
    assert client.post("/api/v1/automations", json=offer, headers=h).status_code == 201
    event = client.post(
        "/api/v1/events", json={"type": "order.delivered", "phone": "+12015550111"}, headers=h
    ).json()
    timers.run_due(db, settings)
    run = client.get(f"/api/v1/runs/{event['run_ids'][0]}", headers=h).json()
    draft_id = run["history"][1]["draft_id"]
    conversation_id = client.get("/api/v1/conversations", params={"view": "all"}, headers=h).json()[
        "items"
    ][0]["id"]
    drafts = client.get(f"/api/v1/conversations/{conversation_id}/drafts", headers=h).json()
    assert [d["id"] for d in drafts] == [draft_id]
    login(client, acme.agent.user.email)
    thread = client.get(f"/inbox/c/{conversation_id}")
    assert 'data-testid="drafts"' in thread.text and "Hi there, 10% off?" in thread.text
    token = _CSRF.search(client.get("/home").text)
    assert token
    sent = client.post(
        f"/inbox/c/{conversation_id}/drafts/{draft_id}/send",
        headers={"X-CSRF-Token": token.group(1)},
    )
    assert sent.status_code == 200 and 'data-testid="drafts"' not in sent.text
    assert "Hi there, 10% off?" in sent.text  # now a message of the thread
    again = client.post(f"/api/v1/drafts/{draft_id}/send", headers=h)
    assert again.status_code == 200 and again.json()["purpose"] == "marketing"
    assert problem(client.post(f"/api/v1/drafts/{draft_id}/discard", json={}, headers=h), 409)


def test_keyword_and_no_reply_triggers_refuse_bad_input_with_the_field(
    client: TestClient, acme: Org
) -> None:
    h = acme.admin.headers

    def automation(trigger: Any) -> dict[str, Any]:
        return {"name": "Trigger", "trigger": trigger, "steps": [{"type": "stop"}]}

    for trigger, field in (
        ({"type": "keyword", "keywords": ["STOP"]}, "trigger.keyword.keywords[0]"),
        ({"type": "keyword", "keywords": ["HOURS", "s.t.o.p"]}, "trigger.keyword.keywords[1]"),
        ({"type": "keyword", "keywords": ["Help"]}, "trigger.keyword.keywords[0]"),
        ({"type": "keyword", "keywords": ["a\x00b"]}, "trigger.keyword.keywords[0]"),
        ({"type": "keyword", "keywords": ["!!!"]}, "trigger.keyword.keywords[0]"),
        ({"type": "keyword", "keywords": ["X" * 41]}, "trigger.keyword.keywords[0]"),
        ({"type": "keyword", "keywords": []}, "trigger.keyword.keywords"),
        ({"type": "keyword", "keywords": ["MENU", "menu!"]}, "trigger.keyword"),
        ({"type": "no_reply", "within": "2d"}, "trigger.no_reply"),
        ({"type": "no_reply", "within": "0m", "campaign_id": 1}, "trigger.no_reply"),
        (
            {"type": "no_reply", "within": "2d", "campaign_id": 2**64},
            "trigger.no_reply.campaign_id",
        ),
        (
            {"type": "no_reply", "within": "2d", "automation_id": 0},
            "trigger.no_reply.automation_id",
        ),
        ({"type": "no_reply", "within": "2d", "campaign_id": 2**63 - 1}, "trigger.campaign_id"),
        ({"type": "no_reply", "within": "9999d", "campaign_id": 1}, "trigger.no_reply.within"),
        ({"type": "surprise"}, "trigger"),
        ({"type": 7}, "trigger"),
        ({"type": None}, "trigger"),
        ("keyword", "trigger"),
        ({"type": "keyword", "keywords": "HOURS"}, "trigger.keyword.keywords"),
        ({"type": "keyword", "keywords": [123]}, "trigger.keyword.keywords[0]"),
        ({"type": "keyword", "keywords": ["ǅ" * 200]}, "trigger.keyword.keywords[0]"),
        ({"type": "no_reply", "within": 123, "campaign_id": 1}, "trigger.no_reply.within"),
        ({"type": "no_reply", "within": "2d", "campaign_id": "1x"}, "trigger.no_reply.campaign_id"),
    ):
        refused = problem(
            client.post("/api/v1/automations", json=automation(trigger), headers=h), 422
        )
        assert refused["field"] == field, (trigger if len(str(trigger)) < 100 else "", refused)
    made = client.post(
        "/api/v1/automations",
        json=automation({"type": "keyword", "keywords": [" hours? "]}),
        headers=h,
    )
    assert made.status_code == 201 and made.json()["trigger"]["keywords"] == ["HOURS"]
    taken = problem(
        client.post(
            "/api/v1/automations",
            json=automation({"type": "keyword", "keywords": ["JOIN", "HOURS"]}),
            headers=h,
        ),
        409,
    )
    assert taken["field"] == "trigger.keywords[1]" and str(made.json()["id"]) in taken["detail"]
    login(client, acme.agent.user.email)
    page = client.get("/automations")
    assert page.status_code == 200 and "keyword <code>HOURS</code>" in page.text
