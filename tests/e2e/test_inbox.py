"""The live inbox in a real Chromium: an inbound message appears in two open tabs without a
reload; the agent answers with a canned response picked with "/", adds a note and closes."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.e2e.conftest import DemoServer, screenshot
from textdesk.providers.simulator import signing
from textdesk.providers.simulator.adapter import DEFAULT_WEBHOOK_SECRET

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

AGENT = "agent1@demo.textdesk.test"


def _login(page: Page, server: DemoServer) -> None:
    page.goto(f"{server.url}/login")
    page.get_by_label("E-mail").fill(AGENT)
    page.get_by_label("Password").fill(server.logins[AGENT])
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{server.url}/home")


def _send_inbound(server: DemoServer, sender: str, body: str) -> None:
    """What the carrier does when a customer texts us: a signed inbound webhook."""
    with sqlite3.connect(server.log.parent / "demo.db") as conn:
        channel_id, phone = conn.execute(
            "SELECT id, phone_e164 FROM channels WHERE provider = 'simulator' ORDER BY id LIMIT 1"
        ).fetchone()
    raw = json.dumps(
        {"id": f"e2e-{uuid.uuid4().hex}", "from": sender, "to": phone, "body": body}
    ).encode()
    response = httpx.post(
        f"{server.url}/webhooks/simulator/{channel_id}/inbound",
        content=raw,
        headers={
            "Content-Type": "application/json",
            **signing.headers(DEFAULT_WEBHOOK_SECRET, int(time.time()), raw),
        },
    )
    assert response.status_code == 200, response.text


def test_inbound_appears_live_and_agent_answers(demo_server: DemoServer, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        first = context.new_page()
        _login(first, demo_server)
        second = context.new_page()  # a second tab of the same agent
        for tab in (first, second):
            tab.goto(f"{demo_server.url}/inbox")
            expect(tab.locator("body")).to_have_attribute("data-live", "1")

        marker = f"Are you open Saturday? ({uuid.uuid4().hex[:6]})"
        _send_inbound(demo_server, "+12025550987", marker)
        for tab in (first, second):
            item = tab.locator("#conv-list .conv", has_text=marker)
            expect(item).to_be_visible()
            expect(item.get_by_test_id("unread")).to_have_text("1")

        first.locator("#conv-list .conv", has_text=marker).locator("a").click()
        thread = first.get_by_test_id("thread")
        expect(thread).to_contain_text(marker)

        composer = first.locator("#composer-body")
        composer.click()
        composer.press_sequentially("/open")
        option = first.get_by_test_id("canned-option").filter(has_text="Opening hours")
        expect(option).to_be_visible()
        composer.press("Enter")  # picks the highlighted response
        expect(composer).to_have_value("We're open Mon-Fri 8am-6pm and Sat 9am-1pm.")
        expect(first.get_by_test_id("counter")).to_contain_text("GSM-7 · 1 segment")
        composer.press("Enter")  # sends
        sent = first.locator("#messages .msg.out", has_text="We're open Mon-Fri")
        expect(sent).to_have_count(1)
        # The other tab's open list shows the reply as the latest message, live.
        expect(second.locator("#conv-list .conv", has_text="We're open Mon-Fri")).to_be_visible()

        first.get_by_label("Note").fill("Wants a Saturday slot")
        first.get_by_role("button", name="Add note").click()
        expect(first.get_by_test_id("notes")).to_contain_text("Wants a Saturday slot")

        first.locator("body").click(position={"x": 5, "y": 5})
        first.keyboard.press("?")
        expect(first.locator("#help")).to_be_visible()
        first.keyboard.press("Escape")
        expect(first.locator("#help")).to_be_hidden()
        screenshot(first, "inbox")
        first.keyboard.press("c")
        expect(first.get_by_test_id("conv-status")).to_have_text("closed")
        # Still exactly one reply: Enter was pressed once.
        expect(first.locator("#messages .msg.out", has_text="We're open Mon-Fri")).to_have_count(1)
    finally:
        context.close()


def test_a_live_refresh_in_flight_never_wipes_what_the_agent_starts_typing(
    demo_server: DemoServer, page: Page
) -> None:
    """A live refresh finds the thread idle and asks for all of it; the agent clicks into the
    composer and types before the answer comes. The answer must not replace their text (it
    did: the decision to swap everything was taken before the request, and a loaded machine
    widens that window). The refresh's request is held here so the race happens every time."""
    _login(page, demo_server)
    sender = "+12025550988"
    _send_inbound(demo_server, sender, f"First question ({uuid.uuid4().hex[:6]})")
    page.goto(f"{demo_server.url}/inbox")
    expect(page.locator("body")).to_have_attribute("data-live", "1")
    page.locator("#conv-list .conv", has_text="First question").locator("a").click()
    expect(page.get_by_test_id("thread")).to_contain_text("First question")

    held: list[Route] = []

    def hold_the_first(route: Route) -> None:
        if not held and route.request.method == "GET":
            held.append(route)
        else:
            route.continue_()

    page.route("**/inbox/c/*", hold_the_first)
    later = f"Second question ({uuid.uuid4().hex[:6]})"
    _send_inbound(demo_server, sender, later)  # the live refresh of the open thread
    deadline = time.monotonic() + 60  # a safety net
    while not held:
        assert time.monotonic() < deadline, "the live refresh never asked for the thread"
        page.wait_for_timeout(20)  # lets Playwright deliver the route; not a synchronisation
    composer = page.locator("#composer-body")
    composer.click()
    composer.press_sequentially("half a thought")
    held[0].continue_()
    expect(page.get_by_test_id("thread")).to_contain_text(later)  # the refresh came through
    expect(composer).to_have_value("half a thought")
    expect(composer).to_be_focused()
