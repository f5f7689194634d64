"""``textdesk import FILE`` as an operator runs it: a real process against the test database
(SQLite and PostgreSQL), checked by its exit code, its output and what it leaves in it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from textdesk.services import accounts
from textdesk.store.db import Database
from textdesk.store.tables import contacts, import_rejects, imports

TEXTDESK = str(Path(sys.executable).with_name("textdesk"))


@pytest.fixture
def cli_db(db_url: str, db: Database) -> tuple[str, Database]:
    accounts.create_organization(db, "Acme")
    return db_url, db


def _run(url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "TEXTDESK_DATABASE_URL": url,
        "TEXTDESK_DATA_DIR": str(tmp_path / "data"),
    }
    return subprocess.run(
        [TEXTDESK, "import", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_import_a_small_file(cli_db: tuple[str, Database], tmp_path: Path) -> None:
    url, db = cli_db
    data = tmp_path / "list.csv"
    data.write_text(
        "Cell Phone;First Name;Email;Notes\n"
        "(201) 555-0123;Ann;ann@example.com;x\n"
        "n/a;Bob;bob@example.com;\n"
        "+1 201 555 0124;Cleo;;\n"
        "201.555.0123;Ann again;;\n",
        encoding="utf-8",
    )
    result = _run(url, tmp_path, str(data), "--tag", "CLI", "--map", "Notes=")
    assert result.returncode == 0, result.stderr
    assert "done" in result.stdout
    assert "2 new" in result.stdout
    assert "2 rejected" in result.stdout
    assert "delimiter ';'" in result.stderr  # the description of the file
    assert "Notes" in result.stderr and "(ignored)" in result.stderr
    with db.read() as conn:
        people = {
            r.phone_e164: (r.first_name, r.email, list(r.tags))
            for r in conn.execute(sa.select(contacts))
        }
        rejects = {
            line: reason
            for line, reason in conn.execute(
                sa.select(import_rejects.c.line, import_rejects.c.reason)
            )
        }
    assert people == {
        "+12015550123": ("Ann", "ann@example.com", ["cli"]),
        "+12015550124": ("Cleo", None, ["cli"]),
    }
    assert set(rejects) == {3, 5}
    assert rejects[3].startswith("invalid number")
    assert rejects[5].startswith("duplicate in file: +12015550123")


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (b"Cell,Name\n\x00\x01\x02binary", [], "line 2 contains a NUL byte"),
        (b"", [], "the file is empty"),
        (b"Name,Email\nAnn,ann@example.com\n", [], "no column holds the phone number"),
        (b"Cell,Name\n2015550123,Ann\n", ["--map", "Mobile=phone"], "no column 'Mobile'"),
        (b"Cell,Name\n2015550123,Ann\n", ["--policy", "merge"], "policy must be fill"),
        (
            b'Cell,Name\n2015550123,"Ann\n2015550124,Bob\n',
            [],
            "line 2: a quote opened on this line is never closed",
        ),
    ],
)
def test_bad_input_exits_2_and_imports_nothing(
    cli_db: tuple[str, Database],
    tmp_path: Path,
    content: bytes,
    args: list[str],
    message: str,
) -> None:
    url, db = cli_db
    data = tmp_path / "bad.csv"
    data.write_bytes(content)
    result = _run(url, tmp_path, str(data), *args)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "error:" in result.stderr and message in result.stderr
    with db.read() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(contacts)).scalar_one() == 0
        statuses = conn.execute(sa.select(imports.c.status)).scalars().all()
    # A file that passed the checks but whose options did not is cancelled (nothing ran).
    assert set(statuses) <= {"cancelled"}
    assert not list((tmp_path / "data" / "imports").glob("*.csv"))


def test_missing_file_is_a_usage_error(cli_db: tuple[str, Database], tmp_path: Path) -> None:
    url, _db = cli_db
    result = _run(url, tmp_path, str(tmp_path / "nope.csv"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr
