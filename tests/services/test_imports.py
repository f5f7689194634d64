"""CSV imports end to end on both engines: policies, tags, consent, rejects, resume, re-runs."""

from __future__ import annotations

import gc
import io
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import Org, make_org
from textdesk.services import consent, contacts, custom_fields, imports
from textdesk.services.auth import Principal
from textdesk.services.contacts import ContactInput
from textdesk.services.errors import Conflict, Forbidden, Invalid
from textdesk.settings import Environment, Settings
from textdesk.store.db import Database
from textdesk.store.tables import consent_events, import_rejects, utcnow
from textdesk.store.tables import contacts as contacts_table
from textdesk.store.tables import imports as imports_table


@pytest.fixture
def cfg(tmp_path: Path) -> Settings:
    return Settings(
        env=Environment.TEST,
        data_dir=tmp_path / "data",
        secret_key="test-secret-key-0123456789",
        _env_file=None,  # type: ignore[call-arg]
    )


def _upload(db: Database, cfg: Settings, who: Principal, data: bytes | str) -> imports.ImportView:
    raw = data.encode() if isinstance(data, str) else data
    return imports.upload(db, cfg, who, filename="list.csv", stream=io.BytesIO(raw))


def _import(
    db: Database, cfg: Settings, who: Principal, data: bytes | str, **start: Any
) -> imports.ImportView:
    run = start.pop("run", {})
    view = _upload(db, cfg, who, data)
    imports.start_import(db, who, view.id, **start)
    assert imports.claim(db, "test-worker") == view.id
    return imports.run_import(db, view.id, "test-worker", **run)


def _people(db: Database, org_id: int) -> dict[str, Any]:
    with db.read() as conn:
        rows = conn.execute(
            sa.select(contacts_table).where(contacts_table.c.org_id == org_id)
        ).all()
    return {r.phone_e164: r for r in rows}


def _rejects(db: Database, import_id: int) -> dict[int, str]:
    with db.read() as conn:
        rows = conn.execute(
            sa.select(import_rejects.c.line, import_rejects.c.reason).where(
                import_rejects.c.import_id == import_id
            )
        )
        return {line: reason for line, reason in rows}


def _ledger(db: Database, org_id: int) -> list[tuple[str, str, str]]:
    with db.read() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.select(
                    consent_events.c.phone_e164, consent_events.c.kind, consent_events.c.source
                )
                .where(consent_events.c.org_id == org_id)
                .order_by(consent_events.c.id)
            )
        ]


MESSY = (
    "\ufeffCell Phone;First Name;Last Name;ST;Notes\r\n"
    '(201) 555-0123;Ann;Lee;tx;"likes; semicolons\r\nand newlines"\r\n'
    "555-0199;Bad;Number;TX;\r\n"
    "+1 201 555 0123;Ann;Again;TX;dup\r\n"
    "201.555.0124;Bob;;Texas;\r\n"
    "\r\n"
    "2015550125;Cé;Ñu;ny;\r\n"
)


def test_messy_file_with_rejects_by_line(db: Database, acme: Org, cfg: Settings) -> None:
    admin = acme.admin.principal
    up = _upload(db, cfg, admin, MESSY)
    assert (up.encoding, up.delimiter, up.status) == ("utf-8-sig", ";", "uploaded")
    assert up.mapping == {
        "Cell Phone": "phone",
        "First Name": "first_name",
        "Last Name": "last_name",
        "ST": "state",
    }
    assert up.preview[0][4] == "likes; semicolons\r\nand newlines"
    imports.start_import(db, admin, up.id, tags=["Spring", "spring ", "vip"])
    assert imports.claim(db, "w") == up.id
    done = imports.run_import(db, up.id, "w")
    assert (done.status, done.inserted, done.updated, done.skipped, done.rejected) == (
        "done",
        2,
        0,
        0,
        3,
    )
    assert done.total_rows == 6  # data rows: lines 2 to 7
    people = _people(db, acme.org.id)
    assert set(people) == {"+12015550123", "+12015550125"}
    assert people["+12015550125"].first_name == "Cé"
    assert people["+12015550125"].state == "NY"
    assert people["+12015550123"].tags == ["spring", "vip"]
    rejects = _rejects(db, up.id)
    assert sorted(rejects) == [3, 4, 5]
    assert rejects[3].startswith("invalid number")
    assert rejects[4].startswith("duplicate in file: +12015550123")
    assert rejects[5].startswith("state must be two letters")
    rows = list(imports.reject_rows(db, admin, up.id))
    assert rows[0] == ["3", rejects[3], "555-0199,Bad,Number,TX,"]
    assert list((cfg.data_dir / "imports").iterdir()) == []  # the file goes once done


def test_latin1_tab_file(db: Database, acme: Org, cfg: Settings) -> None:
    data = "mobile\tfname\tlname\n2015550123\tRené\tGarçon\n".encode("latin-1")
    done = _import(db, cfg, acme.admin.principal, data)
    assert done.inserted == 1
    assert _people(db, acme.org.id)["+12015550123"].last_name == "Garçon"


@pytest.mark.parametrize(
    ("policy", "first", "last", "email", "tags"),
    [
        ("fill", "Ann", "Lee", "new@example.com", ["new", "old"]),
        ("overwrite", "Annie", "Lee", "new@example.com", ["new", "old"]),
        ("skip", "Ann", "", None, ["old"]),
    ],
)
def test_policies(
    db: Database,
    acme: Org,
    cfg: Settings,
    policy: str,
    first: str,
    last: str,
    email: str | None,
    tags: list[str],
) -> None:
    admin = acme.admin.principal
    contacts.create_contact(
        db, admin, ContactInput(phone="+12015550123", first_name="Ann", tags=["old"])
    )
    data = "phone,first,last,email\n2015550123,Annie,Lee,new@example.com\n2015550124,Zed,,\n"
    done = _import(db, cfg, admin, data, policy=policy, tags=["new"])
    person = _people(db, acme.org.id)["+12015550123"]
    assert (person.first_name, person.last_name, person.email) == (first, last, email)
    assert sorted(person.tags) == tags
    assert done.inserted == 1
    assert (done.updated, done.skipped) == ((0, 1) if policy == "skip" else (1, 0))


def test_custom_fields_and_consent(db: Database, acme: Org, cfg: Settings) -> None:
    admin = acme.admin.principal
    custom_fields.create_field(db, admin, key="last_order", label="Last order", type_="date")
    data = (
        "phone,opted_in,consent source,consent timestamp,last order\n"
        "2015550123,yes,web form 12,2026-03-01T10:00:00Z,03/04/2026\n"
        "2015550124,no,,,\n"
        "2015550125,,,,2026-02-30\n"
    )
    done = _import(db, cfg, admin, data)
    people = _people(db, acme.org.id)
    assert people["+12015550123"].fields == {"last_order": "2026-03-04"}
    assert people["+12015550124"].opted_out
    assert not people["+12015550123"].opted_out
    assert done.rejected == 1
    assert "fields.last_order" in _rejects(db, done.id)[4]
    assert _ledger(db, acme.org.id) == [
        ("+12015550123", "opt_in", "import"),
        ("+12015550124", "opt_out", "import"),
    ]
    with db.read() as conn:
        event = consent.history(conn, acme.org.id, people["+12015550123"].id)[0]
    assert event.evidence["source"] == "web form 12"
    assert event.evidence["timestamp"] == "2026-03-01T10:00:00+00:00"
    assert event.evidence["line"] == 2


def test_opted_out_numbers_are_never_resubscribed(db: Database, acme: Org, cfg: Settings) -> None:
    admin = acme.admin.principal
    ann = contacts.create_contact(db, admin, ContactInput(phone="+12015550123", first_name="Ann"))
    consent.agent_opt_out(db, admin, ann.id, note="asked on the phone")
    data = "phone,first,opted_in\n2015550123,Annie,yes\n2015550124,Bob,yes\n"
    done = _import(db, cfg, admin, data, policy="overwrite", all_opted_in=True)
    people = _people(db, acme.org.id)
    assert people["+12015550123"].opted_out
    assert people["+12015550123"].first_name == "Ann"
    assert _rejects(db, done.id)[2].startswith("opted out: +12015550123")
    assert [k for p, k, _s in _ledger(db, acme.org.id) if p == "+12015550123"] == ["opt_out"]
    # A row without a consent column still updates the opted-out contact, which stays out.
    done = _import(db, cfg, admin, "phone,first\n2015550123,Annie\n", policy="overwrite")
    assert _people(db, acme.org.id)["+12015550123"].opted_out
    assert _people(db, acme.org.id)["+12015550123"].first_name == "Annie"


def test_rerun_is_idempotent(db: Database, acme: Org, cfg: Settings) -> None:
    admin = acme.admin.principal
    data = "phone,first,opted_in\n2015550123,Ann,yes\n2015550124,Bob,yes\nnope,X,yes\n"
    first = _import(db, cfg, admin, data, tags=["t"])
    before = (_people(db, acme.org.id), _ledger(db, acme.org.id))
    again = _import(db, cfg, admin, data, tags=["t"])
    assert (first.inserted, first.rejected) == (2, 1)
    assert (again.inserted, again.updated, again.skipped, again.rejected) == (0, 0, 2, 1)
    after = (_people(db, acme.org.id), _ledger(db, acme.org.id))
    assert {p: tuple(r) for p, r in before[0].items()} == {p: tuple(r) for p, r in after[0].items()}
    assert before[1] == after[1]


def _big(n: int) -> str:
    lines = ["phone,first,opted_in"]
    for i in range(n):
        phone = f"201555{i % 7000:04d}" if i % 11 else "12"
        lines.append(f"{phone},P{i},{'yes' if i % 3 else ''}")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("batch_size", ["explicit", "default"])
def test_resume_after_crash_equals_uninterrupted_run(
    db: Database, acme: Org, cfg: Settings, monkeypatch: pytest.MonkeyPatch, batch_size: str
) -> None:
    """A crash in the fourth batch leaves the first three committed (and nothing of the fourth
    or of a batch written beside it, PostgreSQL); the resumed run ends like an uninterrupted
    one. "default": the batch size the engine gets when none is given (SQLITE_BATCH_ROWS on
    SQLite, BATCH_ROWS on PostgreSQL), scaled down to the test's file."""
    if batch_size == "default":
        monkeypatch.setattr(imports, "SQLITE_BATCH_ROWS", 1000 if db.is_sqlite else 10**9)
        monkeypatch.setattr(imports, "BATCH_ROWS", 10**9 if db.is_sqlite else 1000)
        run: dict[str, Any] = {}
    else:
        run = {"batch_rows": 1000}
    data = _big(9000)
    other = make_org(db, "Reference")
    reference = _import(db, cfg, other.admin.principal, data, run=run)

    admin = acme.admin.principal
    up = _upload(db, cfg, admin, data)
    imports.start_import(db, admin, up.id)
    assert imports.claim(db, "doomed") == up.id
    real_apply = imports._apply

    def crash_in_fourth_batch(conn: Any, run_: Any, batch: Any, now: Any) -> Any:
        # By content, not by call count: on PostgreSQL the fifth batch may reach here first.
        if batch and batch[0][0].line == 3002:  # lines 3002-4001: the fourth batch of 1,000 rows
            raise RuntimeError("power cut")
        return real_apply(conn, run_, batch, now)

    monkeypatch.setattr(imports, "_apply", crash_in_fourth_batch)
    with pytest.raises(RuntimeError, match="power cut"):
        imports.run_import(db, up.id, "doomed", **run)
    monkeypatch.setattr(imports, "_apply", real_apply)
    with db.read() as conn:
        half = imports.get_import(conn, acme.org.id, up.id)
    assert half.status == "running"
    assert half.processed_rows == 3000
    # Exactly the first three batches' contacts, nothing of a batch written beside the fourth.
    first_3000 = _big(9000).splitlines()[1:3001]
    phones = {f"+1{r.split(',')[0]}" for r in first_3000 if not r.startswith("12,")}
    assert set(_people(db, acme.org.id)) == phones
    # The lease has not expired: nobody else may take it yet.
    assert imports.claim(db, "rescuer") is None
    with db.write() as conn:
        conn.execute(sa.update(imports_table).values(lease_until=utcnow() - timedelta(seconds=1)))
    assert imports.claim(db, "rescuer") == up.id
    resumed = imports.run_import(db, up.id, "rescuer", **run)

    def counters(v: imports.ImportView) -> tuple[int, ...]:
        return (v.inserted, v.updated, v.skipped, v.rejected, v.processed_rows)

    assert resumed.status == "done"
    assert counters(resumed) == counters(reference)

    def shape(org_id: int) -> Any:
        people = {
            p: (r.first_name, r.opted_out, tuple(r.tags)) for p, r in _people(db, org_id).items()
        }
        return people, sorted((p, k) for p, k, _s in _ledger(db, org_id))

    assert shape(acme.org.id) == shape(other.org.id)
    assert _rejects(db, resumed.id) == _rejects(db, reference.id)


def test_batches_commit_in_file_order(
    db: Database, acme: Org, cfg: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL writes two batches at a time (each its own transaction): the second may
    finish its work first, yet it commits only after the first, so ``processed_rows`` only
    moves forward over committed batches. (SQLite writes one batch at a time.)"""
    import threading

    real_apply = imports._apply
    second_done = threading.Event()

    def first_batch_slow(conn: Any, run_: Any, batch: Any, now: Any) -> Any:
        counts = real_apply(conn, run_, batch, now)
        first = batch[0][0].line if batch else None
        if first == 1002:
            second_done.set()
        elif first == 2 and not db.is_sqlite:
            assert second_done.wait(120), "the second batch was not written beside the first"
        return counts

    monkeypatch.setattr(imports, "_apply", first_batch_slow)
    admin = acme.admin.principal
    seen: list[tuple[int, int]] = []

    def progress(view: imports.ImportView) -> None:
        with db.read() as conn:
            committed = conn.execute(
                sa.select(sa.func.count())
                .select_from(contacts_table)
                .where(contacts_table.c.org_id == acme.org.id)
            ).scalar_one()
        seen.append((view.processed_rows, committed))

    done = _import(db, cfg, admin, _named(3000), run={"batch_rows": 1000, "on_progress": progress})
    assert done.status == "done" and done.inserted == 3000
    assert seen == [(1000, 1000), (2000, 2000), (3000, 3000), (3000, 3000)]


def test_parallel_normalization_gives_the_same_result(
    db: Database, acme: Org, cfg: Settings
) -> None:
    data = _big(3000)
    other = make_org(db, "Serial")
    serial = _import(db, cfg, other.admin.principal, data, run={"processes": 0})
    parallel = _import(db, cfg, acme.admin.principal, data, run={"processes": 2, "batch_rows": 700})
    assert (serial.inserted, serial.rejected) == (parallel.inserted, parallel.rejected)
    assert _rejects(db, serial.id) == _rejects(db, parallel.id)


def test_the_collector_runs_less_often_during_an_import_and_is_put_back(
    db: Database, acme: Org, cfg: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []
    done = _import(
        db,
        cfg,
        acme.admin.principal,
        _big(300),
        run={"batch_rows": 100, "on_progress": lambda _v: seen.append(gc.get_threshold())},
    )
    assert done.status == "done"
    assert seen and all(t[0] == imports.GC_YOUNG_THRESHOLD for t in seen)
    assert gc.get_threshold() == before
    # Put back after a failed run too.
    monkeypatch.setattr(imports, "_apply", lambda *_a: (_ for _ in ()).throw(RuntimeError("x")))
    with pytest.raises(RuntimeError):
        _import(db, cfg, acme.admin.principal, _big(10))
    assert gc.get_threshold() == before


def test_the_reading_process_collects_rarely(cfg: Settings, tmp_path: Path) -> None:
    path = tmp_path / "list.csv"
    path.write_text(_big(20))
    plan = imports.csvimport.plan_for(["phone", "first", "opted_in"], {"phone": "phone"}, "US", {})
    out: list[Any] = []

    class Queue:
        def put(self, item: Any) -> None:
            out.append((item, gc.get_threshold()))

    before = gc.get_threshold()
    try:
        imports._parse_into(Queue(), str(path), "utf-8", ",", plan, 1, False)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    assert out[-1][0] is None
    assert all(t[0] == imports.GC_YOUNG_THRESHOLD for _item, t in out)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"),
        (b"phone|first\n2015550123|Ann\n", "single column"),
        (b"phone,first\n2015550123," + b"y" * (10 * 1024 * 1024) + b"\n", "line 2 is longer"),
    ],
)
def test_bad_files_leave_nothing(
    db: Database, acme: Org, cfg: Settings, data: bytes, message: str
) -> None:
    with pytest.raises(Invalid, match=message) as err:
        _upload(db, cfg, acme.admin.principal, data)
    assert err.value.field == "file"
    with db.read() as conn:
        assert imports.list_imports(conn, acme.org.id) == []
    assert list((cfg.data_dir / "imports").iterdir()) == []


def test_missing_phone_column_and_bad_mapping(db: Database, acme: Org, cfg: Settings) -> None:
    admin = acme.admin.principal
    up = _upload(db, cfg, admin, "first,last\nAnn,Lee\n")
    assert up.mapping == {"first": "first_name", "last": "last_name"}
    with pytest.raises(Invalid, match="no column holds the phone number") as err:
        imports.start_import(db, admin, up.id)
    assert err.value.field == "mapping"
    with pytest.raises(Invalid, match="policy must be"):
        imports.start_import(db, admin, up.id, mapping={"first": "phone"}, policy="merge")
    imports.start_import(db, admin, up.id, mapping={"first": "phone"})
    with pytest.raises(Conflict):
        imports.start_import(db, admin, up.id, mapping={"first": "phone"})
    assert _people(db, acme.org.id) == {}


def test_agents_cannot_import_and_cancel_stops(db: Database, acme: Org, cfg: Settings) -> None:
    with pytest.raises(Forbidden):
        _upload(db, cfg, acme.agent.principal, "phone\n2015550123\n")
    admin = acme.admin.principal
    up = _upload(db, cfg, admin, _big(50))
    imports.start_import(db, admin, up.id)
    assert imports.claim(db, "w") == up.id
    imports.cancel_import(db, admin, up.id)
    after = imports.run_import(db, up.id, "w", batch_rows=10)
    assert after.status == "cancelled"
    assert _people(db, acme.org.id) == {}


# --- the bulk write paths (services/import_bulk.py) ----------------------------------------------


def _named(n: int, start: int = 0) -> str:
    lines = ["phone,first,last,email,opted_in"]
    for i in range(start, start + n):
        lines.append(f"201555{i:04d},Zed{i},Smith-{i},p{i}@example.com,{'yes' if i % 2 else ''}")
    return "\n".join(lines) + "\n"


def test_bulk_batches_keep_search_correct(db: Database, acme: Org, cfg: Settings) -> None:
    """A batch big enough for the bulk FTS path: every new contact is found by name, the
    trigger is back as it was (rows written by other paths are indexed), the index is sound."""
    from textdesk.services import import_bulk, search

    assert import_bulk.FTS_BULK_MIN < 600
    admin = acme.admin.principal
    trigger_sql = None
    if db.is_sqlite:
        with db.read() as conn:
            trigger_sql = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'contacts_fts_ai'"
            ).scalar_one()
    done = _import(db, cfg, admin, _named(600), run={"batch_rows": 400})
    assert (done.status, done.inserted) == ("done", 600)
    with db.read() as conn:
        for i in (0, 399, 400, 599):  # both batches, both ends
            found = search.search_contacts(conn, acme.org.id, f"zed{i}")
            assert [c.phone_e164 for c in found] == [f"+1201555{i:04d}"]
            assert [c.phone_e164 for c in search.search_contacts(conn, acme.org.id, f"smith-{i}")]
        if db.is_sqlite:
            assert (
                conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE name = 'contacts_fts_ai'"
                ).scalar_one()
                == trigger_sql
            )
            conn.exec_driver_sql(
                "INSERT INTO contacts_fts(contacts_fts) VALUES ('integrity-check')"
            )
    # Another path after the import still goes through the trigger.
    contacts.create_contact(
        db, admin, ContactInput(phone="2015559999", first_name="Quentin", last_name="Late")
    )
    with db.read() as conn:
        assert [c.first_name for c in search.search_contacts(conn, acme.org.id, "quentin")] == [
            "Quentin"
        ]


def test_failed_bulk_batch_leaves_schema_and_index_untouched(
    db: Database, acme: Org, cfg: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash after the trigger was dropped rolls the drop back with the rest of the batch."""
    from textdesk.services import import_bulk

    real = import_bulk.insert_consent

    def crash(*args: Any) -> None:
        real(*args)
        raise RuntimeError("power cut")

    monkeypatch.setattr(import_bulk, "insert_consent", crash)
    admin = acme.admin.principal
    up = _upload(db, cfg, admin, _named(500))
    imports.start_import(db, admin, up.id)
    assert imports.claim(db, "w") == up.id
    with pytest.raises(RuntimeError, match="power cut"):
        imports.run_import(db, up.id, "w")
    assert _people(db, acme.org.id) == {}
    if db.is_sqlite:
        with db.read() as conn:
            assert conn.exec_driver_sql(
                "SELECT count(*) FROM sqlite_master WHERE name = 'contacts_fts_ai'"
            ).scalar_one()
            assert conn.exec_driver_sql("SELECT count(*) FROM contacts_fts").scalar_one() == 0


def test_bulk_rows_read_back_like_core_rows(db: Database, acme: Org, cfg: Settings) -> None:
    """Values written around Core (executemany tuples / COPY) are what Core would write."""
    admin = acme.admin.principal
    custom_fields.create_field(db, admin, key="score", label="Score", type_="number")
    data = "phone,first,score,opted_in,consent_source,consent_timestamp\n"
    data += "".join(
        f"201555{i:04d},Ann{i},{i},yes,web form {i},2026-01-0{1 + i % 9}T10:00:00Z\n"
        for i in range(300)
    )
    done = _import(db, cfg, admin, data, tags=["b", "a"])
    assert done.inserted == 300
    people = _people(db, acme.org.id)
    one = people["+12015550007"]
    assert one.fields == {"score": 7}
    assert one.tags == ["a", "b"]
    assert one.opted_out is False
    assert one.created_at.tzinfo is not None
    assert abs((one.created_at - utcnow()).total_seconds()) < 120
    with db.read() as conn:
        event = conn.execute(
            sa.select(consent_events).where(consent_events.c.phone_e164 == "+12015550007")
        ).one()
        if db.is_sqlite:  # stored in the text form Core uses, so SQL comparisons keep working
            stamp = conn.exec_driver_sql(
                "SELECT created_at FROM contacts WHERE phone_e164 = '+12015550007'"
            ).scalar_one()
            assert len(stamp) == 26 and stamp[10] == " "
    assert event.contact_id == one.id
    assert (event.kind, event.source, event.actor) == ("opt_in", "import", f"import:{done.id}")
    assert event.evidence == {
        "import_id": done.id,
        "file": "list.csv",
        "line": 9,
        "source": "web form 7",
        "timestamp": "2026-01-08T10:00:00+00:00",
    }


@pytest.mark.parametrize(
    ("source", "row_source", "at"),
    [("", None, None), ("fair booth", None, None), ("x", 'He said "yes" ✓', "2026-01-01")],
)
def test_evidence_json_is_json_dumps(source: str, row_source: str | None, at: str | None) -> None:
    import json

    from textdesk.domain.csvimport import RowValues

    run = imports._Run(
        import_id=7,
        org_id=1,
        worker="w",
        policy=imports.Policy.FILL,
        tags=[],
        all_opted_in=False,
        consent_source=source,
        filename='my "list".csv',
    )
    item = RowValues(
        line=12,
        phone="+12015550123",
        values={},
        fields={},
        consent_source=row_source,
        consent_at=at,
    )
    assert imports._EvidenceJson(run)(item) == json.dumps(imports._evidence(run, item))


def test_a_batch_that_loses_a_race_is_redone(
    db: Database, acme: Org, cfg: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: a contact created by someone else between the batch's read and its insert
    is not lost nor duplicated: the batch is redone and sees it as existing. (SQLite's write
    lock makes the race impossible there.)"""
    if db.is_sqlite:
        pytest.skip("BEGIN IMMEDIATE excludes the race on SQLite")
    from textdesk.services import import_bulk

    admin = acme.admin.principal
    real = import_bulk.existing_contacts
    calls = {"n": 0}

    def stale_first_read(conn: Any, org_id: int, phones: Any) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 1:
            # Someone else creates a contact of this batch, committed, after our read.
            contacts.create_contact(
                db, admin, ContactInput(phone="2015550003", first_name="", last_name="Other")
            )
            return {}
        return real(conn, org_id, phones)

    monkeypatch.setattr(import_bulk, "existing_contacts", stale_first_read)
    done = _import(db, cfg, admin, _named(10))
    assert calls["n"] == 2
    assert (done.status, done.inserted, done.updated) == ("done", 9, 1)
    people = _people(db, acme.org.id)
    assert len(people) == 10
    assert (people["+12015550003"].first_name, people["+12015550003"].last_name) == (
        "Zed3",
        "Other",
    )


def test_a_stop_in_flight_is_never_overtaken_by_an_import(
    db: Database, acme: Org, cfg: Settings
) -> None:
    """A STOP whose transaction is open while an import batch merges the same contact: the
    import waits for it (PostgreSQL row lock; SQLite's single writer), then sees the opt-out
    and refuses to re-subscribe; the ledger ends with the opt-out."""
    import threading

    from textdesk.services.consent import ConsentKind, ConsentSource

    admin = acme.admin.principal
    contacts.create_contact(db, admin, ContactInput(phone="+12015550123", first_name="Ann"))
    view = _upload(db, cfg, admin, "phone,first,opted_in\n2015550123,Annie,yes\n")
    imports.start_import(db, admin, view.id, policy="overwrite")
    assert imports.claim(db, "test-worker") == view.id
    done: dict[str, Any] = {}
    with db.write() as conn:  # the STOP's transaction, still open
        consent.record(
            conn,
            org_id=acme.org.id,
            phone="+12015550123",
            kind=ConsentKind.OPT_OUT,
            source=ConsentSource.KEYWORD,
            actor="provider:simulator",
            now=utcnow(),
        )
        worker = threading.Thread(
            target=lambda: done.update(view=imports.run_import(db, view.id, "test-worker"))
        )
        worker.start()
        worker.join(timeout=1.0)
        assert worker.is_alive(), "the import must wait for the open STOP transaction"
    worker.join(timeout=120)  # a safety net
    assert not worker.is_alive()
    assert _people(db, acme.org.id)["+12015550123"].opted_out
    assert [k for p, k, _s in _ledger(db, acme.org.id) if p == "+12015550123"] == ["opt_out"]
    assert _rejects(db, done["view"].id)[2].startswith("opted out: +12015550123")


def test_ledger_events_are_the_same_written_set_wise_or_row_by_row(
    db: Database, acme: Org, globex: Org, cfg: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL writes the new contacts' ledger events in the statement that inserts them
    (``import_bulk.NewConsent``); the row-by-row path (SQLite's, and PostgreSQL's before) must
    give the same rows, every column. The same file into two organizations, one per path."""
    from textdesk.services import import_bulk

    data = (
        "phone,first,opted_in,consent_source,consent_timestamp\n"
        "2015550001,Ann,yes,web form 1,2026-01-02T10:00:00Z\n"
        "2015550002,Bob,no,,\n"
        "2015550003,Cy,,,\n"
        "2015550100,Old,yes,,\n"  # an existing contact: opted in by the import
        "2015550101,Out,yes,,\n"  # opted out earlier: rejected
        "2015550004,Di,yes,,\n"
        '2015550005,Ed,yes,"booth ""7"" ✓",\n'
    )

    def run(org: Org) -> tuple[int, list[tuple[Any, ...]]]:
        admin = org.admin.principal
        contacts.create_contact(db, admin, ContactInput(phone="+12015550100", first_name="Old"))
        out = contacts.create_contact(
            db, admin, ContactInput(phone="+12015550101", first_name="Out")
        )
        consent.agent_opt_out(db, admin, out.id, note="asked on the phone")
        done = _import(
            db, cfg, admin, data, consent_source="fair", run={"batch_rows": 3, "processes": 0}
        )
        assert (done.inserted, done.updated, done.rejected) == (5, 0, 1)
        people = {p.id: p for p in _people(db, org.org.id).values()}
        with db.read() as conn:
            events = conn.execute(
                sa.select(consent_events)
                .where(
                    consent_events.c.org_id == org.org.id,
                    consent_events.c.actor == f"import:{done.id}",
                )
                .order_by(consent_events.c.phone_e164)
            ).all()
        rows = []
        for e in events:
            contact = people[e.contact_id]
            evidence = dict(e.evidence)
            assert evidence.pop("import_id") == done.id
            rows.append(
                (
                    e.phone_e164,
                    contact.phone_e164,
                    e.kind,
                    e.purpose,
                    e.source,
                    evidence,
                    e.message_id,
                    # new contacts: the batch's own time, the contacts' creation time
                    e.created_at == contact.created_at,
                    e.created_at.tzinfo is not None,
                )
            )
        return done.id, rows

    _id, set_wise = run(acme)
    monkeypatch.setattr(import_bulk, "consent_with_contacts", lambda conn: False)
    _id, row_wise = run(globex)
    assert set_wise == row_wise
    assert [(r[0], r[2], r[5], r[7]) for r in set_wise] == [
        (
            "+12015550001",
            "opt_in",
            {
                "file": "list.csv",
                "line": 2,
                "source": "web form 1",
                "timestamp": "2026-01-02T10:00:00+00:00",
            },
            True,
        ),
        ("+12015550002", "opt_out", {"file": "list.csv", "line": 3, "source": "fair"}, True),
        ("+12015550004", "opt_in", {"file": "list.csv", "line": 7, "source": "fair"}, True),
        ("+12015550005", "opt_in", {"file": "list.csv", "line": 8, "source": 'booth "7" ✓'}, True),
        ("+12015550100", "opt_in", {"file": "list.csv", "line": 5, "source": "fair"}, False),
    ]
    assert {r[3:5] + r[6:7] + r[8:] for r in set_wise} == {("all", "import", None, True)}
