"""Personalised message templates: ``"Hi {first_name|there}, your tier is {fields.tier}"``.

Syntax (deliberately tiny, because campaign managers write it by hand in a text box):

* ``{name}`` inserts a merge field. Names are ASCII identifiers, optionally dotted for
  custom contact fields: ``{fields.loyalty_tier}``. Names are case-sensitive.
* ``{name|fallback}`` uses ``fallback`` when the value is missing or blank. The fallback runs
  to the closing brace (it may contain spaces and ``|``, but not braces) and is stripped;
  ``{name|}`` is an explicit "empty is fine".
* ``{{`` and ``}}`` are literal braces, the same convention as :meth:`str.format`, so
  people who know one know the other. :func:`escape` produces them.
* Whitespace inside braces is ignored: ``{ first_name | there }``.

Errors are :class:`TemplateError` with a 0-based ``position`` so the editor can put a
caret on the offending brace. A ``{`` before the closing ``}`` of a field is reported as
an unclosed brace rather than accepted as fallback text, because in practice it is almost
always a forgotten ``}`` ("Hi {first_name, reply {STOP}").

Value rules when rendering: strings are stripped; ``None``, blank strings, empty lists and
mappings count as missing; other types are formatted for humans (see :func:`format_value`).
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Collection, Mapping, Set
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum
from functools import lru_cache

from textdesk.domain.encoding import analyze

__all__ = [
    "BUILTIN_FIELDS",
    "MergeField",
    "Preview",
    "Template",
    "TemplateError",
    "escape",
    "format_value",
    "parse_template",
    "preview",
    "render",
]

# The values a send has for every contact without any custom setup: the contact's own
# columns plus who is sending. Custom fields live under "fields.".
BUILTIN_FIELDS: tuple[str, ...] = (
    "first_name",
    "last_name",
    "full_name",
    "phone",
    "email",
    "zip",
    "city",
    "state",
    "external_id",
    "agent_name",
    "org_name",
)

_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")

# Floats beyond this are not exactly integral in practice; int() would print noise digits.
_MAX_EXACT_FLOAT = 2**53


class TemplateError(ValueError):
    """A template that cannot be parsed, validated or (strictly) rendered."""

    message: str
    position: int
    field: str | None

    def __init__(self, message: str, position: int, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position
        self.field = field

    def __repr__(self) -> str:
        return f"TemplateError({self.message!r}, position={self.position}, field={self.field!r})"


@dataclass(frozen=True)
class MergeField:
    """One ``{name|fallback}`` occurrence. ``fallback`` is None when no ``|`` was written."""

    name: str
    fallback: str | None
    position: int  # offset of the opening brace in Template.source


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text and merge fields, in order."""

    source: str
    parts: tuple[str | MergeField, ...]
    fields: frozenset[str]


@dataclass(frozen=True)
class Preview:
    """What one contact would receive, and what it costs to send."""

    text: str
    encoding: str  # "GSM-7" or "UCS-2"
    segment_count: int
    length: int  # septets for GSM-7, UTF-16 code units for UCS-2
    missing_fields: tuple[str, ...]  # no value and no fallback, so rendered empty
    non_gsm_chars: tuple[str, ...]  # characters that forced UCS-2


def escape(text: str) -> str:
    """Make ``text`` render literally (for inserting user text into a template)."""
    return text.replace("{", "{{").replace("}", "}}")


def parse_template(source: str, known_fields: Collection[str] | None = None) -> Template:
    """Parse ``source``; if ``known_fields`` is given, every field must be one of them.

    ``known_fields`` holds full names, custom ones dotted (``"fields.loyalty_tier"``);
    unknown names get a "did you mean" suggestion.
    """
    template = _parse(source)
    if known_fields is not None:
        known = frozenset(known_fields)
        for part in template.parts:
            if isinstance(part, MergeField) and part.name not in known:
                raise _unknown_field(part, known)
    return template


def render(
    template: Template | str, values: Mapping[str, object | None], *, strict: bool = True
) -> str:
    """Fill in ``template`` from ``values``.

    Dotted names are looked up both as flat keys (``values["fields.tier"]``) and nested
    (``values["fields"]["tier"]``), whichever has a value, because contacts come from the
    database nested but from CSV previews flat.

    With ``strict`` a field that has no value and no fallback raises :class:`TemplateError`
    (sending "Hi ," to thousands of people is worse than not sending); otherwise it renders
    as the empty string.
    """
    text, missing = _render(_as_template(template), values)
    if strict and missing:
        field = missing[0]
        raise TemplateError(
            f"no value for field '{field.name}' at position {field.position}"
            f" (add a fallback like {{{field.name}|...}})",
            field.position,
            field.name,
        )
    return text


def preview(template: Template | str, values: Mapping[str, object | None]) -> Preview:
    """Render non-strictly and measure the result as an SMS."""
    text, missing = _render(_as_template(template), values)
    analysis = analyze(text)
    return Preview(
        text=text,
        encoding=str(analysis.encoding),
        segment_count=analysis.segment_count,
        length=analysis.length,
        missing_fields=tuple(dict.fromkeys(f.name for f in missing)),
        non_gsm_chars=analysis.non_gsm_chars,
    )


def format_value(value: object) -> str | None:
    """How a merge value reads in a message; ``None`` means "missing".

    bool → "yes"/"no" (before int: bool is an int); integral floats drop ".0" (prices
    and counts often arrive as floats from spreadsheets); Decimal keeps its scale but never
    uses exponent notation; dates are ISO, datetimes to the minute; enums use their value;
    lists are joined with ", ". Mappings are missing: they are groups, not values.
    """
    if value is None:
        return None
    if isinstance(value, str):
        stripped = value.strip()
        return stripped or None
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Enum):
        return format_value(value.value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < _MAX_EXACT_FLOAT:
            return str(int(value))
        return repr(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ", timespec="minutes")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.isoformat(timespec="minutes")
    if isinstance(value, Mapping):
        return None
    if isinstance(value, list | tuple | Set):
        items = [s for s in (format_value(v) for v in value) if s is not None]
        return ", ".join(items) or None
    return format_value(str(value))


# --- internals -----------------------------------------------------------------------------


def _as_template(template: Template | str) -> Template:
    return template if isinstance(template, Template) else _parse(template)


# Campaign sends render the same source once per contact; parsing once is enough.
@lru_cache(maxsize=256)
def _parse(source: str) -> Template:
    parts: list[str | MergeField] = []
    literal: list[str] = []
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if ch == "{":
            if source.startswith("{{", i):
                literal.append("{")
                i += 2
                continue
            close = source.find("}", i + 1)
            if close == -1 or "{" in source[i + 1 : close]:
                raise TemplateError(f"unclosed '{{' at position {i}", i)
            if literal:
                parts.append("".join(literal))
                literal.clear()
            parts.append(_parse_field(source[i + 1 : close], i))
            i = close + 1
        elif ch == "}":
            if source.startswith("}}", i):
                literal.append("}")
                i += 2
                continue
            raise TemplateError(
                f"unmatched '}}' at position {i} (write '}}}}' for a literal brace)", i
            )
        else:
            literal.append(ch)
            i += 1
    if literal:
        parts.append("".join(literal))
    names = frozenset(p.name for p in parts if isinstance(p, MergeField))
    return Template(source=source, parts=tuple(parts), fields=names)


def _parse_field(inner: str, position: int) -> MergeField:
    raw_name, bar, raw_fallback = inner.partition("|")
    name = raw_name.strip()
    if not name:
        raise TemplateError(f"empty field name at position {position}", position)
    if not _NAME_RE.fullmatch(name):
        raise TemplateError(
            f"invalid field name '{name}' at position {position}"
            " (use letters, digits, '_' and '.', e.g. {first_name} or {fields.tier})",
            position,
            name,
        )
    return MergeField(name=name, fallback=raw_fallback.strip() if bar else None, position=position)


def _unknown_field(part: MergeField, known: frozenset[str]) -> TemplateError:
    message = f"unknown field '{part.name}' at position {part.position}"
    suggestion = _suggest(part.name, known)
    if suggestion is not None:
        message += f" (did you mean '{suggestion}'?)"
    return TemplateError(message, part.position, part.name)


def _suggest(name: str, known: frozenset[str]) -> str | None:
    # A case slip ("First_Name") is the likeliest mistake and difflib can rank it below a
    # different field of similar shape, so check it first.
    by_case = sorted(k for k in known if k.lower() == name.lower())
    if by_case:
        return by_case[0]
    lowered = {k.lower(): k for k in sorted(known)}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


def _render(
    template: Template, values: Mapping[str, object | None]
) -> tuple[str, list[MergeField]]:
    out: list[str] = []
    missing: list[MergeField] = []
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        text = _lookup(values, part.name)
        if text is None:
            if part.fallback is None:
                missing.append(part)
                continue
            text = part.fallback
        out.append(text)
    return "".join(out), missing


def _lookup(values: Mapping[str, object | None], name: str) -> str | None:
    if name in values:
        flat = format_value(values[name])
        if flat is not None:
            return flat
    head, dot, rest = name.partition(".")
    if not dot:
        return None
    node = values.get(head)
    for key in rest.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return format_value(node)
