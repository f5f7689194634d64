"""The segment query language: tokenizer, recursive-descent parser, type check, renderer.

Pure logic, no database: ``services.segments`` compiles the checked tree to SQL. Grammar
(keywords are case-insensitive; AND binds tighter than OR)::

    query      = [ or_expr ] EOF
    or_expr    = and_expr { "OR" and_expr }
    and_expr   = unary { "AND" unary }
    unary      = "NOT" unary | primary
    primary    = "(" or_expr ")"
               | "has" attribute
               | "tag" ":" ( word | string )
               | "campaign" ":" integer
               | attribute [ operator value ]      (bare only for booleans: opted_out)
    attribute  = name | "fields" "." key
    operator   = "=" | "!=" | "~" | ">" | ">=" | "<" | "<="      ("~": contains, any case)
    value      = string | number | date | reldate | "today" | "true" | "false"
    date       = YYYY-MM-DD
    reldate    = ("-" | "+") digits ( "d" | "w" | "m" | "y" )

Dates are days (UTC): ``created_at < -30d`` means "before the day 30 days ago began", and
``last_inbound = today`` means "some time today". Every error is a ``SegmentError`` carrying the
0-based character position, the token found there and what was expected.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Literal

# --- attributes ---------------------------------------------------------------------------------

Kind = Literal["text", "number", "date", "datetime", "boolean"]

#: Built-in attributes and their kinds. ``datetime`` attributes are columns holding instants;
#: they compare against dates, like ``date`` custom fields.
BUILTINS: dict[str, Kind] = {
    "phone": "text",
    "first_name": "text",
    "last_name": "text",
    "email": "text",
    "zip": "text",
    "state": "text",
    "time_zone": "text",
    "external_id": "text",
    "created_at": "datetime",
    "updated_at": "datetime",
    "last_inbound": "datetime",
    "last_outbound": "datetime",
    "opted_out": "boolean",
}
#: Custom field types (``services.custom_fields.FIELD_TYPES``) as kinds.
FIELD_KINDS: dict[str, Kind] = {
    "text": "text",
    "number": "number",
    "date": "date",
    "boolean": "boolean",
}
OPERATORS = ("=", "!=", "~", ">", ">=", "<", "<=")
KEYWORDS = frozenset({"and", "or", "not", "has", "true", "false", "today"})
REL_UNITS = ("d", "w", "m", "y")
# Bounds keep date arithmetic inside the calendar (about 200 years either way).
REL_LIMITS = {"d": 73_000, "w": 10_400, "m": 2_400, "y": 200}
#: The dates a query may name: four-digit years, and each day has a next one (a day is
#: compared as [its start, the next day's start), and Python's calendar ends at 9999-12-31).
FIRST_DATE, LAST_DATE = date(1000, 1, 1), date(9998, 12, 31)
_MAX_DEPTH = 64
_MAX_LENGTH = 10_000


class SegmentError(Exception):
    """A query that cannot be parsed or does not fit the organization's fields."""

    def __init__(self, position: int, message: str, *, found: str = "") -> None:
        super().__init__(f"position {position}: {message}")
        self.position = position
        self.message = message
        self.found = found


# --- the tree -------------------------------------------------------------------------------------
# Positions are for error messages only; they take no part in equality, so a tree rendered to
# text and parsed back compares equal to the original.


@dataclass(frozen=True)
class Attr:
    name: str  # a BUILTINS key, or "fields"
    key: str | None = None  # the custom field key when name == "fields"
    pos: int = field(default=0, compare=False)

    @property
    def label(self) -> str:
        return f"fields.{self.key}" if self.key is not None else self.name


@dataclass(frozen=True)
class Str:
    value: str
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Num:
    value: int | float
    #: The number as written (``zip = 02134`` keeps its leading zero for text attributes).
    raw: str = field(default="", compare=False)
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Bool:
    value: bool
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class DateLit:
    value: date
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class RelDate:
    """``amount`` units from today (negative: in the past); ``today`` is ``RelDate(0, "d")``."""

    amount: int
    unit: str
    pos: int = field(default=0, compare=False)


Value = Str | Num | Bool | DateLit | RelDate


@dataclass(frozen=True)
class Compare:
    attr: Attr
    op: str
    value: Value


@dataclass(frozen=True)
class Bare:
    """A boolean attribute on its own: ``opted_out``, ``fields.member``."""

    attr: Attr


@dataclass(frozen=True)
class Has:
    attr: Attr


@dataclass(frozen=True)
class Tag:
    name: str
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Campaign:
    id: int
    pos: int = field(default=0, compare=False)


@dataclass(frozen=True)
class Not:
    item: Node


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class All:
    """The empty query: every contact."""


Node = Compare | Bare | Has | Tag | Campaign | Not | And | Or | All


# --- tokens ---------------------------------------------------------------------------------------

TokenKind = Literal["ident", "string", "number", "date", "reldate", "op", "(", ")", ":", ".", "eof"]


@dataclass(frozen=True)
class Token:
    kind: TokenKind
    text: str  # as written
    pos: int
    value: object = None  # decoded: str for strings, int|float for numbers, date, (amount, unit)

    def describe(self) -> str:
        return "end of query" if self.kind == "eof" else repr(self.text)


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?![0-9A-Za-z_])")
_RELDATE = re.compile(r"([+-])(\d+)([A-Za-z_][A-Za-z0-9_]*)?")
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")
_MAX_DIGITS = 30
_WORD_CHARS = re.compile(r"[^\s()\"']+")
_ESCAPES = {'"': '"', "'": "'", "\\": "\\", "n": "\n", "t": "\t"}


class _Lexer:
    """Tokens on demand from a position, so the parser can read a tag name as a raw word."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self._peeked: Token | None = None

    def _skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> Token:
        if self._peeked is None:
            self._peeked = self._scan()
        return self._peeked

    def next(self) -> Token:
        token = self.peek()
        self._peeked = None
        return token

    def word(self) -> Token | None:
        """A tag name written without quotes, read right after ``tag:`` (no space allowed)."""
        if self._peeked is not None:
            raise AssertionError("word() after peek()")
        m = _WORD_CHARS.match(self.text, self.pos)
        if m is None:
            return None
        self.pos = m.end()
        return Token("ident", m.group(), m.start(), m.group())

    def _scan(self) -> Token:
        self._skip_space()
        text, start = self.text, self.pos
        if start >= len(text):
            return Token("eof", "", start)
        ch = text[start]
        two = text[start : start + 2]
        if two in ("!=", ">=", "<="):
            self.pos += 2
            return Token("op", two, start)
        if ch in "=~<>":
            self.pos += 1
            return Token("op", ch, start)
        if ch in "():.":
            self.pos += 1
            return Token(ch, ch, start)  # type: ignore[arg-type]
        if ch in "\"'":
            return self._string(ch)
        if ch in "+-" or ch.isdigit():
            return self._numeric()
        m = _IDENT.match(text, start)
        if m:
            self.pos = m.end()
            return Token("ident", m.group(), start)
        if ch == "!":
            raise SegmentError(start, "expected '!=', found '!'", found="!")
        raise SegmentError(
            start,
            f"unexpected character {ch!r}; expected an attribute, a value, an operator "
            "or a parenthesis",
            found=ch,
        )

    def _string(self, quote: str) -> Token:
        text, start = self.text, self.pos
        i = start + 1
        out: list[str] = []
        while i < len(text):
            ch = text[i]
            if ch == quote:
                self.pos = i + 1
                return Token("string", text[start : i + 1], start, "".join(out))
            if ch == "\\":
                if i + 1 >= len(text):
                    break
                esc = text[i + 1]
                if esc not in _ESCAPES:
                    raise SegmentError(
                        i,
                        f"unknown escape '\\{esc}' in a string; "
                        "expected one of \\\" \\' \\\\ \\n \\t",
                        found="\\" + esc,
                    )
                out.append(_ESCAPES[esc])
                i += 2
                continue
            out.append(ch)
            i += 1
        raise SegmentError(
            start, f"unterminated string: expected a closing {quote}", found=text[start:]
        )

    def _numeric(self) -> Token:
        text, start = self.text, self.pos
        m = _DATE.match(text, start)
        if m:
            self.pos = m.end()
            try:
                day = date.fromisoformat(m.group())
            except ValueError:
                raise SegmentError(
                    start, f"{m.group()!r} is not a valid date (YYYY-MM-DD)", found=m.group()
                ) from None
            if not FIRST_DATE <= day <= LAST_DATE:
                raise SegmentError(
                    start,
                    f"{m.group()} is out of range: dates run from {FIRST_DATE} to {LAST_DATE}",
                    found=m.group(),
                )
            return Token("date", m.group(), start, day)
        rel = _RELDATE.match(text, start)
        if rel and rel.group(3) is not None:
            self.pos = rel.end()
            sign, digits, unit = rel.groups()
            if unit not in REL_UNITS:
                raise SegmentError(
                    start,
                    f"unknown unit {unit!r} in relative date {rel.group()!r}; expected "
                    "d (days), w (weeks), m (months) or y (years), e.g. -30d",
                    found=rel.group(),
                )
            if len(digits) > 9 or int(digits) > REL_LIMITS[unit]:
                raise SegmentError(
                    start,
                    f"relative date {rel.group()!r} is too far; at most {REL_LIMITS[unit]}{unit}",
                    found=rel.group(),
                )
            amount = int(digits)
            return Token("reldate", rel.group(), start, (-amount if sign == "-" else amount, unit))
        num = _NUMBER.match(text, start)
        if num is None:
            ch = text[start]
            raise SegmentError(
                start,
                f"expected a number or a relative date (like -30d) after {ch!r}",
                found=text[start : start + 2],
            )
        end = num.end()
        if end < len(text) and (text[end].isalnum() or text[end] in "_."):
            tail = re.match(r"[A-Za-z0-9_.]*", text[end:])
            written = text[start : end + (tail.end() if tail else 1)]
            if not written.startswith(("-", "+")) and re.fullmatch(r"\d+[dwmy]", written):
                raise SegmentError(
                    start,
                    f"relative dates need a sign: -{written} ({written} ago) or +{written} "
                    "(from now)",
                    found=written,
                )
            raise SegmentError(start, f"malformed number {written!r}", found=written)
        raw = num.group()
        if len(raw) > _MAX_DIGITS:
            raise SegmentError(
                start, f"the number is too long (at most {_MAX_DIGITS} characters)", found=raw
            )
        value: int | float = float(raw) if num.group(1) else int(raw)
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            # Neither engine binds a larger integer (SQLite: OverflowError).
            raise SegmentError(
                start,
                f"{raw} is out of range: whole numbers run from -{2**63} to {2**63 - 1} "
                f"(write a larger one with a decimal point: {raw}.0)",
                found=raw,
            )
        self.pos = end
        return Token("number", raw, start, value)


# --- the parser -----------------------------------------------------------------------------------


def parse(text: str) -> Node:
    """Parse a query; the empty (or blank) query is ``All()``. Raises ``SegmentError``."""
    if len(text) > _MAX_LENGTH:
        raise SegmentError(_MAX_LENGTH, f"the query is too long (at most {_MAX_LENGTH} characters)")
    return _Parser(text).query()


class _Parser:
    def __init__(self, text: str) -> None:
        self.lex = _Lexer(text)
        self.depth = 0

    def _error(self, token: Token, expected: str) -> SegmentError:
        return SegmentError(
            token.pos, f"expected {expected}, found {token.describe()}", found=token.text
        )

    @staticmethod
    def _keyword(token: Token, word: str) -> bool:
        return token.kind == "ident" and token.text.lower() == word

    def query(self) -> Node:
        if self.lex.peek().kind == "eof":
            return All()
        node = self.or_expr()
        token = self.lex.peek()
        if token.kind != "eof":
            if token.kind == ")":
                raise SegmentError(token.pos, "unmatched ')': there is no '(' before it", found=")")
            raise self._error(token, "AND, OR or end of query")
        return node

    def or_expr(self) -> Node:
        items = [self.and_expr()]
        while self._keyword(self.lex.peek(), "or"):
            self.lex.next()
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self) -> Node:
        items = [self.unary()]
        while self._keyword(self.lex.peek(), "and"):
            self.lex.next()
            items.append(self.unary())
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self) -> Node:
        token = self.lex.peek()
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise SegmentError(token.pos, f"the query nests deeper than {_MAX_DEPTH} levels")
        try:
            if self._keyword(token, "not"):
                self.lex.next()
                return Not(self.unary())
            return self.primary()
        finally:
            self.depth -= 1

    def primary(self) -> Node:
        token = self.lex.next()
        if token.kind == "(":
            node = self.or_expr()
            close = self.lex.next()
            if close.kind != ")":
                raise self._error(close, f"')' to close the '(' at position {token.pos}")
            return node
        if token.kind != "ident":
            raise self._error(token, "a condition (an attribute, tag:, campaign:, has, NOT or '(')")
        word = token.text.lower()
        if word == "has":
            return Has(self.attribute(self.lex.next(), after="'has'"))
        if word in ("tag", "campaign"):
            colon = self.lex.next()
            if colon.kind != ":":
                raise self._error(
                    colon, f"':' after '{token.text}' ({word}:{'vip' if word == 'tag' else '12'})"
                )
            return self._tag(token) if word == "tag" else self._campaign(token)
        if word in KEYWORDS:
            raise self._error(token, "a condition (an attribute, tag:, campaign:, has, NOT or '(')")
        attr = self.attribute(token, after="")
        op = self.lex.peek()
        if op.kind != "op":
            if attr.name == "fields" or BUILTINS[attr.name] == "boolean":
                return Bare(attr)
            raise self._error(op, f"an operator ({' '.join(OPERATORS)}) after '{attr.label}'")
        self.lex.next()
        return Compare(attr, op.text, self.value(op))

    def _tag(self, tag: Token) -> Tag:
        self.lex._skip_space()
        start = self.lex.pos
        if start < len(self.lex.text) and self.lex.text[start] in "\"'":
            token = self.lex.next()
        else:
            word = self.lex.word()
            if word is None:
                raise self._error(
                    self.lex.peek(), "a tag name after 'tag:' (tag:vip or tag:\"two words\")"
                )
            token = word
        name = str(token.value)
        if not name.strip():
            raise SegmentError(
                token.pos, "expected a tag name, found an empty string", found=token.text
            )
        return Tag(name, pos=tag.pos)

    def _campaign(self, campaign: Token) -> Campaign:
        token = self.lex.next()
        if token.kind != "number" or not isinstance(token.value, int) or token.value < 1:
            raise self._error(token, "a campaign id (a positive whole number) after 'campaign:'")
        return Campaign(token.value, pos=campaign.pos)

    def attribute(self, token: Token, *, after: str) -> Attr:
        where = f" after {after}" if after else ""
        if token.kind != "ident" or token.text.lower() in KEYWORDS:
            raise self._error(token, f"an attribute{where}")
        name = token.text.lower()
        if name == "fields":
            dot = self.lex.next()
            if dot.kind != ".":
                raise self._error(dot, "'.' and a field key after 'fields' (fields.last_order)")
            key = self.lex.next()
            if key.kind != "ident":
                raise self._error(key, "a custom field key after 'fields.'")
            return Attr("fields", key.text, pos=token.pos)
        if name not in BUILTINS:
            known = ", ".join(sorted(BUILTINS))
            raise SegmentError(
                token.pos,
                f"unknown attribute {name!r}; expected one of {known}, fields.<key>, "
                "tag:<name> or campaign:<id>",
                found=name,
            )
        return Attr(name, pos=token.pos)

    def value(self, op: Token) -> Value:
        token = self.lex.next()
        kind = token.kind
        if kind == "string":
            return Str(str(token.value), pos=token.pos)
        if kind == "number":
            assert isinstance(token.value, int | float)
            return Num(token.value, raw=token.text, pos=token.pos)
        if kind == "date":
            assert isinstance(token.value, date)
            return DateLit(token.value, pos=token.pos)
        if kind == "reldate":
            assert isinstance(token.value, tuple)
            return RelDate(int(token.value[0]), str(token.value[1]), pos=token.pos)
        if kind == "ident":
            word = token.text.lower()
            if word in ("true", "false"):
                return Bool(word == "true", pos=token.pos)
            if word == "today":
                return RelDate(0, "d", pos=token.pos)
            raise self._error(
                token, f"a value after '{op.text}' (text goes in quotes: \"{token.text}\")"
            )
        raise self._error(token, f"a value after '{op.text}'")


# --- type check -----------------------------------------------------------------------------------


def attr_kind(attr: Attr, field_types: Mapping[str, str]) -> Kind:
    """The kind of an attribute; an unknown custom field is an error at its position."""
    if attr.name != "fields":
        return BUILTINS[attr.name]
    assert attr.key is not None
    type_ = field_types.get(attr.key)
    if type_ is None:
        known = ", ".join(sorted(field_types)) or "none are defined"
        raise SegmentError(
            attr.pos,
            f"unknown custom field 'fields.{attr.key}'; expected a defined field ({known})",
            found=f"fields.{attr.key}",
        )
    return FIELD_KINDS[type_]


_KIND_WORDS = {
    "text": "text",
    "number": "a number",
    "date": "a date",
    "datetime": "a time",
    "boolean": "true or false",
}
_VALUE_FOR = {
    "text": "a text value in quotes",
    "number": "a number",
    "date": "a date (2026-01-31, -30d, today)",
    "datetime": "a date (2026-01-31, -30d, today)",
    "boolean": "true or false",
}


def _value_fits(kind: Kind, value: Value) -> bool:
    if kind == "text":
        return isinstance(value, Str | Num)
    if kind == "number":
        return isinstance(value, Num)
    if kind in ("date", "datetime"):
        return isinstance(value, DateLit | RelDate)
    return isinstance(value, Bool)


def check(node: Node, field_types: Mapping[str, str]) -> None:
    """Check a tree against an organization's custom fields (key -> type). Raises SegmentError."""
    if isinstance(node, Not):
        check(node.item, field_types)
    elif isinstance(node, And | Or):
        for item in node.items:
            check(item, field_types)
    elif isinstance(node, Bare):
        kind = attr_kind(node.attr, field_types)
        if kind != "boolean":
            raise SegmentError(
                node.attr.pos,
                f"'{node.attr.label}' is {_KIND_WORDS[kind]}, not true/false; expected an "
                f"operator ({' '.join(OPERATORS)}) after it",
                found=node.attr.label,
            )
    elif isinstance(node, Has):
        if attr_kind(node.attr, field_types) == "boolean" and node.attr.name != "fields":
            raise SegmentError(
                node.attr.pos,
                f"'{node.attr.label}' is always present; expected an attribute that can be "
                "empty after 'has'",
                found=node.attr.label,
            )
    elif isinstance(node, Compare):
        kind = attr_kind(node.attr, field_types)
        label = node.attr.label
        if node.op == "~" and kind != "text":
            raise SegmentError(
                node.attr.pos,
                f"'~' (contains) works on text; '{label}' is {_KIND_WORDS[kind]}",
                found=label,
            )
        if kind == "boolean" and node.op not in ("=", "!="):
            raise SegmentError(
                node.attr.pos,
                f"'{label}' is true or false; expected '=' or '!=', found '{node.op}'",
                found=node.op,
            )
        if not _value_fits(kind, node.value):
            value = node.value
            raise SegmentError(
                value.pos,
                f"'{label}' is {_KIND_WORDS[kind]}: expected {_VALUE_FOR[kind]}, "
                f"found {render_value(value)}",
                found=render_value(value),
            )


# --- dates ----------------------------------------------------------------------------------------


def resolve_date(value: DateLit | RelDate, today: date) -> date:
    """The day a date value stands for, relative dates counted from ``today`` (UTC)."""
    if isinstance(value, DateLit):
        return value.value
    if value.unit == "d":
        return today + timedelta(days=value.amount)
    if value.unit == "w":
        return today + timedelta(weeks=value.amount)
    months = value.amount if value.unit == "m" else value.amount * 12
    index = today.year * 12 + (today.month - 1) + months
    year, month = divmod(index, 12)
    day = min(today.day, calendar.monthrange(year, month + 1)[1])
    return date(year, month + 1, day)


# --- rendering ------------------------------------------------------------------------------------

_BARE_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_\-.:+@#/]*")


def quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped.replace("\t", "\\t") + '"'


def render_value(value: Value) -> str:
    if isinstance(value, Str):
        return quote(value.value)
    if isinstance(value, Bool):
        return "true" if value.value else "false"
    if isinstance(value, DateLit):
        return value.value.isoformat()
    if isinstance(value, RelDate):
        if value.amount == 0 and value.unit == "d":
            return "today"
        return f"{'-' if value.amount < 0 else '+'}{abs(value.amount)}{value.unit}"
    if value.raw:
        return value.raw
    if isinstance(value.value, int) and not isinstance(value.value, bool):
        return str(value.value)
    text = format(Decimal(repr(float(value.value))), "f")
    return text if "." in text else text + ".0"


def render(node: Node) -> str:
    """The canonical text of a tree; ``parse(render(t)) == t``."""
    if isinstance(node, All):
        return ""
    if isinstance(node, Compare):
        return f"{node.attr.label} {node.op} {render_value(node.value)}"
    if isinstance(node, Bare):
        return node.attr.label
    if isinstance(node, Has):
        return f"has {node.attr.label}"
    if isinstance(node, Tag):
        bare = _BARE_TAG.fullmatch(node.name) and node.name.lower() not in KEYWORDS
        return f"tag:{node.name}" if bare else f"tag:{quote(node.name)}"
    if isinstance(node, Campaign):
        return f"campaign:{node.id}"
    if isinstance(node, Not):
        inner = render(node.item)
        return f"NOT ({inner})" if isinstance(node.item, And | Or) else f"NOT {inner}"
    joiner = " AND " if isinstance(node, And) else " OR "
    # A nested And/Or keeps its own group; And inside Or needs none (AND binds tighter).
    parts = [
        f"({render(item)})"
        if isinstance(item, And | Or) and not (isinstance(node, Or) and isinstance(item, And))
        else render(item)
        for item in node.items
    ]
    return joiner.join(parts)
