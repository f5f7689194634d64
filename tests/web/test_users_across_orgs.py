"""POST /api/v1/users does not tell one organization who another's users are; the login form
asks which organization when one password opens several."""

from __future__ import annotations

import re

import httpx
from fastapi.testclient import TestClient

from tests.conftest import PASSWORD, Org

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
OTHER_PASSWORD = "another-password-1"


def _new_user(
    client: TestClient, org: Org, email: str, password: str = OTHER_PASSWORD
) -> httpx.Response:
    return client.post(
        "/api/v1/users",
        headers=org.admin.headers,
        json={"email": email, "name": "New", "role": "agent", "password": password},
    )


def test_an_address_of_another_org_gets_the_same_answer_as_a_new_one(
    client: TestClient, acme: Org, globex: Org
) -> None:
    elsewhere = _new_user(client, globex, acme.owner.user.email)
    fresh = _new_user(client, globex, "fresh@globex-new.test")
    assert elsewhere.status_code == fresh.status_code == 201, elsewhere.text
    assert elsewhere.json().keys() == fresh.json().keys()
    assert elsewhere.json()["email"] == acme.owner.user.email
    listed = client.get("/api/v1/users", headers=globex.admin.headers).json()
    assert acme.owner.user.email in [u["email"] for u in listed]
    # Acme's own list is unchanged.
    acme_list = client.get("/api/v1/users", headers=acme.admin.headers).json()
    assert [u["email"] for u in acme_list].count(acme.owner.user.email) == 1


def test_the_same_address_twice_in_one_org_is_409(client: TestClient, acme: Org) -> None:
    r = _new_user(client, acme, acme.agent.user.email.upper())
    assert r.status_code == 409 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["field"] == "email" and "this organization" in r.json()["detail"]


def _post_login(client: TestClient, **form: str) -> httpx.Response:
    page = client.get("/login")
    token = _CSRF.search(page.text).group(1)  # type: ignore[union-attr]
    return client.post("/login", data={**form, "csrf_token": token}, follow_redirects=False)


def test_login_form_asks_for_the_organization(client: TestClient, acme: Org, globex: Org) -> None:
    email = acme.owner.user.email
    assert _new_user(client, globex, email, password=PASSWORD).status_code == 201
    r = _post_login(client, email=email, password=PASSWORD)
    assert r.status_code == 200 and "Choose one" in r.text
    assert '<option value="acme">Acme</option>' in r.text
    assert '<option value="globex">Globex</option>' in r.text
    assert f'value="{email}"' in r.text and PASSWORD not in r.text
    r = _post_login(client, email=email, password=PASSWORD, org="globex")
    assert r.status_code == 303 and r.headers["location"] == "/home"
    home = client.get("/home")
    assert "Globex" in home.text and "Acme owner" not in home.text
