"""Bad input is a 422 that names the field, never a 500: one test for each cause the fuzzer
(tests/web/test_api_fuzz.py) found, on both databases."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Org
from textdesk.services import campaign_survey

#: One more than SQLite's INTEGER and PostgreSQL's BIGINT hold.
TOO_BIG = 2**63


@pytest.fixture
def ids(client: TestClient, acme: Org) -> dict[str, int]:
    h = acme.admin.headers

    def made(path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = client.post(f"/api/v1{path}", json=body, headers=h)
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data

    made("/channels", {"provider": "simulator", "phone": "+12015550100"})
    contact = made("/contacts", {"phone": "+12015550101", "first_name": "Ann"})
    campaign = made("/campaigns", {"name": "Spring", "script": "Hi {first_name}"})
    question = made(
        f"/campaigns/{campaign['id']}/questions",
        {"prompt": "Coming?", "options": [{"label": "Yes"}, {"label": "No"}]},
    )
    message = made("/messages", {"contact_id": contact["id"], "body": "Hello Ann"})
    return {
        "contact": contact["id"],
        "campaign": campaign["id"],
        "question": question["id"],
        "conversation": message["conversation_id"],
    }


def _invalid(response: Any, field: str) -> str:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == field, response.json()
    detail: str = response.json()["detail"]
    return detail


def _misses(
    client: TestClient, headers: dict[str, str], cases: list[tuple[str, str, Any, str]], says: str
) -> list[str]:
    """The cases that are not a 422 naming their field with ``says`` in the detail (all of
    them are tried, so one failure does not hide the others)."""
    out = []
    for method, url, body, field in cases:
        r = client.request(method, f"/api/v1{url}", json=body, headers=headers)
        problem = r.json() if r.headers.get("content-type") == "application/problem+json" else {}
        if (r.status_code, problem.get("field")) != (422, field) or says not in problem.get(
            "detail", ""
        ):
            out.append(f"{method} {url}: {r.status_code} {r.text[:200]}")
    return out


def test_an_id_beyond_64_bits_in_the_path(
    client: TestClient, acme: Org, ids: dict[str, int]
) -> None:
    big, campaign = TOO_BIG, ids["campaign"]
    cases = [
        ("GET", f"/contacts/{big}", None, "contact_id"),
        ("POST", f"/contacts/{big}/tags", {"tags": ["vip"]}, "contact_id"),
        ("GET", f"/contacts/{big}/consent", None, "contact_id"),
        ("GET", f"/campaigns/{big}/agents", None, "campaign_id"),
        ("PATCH", f"/campaigns/{campaign}/canned-responses/{big}", {}, "response_id"),
        ("GET", f"/conversations/{big}", None, "conversation_id"),
        ("POST", f"/conversations/{big}/reopen", None, "conversation_id"),
        ("GET", f"/segments/{big}", None, "segment_id"),
        ("GET", f"/messages/{big}", None, "message_id"),
    ]
    says = "less than or equal to 9223372036854775807"
    assert not _misses(client, acme.admin.headers, cases, says)


def test_an_integer_beyond_64_bits_in_the_query(
    client: TestClient, acme: Org, ids: dict[str, int]
) -> None:
    big, campaign = TOO_BIG, ids["campaign"]
    cases = [
        ("GET", f"/contacts?segment_id={big}", None, "segment_id"),
        ("GET", f"/contacts?after={big}", None, "after"),
        ("GET", f"/segments/1/contacts?after={big}", None, "after"),
        ("GET", f"/messages?before={big}", None, "before"),
        ("GET", f"/messages?contact_id={big}", None, "contact_id"),
        ("GET", f"/conversations?campaign_id={big}", None, "campaign_id"),
        ("GET", f"/canned-responses?campaign_id={big}", None, "campaign_id"),
        ("GET", f"/campaigns/{campaign}/next?agent_id={big}", None, "agent_id"),
    ]
    assert not _misses(client, acme.admin.headers, cases, "less than or equal to")


def test_an_integer_beyond_64_bits_in_the_body(
    client: TestClient, acme: Org, ids: dict[str, int]
) -> None:
    big, campaign, conversation = TOO_BIG, ids["campaign"], ids["conversation"]
    answer = {"question_id": ids["question"], "contact_id": -big, "option": "Yes"}
    canned = {"title": "T", "body": "B", "campaign_id": big}
    cases = [
        ("PUT", f"/campaigns/{campaign}/agents", {"user_ids": [1, big]}, "user_ids[1]"),
        ("POST", "/campaigns", {"name": "X", "channel_ids": [big]}, "channel_ids[0]"),
        ("POST", "/campaigns", {"name": "X", "segment_id": big}, "segment_id"),
        ("POST", "/messages", {"contact_id": big, "body": "Hi"}, "contact_id"),
        ("POST", "/survey-answers", answer, "contact_id"),
        ("POST", "/canned-responses", canned, "campaign_id"),
        ("POST", f"/conversations/{conversation}/assign", {"assignee_id": big}, "assignee_id"),
        ("POST", "/templates/preview", {"template": "Hi", "contact_id": big}, "contact_id"),
    ]
    assert not _misses(client, acme.admin.headers, cases, "than or equal to")


def test_a_question_position_beyond_the_column(
    client: TestClient, acme: Org, ids: dict[str, int]
) -> None:
    # survey_questions.position is a 32-bit integer on PostgreSQL.
    url = f"/api/v1/campaigns/{ids['campaign']}/questions/{ids['question']}"
    response = client.patch(url, json={"position": 2**40}, headers=acme.admin.headers)
    _invalid(response, "position")
    response = client.patch(
        url, json={"position": campaign_survey.MAX_POSITION}, headers=acme.admin.headers
    )
    assert response.status_code == 200, response.text


def test_a_nul_character_in_text(client: TestClient, acme: Org, ids: dict[str, int]) -> None:
    """PostgreSQL cannot store NUL in text or JSON; on both engines it is refused up front."""
    contact, conversation = ids["contact"], ids["conversation"]
    cases = [
        ("POST", "/contacts", {"phone": "+12015550102", "first_name": "B\x00b"}, "first_name"),
        ("PATCH", f"/contacts/{contact}", {"tags": ["vip", "a\x00"]}, "tags"),
        ("PATCH", f"/contacts/{contact}", {"fields": {"note": "x\x00"}}, "fields"),
        ("POST", f"/conversations/{conversation}/notes", {"body": "call\x00back"}, "body"),
        ("POST", "/segments", {"name": "N\x00", "query": ""}, "name"),
        ("PATCH", "/organization/settings", {"help_text": "Call us\x00"}, "body"),
        ("GET", "/search/messages?q=hello%00", None, "q"),
        ("GET", "/search/contacts?q=ann%00", None, "q"),
        ("GET", "/canned-responses?q=%00", None, "q"),
        ("GET", "/contacts?tag=v%00", None, "tag"),
        ("DELETE", f"/contacts/{contact}/tags/v%00", None, "tag"),
    ]
    assert not _misses(client, acme.admin.headers, cases, "NUL character")


def test_patching_a_campaign_setting_to_null(
    client: TestClient, acme: Org, ids: dict[str, int]
) -> None:
    url = f"/campaigns/{ids['campaign']}"
    fields = ["name", "script", "segment_query", "purpose", "channel_ids", "batch_size"]
    cases = [("PATCH", url, {field: None}, field) for field in fields]
    assert not _misses(client, acme.admin.headers, cases, "cannot be null")


def test_null_still_clears_what_may_be_empty(
    client: TestClient, acme: Org, ids: dict[str, int]
) -> None:
    url = f"/api/v1/campaigns/{ids['campaign']}"
    set_ = client.patch(url, json={"starts_at": "2030-01-01T09:00:00Z"}, headers=acme.admin.headers)
    assert set_.status_code == 200 and set_.json()["starts_at"], set_.text
    cleared = client.patch(url, json={"starts_at": None}, headers=acme.admin.headers)
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["starts_at"] is None


def test_conversations_found_by_a_word_of_the_name(
    client: TestClient, acme: Org, ids: dict[str, int]
) -> None:
    # The list joins users, which has an email column too: the search must say whose it means.
    response = client.get(
        "/api/v1/conversations", params={"q": "ann", "tag": "vip"}, headers=acme.admin.headers
    )
    assert response.status_code == 200, response.text
    response = client.get("/api/v1/conversations", params={"q": "ann"}, headers=acme.admin.headers)
    assert response.status_code == 200, response.text
    assert [c["id"] for c in response.json()["items"]] == [ids["conversation"]]


def test_a_segment_date_beyond_the_supported_range(client: TestClient, acme: Org) -> None:
    cases = [
        ("POST", "/segments/preview", {"query": query}, "query")
        for query in ("created_at = 9999-12-31", "created_at < 0999-12-31")
    ]
    assert not _misses(client, acme.admin.headers, cases, "position 13: ")
    r = client.post(
        "/api/v1/segments/preview",
        json={"query": "created_at = 9999-12-31"},
        headers=acme.admin.headers,
    )
    assert "out of range" in _invalid(r, "query")


def test_a_segment_number_beyond_64_bits(client: TestClient, acme: Org) -> None:
    h = acme.admin.headers
    client.post(
        "/api/v1/custom-fields", json={"key": "spend", "type": "number", "label": "S"}, headers=h
    )
    big = "99999999999999999999"
    cases = [
        ("POST", "/segments/preview", {"query": f"fields.spend > {big}"}, "query"),
        ("POST", "/segments/preview", {"query": f"campaign:{big}"}, "query"),
    ]
    assert not _misses(client, h, cases, f"{big} is out of range")
    ok = client.post(
        "/api/v1/segments/preview", json={"query": f"fields.spend > {big}.0"}, headers=h
    )
    assert ok.status_code == 200, ok.text


def test_a_time_beyond_the_calendar_in_utc(
    client: TestClient, acme: Org, ids: dict[str, int]
) -> None:
    """0001-01-01T00:00+01:00 is a valid time that has no UTC form in Python's calendar."""
    cursor = base64.urlsafe_b64encode(b"0001-01-01T00:00:00+01:00|1").decode()
    huge_id = base64.urlsafe_b64encode(f"2030-01-01T00:00:00+00:00|{TOO_BIG}".encode()).decode()
    early, late = "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"
    cases = [
        ("POST", "/campaigns", {"name": "X", "starts_at": early}, "starts_at"),
        ("PATCH", f"/campaigns/{ids['campaign']}", {"ends_at": late}, "ends_at"),
        ("GET", f"/conversations?cursor={cursor}", None, "cursor"),
        ("GET", f"/conversations?cursor={huge_id}", None, "cursor"),
    ]
    assert not _misses(client, acme.admin.headers, cases, "")


def test_the_send_fast_path_leaves_odd_ids_to_the_route(client: TestClient, acme: Org) -> None:
    """The fast path takes ``/campaigns/{digits}/send`` before routing: a Unicode digit or an
    id beyond 64 bits must get the route's 422, not a crash in the middleware."""
    h = acme.admin.headers
    assert client.get("/api/v1/me", headers=h).status_code == 200  # the key is now cached
    body = {"contact_id": 1, "agent_id": acme.agent.user.id}
    cases = [
        ("POST", f"/campaigns/{campaign}/send", body, "campaign_id")
        for campaign in ("²", "٣", str(TOO_BIG), "9" * 5000)
    ]
    assert not _misses(client, h, cases, "")
