"""The inbox pages: list and thread, actions with CSRF, the canned picker, the preview, and the
/events stream (session-authenticated, per organization)."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from tests.conftest import Org
from tests.delivery.helpers import channel
from tests.services import p2p_helpers
from tests.web.test_ui import login
from textdesk.providers.base import InboundSms
from textdesk.services import canned, messaging, p2p
from textdesk.settings import Settings
from textdesk.store.db import Database
from textdesk.store.tables import contacts, messages, survey_answers
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
    codes = {f["code"] for f in shown.pop("findings")}
    assert "content.ucs2" in codes, "an emoji makes it UCS-2: the composer warns"
    curly = client.post(
        f"/inbox/c/{cid}/preview",
        data={"body": "Hi {first_name|there}, it\u2019s ready"},
        headers={"X-CSRF-Token": _token(client)},
    ).json()
    ucs2 = next(f for f in curly["findings"] if f["code"] == "content.ucs2")
    assert ucs2["fix"] == "Hi {first_name|there}, it's ready", "the fix keeps the merge field"
    assert shown == {"text": "Hi  ❤", "encoding": "UCS-2", "segments": 1, "missing": ["first_name"]}
    shortened = client.post(
        f"/inbox/c/{cid}/preview",
        data={"body": "See https://bit.ly/3xYz for the form"},
        headers={"X-CSRF-Token": _token(client)},
    ).json()
    blocks = [f for f in shortened["findings"] if f["severity"] == "block"]
    assert [f["code"] for f in blocks] == ["content.url_shortener"], shortened["findings"]
    assert "bit.ly" in blocks[0]["message"]


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


# --- the campaign survey in the thread, and opted-out conversations ---------------------------


def _campaign_conversation(db: Database, settings: Settings, acme: Org) -> tuple[Any, int, int]:
    """An active campaign with a survey question, its first message sent to one contact by the
    agent: the conversation that message opened belongs to the campaign."""
    p = p2p_helpers.setup(db, acme, 2, zone="day")
    question = p2p_helpers.add_question(
        db,
        acme.org.id,
        p.campaign_id,
        [
            {"label": "Yes", "tag": "coming"},
            {"label": "No", "tag": "not-coming"},
        ],
    )
    agent = acme.agent.principal
    p2p.request_batch(db, agent, p.campaign_id)
    sent = p2p.send(db, settings, agent, p.campaign_id, p.contact_ids[0])
    assert sent.message.conversation_id is not None
    return p, question, sent.message.conversation_id


def _tags(db: Database, contact_id: int) -> list[str]:
    with db.read() as conn:
        return list(
            conn.execute(sa.select(contacts.c.tags).where(contacts.c.id == contact_id)).scalar_one()
        )


def test_survey_answers_from_the_thread(
    client: TestClient, db: Database, settings: Settings, acme: Org
) -> None:
    p, question, cid = _campaign_conversation(db, settings, acme)
    login(client, acme.agent.user.email)
    thread = client.get(f"/inbox/c/{cid}").text
    assert 'data-testid="survey"' in thread and "Will you come?" in thread
    assert thread.count('data-testid="survey-option"') == 2
    assert 'aria-pressed="true"' not in thread and "not answered" in thread
    assert f'name="question_id" value="{question}"' in thread
    url = f"/inbox/c/{cid}/survey"
    form = {"question_id": str(question), "option": "Yes"}
    # A POST without the session's CSRF token changes nothing.
    assert client.post(url, data=form).status_code == 403
    assert _tags(db, p.contact_ids[0]) == []
    headers = {"X-CSRF-Token": _token(client)}
    yes = client.post(url, data=form, headers=headers)
    assert yes.status_code == 200
    assert re.search(r'value="Yes"[^>]*aria-pressed="true"', yes.text)
    assert "Answer: <strong>Yes</strong>" in yes.text
    assert "coming ×" in yes.text  # the option's tag, shown in the thread head
    assert _tags(db, p.contact_ids[0]) == ["coming"]
    # A new answer replaces the old one, and its tag the old tag.
    no = client.post(url, data={**form, "option": "No"}, headers=headers)
    assert "Answer: <strong>No</strong>" in no.text
    assert _tags(db, p.contact_ids[0]) == ["not-coming"]
    with db.read() as conn:
        answers = conn.execute(sa.select(survey_answers.c.answer)).scalars().all()
    assert answers == ["No"]


def test_survey_errors_say_what_was_wrong(
    client: TestClient, db: Database, settings: Settings, acme: Org
) -> None:
    p, question, cid = _campaign_conversation(db, settings, acme)
    login(client, acme.agent.user.email)
    headers = {"X-CSRF-Token": _token(client)}
    url = f"/inbox/c/{cid}/survey"
    wrong = client.post(
        url, data={"question_id": str(question), "option": "Maybe"}, headers=headers
    )
    assert wrong.status_code == 200 and wrong.headers["HX-Retarget"] == "#thread"
    assert "&#39;Maybe&#39; is not an option of this question" in wrong.text
    assert "&#39;Yes&#39;, &#39;No&#39;" in wrong.text
    missing = client.post(url, data={"option": "Yes"}, headers=headers)
    assert "question_id: pick a survey question" in missing.text
    # A question of another campaign is not this thread's to answer.
    other = p2p_helpers.make_campaign(db, acme, [], name="Other drive")
    foreign = p2p_helpers.add_question(
        db, acme.org.id, other, [{"label": "A", "tag": "a"}, {"label": "B", "tag": "b"}]
    )
    r = client.post(url, data={"question_id": str(foreign), "option": "A"}, headers=headers)
    assert r.status_code == 404
    assert "not part of this conversation's campaign" in r.json()["detail"]
    assert _tags(db, p.contact_ids[0]) == []


def test_survey_of_another_org_is_not_found(
    client: TestClient, db: Database, settings: Settings, acme: Org, globex: Org
) -> None:
    p, question, cid = _campaign_conversation(db, settings, acme)
    login(client, globex.agent.user.email)
    r = client.post(
        f"/inbox/c/{cid}/survey",
        data={"question_id": str(question), "option": "Yes"},
        headers={"X-CSRF-Token": _token(client)},
    )
    assert r.status_code == 404
    assert _tags(db, p.contact_ids[0]) == []


def test_no_survey_outside_a_campaign(
    client: TestClient, db: Database, settings: Settings, acme: Org
) -> None:
    ch = channel(db, acme.admin.principal)
    cid = _inbound(db, settings, ch, "hi there", 6)
    login(client, acme.agent.user.email)
    assert 'data-testid="survey"' not in client.get(f"/inbox/c/{cid}").text


def test_opted_out_conversation_is_marked_and_its_composer_blocked(
    client: TestClient, db: Database, settings: Settings, acme: Org
) -> None:
    ch = channel(db, acme.admin.principal)
    cid = _inbound(db, settings, ch, "Who is this?", 7)
    login(client, acme.agent.user.email)
    before = client.get(f"/inbox/c/{cid}").text
    assert 'data-testid="opted-out-banner"' not in before
    assert 'data-testid="composer-blocked"' not in before
    assert re.search(r'<textarea name="body" id="composer-body"(?![^>]*disabled)', before)
    _inbound(db, settings, ch, "STOP", 8)
    listing = client.get("/inbox").text
    assert re.search(r'class="conv[^"]*opted-out', listing)
    assert 'data-testid="opted-out">opted out<' in listing
    thread = client.get(f"/inbox/c/{cid}").text
    banner = re.search(r'data-testid="opted-out-banner">(.*?)</div>', thread, re.S)
    assert banner, thread
    text = " ".join(banner.group(1).split())
    assert "+12015550901 replied “STOP” on" in text
    assert "Nothing more can be sent to this contact" in text
    assert re.search(r'<textarea name="body" id="composer-body"[^>]*disabled', thread)
    assert re.search(r'<button type="submit" disabled title="This contact opted out">', thread)
    assert "Not sending: +12015550901 opted out of messages from this organization." in thread
    assert ">Opt out</button>" not in thread  # nothing left to record
    # A reply forced through anyway (a stale tab) is blocked by the gate and says why.
    forced = client.post(
        f"/inbox/c/{cid}/reply",
        data={"body": "Are you sure?", "send_key": "k-stale"},
        headers={"X-CSRF-Token": _token(client)},
    )
    assert 'data-status="blocked"' in forced.text
    assert "opted out of messages from this organization" in forced.text
    with db.read() as conn:
        statuses = conn.execute(
            sa.select(messages.c.status).where(messages.c.body == "Are you sure?")
        ).scalars()
        assert list(statuses) == ["blocked"]


def test_agent_opt_out_banner_names_the_agent(
    client: TestClient, db: Database, settings: Settings, acme: Org
) -> None:
    ch = channel(db, acme.admin.principal)
    cid = _inbound(db, settings, ch, "please call me instead", 9)
    login(client, acme.agent.user.email)
    r = client.post(f"/inbox/c/{cid}/opt-out", headers={"X-CSRF-Token": _token(client)})
    assert r.status_code == 200
    banner = re.search(r'data-testid="opted-out-banner">(.*?)</div>', r.text, re.S)
    assert banner and "an agent recorded it on" in banner.group(1)
