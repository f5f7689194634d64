"""`make demo` brings up a page where the seeded owner can log in (a real Chromium)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import DemoServer, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def test_owner_logs_in_to_the_demo(demo_server: DemoServer, page: Page) -> None:
    assert set(demo_server.logins) == {
        "owner@demo.textdesk.test",
        "agent1@demo.textdesk.test",
        "agent2@demo.textdesk.test",
    }, demo_server.log.read_text()
    page.goto(demo_server.url)
    expect(page).to_have_url(f"{demo_server.url}/login")
    screenshot(page, "login")
    page.get_by_label("E-mail").fill("owner@demo.textdesk.test")
    page.get_by_label("Password").fill(demo_server.logins["owner@demo.textdesk.test"])
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{demo_server.url}/home")
    expect(page.get_by_role("heading", name="Acme Dental")).to_be_visible()
    # The demo seeds 200; other browser tests share this server and may have added some.
    expect(page.get_by_test_id("contact-count")).to_have_text(re.compile(r"^\d+$"))
    assert int(page.get_by_test_id("contact-count").inner_text()) >= 200
    expect(page.get_by_text("Spring recall")).to_be_visible()
    expect(page.get_by_test_id("who")).to_contain_text("owner")
    screenshot(page, "home")


def test_wrong_password_is_refused(demo_server: DemoServer, page: Page) -> None:
    page.goto(f"{demo_server.url}/login")
    page.get_by_label("E-mail").fill("agent1@demo.textdesk.test")
    page.get_by_label("Password").fill("definitely-wrong")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_have_text("Wrong e-mail or password.")


def test_owner_creates_an_api_key_with_htmx(demo_server: DemoServer, page: Page) -> None:
    page.goto(f"{demo_server.url}/login")
    page.get_by_label("E-mail").fill("owner@demo.textdesk.test")
    page.get_by_label("Password").fill(demo_server.logins["owner@demo.textdesk.test"])
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Settings").click()
    page.get_by_label("Name").fill("CRM sync")
    page.get_by_role("button", name="Create key").click()
    expect(page.get_by_test_id("new-key")).to_contain_text("td_")
    # htmx swapped the section in place: still on /settings, no full reload.
    expect(page).to_have_url(f"{demo_server.url}/settings")
    expect(page.get_by_role("cell", name="CRM sync")).to_be_visible()


def test_agent_opens_a_contact_and_records_an_opt_out(demo_server: DemoServer, page: Page) -> None:
    page.goto(f"{demo_server.url}/login")
    page.get_by_label("E-mail").fill("agent1@demo.textdesk.test")
    page.get_by_label("Password").fill(demo_server.logins["agent1@demo.textdesk.test"])
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Contacts", exact=True).click()
    page.locator("table.list tbody a").first.click()
    expect(page.get_by_test_id("consent-state")).to_have_text("subscribed")
    page.get_by_label("Note").fill("asked by phone")
    page.get_by_role("button", name="Record opt-out").click()
    expect(page.get_by_test_id("consent-state")).to_have_text("opted out")
    expect(page.get_by_role("cell", name="opt_out")).to_be_visible()
    screenshot(page, "contact")
