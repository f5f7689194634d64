"""The agent's desk end to end (issue 6, "Done when"), in a real Chromium against `textdesk demo`.

An agent logs in, joins a campaign, sends 25 messages by keyboard, sees the simulated replies
arrive live in the inbox (no reload), answers one with a canned response picked with "/",
records a survey answer with the keyboard, and a simulated STOP reply shows the conversation as
opted out with every further send refused (UI and API); a contact who opts out after being
assigned is refused on the send screen with the reason.

Quiet hours: the campaign's contacts are in New York state (only the federal 8 AM-9 PM rule)
with a fixed-offset time zone where it is about 1 PM now, so the test passes at any hour. The
simulator scripts replies by the last four digits of the number (docs/providers.md):
0702 answers "Yes, sounds good!", 0704 "Who is this?", 0700 "STOP".
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import (
    DemoServer,
    api_client,
    login,
    owner_api_key,
    screenshot,
    send_inbound,
)
from tests.services.p2p_helpers import daytime_zone

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

AGENT = "agent1@demo.textdesk.test"
TAG = "e2e-flow"
CAMPAIGN = "Agent flow drive"
CONTACTS = 30
SENDS = 25
#: index in the campaign (= creation order) -> (first name, number whose suffix scripts a reply)
SCRIPTED = {
    2: ("Yara", "+12125570702"),  # "Yes, sounds good!"
    4: ("Stan", "+12125570700"),  # "STOP"
    6: ("Wendy", "+12125570704"),  # "Who is this?"
}
CANNED = "Great, {first_name|there}! We have openings Tue and Thu mornings. Which suits you?"


def _contacts(api: httpx.Client, zone: str) -> dict[str, int]:
    """Name -> id; every other contact's number ends in 77xx, which the simulator does not
    script (it may still answer at random, as the demo's customers do)."""
    ids = {}
    for i in range(CONTACTS):
        name, phone = SCRIPTED.get(i, (f"Kim{i}", f"+1212557{7700 + i:04d}"))
        r = api.post(
            "/contacts",
            json={
                "phone": phone,
                "first_name": name,
                "last_name": "Flow",
                "state": "NY",
                "time_zone": zone,
                "tags": [TAG],
            },
        )
        assert r.status_code in (200, 201), r.text
        ids[name] = r.json()["id"]
    return ids


def _campaign(api: httpx.Client) -> tuple[int, int]:
    """The campaign with a canned response and a survey question, the agent on it, started."""
    agent = next(u for u in api.get("/users").json() if u["email"] == AGENT)
    r = api.post(
        "/campaigns",
        json={
            "name": CAMPAIGN,
            "script": "Hi {first_name}, it's {agent_name} at Acme Dental: time for your "
            "check-up? Reply STOP to opt out.",
            "segment_query": f"tag:{TAG}",
            "batch_size": 10,
        },
    )
    assert r.status_code == 201, r.text
    campaign_id = r.json()["id"]
    r = api.post(
        f"/campaigns/{campaign_id}/canned-responses", json={"title": "Book a slot", "body": CANNED}
    )
    assert r.status_code == 201, r.text
    r = api.post(
        f"/campaigns/{campaign_id}/questions",
        json={
            "prompt": "Do they want to book?",
            "options": [
                {"label": "Yes, book me", "tag": "wants-booking"},
                {"label": "Later", "tag": "call-later"},
            ],
        },
    )
    assert r.status_code == 201, r.text
    question_id = r.json()["id"]
    assert api.put(f"/campaigns/{campaign_id}/agents", json={"user_ids": [agent["id"]]}).is_success
    r = api.post(f"/campaigns/{campaign_id}/start")
    assert r.is_success, r.text
    return campaign_id, question_id


def _conversation(api: httpx.Client, campaign_id: int, contact_id: int) -> int:
    page = api.get(
        "/conversations", params={"campaign_id": campaign_id, "status": "open", "limit": 200}
    ).json()
    return next(c["id"] for c in page["items"] if c["contact_id"] == contact_id)


def test_agent_desk_end_to_end(demo_server: DemoServer, browser: Browser) -> None:
    setup = browser.new_page()
    api = api_client(demo_server, owner_api_key(setup, demo_server, "agent-flow test"))
    setup.close()
    ids = _contacts(api, daytime_zone())
    campaign_id, question_id = _campaign(api)

    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        # --- the agent logs in and joins the campaign -----------------------------------------
        desk = context.new_page()
        login(desk, demo_server, AGENT)
        desk.get_by_role("link", name="Campaigns").click()
        row = desk.get_by_test_id("campaign-list").locator("tr", has_text=CAMPAIGN)
        row.get_by_role("link", name="Join").click()
        expect(desk).to_have_url(f"{demo_server.url}/campaigns/{campaign_id}/send")
        expect(desk.get_by_test_id("message-body")).to_contain_text("it's Sam Agent at Acme Dental")

        # The replies link opens the inbox of this campaign in a second tab, live before any
        # message goes (a marker on the window shows it is never reloaded).
        inbox = context.new_page()
        inbox.goto(demo_server.url + desk.get_by_test_id("replies-link").get_attribute("href"))
        expect(inbox.locator("body")).to_have_attribute("data-live", "1")
        inbox.evaluate("window.__noReload = true")

        # --- 25 messages, one Enter each --------------------------------------------------------
        desk.bring_to_front()
        desk.locator("body").click(position={"x": 5, "y": 5})
        for n in range(1, SENDS + 1):
            shown = desk.get_by_test_id("contact-phone").inner_text()
            desk.keyboard.press("Enter")
            expect(desk.get_by_test_id("sent-count")).to_have_text(str(n))
            expect(desk.get_by_test_id("contact-phone")).not_to_have_text(shown)
        expect(desk.get_by_test_id("send-status")).to_contain_text("Sent to")
        screenshot(desk, "send-screen")
        outbound = [
            m
            for m in api.get("/messages", params={"limit": 500}).json()
            if m["direction"] == "out" and m["body"].startswith("Hi ") and "check-up" in m["body"]
        ]
        assert len(outbound) == SENDS
        assert len({m["contact_id"] for m in outbound}) == SENDS  # one each, no duplicate

        # --- replies arrive live in the inbox -----------------------------------------------------
        conv = inbox.locator("#conv-list .conv")
        yara = conv.filter(has_text="Yara")
        expect(yara).to_contain_text("Yes, sounds good!")
        expect(conv.filter(has_text="Wendy")).to_contain_text("Who is this?")
        stan = conv.filter(has_text="Stan")
        expect(stan.get_by_test_id("opted-out")).to_be_visible()
        assert inbox.evaluate("window.__noReload === true")

        # --- answer Yara with the campaign's canned response, picked with "/" ------------------
        yara.locator("a").click()
        thread = inbox.get_by_test_id("thread")
        expect(thread).to_contain_text("Yes, sounds good!")
        inbox.keyboard.press("/")
        composer = inbox.locator("#composer-body")
        expect(composer).to_be_focused()
        inbox.keyboard.type("book")
        expect(inbox.get_by_test_id("canned-option").filter(has_text="Book a slot")).to_be_visible()
        inbox.keyboard.press("Enter")  # picks the highlighted response
        expect(composer).to_have_value(
            "Great, Yara! We have openings Tue and Thu mornings. Which suits you?"
        )
        inbox.keyboard.press("Enter")  # sends it
        reply = inbox.locator("#messages .msg.out", has_text="We have openings Tue and Thu")
        expect(reply).to_have_count(1)
        # Its status follows live: queued, sent, then the simulator's delivery report.
        expect(reply.get_by_test_id("msg-status")).to_have_text("delivered")

        # --- the survey, by keyboard: "a" reaches the first option, Enter answers ---------------
        inbox.locator("body").click(position={"x": 5, "y": 5})
        inbox.keyboard.press("a")
        first_option = inbox.get_by_test_id("survey-option").filter(has_text="Yes, book me")
        expect(first_option).to_be_focused()
        inbox.keyboard.press("Enter")
        expect(inbox.get_by_test_id("survey-answer")).to_contain_text("Answer: Yes, book me")
        expect(
            inbox.get_by_test_id("survey-option").filter(has_text="Yes, book me")
        ).to_have_attribute("aria-pressed", "true")
        expect(thread).to_contain_text("wants-booking ×")  # the option's tag, on the contact
        assert "wants-booking" in api.get(f"/contacts/{ids['Yara']}").json()["tags"]
        progress = api.get(f"/campaigns/{campaign_id}/progress").json()
        question = next(q for q in progress["questions"] if q["question_id"] == question_id)
        assert {o["label"]: o["count"] for o in question["options"]}["Yes, book me"] == 1
        screenshot(inbox, "inbox")

        # --- Stan's STOP: opted out, and nothing more can be sent -------------------------------
        stan.locator("a").click()
        expect(thread).to_contain_text("STOP")
        banner = inbox.get_by_test_id("opted-out-banner")
        expect(banner).to_contain_text("+12125570700 replied “STOP”")
        expect(banner).to_contain_text("Nothing more can be sent to this contact")
        expect(inbox.get_by_test_id("consent-state")).to_have_text("opted out")
        expect(inbox.locator("#composer-body")).to_be_disabled()
        expect(inbox.locator("#composer button[type=submit]")).to_be_disabled()
        expect(inbox.get_by_test_id("composer-blocked")).to_contain_text(
            "+12125570700 opted out of messages from this organization"
        )
        stan_conversation = _conversation(api, campaign_id, ids["Stan"])
        r = api.post(
            f"/conversations/{stan_conversation}/messages", json={"body": "Anything else?"}
        )
        assert r.status_code == 201, r.text
        assert r.json()["status"] == "blocked" and r.json()["gate_code"] == "opted_out", r.json()
        r = api.post("/messages", json={"contact_id": ids["Stan"], "body": "Last chance!"})
        assert r.json()["status"] == "blocked" and r.json()["gate_code"] == "opted_out", r.json()
        # The refused message is in the thread, live, with the gate's reason.
        refused = inbox.locator("#messages .msg.out", has_text="Anything else?")
        expect(refused.get_by_test_id("msg-status")).to_have_text("blocked")
        expect(refused.get_by_test_id("why")).to_contain_text("opted out")
        screenshot(inbox, "inbox-opted-out")

        # --- a contact who opts out after being assigned is refused on the send screen ---------
        desk.bring_to_front()
        expect(desk.get_by_test_id("send-contact")).to_be_visible()
        name = desk.get_by_test_id("contact-name").inner_text()
        number = desk.get_by_test_id("contact-phone").inner_text()
        send_inbound(demo_server, number, "STOP")
        desk.locator("body").click(position={"x": 5, "y": 5})
        desk.keyboard.press("Enter")
        status = desk.get_by_test_id("send-status")
        expect(status).to_have_text(
            f"Not sent to {name}: {number} opted out of messages from this organization"
        )
        expect(status).to_have_class(re.compile(r"\bbad\b"))
        expect(desk.get_by_test_id("sent-count")).to_have_text(str(SENDS))
        contact_id = ids[name.removesuffix(" Flow")]
        mine = api.get("/messages", params={"contact_id": contact_id}).json()
        assert not [m for m in mine if "check-up" in m["body"]], mine
        assert inbox.evaluate("window.__noReload === true")
    finally:
        context.close()


def _night_zone() -> str:
    """A fixed-offset zone where it is 3 AM now (New York state: the federal rule only)."""
    hour = datetime.now(UTC).hour
    offset = (3 - hour + 12) % 24 - 12
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def test_send_screen_says_when_quiet_hours_end(demo_server: DemoServer, browser: Browser) -> None:
    """Everyone left is in their quiet hours: the screen says until when, not "Loading"."""
    setup = browser.new_page()
    api = api_client(demo_server, owner_api_key(setup, demo_server, "quiet-hours test"))
    setup.close()
    zone = _night_zone()
    for i in range(3):
        r = api.post(
            "/contacts",
            json={
                "phone": f"+1212557{7800 + i:04d}",
                "first_name": f"Owl{i}",
                "state": "NY",
                "time_zone": zone,
                "tags": ["e2e-night"],
            },
        )
        assert r.status_code in (200, 201), r.text
    agent = next(u for u in api.get("/users").json() if u["email"] == AGENT)
    r = api.post(
        "/campaigns",
        json={
            "name": "Night drive",
            "script": "Hi {first_name}, Acme Dental here. Reply STOP to opt out.",
            "segment_query": "tag:e2e-night",
        },
    )
    assert r.status_code == 201, r.text
    campaign_id = r.json()["id"]
    assert api.put(f"/campaigns/{campaign_id}/agents", json={"user_ids": [agent["id"]]}).is_success
    assert api.post(f"/campaigns/{campaign_id}/start").is_success

    # The agent's browser runs on the contacts' clock, so "your time" is 8:00 AM too.
    context = browser.new_context(viewport={"width": 1280, "height": 800}, timezone_id=zone)
    try:
        page = context.new_page()
        login(page, demo_server, AGENT)
        page.goto(f"{demo_server.url}/campaigns/{campaign_id}/send")
        empty = page.get_by_test_id("send-empty")
        expect(empty).to_contain_text(
            "No contact can be texted right now: all 3 remaining contacts are in quiet hours until"
        )
        expect(empty).to_contain_text("8:00 AM your time")
        expect(empty).to_contain_text("is before the federal 8 AM start; next allowed 8:00 AM")
        expect(page.get_by_test_id("send-contact")).to_be_hidden()
    finally:
        context.close()


def test_demo_campaign_send_screen_is_usable_now(demo_server: DemoServer, page: Page) -> None:
    """`make demo` at any hour: the demo campaign offers a contact, or says until when its
    contacts are in quiet hours; never an endless "Loading"."""
    login(page, demo_server, AGENT)
    page.get_by_role("link", name="Campaigns").click()
    row = page.get_by_test_id("campaign-list").locator("tr", has_text="Spring recall")
    row.get_by_role("link", name="Join").click()
    offered = page.get_by_test_id("message-body").filter(has_text="it's Sam Agent from Acme")
    waiting = page.get_by_test_id("send-empty").filter(has_text="in quiet hours until")
    expect(offered.or_(waiting)).to_be_visible()
    if waiting.is_visible():
        expect(waiting).to_contain_text("your time")
        expect(waiting).to_contain_text("; next allowed ")
    else:
        expect(page.get_by_test_id("send-button")).to_be_enabled()
