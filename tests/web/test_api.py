"""The REST API: authentication, roles, problem+json errors, and each resource's behaviour."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Org
from tests.web.test_ui import login
from textdesk.store.db import Database
from textdesk.web.deps import SESSION_COOKIE


def test_healthz_checks_the_database(client: TestClient, db: Database) -> None:
    body = client.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["database"] == db.dialect


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer td_nope"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer "},
    ],
)
def test_api_needs_a_valid_key(client: TestClient, headers: dict[str, str]) -> None:
    response = client.get("/api/v1/me", headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"]


def test_api_ignores_the_ui_session_cookie(client: TestClient, acme: Org) -> None:
    """A real, working UI session: the UI takes its cookie, the API does not (so no page a
    logged-in user visits can call the API with it)."""
    login(client, acme.owner.user.email)
    cookie = client.cookies.get(SESSION_COOKIE)
    assert cookie, "the login set a session cookie"
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, cookie)  # that cookie and nothing else
    home = client.get("/home", follow_redirects=False)
    assert home.status_code == 200 and "Acme owner" in home.text, "the UI accepts the cookie"
    me = client.get("/api/v1/me")
    assert me.status_code == 401, me.text
    assert me.headers["content-type"] == "application/problem+json"


def test_revoked_key_stops_working(client: TestClient, acme: Org, db: Database) -> None:
    made = client.post(
        "/api/v1/api-keys", json={"name": "temp", "role": "agent"}, headers=acme.admin.headers
    )
    assert made.status_code == 201
    key = made.json()["key"]
    assert key.startswith("td_") and made.json()["prefix"] == key[:10]
    assert (
        client.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"}).json()["role"]
        == "agent"
    )
    listed = client.get("/api/v1/api-keys", headers=acme.admin.headers).json()
    assert all("key" not in k for k in listed), "a stored key is never shown again"
    client.delete(f"/api/v1/api-keys/{made.json()['id']}", headers=acme.admin.headers)
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"}).status_code == 401


def test_agent_key_cannot_administer(client: TestClient, acme: Org) -> None:
    h = acme.agent.headers
    assert client.get("/api/v1/users", headers=h).status_code == 403
    assert client.post("/api/v1/api-keys", json={"name": "x"}, headers=h).status_code == 403
    assert client.get("/api/v1/audit-log", headers=h).status_code == 403
    r = client.post(
        "/api/v1/channels", json={"provider": "simulator", "phone": "+12015550100"}, headers=h
    )
    assert r.status_code == 403
    assert "admin" in r.json()["detail"]


def test_admin_cannot_create_owner(client: TestClient, acme: Org) -> None:
    r = client.post(
        "/api/v1/users",
        headers=acme.admin.headers,
        json={
            "email": "boss@x.test",
            "name": "Boss",
            "role": "owner",
            "password": "long-enough-pw",
        },
    )
    assert r.status_code == 403


def test_validation_errors_name_the_field(client: TestClient, acme: Org) -> None:
    r = client.post("/api/v1/contacts", headers=acme.admin.headers, json={"first_name": "A"})
    assert r.status_code == 422
    problem = r.json()
    assert problem["field"] == "phone"
    assert problem["errors"][0]["field"] == "phone"
    r = client.post(
        "/api/v1/contacts",
        headers=acme.admin.headers,
        json={"phone": "+1 201 555 01", "first_name": "A"},
    )
    assert r.status_code == 422 and r.json()["field"] == "phone"
    assert "too short" in r.json()["detail"]
    r = client.post(
        "/api/v1/contacts",
        headers=acme.admin.headers,
        json={"phone": "+12015550123", "tags": "vip"},
    )
    assert r.json()["field"] == "tags"
    r = client.post(
        "/api/v1/contacts",
        headers=acme.admin.headers,
        content=b"{not json",
    )
    assert r.status_code == 422


def test_contact_crud_and_pagination(client: TestClient, acme: Org) -> None:
    h = acme.admin.headers
    ids = []
    for i in range(5):
        r = client.post(
            "/api/v1/contacts",
            headers=h,
            json={
                "phone": f"(201) 555-01{i:02d}",
                "first_name": f"P{i}",
                "tags": ["VIP ", "vip", "new"],
                "state": "tx",
            },
        )
        assert r.status_code == 201, r.text
        assert r.json()["phone_e164"] == f"+120155501{i:02d}"
        assert r.json()["tags"] == ["new", "vip"]
        assert r.json()["state"] == "TX"
        ids.append(r.json()["id"])
    dup = client.post("/api/v1/contacts", headers=h, json={"phone": "+12015550100"})
    assert dup.status_code == 409 and dup.json()["field"] == "phone"
    page1 = client.get("/api/v1/contacts?limit=2", headers=h).json()
    page2 = client.get(f"/api/v1/contacts?limit=2&after={page1['next_after']}", headers=h).json()
    page3 = client.get(f"/api/v1/contacts?limit=2&after={page2['next_after']}", headers=h).json()
    got = [c["id"] for p in (page1, page2, page3) for c in p["items"]]
    assert got == ids and page3["next_after"] is None
    r = client.put(
        f"/api/v1/contacts/{ids[0]}",
        headers=h,
        json={"phone": "+12015550100", "first_name": "Renamed", "time_zone": "Mars/Base"},
    )
    assert r.status_code == 422 and r.json()["field"] == "time_zone"
    r = client.put(
        f"/api/v1/contacts/{ids[0]}",
        headers=h,
        json={"phone": "+12015550101", "first_name": "Renamed"},
    )
    assert r.status_code == 409
    r = client.put(
        f"/api/v1/contacts/{ids[0]}",
        headers=h,
        json={"phone": "+12015550100", "first_name": "Renamed"},
    )
    assert r.json()["first_name"] == "Renamed"
    assert (
        client.delete(f"/api/v1/contacts/{ids[0]}", headers=acme.agent.headers).status_code == 403
    )
    assert client.delete(f"/api/v1/contacts/{ids[0]}", headers=h).status_code == 204
    assert client.get(f"/api/v1/contacts/{ids[0]}", headers=h).status_code == 404


TWILIO = {"account_sid": "AC" + "0" * 32, "auth_token": "s3cret-token"}


def test_channels_never_return_credentials(client: TestClient, acme: Org) -> None:
    h = acme.admin.headers
    partial = client.post(
        "/api/v1/channels",
        headers=h,
        json={
            "provider": "twilio",
            "phone": "+12015550100",
            "config": {"auth_token": "s3cret-token"},
        },
    )
    assert partial.status_code == 422 and partial.json()["field"] == "config"
    assert "account_sid" in partial.json()["detail"] and "s3cret" not in partial.text
    r = client.post(
        "/api/v1/channels",
        headers=h,
        json={
            "provider": "twilio",
            "phone": "+1 (201) 555-0100",
            "config": TWILIO,
            "number_type": "toll_free",
        },
    )
    assert r.status_code == 201, r.text
    assert "s3cret" not in r.text
    assert r.json()["rate_per_second"] == 3.0 and r.json()["paused_until"] is None
    listed = client.get("/api/v1/channels", headers=acme.agent.headers)
    assert "s3cret" not in listed.text and len(listed.json()) == 1
    bad = client.post(
        "/api/v1/channels", headers=h, json={"provider": "carrier-pigeon", "phone": "+12015550100"}
    )
    assert bad.status_code == 422 and bad.json()["field"] == "provider"
    short = client.post(
        "/api/v1/channels",
        headers=h,
        json={
            "provider": "twilio",
            "phone": "12345",
            "number_type": "short_code",
            "config": TWILIO,
        },
    )
    assert short.status_code == 201 and short.json()["phone_e164"] == "12345"


def test_campaign_script_is_checked(client: TestClient, acme: Org) -> None:
    h = acme.admin.headers
    r = client.post("/api/v1/campaigns", headers=h, json={"name": "x", "script": "Hi {frist_name}"})
    assert r.status_code == 422 and r.json()["field"] == "script"
    assert "first_name" in r.json()["detail"]
    r = client.post("/api/v1/campaigns", headers=h, json={"name": "x", "script": "Hi {first_name"})
    assert r.status_code == 422 and "position" in r.json()["detail"]
    script = {"name": "Spring", "script": "Hi {first_name|there}, {fields.tier}!"}
    r = client.post("/api/v1/campaigns", headers=h, json=script)
    assert r.status_code == 422 and "fields.tier" in r.json()["detail"], "undefined custom field"
    client.post("/api/v1/custom-fields", headers=h, json={"key": "tier", "type": "text"})
    r = client.post("/api/v1/campaigns", headers=h, json=script)
    assert r.status_code == 201 and r.json()["status"] == "draft"


def test_template_preview_for_a_contact(client: TestClient, acme: Org) -> None:
    h = acme.admin.headers
    contact = client.post(
        "/api/v1/contacts", headers=h, json={"phone": "+12015550100", "first_name": "Zoë"}
    ).json()
    r = client.post(
        "/api/v1/templates/preview",
        headers=h,
        json={"template": "Hi {first_name|there} {last_name|}", "contact_id": contact["id"]},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"].startswith("Hi Zoë")
    assert body["encoding"] == "UCS-2" and body["non_gsm_chars"] == ["ë"]
    r = client.post("/api/v1/templates/preview", headers=h, json={"template": "Hi {first_name}"})
    assert r.json()["missing_fields"] == ["first_name"]
    assert r.json()["encoding"] == "GSM-7"


def test_audit_log_records_security_actions(client: TestClient, acme: Org) -> None:
    client.post("/api/v1/api-keys", json={"name": "audited"}, headers=acme.admin.headers)
    actions = [
        e["action"] for e in client.get("/api/v1/audit-log", headers=acme.admin.headers).json()
    ]
    assert "api_key.create" in actions and "user.create" in actions and "org.create" in actions


def test_openapi_is_served(client: TestClient) -> None:
    spec = client.get("/api/openapi.json").json()
    assert "/api/v1/contacts" in spec["paths"]
    assert client.get("/api/docs").status_code == 200


def test_consent_api(client: TestClient, acme: Org) -> None:
    h = acme.admin.headers
    contact = client.post("/api/v1/contacts", headers=h, json={"phone": "+12015550100"}).json()
    cid = contact["id"]
    r = client.post(
        f"/api/v1/contacts/{cid}/opt-out",
        headers=acme.agent.headers,
        json={"note": "asked on the phone"},
    )
    assert r.status_code == 204
    assert client.get(f"/api/v1/contacts/{cid}", headers=h).json()["opted_out"]
    # Undoing needs an admin and a reason.
    r = client.post(
        f"/api/v1/contacts/{cid}/opt-in",
        headers=acme.agent.headers,
        json={"reason": "signed the paper form"},
    )
    assert r.status_code == 403
    r = client.post(f"/api/v1/contacts/{cid}/opt-in", headers=h, json={"reason": "ok"})
    assert r.status_code == 422 and r.json()["field"] == "reason"
    r = client.post(
        f"/api/v1/contacts/{cid}/opt-in",
        headers=h,
        json={"reason": "signed the paper form on 2026-11-27"},
    )
    assert r.status_code == 204
    history = client.get(f"/api/v1/contacts/{cid}/consent", headers=h).json()
    assert [(e["kind"], e["source"]) for e in history] == [
        ("opt_out", "agent"),
        ("re_opt_in", "agent"),
    ]
    assert history[0]["evidence"] == {"note": "asked on the phone"}
    csv_text = client.get("/api/v1/consent-events.csv", headers=h)
    assert csv_text.headers["content-type"].startswith("text/csv")
    lines = csv_text.text.strip().splitlines()
    assert lines[0].startswith("id,created_at,phone_e164") and len(lines) == 3
    assert "signed the paper form" in lines[2]
    assert client.get("/api/v1/consent-events.csv", headers=acme.agent.headers).status_code == 403
    audit = [e["action"] for e in client.get("/api/v1/audit-log", headers=h).json()]
    assert "consent.admin_opt_in" in audit and "consent.opt_out" in audit
    assert "export.consent" in audit


def test_why_not_sent_is_in_the_api(client: TestClient, acme: Org, db: Database) -> None:
    h = acme.admin.headers
    client.post(
        "/api/v1/channels", headers=h, json={"provider": "simulator", "phone": "+12015550199"}
    )
    cid = client.post("/api/v1/contacts", headers=h, json={"phone": "+12015550100"}).json()["id"]
    client.post(f"/api/v1/contacts/{cid}/opt-out", headers=h, json={})
    r = client.post("/api/v1/messages", headers=h, json={"contact_id": cid, "body": "Hi"})
    assert r.status_code == 201
    body = r.json()
    assert body["status"] == "blocked" and body["gate_code"] == "opted_out"
    assert "opted out" in body["gate_detail"]
    r = client.post(
        "/api/v1/messages",
        headers=h,
        json={"contact_id": cid, "body": "Hi", "purpose": "compliance"},
    )
    assert r.status_code == 422, "only the platform sends compliance replies"


def test_content_rules_on_send_and_preview(client: TestClient, acme: Org, db: Database) -> None:
    h = acme.admin.headers
    client.post(
        "/api/v1/channels", headers=h, json={"provider": "simulator", "phone": "+12015550199"}
    )
    cid = client.post("/api/v1/contacts", headers=h, json={"phone": "+12015550100"}).json()["id"]
    r = client.post(
        "/api/v1/messages", headers=h, json={"contact_id": cid, "body": "Deals at bit.ly/abc today"}
    )
    assert r.json()["status"] == "blocked" and r.json()["gate_code"] == "content.url_shortener"
    assert "bit.ly" in r.json()["gate_detail"]
    # A first message without the brand or opt-out language goes, with warnings to show.
    r = client.post("/api/v1/messages", headers=h, json={"contact_id": cid, "body": "Hi there"})
    codes = {w["code"] for w in r.json()["warnings"]}
    assert r.json()["status"] == "queued"
    assert {"content.missing_brand", "content.missing_opt_out_language"} <= codes
    # The second message to the same contact does not need them again.
    r = client.post("/api/v1/messages", headers=h, json={"contact_id": cid, "body": "Thanks!"})
    assert r.json()["warnings"] == []
    p = client.post(
        "/api/v1/templates/preview",
        headers=h,
        json={"template": "Hi {first_name|there}, it’s Acme — book now. Reply STOP to opt out."},
    )
    found = {f["code"]: f for f in p.json()["findings"]}
    assert "content.ucs2" in found and found["content.ucs2"]["fix"]
    assert "content.missing_brand" not in found and "content.missing_opt_out_language" not in found


def test_organization_settings(client: TestClient, acme: Org) -> None:
    h = acme.admin.headers
    assert (
        client.get("/api/v1/organization/settings", headers=h).json()["free_text_policy"] == "auto"
    )
    r = client.patch(
        "/api/v1/organization/settings",
        headers=h,
        json={
            "free_text_policy": "review",
            "quiet_hours_start": "09:30",
            "quiet_hours_end": "19:00",
            "quiet_days": [0, 1, 2, 3, 4],
            "help_text": "{org}: call 555-0100. Reply STOP to opt out.",
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["quiet_hours_start"] == "09:30:00" and r.json()["quiet_days"] == [0, 1, 2, 3, 4]
    r = client.patch("/api/v1/organization/settings", headers=h, json={"daily_cap": 500})
    assert r.json()["free_text_policy"] == "review", "a patch keeps the other settings"
    for bad, field in [
        ({"free_text_policy": "maybe"}, "free_text_policy"),
        ({"quiet_days": [7]}, "quiet_days"),
        ({"content_blocks": ["shaft"]}, "content_blocks"),
        ({"no_such_setting": 1}, "no_such_setting"),
    ]:
        r = client.patch("/api/v1/organization/settings", headers=h, json=bad)
        assert r.status_code == 422 and r.json()["field"].startswith(field), (bad, r.text)
    r = client.patch(
        "/api/v1/organization/settings",
        headers=h,
        json={"quiet_hours_start": "20:00", "quiet_hours_end": "09:00"},
    )
    assert r.status_code == 422 and "before" in r.json()["detail"]
    r = client.patch(
        "/api/v1/organization/settings", headers=acme.agent.headers, json={"daily_cap": 1}
    )
    assert r.status_code == 403


def test_send_to_a_phone_number_creates_the_contact_once(client: TestClient, acme: Org) -> None:
    h = acme.admin.headers
    client.post(
        "/api/v1/channels",
        json={"provider": "simulator", "phone": "+12015550100"},
        headers=h,
    )
    first = client.post(
        "/api/v1/messages", json={"phone": "(201) 555-0188", "body": "Hello there"}, headers=h
    )
    assert first.status_code == 201, first.text
    again = client.post(
        "/api/v1/messages", json={"phone": "+1 201 555 0188", "body": "Second"}, headers=h
    )
    assert again.status_code == 201
    assert first.json()["contact_id"] == again.json()["contact_id"]
    contacts = client.get("/api/v1/contacts", headers=h).json()["items"]
    assert [c["phone_e164"] for c in contacts] == ["+12015550188"]
    bad = client.post("/api/v1/messages", json={"phone": "12", "body": "x"}, headers=h)
    assert bad.status_code == 422 and bad.json()["field"] == "phone"
    both = client.post(
        "/api/v1/messages",
        json={"phone": "+12015550188", "contact_id": 1, "body": "x"},
        headers=h,
    )
    assert both.status_code == 422 and both.json()["field"] == "contact_id"
