"""The CSV import flow in a real Chromium: upload, map, live progress (SSE), report download."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import DemoServer, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]

ROWS = 15_000


def _file() -> bytes:
    lines = ["Cell;Nick;Surname;Opted In"]
    for i in range(ROWS):
        # Every 100th number is invalid; the others are distinct valid numbers.
        phone = "555-01" if i % 100 == 0 else f"(312) 55{i // 10000}-{i % 10000:04d}"
        lines.append(f"{phone};Nick{i};Renée;yes")
    return ("\r\n".join(lines) + "\r\n").encode("cp1252")


def test_import_upload_map_progress_report(demo_server: DemoServer, page: Page) -> None:
    page.goto(f"{demo_server.url}/login")
    page.get_by_label("E-mail").fill("owner@demo.textdesk.test")
    page.get_by_label("Password").fill(demo_server.logins["owner@demo.textdesk.test"])
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("link", name="Imports").click()
    expect(page.get_by_role("heading", name="Import contacts")).to_be_visible()

    page.get_by_label("CSV file").set_input_files(
        files=[{"name": "fair-list.csv", "mimeType": "text/csv", "buffer": _file()}]
    )
    page.get_by_role("button", name="Upload and preview").click()
    expect(page.get_by_test_id("import-status")).to_have_text("uploaded")
    expect(page.get_by_text("cp1252 · semicolon separated")).to_be_visible()
    # Proposed mapping: "Cell" is the phone, "Surname" the last name; "Nick" is unknown.
    expect(page.get_by_test_id("map-Cell")).to_have_value("phone")
    expect(page.get_by_test_id("map-Surname")).to_have_value("last_name")
    expect(page.get_by_test_id("map-Nick")).to_have_value("")
    page.get_by_test_id("map-Nick").select_option("first_name")
    page.get_by_test_id("tags").fill("fair-2026")
    expect(page.get_by_role("cell", name="Renée").first).to_be_visible()
    screenshot(page, "import-mapping")

    page.get_by_test_id("start-import").click()
    # The live section (SSE) shows while the import runs, then swaps in the report.
    expect(page.get_by_test_id("import-live")).to_be_visible()
    expect(page.get_by_test_id("import-progress")).to_be_visible()
    screenshot(page, "import-progress")
    report = page.get_by_test_id("import-report")
    expect(report).to_be_visible()
    expect(page.get_by_test_id("import-status")).to_have_text("done")
    expect(report.get_by_test_id("count-inserted")).to_have_text(f"{ROWS - ROWS // 100:,}")
    expect(report.get_by_test_id("count-rejected")).to_have_text(f"{ROWS // 100:,}")
    expect(report.get_by_test_id("import-percent")).to_have_text("100%")
    screenshot(page, "import-report")

    with page.expect_download() as info:
        page.get_by_test_id("rejects-link").click()
    path = info.value.path()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "line,reason,raw"
    assert len(lines) == 1 + ROWS // 100
    assert lines[1].startswith("2,invalid number: '555-01'")
    # The raw row is one quoted cell of the report.
    assert lines[1].endswith('"555-01,Nick0,Renée,yes"')
