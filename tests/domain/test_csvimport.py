"""Reading real-world contact lists: encodings, delimiters, quoting, mapping, row rules."""

from __future__ import annotations

import io
import pickle
import random
from typing import Any

import phonenumbers
import pytest

from textdesk.domain import csvimport
from textdesk.domain.csvimport import BadFile, Plan, Rejected, RowValues
from textdesk.domain.phone import PhoneError, normalize


def _scan(data: bytes) -> csvimport.FileInfo:
    return csvimport.scan(io.BytesIO(data))


def _rows(data: bytes) -> list[tuple[int, list[str]]]:
    info = _scan(data)
    return list(csvimport.iter_rows(io.BytesIO(data), info.encoding, info.delimiter))


def _coerce(type_: str, raw: Any, key: str) -> Any:
    if type_ == "number":
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"must be a number, got {raw!r}") from None
    return raw


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        ("phone,first\n2015550123,José\n".encode(), "utf-8"),
        ("\ufeffphone,first\n2015550123,José\n".encode(), "utf-8-sig"),
        ("phone,first\n2015550123,José\n".encode("cp1252"), "cp1252"),
        ("phone,first\n2015550123,José\n".encode("utf-16"), "utf-16"),
        (b"phone,first\n2015550123,Jos\x81\n", "latin-1"),
    ],
)
def test_encodings(data: bytes, encoding: str) -> None:
    info = _scan(data)
    assert info.encoding == encoding
    assert info.header == ["phone", "first"]
    rows = _rows(data)
    assert rows[0][0] == 2
    assert rows[0][1][0] == "2015550123"
    if encoding != "latin-1":
        assert rows[0][1][1] == "José"


def test_latin1_found_late_in_the_file() -> None:
    # The first megabytes are plain ASCII; the one accented byte comes at the very end.
    body = b"phone,first\n" + b"2015550123,Ann\n" * 150_000 + b"2015550124,Ren\xe9e\n"
    info = _scan(body)
    assert info.encoding == "cp1252"
    assert _rows(body)[-1] == (150_002, ["2015550124", "Renée"])


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_delimiters(delimiter: str) -> None:
    lines = [["Phone", "First Name", "Notes"], ["2015550123", "Ann", "likes, commas; and tabs"]]
    text = "".join(
        delimiter.join(f'"{c}"' if any(d in c for d in ",;\t") else c for c in row) + "\r\n"
        for row in lines
    )
    info = _scan(text.encode())
    assert info.delimiter == delimiter
    assert info.header == lines[0]
    assert info.preview == [lines[1]]


def test_quoted_newlines_keep_spreadsheet_line_numbers() -> None:
    data = b'phone,note\n2015550123,"two\nlines, with comma"\n\n2015550124,"say ""hi"""\n'
    assert _rows(data) == [
        (2, ["2015550123", "two\nlines, with comma"]),
        (4, ["2015550124", 'say "hi"']),
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\n\n  \n", "no rows"),
        (b"PK\x03\x04\x14\x00\x00\x00\x08\x00binary", "binary"),
        (b"phone|first|last\n2015550123|Ann|Lee\n", "single column"),
        (b"phone,first\n2015550123," + b"x" * (10 * 1024 * 1024) + b"\n", "line 2 is longer"),
        (b"x" * (10 * 1024 * 1024), "line 1 is longer"),
    ],
)
def test_bad_files(data: bytes, message: str) -> None:
    with pytest.raises(BadFile, match=message):
        _scan(data)


def test_unclosed_quote_is_caught_by_the_field_limit() -> None:
    lines = b'phone,note\n2015550123,"open quote\n' + b"more text\n" * 200_000
    with pytest.raises(BadFile, match=r"line 2: a field runs over .* never closed"):
        _scan(lines)


@pytest.mark.parametrize(
    ("data", "line", "encoding", "delimiter"),
    [
        (b'phone,note\n2015550123,"open\n2015550124,Bob\n2015550125,Cy\n', 2, "utf-8", ","),
        (b'phone,"note\n2015550123,Ann\n', 1, "utf-8", ","),
        (b'phone,note\n2015550123,Ann\n2015550124,"open', 3, "utf-8", ","),
        (
            b'phone,note\n2015550123,"two\nlines"\n2015550124,"open\n2015550125,Cy\n',
            4,
            "utf-8",
            ",",
        ),
        (
            b"phone,note\n" + b"2015550123,Ann\n" * 30 + b'2015550124,"open\n2015550125,Cy\n',
            32,
            "utf-8",
            ",",
        ),
        ('phone,note\n2015550123,"open\n2015550124,Bob\n'.encode("utf-16"), 2, "utf-16", ","),
        ('phone;note\n2015550123;"ouvert\n2015550124;Bébé\n'.encode("cp1252"), 2, "cp1252", ";"),
    ],
    ids=[
        "data row",
        "header",
        "last line, no newline",
        "after a multi-line cell",
        "past the preview",
        "utf-16",
        "cp1252",
    ],
)
def test_an_unclosed_quote_is_refused_with_its_line(
    data: bytes, line: int, encoding: str, delimiter: str
) -> None:
    """Unclosed, a quote would swallow every row after it into one cell: the file is refused,
    naming the line the quote opens on, by the upload's check and by the reader alike."""
    message = rf"^line {line}: a quote opened on this line is never closed"
    with pytest.raises(BadFile, match=message):
        _scan(data)
    with pytest.raises(BadFile, match=message):
        list(csvimport.iter_rows(io.BytesIO(data), encoding, delimiter))


@pytest.mark.parametrize(
    ("data", "rows"),
    [
        (b'phone,note\n2015550123,"closed"\n', [["2015550123", "closed"]]),
        (b'phone,note\n2015550123,"closed"', [["2015550123", "closed"]]),
        (b"phone,note\n2015550123,5'11\"\n", [["2015550123", "5'11\""]]),  # a quote mid-cell
        (b'phone,note\n2015550123,"Bob"x\n', [["2015550123", "Bobx"]]),  # lenient, as before
        (b'phone,note\n2015550123,""""\n2015550124,\n', [["2015550123", '"'], ["2015550124", ""]]),
    ],
)
def test_closed_and_stray_quotes_still_read(data: bytes, rows: list[list[str]]) -> None:
    assert [cells for _line, cells in _rows(data)] == rows


def test_auto_mapping() -> None:
    header = [
        "Cell Phone",
        "FNAME",
        "Surname",
        "E-mail",
        "Postal Code",
        "ST",
        "Opted In",
        "Consent Source",
        "Consent Date",
        "Last Order",
        "whatever",
        "Zip",  # a second zip column is not mapped twice
    ]
    mapping = csvimport.auto_mapping(header, {"last_order": "date"})
    assert mapping == {
        "Cell Phone": "phone",
        "FNAME": "first_name",
        "Surname": "last_name",
        "E-mail": "email",
        "Postal Code": "zip",
        "ST": "state",
        "Opted In": "opted_in",
        "Consent Source": "consent_source",
        "Consent Date": "consent_timestamp",
        "Last Order": "fields.last_order",
    }
    assert csvimport.auto_mapping(["Name", "Mobile"], {}) == {
        "Name": "full_name",
        "Mobile": "phone",
    }
    assert csvimport.column_keys(["a", "", "a"]) == ["a", "#2", "#3"]


def test_plan_errors_name_the_column() -> None:
    with pytest.raises(BadFile, match="no column holds the phone"):
        csvimport.plan_for(["a", "b"], {"a": "first_name"}, "US", {})
    with pytest.raises(BadFile, match="'b' maps to unknown attribute 'shoe_size'"):
        csvimport.plan_for(["a", "b"], {"a": "phone", "b": "shoe_size"}, "US", {})
    with pytest.raises(BadFile, match="'c', which is not in the header"):
        csvimport.plan_for(["a", "b"], {"a": "phone", "c": "email"}, "US", {})
    with pytest.raises(BadFile, match="both map to phone"):
        csvimport.plan_for(["a", "b"], {"a": "phone", "b": "phone"}, "US", {})


PLAN = Plan(
    columns=(
        (0, "phone"),
        (1, "first_name"),
        (2, "state"),
        (3, "opted_in"),
        (4, "consent_timestamp"),
        (5, "fields.orders"),
        (6, "email"),
    ),
    region="US",
    field_types={"orders": "number"},
)


def test_normalize_row_values() -> None:
    row = ["(201) 555-0123", " Ann ", "tx", "Yes", "03/04/2026", "7", "ann@example.com"]
    out = csvimport.normalize_row(2, row, PLAN, _coerce)
    assert isinstance(out, RowValues)
    assert out.phone == "+12015550123"
    assert out.values == {"first_name": "Ann", "state": "TX", "email": "ann@example.com"}
    assert out.fields == {"orders": 7}
    assert out.opted_in is True
    assert out.consent_at == "2026-03-04T00:00:00+00:00"


@pytest.mark.parametrize(
    ("cells", "reason"),
    [
        (["555-0123"], "invalid number: '555-0123' is too short"),
        ([""], "invalid number: missing phone number"),
        (["2015550123", "", "Texas"], "state must be two letters, got 'Texas'"),
        (["2015550123", "", "", "maybe"], "opted_in must be yes/no"),
        (["2015550123", "", "", "", "yesterday"], "malformed consent timestamp 'yesterday'"),
        (["2015550123", "", "", "", "", "many"], "fields.orders: must be a number"),
        (["2015550123", "", "", "", "", "", "ann@"], "malformed e-mail 'ann@'"),
    ],
)
def test_rejections_carry_reasons(cells: list[str], reason: str) -> None:
    out = csvimport.normalize_row(9, cells, PLAN, _coerce)
    assert isinstance(out, Rejected)
    assert out.line == 9
    assert out.reason.startswith(reason)
    assert out.raw.startswith(cells[0] if cells[0] else "")


def test_fast_normalize_agrees_with_normalize() -> None:
    rng = random.Random(5)
    formats = [
        "({a}) {b}-{c}",
        "{a}-{b}-{c}",
        "{a}.{b}.{c}",
        "+1 {a} {b} {c}",
        "1{a}{b}{c}",
        "+1{a}{b}{c}",
        "{a}{b}{c}",
        "{a} {b} {c} x12",
        "+44 20 7946 {c}",
        "{b}-{c}",
    ]
    for _ in range(20_000):
        a = f"{rng.randint(100, 999)}"
        b = f"{rng.randint(0, 999):03d}"
        c = f"{rng.randint(0, 9999):04d}"
        raw = rng.choice(formats).format(a=a, b=b, c=c)
        for region in ("US", "CA", "GB"):
            try:
                expected: str | None = normalize(raw, region)
            except PhoneError:
                expected = None
            try:
                got: str | None = csvimport.fast_normalize(raw, region)
            except PhoneError:
                got = None
            assert got == expected, (raw, region)


def test_nanp_valid_is_libphonenumbers_answer() -> None:
    """The shortcut's validity check gives the library's own answer: every area code and
    exchange class, random numbers, and the lengths a sloppy file produces (9 and 11 digits
    after a leading 0 or 1 is dropped by int())."""
    rng = random.Random(11)
    numbers = [
        npa * 10_000_000 + nxx * 10_000 + rng.randrange(10_000)
        for npa in range(200, 1000)
        for nxx in (rng.randrange(100, 200), rng.randrange(200, 1000), 555, 211)
    ]
    numbers += [rng.randrange(10**9, 10**10) for _ in range(20_000)]
    numbers += [rng.randrange(10**8, 10**9) for _ in range(2_000)]
    numbers += [rng.randrange(10**10, 10**11) for _ in range(2_000)]
    valid = 0
    for n in numbers:
        expected = phonenumbers.is_valid_number(
            phonenumbers.PhoneNumber(country_code=1, national_number=n)
        )
        assert csvimport.nanp_valid(n) == expected, n
        valid += expected
    assert 0.2 * len(numbers) < valid < 0.9 * len(numbers)  # both answers well exercised


def test_row_values_cross_processes_intact() -> None:
    row = RowValues(
        line=4,
        phone="+12015550123",
        values={"first_name": "Zoë"},
        fields={"n": 1.5},
        opted_in=False,
        consent_source="booth",
        consent_at="2026-01-01T00:00:00+00:00",
    )
    assert pickle.loads(pickle.dumps(row)) == row  # noqa: S301 (our own bytes)
