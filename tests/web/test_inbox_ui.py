"""The inbox pages: list and thread, actions with CSRF, the canned picker, the preview, and the
/events stream (session-authenticated, per organization)."""

from __future__ import annotations

import re
import threading

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Org
from tests.delivery.helpers import channel
from tests.web.test_ui import login
from textdesk.providers.base import InboundSms
from textdesk.services import canned, messaging
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.web import ui_inbox

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _inbound(db: Database, settings: Settings, ch: int, body: str, n: int) -> int:
    sms = InboundSms(
        provider_message_id=f"UI-{n}", sender="+12015550901", recipient="+12015550100", body=body
    )
    received = messaging.receive_inbound(db, settings, ch, sms)
    assert received.message is not None and received.message.conversation_id is not None
    return received.message.conversation_id


def _token(client: TestClient) -> str:
    match = _CSRF.search(client.get("/home").text)
    assert match
    return match.group(1)


def test_inbox_lists_and_opens_a_thread(
    client: TestClient, db: Database, settings: Settings, acme: Org
) -> None:
    ch = channel(db, acme.admin.principal)
    cid = _inbound(db, settings, ch, "Is the clinic open on Saturday?", 1)
    login(client, acme.agent.user.email)
    page = client.get("/inbox")
    assert page.status_code == 200
    assert "Is the clinic open on Saturday?" in page.text
    assert 'data-testid="unread-unassigned">1<' in page.text
    assert "/static/js/inbox.js" in page.text and "<script>" not in page.text
    thread = client.get(f"/inbox/c/{cid}")
    assert 'data-testid="thread"' in thread.text
    # Opening it marked it read.
    assert 'data-testid="unread-unassigned">0<' in client.get("/inbox").text


def test_actions_need_the_csrf_token_and_render_the_thread(
    client: TestClient, db: Database, settings: Settings, acme: Org
) -> None:
    ch = channel(db, acme.admin.principal)
    cid = _inbound(db, settings, ch, "hello", 2)
    login(client, acme.agent.user.email)
    forged = client.post(f"/inbox/c/{cid}/notes", data={"body": "x", "csrf_token": "nope"})
    assert forged.status_code == 403
    token = _token(client)
    headers = {"X-CSRF-Token": token}
    note = client.post(f"/inbox/c/{cid}/notes", data={"body": "VIP patient"}, headers=headers)
    assert "VIP patient" in note.text
    sent = client.post(
        f"/inbox/c/{cid}/reply",
        data={"body": "Hi {first_name|there}, yes until 1pm", "send_key": "k-1"},
        headers=headers,
    )
    assert "Hi there, yes until 1pm" in sent.text
    # The same form submitted twice (a held Enter) sends once.
    client.post(
        f"/inbox/c/{cid}/reply",
        data={"body": "Hi {first_name|there}, yes until 1pm", "send_key": "k-1"},
        headers=headers,
    )
    with db.read() as conn:
        outs = messaging.list_messages(conn, acme.org.id, status=None)
    assert sum(1 for m in outs if m.direction == "out") == 1
    bad = client.post(f"/inbox/c/{cid}/reply", data={"body": "Hi {nope}"}, headers=headers)
    assert "no value for field" in bad.text
    closed = client.post(f"/inbox/c/{cid}/close", headers=headers)
    assert 'data-testid="conv-status">closed<' in closed.text
    tagged = client.post(f"/inbox/c/{cid}/tags", data={"tag": "saturday"}, headers=headers)
    assert "saturday ×" in tagged.text


def test_canned_picker_and_preview(
    client: TestClient, db: Database, settings: Settings, acme: Org
) -> None:
    ch = channel(db, acme.admin.principal)
    cid = _inbound(db, settings, ch, "hours?", 3)
    canned.create(db, acme.admin.principal, title="Hours", body="Open 9-5, {first_name|friend}!")
    login(client, acme.agent.user.email)
    found = client.get(f"/inbox/c/{cid}/canned", params={"q": "hou"}).json()
    assert found == {
        "items": [{"id": found["items"][0]["id"], "title": "Hours", "text": "Open 9-5, friend!"}]
    }
    assert client.get(f"/inbox/c/{cid}/canned", params={"q": "zzz"}).json() == {"items": []}
    shown = client.post(
        f"/inbox/c/{cid}/preview",
        data={"body": "Hi {first_name} ❤"},
        headers={"X-CSRF-Token": _token(client)},
    ).json()
    assert shown == {"text": "Hi  ❤", "encoding": "UCS-2", "segments": 1, "missing": ["first_name"]}


def test_other_orgs_conversation_is_not_found(
    client: TestClient, db: Database, settings: Settings, acme: Org, globex: Org
) -> None:
    ch = channel(db, acme.admin.principal)
    cid = _inbound(db, settings, ch, "secret", 4)
    login(client, globex.admin.user.email)
    assert client.get(f"/inbox/c/{cid}").status_code == 404
    assert client.get(f"/inbox/c/{cid}/canned").status_code == 404
    r = client.post(f"/inbox/c/{cid}/close", headers={"X-CSRF-Token": _token(client)})
    assert r.status_code == 404
    assert "secret" not in client.get("/inbox").text


def test_events_stream_needs_a_session(client: TestClient) -> None:
    r = client.get("/events", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/login"


def test_events_stream_delivers_the_orgs_changes(
    client: TestClient,
    db: Database,
    settings: Settings,
    acme: Org,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ui_inbox, "KEEPALIVE_SECONDS", 0.2)
    ch = channel(db, acme.admin.principal)
    login(client, acme.agent.user.email)
    with client.stream("GET", "/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines) == "retry: 3000"  # subscribed from here on
        worker = threading.Thread(target=_inbound, args=(db, settings, ch, "live!", 5))
        worker.start()
        worker.join()
        seen: list[str] = []
        for line in lines:
            seen.append(line)
            if line.startswith("event: message.new"):
                break
        data = next(lines)
        assert data.startswith("data: ") and '"direction": "in"' in data
