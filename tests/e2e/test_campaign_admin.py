"""An admin creates a campaign from a saved segment, writes the script with the merge-field
picker, sees the live preview, assigns an agent and starts it (a real Chromium)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import DemoServer, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def _login(page: Page, server: DemoServer, email: str) -> None:
    page.goto(f"{server.url}/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(server.logins[email])
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(f"{server.url}/home")


def test_admin_creates_and_starts_a_campaign(demo_server: DemoServer, page: Page) -> None:
    _login(page, demo_server, "owner@demo.textdesk.test")
    page.get_by_role("link", name="Campaigns").click()
    # The demo's active campaign is listed with its progress link.
    expect(page.get_by_test_id("campaign-list")).to_contain_text("Spring recall")

    page.get_by_label("Name").fill("Fall check-up")
    page.get_by_label("Saved segment").select_option(label="Recall due")
    page.get_by_role("button", name="Create draft").click()
    expect(page.get_by_role("heading", name="Fall check-up")).to_be_visible()
    expect(page.get_by_test_id("campaign-status")).to_have_text("draft")
    # The live audience count for the copied query (the demo seeds 50 "recall-due" contacts;
    # a simulated STOP in another browser test on the same server could take one away).
    audience = page.get_by_test_id("audience-count")
    expect(audience).to_have_text(re.compile(r"^\d+$"))
    size = audience.inner_text()
    assert 45 <= int(size) <= 50

    script = page.get_by_label("First message")
    script.fill("Hi ")
    page.get_by_role("button", name="first_name", exact=True).click()
    script.press("End")
    script.type(", Acme Dental here: time for a check-up? Reply STOP to opt out.")
    sample = page.get_by_test_id("preview-sample").first
    expect(sample).to_contain_text(", Acme Dental here: time for a check-up? Reply STOP")
    expect(sample).not_to_contain_text("{first_name}")
    expect(page.get_by_test_id("preview-segments").first).to_have_text("1 SMS segment")
    expect(page.get_by_test_id("preview-audience")).to_have_text(size)

    # A public link shortener is a content warning in the preview, live.
    script.type(" bit.ly/x")
    expect(page.get_by_test_id("preview-finding").first).to_be_visible()
    script.press("End")
    for _ in range(len(" bit.ly/x")):
        script.press("Backspace")
    expect(page.get_by_test_id("preview-finding")).to_have_count(0)
    screenshot(page, "campaign-editor")

    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Saved.")
    page.get_by_label("Sam Agent").check()
    page.get_by_role("button", name="Save agents").click()
    expect(page.get_by_label("Sam Agent")).to_be_checked()

    page.get_by_role("button", name="Start campaign").click()
    expect(page.get_by_test_id("campaign-status")).to_have_text("active")
    page.get_by_role("link", name="Progress").click()
    # Everyone in the segment is already waiting in "Spring recall": excluded, not sent twice.
    expect(page.get_by_test_id("total-excluded")).to_have_text(size)
    expect(page.get_by_test_id("total-pending")).to_have_text("0")
