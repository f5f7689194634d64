"""The segment editor in a real Chromium: a live count while typing, an error with a caret under
its position, save, reopen, delete."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import DemoServer, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


def test_live_count_error_caret_save_and_delete(demo_server: DemoServer, page: Page) -> None:
    owner = "owner@demo.textdesk.test"
    page.goto(f"{demo_server.url}/login")
    page.get_by_label("E-mail").fill(owner)
    page.get_by_label("Password").fill(demo_server.logins[owner])
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Segments").click()
    expect(page).to_have_url(f"{demo_server.url}/segments")

    box = page.get_by_test_id("segment-query")
    # The empty query is everyone: the demo seeds 200 contacts (browser tests that ran before
    # this one on the same server may have added some).
    count = page.get_by_test_id("segment-count")
    expect(count).to_have_text(re.compile(r"^\d[\d,]*$"))  # 15,084: thousands separated
    everyone = int(count.inner_text().replace(",", ""))
    assert everyone >= 200

    # Typing: the count follows 300 ms after the last key, without a reload.
    box.press_sequentially("tag:vip", delay=20)
    expect(page.get_by_test_id("segment-sample")).to_be_visible()
    expect(count).not_to_have_text(f"{everyone:,}")
    expect(count).to_have_text(re.compile(r"^\d[\d,]*$"))
    kept = int(count.inner_text().replace(",", ""))
    assert 0 < kept < everyone

    # An unfinished query: the error names the position and a caret points at it.
    box.fill("")
    box.press_sequentially("tag:vip AND state =", delay=20)
    error = page.get_by_test_id("segment-error")
    expect(error).to_contain_text("position 19: expected a value after '=', found end of query")
    expect(page.get_by_test_id("segment-caret")).to_have_text(
        "tag:vip AND state =\n" + " " * 19 + "^"
    )
    screenshot(page, "segments-error")

    # Fixed: back to a count (no state "ZZ", so exactly the vip contacts again).
    box.press_sequentially(' "ZZ" OR tag:vip', delay=20)
    expect(page.get_by_test_id("segment-count")).to_have_text(f"{kept:,}")
    screenshot(page, "segments-live-count")

    page.get_by_label("Name").fill("E2E vip")
    page.get_by_test_id("segment-save").click()
    expect(page.get_by_test_id("segment-saved")).to_be_visible()
    expect(page.get_by_test_id("segment-list")).to_contain_text("E2E vip")
    expect(page.get_by_test_id("segment-query")).to_have_value(
        'tag:vip AND state = "ZZ" OR tag:vip'
    )
    expect(page.get_by_test_id("segment-count")).to_have_text(f"{kept:,}")

    page.get_by_test_id("segment-delete").click()
    expect(page).to_have_url(f"{demo_server.url}/segments")
    expect(page.get_by_test_id("segment-list")).not_to_contain_text("E2E vip")
