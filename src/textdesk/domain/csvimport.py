"""Reading a contact list exported by whatever tool a customer had: encoding and delimiter
detection, header auto-mapping, a streaming row reader with spreadsheet line numbers, and row
normalization into contact values or a rejection with a reason.

No I/O beyond the binary file object handed in, and no database: ``services.imports`` owns
the import's state, the batching and the writes.

Decisions worth knowing:

* **Line numbers are spreadsheet rows**: the header is row 1, the first data row is row 2, and
  a quoted field with embedded newlines is still one row (that is what Excel shows).
* **Encoding**: UTF-8 (a BOM is dropped), UTF-16 when it starts with its BOM (Excel's "Unicode
  text"), else cp1252 (what Excel on Windows writes; a superset of Latin-1's printable range),
  or Latin-1 if bytes cp1252 leaves undefined appear. NUL bytes mean a binary file (a
  spreadsheet saved as .xlsx, a zip, an image) and are refused.
* **Line length is capped** (``MAX_LINE_CHARS``) both when scanning bytes and when reading rows, so
  a file that is one 10 MB line gets an error naming the line instead of a memory spike.
* **A quote that is never closed is refused**, naming the line it opens on: Python's lenient
  reader would silently make every later row part of one cell. The upload reads the whole file
  for it (only when it has a quote at all); ``iter_rows`` checks it too.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import csv
import functools
import io
import itertools
import re
import unicodedata
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any

import phonenumbers

from textdesk.domain.phone import PhoneError, normalize

__all__ = [
    "ATTRIBUTES",
    "MAX_LINE_CHARS",
    "BadFile",
    "FileInfo",
    "Plan",
    "Rejected",
    "RowValues",
    "auto_mapping",
    "fast_normalize",
    "iter_rows",
    "nanp_valid",
    "normalize_row",
    "normalize_rows",
    "scan",
]

#: Longest line (and field) accepted; real contact rows are a few hundred characters.
MAX_LINE_CHARS = 1_000_000
_CHUNK = 1 << 20
_SAMPLE = 64 * 1024
DELIMITERS = ",;\t"
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}

#: Contact attributes a column can map to ("fields.<key>" for custom fields; "" = ignore).
ATTRIBUTES = (
    "phone",
    "first_name",
    "last_name",
    "full_name",
    "email",
    "zip",
    "state",
    "time_zone",
    "external_id",
    "opted_in",
    "consent_source",
    "consent_timestamp",
)

# Header spellings seen in exports from CRMs, ESPs and spreadsheets, after _key().
_SYNONYMS: dict[str, str] = {}
for _attr, _names in {
    "phone": "cell cellphone cellnumber cellphonenumber mobile mobilephone mobilenumber phone "
    "phonenumber phoneno tel telephone number msisdn sms smsnumber",
    "first_name": "first fname firstname givenname forename",
    "last_name": "last lname lastname surname familyname",
    "full_name": "name fullname contactname",
    "email": "email emailaddress mail",
    "zip": "zip zipcode postalcode postcode postal",
    "state": "state province region st",
    "time_zone": "timezone tz",
    "external_id": "externalid id contactid customerid crmid",
    "opted_in": "optedin optin consent smsconsent subscribed smsoptin",
    "consent_source": "consentsource optinsource source",
    "consent_timestamp": "consenttimestamp consentdate consentat optindate optintimestamp "
    "optedinat",
}.items():
    for _name in _names.split():
        _SYNONYMS[_name] = _attr

#: Attributes stored as written (trimmed, at most 200 characters).
_PLAIN_TEXT = frozenset({"first_name", "last_name", "external_id"})
_TRUE = {"yes", "y", "true", "t", "1", "x", "opted in", "optedin", "subscribed"}
_FALSE = {"no", "n", "false", "f", "0", "opted out", "optedout", "unsubscribed"}
_NANP_CLEAN = re.compile(r"[\s().\-]+")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class BadFile(ValueError):
    """The file cannot be imported at all; the message says why and where."""


@dataclass(frozen=True)
class FileInfo:
    encoding: str
    delimiter: str
    header: list[str]
    #: Data rows estimated from newline count (exact when no field holds a newline).
    estimated_rows: int
    preview: list[list[str]]


def _key(header: str) -> str:
    text = unicodedata.normalize("NFKD", header).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]", "", text)


def column_keys(header: list[str]) -> list[str]:
    """How a mapping names each column: its header, or ``#<n>`` when blank or repeated."""
    seen: set[str] = set()
    keys = []
    for i, name in enumerate(header, start=1):
        name = name.strip()
        key = name if name and name not in seen else f"#{i}"
        seen.add(key)
        keys.append(key)
    return keys


def auto_mapping(header: list[str], custom_fields: dict[str, str]) -> dict[str, str]:
    """Propose an attribute per column (``{column key: attribute}``); unknown headers map to
    a custom field whose key matches, else are left out (ignored). Each attribute once."""
    fields_by_key = {_key(k): k for k in custom_fields}
    mapping: dict[str, str] = {}
    taken: set[str] = set()
    for col, name in zip(column_keys(header), header, strict=True):
        k = _key(name)
        attr = _SYNONYMS.get(k)
        if attr is None and k in fields_by_key:
            attr = f"fields.{fields_by_key[k]}"
        if attr is None and k.endswith(("phone", "cell", "mobile")):
            attr = "phone"
        if attr is not None and attr not in taken:
            mapping[col] = attr
            taken.add(attr)
    # "name" alone is a full name, but not when first/last columns exist too.
    if "full_name" in taken and {"first_name", "last_name"} & taken:
        mapping = {c: a for c, a in mapping.items() if a != "full_name"}
    return mapping


# --- bytes: encoding, binary check, line lengths -----------------------------------------------


def _scan_bytes(f: IO[bytes]) -> tuple[str, int, bool]:
    """One pass over the whole file: (encoding, newline count, whether a quote occurs).
    Raises BadFile."""
    f.seek(0)
    head = f.read(4)
    if not head:
        raise BadFile("the file is empty")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", *_count_utf16_lines(f)
    encoding = "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"
    f.seek(0)
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8 = True
    undefined_cp1252 = False
    line = 1
    current = 0  # length of the line being read, in bytes
    quotes = False
    while chunk := f.read(_CHUNK):
        quotes = quotes or b'"' in chunk
        if b"\x00" in chunk:
            at = line + chunk[: chunk.index(b"\x00")].count(b"\n")
            raise BadFile(
                f"line {at} contains a NUL byte: this is a binary file (a spreadsheet .xlsx, "
                "a zip or an image?), not CSV text; save it as CSV and upload again"
            )
        if utf8:
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError:
                utf8 = False
        if not utf8 and not undefined_cp1252:
            undefined_cp1252 = any(
                b in chunk for b in (b"\x81", b"\x8d", b"\x8f", b"\x90", b"\x9d")
            )
        parts = chunk.split(b"\n")
        for i, part in enumerate(parts):
            length = current + len(part) if i == 0 else len(part)
            if length > MAX_LINE_CHARS:
                _too_long(line + i)
        current = current + len(parts[0]) if len(parts) == 1 else len(parts[-1])
        line += len(parts) - 1
    if utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8 = False
    if not utf8:
        encoding = "latin-1" if undefined_cp1252 else "cp1252"
    # Lines in the file: a last line without a newline still counts.
    return encoding, line if current else line - 1, quotes


def _too_long(line: int) -> None:
    raise BadFile(
        f"line {line} is longer than {MAX_LINE_CHARS:,} characters: not a contact list row "
        "(is the file a CSV export?)"
    )


def _count_utf16_lines(f: IO[bytes]) -> tuple[int, bool]:
    f.seek(0)
    text = io.TextIOWrapper(f, encoding="utf-16", newline="")
    count = 0
    quotes = False
    try:
        while line := text.readline(MAX_LINE_CHARS + 1):
            if len(line) > MAX_LINE_CHARS:
                _too_long(count + 1)
            count += 1
            quotes = quotes or '"' in line
    except UnicodeDecodeError as exc:
        raise BadFile(f"the file starts with a UTF-16 mark but is not UTF-16 text: {exc}") from exc
    finally:
        text.detach()
    return count, quotes


# --- text: delimiter, rows ------------------------------------------------------------------------


def _text(f: IO[bytes], encoding: str) -> io.TextIOWrapper:
    f.seek(0)
    return io.TextIOWrapper(f, encoding=encoding, newline="", errors="strict")


#: Handed to the CSV reader after a file's last line. It is a record of its own, unless a quoted
#: field is still open: then the reader swallows it into that field (and everything after the
#: quote with it), which is how an unclosed quote is told from a file that ends well. NUL never
#: reaches the reader from a file (``_scan_bytes`` refuses it), so the marker is unambiguous.
_END = "\x00"


def _bounded_lines(text: io.TextIOBase, ended: list[bool]) -> Iterator[str]:
    """The lines of a text, each at most ``MAX_LINE_CHARS`` (else BadFile naming it), then
    ``_END``, once ``ended`` has been marked."""
    line = 1
    while chunk := text.readline(MAX_LINE_CHARS + 1):
        if len(chunk) > MAX_LINE_CHARS:
            _too_long(line)
        line += 1
        yield chunk
    ended.append(True)
    yield _END


def _unclosed_quote(line: int) -> BadFile:
    return BadFile(
        f"line {line}: a quote opened on this line is never closed, so every line after it "
        'would be read as one cell; close it (a quote inside a cell is written "")'
    )


def _sniff(sample: str) -> str:
    # A partial last line would skew the counts.
    if "\n" in sample:
        sample = sample[: sample.rindex("\n") + 1]
    lines = [ln for ln in sample.splitlines() if ln.strip()][:50]
    if not lines:
        raise BadFile("the file has no rows (only blank lines)")
    candidates: list[str] = []
    with contextlib.suppress(csv.Error):
        candidates.append(csv.Sniffer().sniff("\n".join(lines), delimiters=DELIMITERS).delimiter)
    candidates += [d for d in DELIMITERS if d not in candidates]
    scored: list[tuple[float, str]] = []
    for d in candidates:
        rows = list(csv.reader(lines, delimiter=d))
        width = len(rows[0])
        if width < 2:
            continue
        # Consistency: most rows should have the header's width.
        score = sum(1 for r in rows if len(r) == width) / len(rows)
        if score >= 0.8:
            return d
        scored.append((score, d))
    return max(scored)[1] if scored else ","


def scan(f: IO[bytes], *, preview_rows: int = 10) -> FileInfo:
    """Check a whole uploaded file and describe it: encoding, delimiter, header, a preview.
    Raises :class:`BadFile` with a sentence naming the problem (and the line, if any)."""
    encoding, lines, quotes = _scan_bytes(f)
    text = _text(f, encoding)
    try:
        sample = text.read(_SAMPLE)
        delimiter = _sniff(sample)
        rows = iter_rows(f, encoding, delimiter, skip_header=False)
        header: list[str] | None = None
        preview: list[list[str]] = []
        for _line, row in rows:
            if header is None:
                header = [h.strip() for h in row]
                continue
            preview.append(row)
            if len(preview) >= preview_rows:
                break
        rows.close()
    finally:
        text.detach()
    if quotes:
        _check_quotes(f, encoding, delimiter)
    if header is None:
        raise BadFile("the file has no rows (only blank lines)")
    if len(header) < 2 and header[0] and _SYNONYMS.get(_key(header[0])) != "phone":
        raise BadFile(
            f"line 1 has a single column ({header[0][:60]!r}): the file is not separated by "
            "commas, semicolons or tabs"
        )
    return FileInfo(
        encoding=encoding,
        delimiter=delimiter,
        header=header,
        estimated_rows=max(0, lines - 1),
        preview=preview,
    )


def _check_quotes(f: IO[bytes], encoding: str, delimiter: str) -> None:
    """Read the whole file as CSV, so an unclosed quote past the preview is refused at upload
    and not found by the import half-way. The records are dropped as the C reader makes them
    (a million rows take about half a second); only a file that fails this fast pass is read
    again row by row, for the message naming its line."""
    text = _text(f, encoding)
    try:
        # The lines' lengths were checked by the byte pass: no Python-level line loop here.
        lines = itertools.chain(text, (_END,))
        last = collections.deque(csv.reader(lines, delimiter=delimiter), maxlen=1)
        ok = list(last) == [[_END]]
    except (csv.Error, UnicodeDecodeError):
        ok = False
    finally:
        text.detach()
    if not ok:
        collections.deque(iter_rows(f, encoding, delimiter, skip_header=False), maxlen=0)


def iter_rows(
    f: IO[bytes], encoding: str, delimiter: str, *, skip_header: bool = True, start_after: int = 1
) -> Generator[tuple[int, list[str]], None, None]:
    """Stream ``(spreadsheet line, cells)``; the header is line 1. Blank rows are skipped (but
    counted). ``start_after`` skips data rows up to that line (for resuming)."""
    csv.field_size_limit(MAX_LINE_CHARS)
    text = _text(f, encoding)
    ended: list[bool] = []
    reader = csv.reader(_bounded_lines(text, ended), delimiter=delimiter)
    line = 0
    try:
        while True:
            opens_on = reader.line_num + 1
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                if "field limit" in str(exc):
                    raise BadFile(
                        f"line {line + 1}: a field runs over {MAX_LINE_CHARS:,} characters "
                        "(a quote that is never closed?)"
                    ) from exc
                raise BadFile(f"line {line + 1}: {exc}") from exc
            except UnicodeDecodeError as exc:
                raise BadFile(f"line {line + 1}: the text is not {encoding}: {exc}") from exc
            if ended:  # the end marker came out, alone or swallowed by an open quote
                if row == [_END]:
                    return
                raise _unclosed_quote(opens_on)
            line += 1
            if line == 1 and skip_header:
                continue
            if line <= start_after and skip_header:
                continue
            if not "".join(row).strip():  # every cell blank (one C call, not one per cell)
                continue
            yield line, row
    finally:
        with contextlib.suppress(ValueError):  # the caller closed the file first
            text.detach()


# --- phone fast path --------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _nanp(region: str | None) -> bool:
    return region is not None and phonenumbers.country_code_for_region(region.upper()) == 1


class _NanpValidity:
    """``phonenumbers.is_valid_number`` for country code 1, from the same metadata, in one or two
    regular-expression matches instead of dozens.

    Why: a list of a million North-American numbers spends most of its parsing time in the
    library's validity check (about 40 us a number: it walks the 25 NANP regions and, for
    each candidate, tries up to eleven number-type patterns one by one). The answer is the
    library's own: the region is picked the way ``_region_code_for_number_from_list`` picks
    it (leading digits, else "has any number type"), and "valid" means the region's general
    pattern and at least one number-type pattern match in full, each only where its possible
    lengths allow, as ``_number_type_helper`` decides. The patterns of a region are joined
    into one alternation per number length, which is the same test done by the regex engine
    in C. ``tests/domain/test_csvimport.py`` compares it with the library on every area code
    and on random numbers."""

    _TYPES = (
        "premium_rate",
        "toll_free",
        "shared_cost",
        "voip",
        "personal_number",
        "pager",
        "uan",
        "voicemail",
        "fixed_line",
        "mobile",
    )

    def __init__(self) -> None:
        from phonenumbers.phonemetadata import PhoneMetadata

        self._regions: list[tuple[re.Pattern[str] | None, Any]] = []
        for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE[1]:
            metadata = PhoneMetadata.metadata_for_region(code.upper(), None)
            if metadata is None:
                continue
            leading = re.compile(metadata.leading_digits) if metadata.leading_digits else None
            self._regions.append((leading, metadata))
        self._by_length: dict[int, list[tuple[re.Pattern[str] | None, re.Pattern[str] | None]]] = {}

    @staticmethod
    def _admits(desc: Any, length: int) -> bool:
        return (
            desc is not None
            and bool(desc.national_number_pattern)
            and (not desc.possible_length or length in desc.possible_length)
        )

    def _compiled(self, length: int) -> list[tuple[re.Pattern[str] | None, re.Pattern[str] | None]]:
        """Per region: (leading digits, one pattern that is "general AND any type") for numbers
        of this length; None where nothing of this length can be valid."""
        found = self._by_length.get(length)
        if found is None:
            found = []
            for leading, metadata in self._regions:
                general = metadata.general_desc
                types = [getattr(metadata, name) for name in self._TYPES]
                kinds = [d.national_number_pattern for d in types if self._admits(d, length)]
                pattern = None
                if self._admits(general, length) and kinds:
                    # A lookahead for the general pattern, then any type pattern, both in full.
                    pattern = re.compile(
                        f"(?=(?:{general.national_number_pattern})$)"
                        + "(?:"
                        + "|".join(f"(?:{k})" for k in kinds)
                        + ")"
                    )
                found.append((leading, pattern))
            self._by_length[length] = found
        return found

    def __call__(self, national_number: int) -> bool:
        nsn = str(national_number)
        for leading, pattern in self._compiled(len(nsn)):
            if leading is not None:
                if leading.match(nsn):
                    return pattern is not None and pattern.fullmatch(nsn) is not None
            elif pattern is not None and pattern.fullmatch(nsn) is not None:
                return True
        return False


_nanp_validity: _NanpValidity | None = None


def nanp_valid(national_number: int) -> bool:
    """``phonenumbers.is_valid_number(PhoneNumber(country_code=1, national_number=n))``,
    about ten times faster (see :class:`_NanpValidity`)."""
    global _nanp_validity
    if _nanp_validity is None:
        _nanp_validity = _NanpValidity()
    return _nanp_validity(national_number)


def fast_normalize(raw: str, region: str | None) -> str:
    """``domain.phone.normalize`` with a shortcut for the common case of a list: a North
    American number written with digits and punctuation only ("(201) 555-0123",
    "+1 201.555.0123"). Parsing is most of libphonenumber's cost; for these the national
    number is obvious, so only the validity check runs (by :func:`nanp_valid`: the library's
    answer from its own patterns, without its per-region walk; the test compares both). Anything
    else, and every invalid number (for its message), takes the full path."""
    text = raw.strip()
    plus = text.startswith("+")
    digits = _NANP_CLEAN.sub("", text[1:] if plus else text)
    if digits.isdigit() and digits.isascii() and (plus or _nanp(region)):
        if len(digits) == 11 and digits[0] == "1":
            digits = digits[1:]
        elif plus or len(digits) != 10:
            digits = ""
        if digits and nanp_valid(int(digits)):
            return "+1" + digits
    return normalize(raw, region)


# --- rows -> contact values -----------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What a worker process needs to normalize rows (picklable)."""

    #: column index (0-based) -> attribute
    columns: tuple[tuple[int, str], ...]
    region: str
    field_types: dict[str, str] = field(default_factory=dict)


@dataclass
class RowValues:
    line: int
    phone: str
    values: dict[str, Any]
    fields: dict[str, Any]
    opted_in: bool | None = None
    consent_source: str | None = None
    consent_at: str | None = None

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Rows come back from the parsing processes by the million: a constructor call with a
        # tuple unpickles several times faster than the default object-state protocol.
        return RowValues, (
            self.line,
            self.phone,
            self.values,
            self.fields,
            self.opted_in,
            self.consent_source,
            self.consent_at,
        )


@dataclass(frozen=True)
class Rejected:
    line: int
    reason: str
    raw: str


Coerce = Callable[[str, Any, str], Any]


def plan_for(
    header: list[str], mapping: dict[str, str], region: str, field_types: dict[str, str]
) -> Plan:
    """Turn a ``{column key: attribute}`` mapping into a Plan; raises BadFile naming the column."""
    keys = column_keys(header)
    index = {k: i for i, k in enumerate(keys)}
    columns: list[tuple[int, str]] = []
    used: dict[str, str] = {}
    for col, attr in mapping.items():
        if not attr:
            continue
        if col not in index:
            raise BadFile(f"mapping names column {col!r}, which is not in the header")
        if attr.startswith("fields."):
            if attr[7:] not in field_types:
                raise BadFile(f"column {col!r} maps to unknown custom field {attr[7:]!r}")
        elif attr not in ATTRIBUTES:
            raise BadFile(
                f"column {col!r} maps to unknown attribute {attr!r}; use one of "
                + ", ".join(ATTRIBUTES)
                + " or fields.<key>"
            )
        if attr in used:
            raise BadFile(f"columns {used[attr]!r} and {col!r} both map to {attr}")
        used[attr] = col
        columns.append((index[col], attr))
    if "phone" not in used:
        raise BadFile(
            "no column holds the phone number: map one (headers recognized: phone, cell, "
            "mobile, tel, number...)"
        )
    return Plan(tuple(columns), region, dict(field_types))


def _raw(row: list[str]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerow(row)
    return buf.getvalue().rstrip("\r\n")[:2000]


def _bool(text: str) -> bool | None:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(low)


def _timestamp(text: str) -> str:
    """A consent timestamp as ISO 8601 UTC; accepts ISO dates/times and US dates."""
    text = text.strip()
    for fmt in ("iso", "%m/%d/%Y %H:%M", "%m/%d/%Y", "%m/%d/%y"):
        try:
            value = (
                datetime.fromisoformat(text.replace("Z", "+00:00"))
                if fmt == "iso"
                else datetime.strptime(text, fmt)
            )
        except ValueError:
            continue
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat()
    raise ValueError(text)


def normalize_row(line: int, row: list[str], plan: Plan, coerce: Coerce) -> RowValues | Rejected:
    """One row to contact values, or the reason it cannot be imported."""
    values: dict[str, Any] = {}
    fields: dict[str, Any] = {}
    out = RowValues(line=line, phone="", values=values, fields=fields)
    for index, attr in plan.columns:
        cell = row[index].strip() if index < len(row) else ""
        if attr == "phone":
            try:
                out.phone = fast_normalize(cell, plan.region)
            except PhoneError as exc:
                reason = "missing phone number" if exc.reason == "empty" else str(exc)
                return Rejected(line, f"invalid number: {reason}", _raw(row))
            continue
        if not cell:
            continue
        if attr in _PLAIN_TEXT:  # the common case first: names and ids are kept as written
            values[attr] = cell[:200]
        elif attr == "zip":
            if len(cell) > 16:
                return Rejected(line, f"zip is too long: {cell[:40]!r}", _raw(row))
            values["zip"] = cell
        elif attr == "state":
            state = cell.upper()
            if not (len(state) == 2 and state.isalpha()):
                return Rejected(line, f"state must be two letters, got {cell[:40]!r}", _raw(row))
            values["state"] = state
        elif attr == "email":
            if not _EMAIL.match(cell):
                return Rejected(line, f"malformed e-mail {cell[:60]!r}", _raw(row))
            values["email"] = cell[:320]
        elif attr == "full_name":
            first, _, last = cell.partition(" ")
            values.setdefault("first_name", first[:200])
            values.setdefault("last_name", last.strip()[:200])
        elif attr == "opted_in":
            try:
                out.opted_in = _bool(cell)
            except ValueError:
                return Rejected(
                    line, f"opted_in must be yes/no/true/false/1/0, got {cell[:40]!r}", _raw(row)
                )
        elif attr == "consent_source":
            out.consent_source = cell[:200]
        elif attr == "consent_timestamp":
            try:
                out.consent_at = _timestamp(cell)
            except ValueError:
                return Rejected(line, f"malformed consent timestamp {cell[:40]!r}", _raw(row))
        elif attr.startswith("fields."):
            key = attr[7:]
            try:
                value = coerce(plan.field_types[key], cell, key)
            except ValueError as exc:
                return Rejected(line, f"fields.{key}: {exc}", _raw(row))
            if value is not None:
                fields[key] = value
        elif attr == "time_zone":
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(cell)
            except (ZoneInfoNotFoundError, ValueError):
                return Rejected(line, f"unknown time zone {cell[:60]!r}", _raw(row))
            values["time_zone"] = cell
        else:  # an attribute plan_for let through must have a branch above
            raise AssertionError(f"unhandled attribute {attr!r}")
    return out


def normalize_rows(
    rows: list[tuple[int, list[str]]], plan: Plan, coerce: Coerce
) -> list[RowValues | Rejected]:
    return [normalize_row(line, row, plan, coerce) for line, row in rows]
