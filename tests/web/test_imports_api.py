"""The import API and pages: upload, start, the background run, rejects, and bad files."""

from __future__ import annotations

import csv
import html
import io
import re
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import Org
from tests.web.test_ui import login
from textdesk.services import contacts, exports
from textdesk.store.db import Database

GOOD = b"Mobile,First Name,State\n(201) 555-0123,Ann,TX\n12345,Bad,TX\n201-555-0124,Bob,ny\n"


def _upload(client: TestClient, org: Org, data: bytes) -> Any:
    return client.post(
        "/api/v1/imports", files={"file": ("list.csv", data, "text/csv")}, headers=org.admin.headers
    )


def _wait(client: TestClient, org: Org, import_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 120  # a safety net: the run is in a background thread
    while time.monotonic() < deadline:
        body: dict[str, Any] = client.get(
            f"/api/v1/imports/{import_id}", headers=org.admin.headers
        ).json()
        if body["status"] in ("done", "failed", "cancelled"):
            return body
        time.sleep(0.1)
    raise AssertionError("the import did not finish")


def test_upload_start_run_rejects(client: TestClient, db: Database, acme: Org) -> None:
    up = _upload(client, acme, GOOD)
    assert up.status_code == 201, up.text
    body = up.json()
    assert body["status"] == "uploaded"
    assert body["mapping"] == {"Mobile": "phone", "First Name": "first_name", "State": "state"}
    assert body["preview"][0] == ["(201) 555-0123", "Ann", "TX"]
    bad = client.post(
        f"/api/v1/imports/{body['id']}/start",
        json={"mapping": {"First Name": "first_name"}},
        headers=acme.admin.headers,
    )
    assert bad.status_code == 422
    assert bad.json()["field"] == "mapping"
    started = client.post(
        f"/api/v1/imports/{body['id']}/start",
        json={"tags": ["fair"], "policy": "fill"},
        headers=acme.admin.headers,
    )
    assert started.status_code == 200, started.text
    done = _wait(client, acme, body["id"])
    assert (done["status"], done["inserted"], done["rejected"], done["percent"]) == (
        "done",
        2,
        1,
        100,
    )
    with db.read() as conn:
        people = contacts.list_contacts(conn, acme.org.id)
    assert {(c.phone_e164, c.state, tuple(c.tags)) for c in people} == {
        ("+12015550123", "TX", ("fair",)),
        ("+12015550124", "NY", ("fair",)),
    }
    csv = client.get(f"/api/v1/imports/{body['id']}/rejects.csv", headers=acme.admin.headers)
    assert csv.status_code == 200
    lines = csv.text.splitlines()
    assert lines[0] == "line,reason,raw"
    assert lines[1].startswith("3,invalid number: '12345' is too short")
    listed = client.get("/api/v1/imports", headers=acme.admin.headers).json()
    assert [i["id"] for i in listed] == [body["id"]]
    again = client.post(f"/api/v1/imports/{body['id']}/cancel", headers=acme.admin.headers)
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "the file is empty"),
        (b"\x00\x01\x02binary\x00", "binary file"),
        (b"phone|first\n2015550123|Ann\n", "single column"),
        (b"phone,first\n2015550123," + b"z" * (10 * 1024 * 1024) + b"\n", "line 2 is longer"),
    ],
)
def test_bad_files_get_422(
    client: TestClient, db: Database, acme: Org, data: bytes, message: str
) -> None:
    response = _upload(client, acme, data)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert message in problem["detail"]
    assert problem["field"] == "file"
    assert client.get("/api/v1/imports", headers=acme.admin.headers).json() == []


def test_agent_cannot_upload(client: TestClient, acme: Org) -> None:
    response = client.post(
        "/api/v1/imports",
        files={"file": ("list.csv", GOOD, "text/csv")},
        headers=acme.agent.headers,
    )
    assert response.status_code == 403


#: Rejected rows (their numbers are not numbers) whose text a spreadsheet would run as a formula.
FORMULAS = (
    b"Mobile,First Name,State\n"
    b"(201) 555-0123,Ann,TX\n"
    b"=1+2,Eq,TX\n"
    b"@SUM(1+1),At,TX\n"
    b"+SUM(1),Plus,TX\n"
    b"-2+3,Minus,TX\n"
)


def test_the_rejects_file_is_formula_escaped_like_an_export(
    client: TestClient, db: Database, acme: Org
) -> None:
    up = _upload(client, acme, FORMULAS).json()
    started = client.post(
        f"/api/v1/imports/{up['id']}/start", json={"policy": "fill"}, headers=acme.admin.headers
    )
    assert started.status_code == 200, started.text
    assert _wait(client, acme, up["id"])["rejected"] == 4
    api = client.get(f"/api/v1/imports/{up['id']}/rejects.csv", headers=acme.admin.headers)
    login(client, acme.admin.user.email)
    ui = client.get(f"/imports/{up['id']}/rejects.csv")
    for response in (api, ui):
        assert response.status_code == 200
        header, *rows = csv.reader(io.StringIO(response.text))
        assert header == ["line", "reason", "raw"]
        assert [row[2] for row in rows] == [
            "'=1+2,Eq,TX",
            "'@SUM(1+1),At,TX",
            "'+SUM(1),Plus,TX",
            "'-2+3,Minus,TX",
        ]
        assert all(not cell.startswith(exports.FORMULA_START) for row in rows for cell in row)


#: A quote opened on line 32 (past the ten preview rows) and never closed: read leniently, every
#: row after it would be one cell of row 32.
UNCLOSED = (
    b"Mobile,First Name,State\n"
    + b"".join(b"(201) 555-%04d,Ann,TX\n" % i for i in range(30))
    + b'(201) 555-0100,"Eve,TX\n(201) 555-0101,Bob,TX\n(201) 555-0102,Cy,TX\n'
)
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def _nothing_imported(db: Database, client: TestClient, org: Org) -> None:
    with db.read() as conn:
        assert contacts.list_contacts(conn, org.org.id) == []
    listed = client.get("/api/v1/imports", headers=org.admin.headers).json()
    assert all(i["status"] in ("uploaded", "cancelled") for i in listed), listed


def test_an_unclosed_quote_is_a_422_naming_its_line(
    client: TestClient, db: Database, acme: Org
) -> None:
    api = _upload(client, acme, UNCLOSED)
    assert api.status_code == 422, api.text
    assert api.headers["content-type"].startswith("application/problem+json")
    assert api.json()["field"] == "file"
    assert "line 32: a quote opened on this line is never closed" in api.json()["detail"]

    login(client, acme.admin.user.email)
    token = _CSRF.search(client.get("/imports").text).group(1)  # type: ignore[union-attr]
    ui = client.post(
        "/imports",
        data={"csrf_token": token},
        files={"file": ("list.csv", UNCLOSED, "text/csv")},
        follow_redirects=False,
    )
    assert ui.status_code == 422
    assert "line 32: a quote opened on this line is never closed" in html.unescape(ui.text)
    assert client.get("/api/v1/imports", headers=acme.admin.headers).json() == []
    _nothing_imported(db, client, acme)


def test_a_mapping_without_a_phone_column_is_refused_before_any_row(
    client: TestClient, db: Database, acme: Org
) -> None:
    data = b"Name,E-mail,State\nAnn Lee,ann@example.com,TX\nBob Roe,bob@example.com,NY\n"
    up = _upload(client, acme, data)
    assert up.status_code == 201, up.text
    assert "phone" not in up.json()["mapping"].values()
    for mapping in (None, {"Name": "full_name", "E-mail": "email"}, {"Name": "", "State": ""}):
        body = {} if mapping is None else {"mapping": mapping}
        refused = client.post(
            f"/api/v1/imports/{up.json()['id']}/start", json=body, headers=acme.admin.headers
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["field"] == "mapping"
    assert (
        "no column holds the phone number"
        in client.post(
            f"/api/v1/imports/{up.json()['id']}/start", json={}, headers=acme.admin.headers
        ).json()["detail"]
    )

    login(client, acme.admin.user.email)
    token = _CSRF.search(client.get("/imports").text).group(1)  # type: ignore[union-attr]
    ui = client.post(
        f"/imports/{up.json()['id']}/start",
        data={"csrf_token": token, "map_0": "full_name", "map_1": "email"},
        follow_redirects=False,
    )
    assert ui.status_code == 422
    assert "no column holds the phone number" in html.unescape(ui.text)
    assert (
        client.get(f"/api/v1/imports/{up.json()['id']}", headers=acme.admin.headers).json()[
            "status"
        ]
        == "uploaded"
    )
    _nothing_imported(db, client, acme)
