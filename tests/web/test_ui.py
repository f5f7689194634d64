"""The UI shell: login with CSRF, sessions, logout, role-aware pages, no CDN."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from tests.conftest import PASSWORD, Org
from textdesk.store.db import Database

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def login(client: TestClient, email: str, password: str = PASSWORD) -> TestClient:
    page = client.get("/login")
    token = _CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    client.post("/login", data={"email": email, "password": password, "csrf_token": token})
    return client


def test_pages_redirect_to_login(client: TestClient) -> None:
    for path in ("/", "/home", "/contacts", "/settings"):
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/login", path


def test_login_and_logout(client: TestClient, acme: Org) -> None:
    login(client, acme.owner.user.email)
    home = client.get("/home")
    assert home.status_code == 200
    assert "Acme" in home.text and "Acme owner" in home.text
    token = _CSRF.search(home.text).group(1)  # type: ignore[union-attr]
    r = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303
    assert client.get("/home", follow_redirects=False).status_code == 303


def test_login_needs_the_form_token(client: TestClient, acme: Org) -> None:
    client.get("/login")
    r = client.post(
        "/login",
        data={"email": acme.owner.user.email, "password": PASSWORD, "csrf_token": "forged"},
    )
    assert r.status_code == 403
    assert client.get("/home", follow_redirects=False).status_code == 303


def test_wrong_password_then_rate_limit(client: TestClient, acme: Org) -> None:
    for _ in range(5):
        page = client.get("/login")
        token = _CSRF.search(page.text).group(1)  # type: ignore[union-attr]
        r = client.post(
            "/login",
            data={
                "email": acme.agent.user.email,
                "password": "nope-nope-nope",
                "csrf_token": token,
            },
        )
        assert r.status_code == 401 and "Wrong e-mail or password" in r.text
    page = client.get("/login")
    token = _CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    r = client.post(
        "/login", data={"email": acme.agent.user.email, "password": PASSWORD, "csrf_token": token}
    )
    assert r.status_code == 429, "even the right password waits out the lockout"
    assert 0 < int(r.headers["retry-after"]) <= 900


def test_state_change_needs_csrf(client: TestClient, acme: Org, db: Database) -> None:
    login(client, acme.admin.user.email)
    r = client.post("/settings/api-keys", data={"name": "forged"})
    assert r.status_code == 403
    r = client.post("/settings/api-keys", data={"name": "forged", "csrf_token": "wrong"})
    assert r.status_code == 403
    settings = client.get("/settings")
    token = _CSRF.search(settings.text).group(1)  # type: ignore[union-attr]
    r = client.post("/settings/api-keys", data={"name": "real"}, headers={"X-CSRF-Token": token})
    assert r.status_code == 200 and 'data-testid="new-key"' in r.text


def test_agent_sees_no_api_keys(client: TestClient, acme: Org) -> None:
    login(client, acme.agent.user.email)
    page = client.get("/settings")
    assert page.status_code == 200 and "API keys" not in page.text
    token = _CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    r = client.post("/settings/api-keys", data={"name": "x", "csrf_token": token})
    assert r.status_code == 200 and "admin role" in r.text


def test_htmx_request_without_session_gets_hx_redirect(client: TestClient) -> None:
    r = client.get("/home", headers={"HX-Request": "true"}, follow_redirects=False)
    assert r.status_code == 401 and r.headers["HX-Redirect"] == "/login"


def test_no_third_party_assets(client: TestClient) -> None:
    page = client.get("/login")
    assert "http://" not in page.text and "https://" not in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/vendor/htmx.min.js").status_code == 200
    assert client.get("/static/vendor/htmx-ext-sse.js").status_code == 200


def test_contact_page_shows_consent_and_why_not_sent(
    client: TestClient, acme: Org, globex: Org, db: Database
) -> None:
    from tests.delivery.helpers import channel
    from textdesk.providers.base import InboundSms
    from textdesk.services import messaging
    from textdesk.settings import Settings

    settings: Settings = client.app.state.settings  # type: ignore[attr-defined]
    ch = channel(db, acme.admin.principal)
    messaging.receive_inbound(
        db, settings, ch, InboundSms("IN-1", "+12015550777", "+12015550100", "stop texting me pls")
    )
    cid = client.get("/api/v1/contacts", headers=acme.admin.headers).json()["items"][0]["id"]
    blocked = client.post(
        "/api/v1/messages",
        headers=acme.admin.headers,
        json={"contact_id": cid, "body": "Are you sure?"},
    ).json()
    assert blocked["status"] == "blocked"
    login(client, acme.agent.user.email)
    page = client.get(f"/contacts/{cid}")
    assert page.status_code == 200
    assert 'data-testid="consent-state">opted out' in page.text
    assert "stop texting me pls" in page.text and "free_text" in page.text
    assert "not sent:" in page.text and "opted out" in page.text
    assert "Undo opt-out" not in page.text, "agents cannot undo an opt-out"
    # Another organization's contact does not exist for this agent.
    assert client.get("/contacts/999999").status_code == 404


def test_agent_records_opt_out_then_admin_undoes_with_reason(client: TestClient, acme: Org) -> None:
    cid = client.post(
        "/api/v1/contacts", headers=acme.admin.headers, json={"phone": "+12015550100"}
    ).json()["id"]
    login(client, acme.agent.user.email)
    page = client.get(f"/contacts/{cid}")
    token = _CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    assert client.post(f"/contacts/{cid}/opt-out", data={"note": "on the phone"}).status_code == 403
    r = client.post(f"/contacts/{cid}/opt-out", data={"note": "on the phone", "csrf_token": token})
    assert r.status_code == 200 and 'consent-state">opted out' in r.text
    client.cookies.clear()
    login(client, acme.admin.user.email)
    page = client.get(f"/contacts/{cid}")
    token = _CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    short = client.post(f"/contacts/{cid}/opt-in", data={"reason": "ok", "csrf_token": token})
    assert "at least 10 characters" in short.text
    r = client.post(
        f"/contacts/{cid}/opt-in",
        data={"reason": "signed the paper form today", "csrf_token": token},
    )
    assert 'consent-state">subscribed' in r.text and "signed the paper form today" in r.text


def test_admin_defines_a_custom_field(client: TestClient, acme: Org, db: Database) -> None:
    from textdesk.services import custom_fields

    login(client, acme.admin.user.email)
    page = client.get("/settings")
    assert "Custom fields" in page.text
    token = _CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    r = client.post(
        "/settings/custom-fields",
        data={"key": "last_order", "label": "Last order", "type": "date"},
        headers={"X-CSRF-Token": token},
    )
    assert r.status_code == 200 and "<code>last_order</code>" in r.text
    r = client.post(
        "/settings/custom-fields",
        data={"key": "Bad Key", "type": "text"},
        headers={"X-CSRF-Token": token},
    )
    assert 'role="alert"' in r.text and "lowercase letter" in r.text
    with db.read() as conn:
        assert custom_fields.field_types(conn, acme.org.id) == {"last_order": "date"}
    r = client.post("/settings/custom-fields/last_order/delete", headers={"X-CSRF-Token": token})
    assert "No custom fields yet." in r.text
