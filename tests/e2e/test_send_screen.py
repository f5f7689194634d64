"""The send screen in a real Chromium against `textdesk demo`: keyboard sending, and no
duplicate from a held-down Enter key or a second tab.

The demo's own campaign ("Spring recall") has US contacts, whom quiet hours hold back for much
of the day; so that this test passes at any hour, it creates its own campaign through the API
with contacts in a zone where it is early afternoon now (New York state: federal hours only).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import DemoServer, screenshot
from tests.services.p2p_helpers import daytime_zone

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

OWNER = "owner@demo.textdesk.test"
AGENT = "agent1@demo.textdesk.test"
CONTACTS = 40


def _login(page: Page, server: DemoServer, email: str) -> None:
    page.goto(f"{server.url}/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(server.logins[email])
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{server.url}/home")


def _api_key(page: Page, server: DemoServer) -> str:
    _login(page, server, OWNER)
    page.goto(f"{server.url}/settings")
    page.get_by_label("Name").fill("send-screen test")
    page.get_by_role("button", name="Create key").click()
    key = page.get_by_test_id("new-key").inner_text().strip()
    assert key.startswith("td_")
    page.context.clear_cookies()
    return key


def _campaign(server: DemoServer, key: str, tag: str) -> tuple[int, list[int]]:
    api = httpx.Client(base_url=f"{server.url}/api/v1", headers={"Authorization": f"Bearer {key}"})
    zone = daytime_zone()
    ids = []
    for i in range(CONTACTS):
        r = api.post(
            "/contacts",
            json={
                "phone": f"+1212555{7000 + i:04d}" if tag == "e2e-a" else f"+1212556{7000 + i:04d}",
                "first_name": f"Kim{i}",
                "state": "NY",
                "time_zone": zone,
                "tags": [tag],
            },
        )
        assert r.status_code in (200, 201), r.text
        ids.append(r.json()["id"])
    agent = next(u for u in api.get("/users").json() if u["email"] == AGENT)
    r = api.post(
        "/campaigns",
        json={
            "name": f"Keyboard drive {tag}",
            "script": "Hi {first_name}, it's {agent_name} at Acme Dental. Reply STOP to opt out.",
            "segment_query": f"tag:{tag}",
            "batch_size": 10,
        },
    )
    assert r.status_code == 201, r.text
    campaign_id = r.json()["id"]
    assert api.put(f"/campaigns/{campaign_id}/agents", json={"user_ids": [agent["id"]]}).is_success
    r = api.post(f"/campaigns/{campaign_id}/start")
    assert r.is_success, r.text
    return campaign_id, ids


def _messages_by_contact(server: DemoServer, key: str, ids: list[int]) -> Counter[int]:
    api = httpx.Client(base_url=f"{server.url}/api/v1", headers={"Authorization": f"Bearer {key}"})
    wanted = set(ids)
    out: Counter[int] = Counter()
    for m in api.get("/messages", params={"limit": 500}).json():
        if m["direction"] == "out" and m["contact_id"] in wanted:
            out[m["contact_id"]] += 1
    return out


def _sent(page: Page) -> int:
    return int(page.get_by_test_id("sent-count").inner_text())


def test_agent_sends_25_messages_by_keyboard(
    demo_server: DemoServer, page: Page, browser: Browser
) -> None:
    key = _api_key(page, demo_server)
    campaign_id, ids = _campaign(demo_server, key, "e2e-a")
    _login(page, demo_server, AGENT)
    page.goto(f"{demo_server.url}/campaigns/{campaign_id}/send")
    body = page.get_by_test_id("message-body")
    expect(body).to_contain_text("it's Sam Agent at Acme Dental")
    for n in range(1, 26):
        shown = page.get_by_test_id("contact-name").inner_text()
        page.keyboard.press("Enter")
        expect(page.get_by_test_id("sent-count")).to_have_text(str(n))
        expect(page.get_by_test_id("contact-name")).not_to_have_text(shown)
    screenshot(page, "send-screen")
    counts = _messages_by_contact(demo_server, key, ids)
    assert sum(counts.values()) == 25 and max(counts.values()) == 1, counts
    expect(page.get_by_test_id("replies-link")).to_have_attribute(
        "href", f"/inbox?campaign_id={campaign_id}"
    )


def test_held_enter_and_two_tabs_send_no_duplicate(
    demo_server: DemoServer, page: Page, browser: Browser
) -> None:
    key = _api_key(page, demo_server)
    campaign_id, ids = _campaign(demo_server, key, "e2e-b")
    _login(page, demo_server, AGENT)
    url = f"{demo_server.url}/campaigns/{campaign_id}/send"
    page.goto(url)
    expect(page.get_by_test_id("send-contact")).to_be_visible()
    # Held down: the first keydown sends, the auto-repeats (repeat=true) are ignored.
    page.keyboard.down("Enter")
    for _ in range(15):
        page.keyboard.down("Enter")
    page.keyboard.up("Enter")
    expect(page.get_by_test_id("sent-count")).to_have_text("1")
    page.wait_for_timeout(500)
    assert _sent(page) == 1
    # Rapid separate presses while a send is in flight: at most one per contact.
    for _ in range(5):
        page.keyboard.press("Enter", delay=0)
    # The button is disabled while a send is in flight: once it is enabled again, every send
    # has been answered, so the next contact is settled for a second tab too.
    expect(page.get_by_test_id("send-button")).to_be_enabled()
    # A second tab of the same agent shows the same next contact; both send it.
    other = page.context.new_page()
    other.goto(url)
    expect(other.get_by_test_id("send-contact")).to_be_visible()
    page.reload()
    expect(page.get_by_test_id("send-contact")).to_be_visible()
    first = page.get_by_test_id("contact-phone").inner_text()
    assert other.get_by_test_id("contact-phone").inner_text() == first
    page.keyboard.press("Enter")
    other.keyboard.press("Enter")
    expect(other.get_by_test_id("send-status")).to_contain_text("Sent to")
    expect(page.get_by_test_id("send-status")).to_contain_text("Sent to")
    counts = _messages_by_contact(demo_server, key, ids)
    assert counts and max(counts.values()) == 1, counts
    # The server holds exactly one message per contact the screens sent to.
    per_screen: dict[str, Any] = {"sent": sum(counts.values())}
    assert per_screen["sent"] >= 2
