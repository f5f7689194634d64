"""The segment query language: parsing, precedence, errors with positions, type checks, and
property tests (render -> parse round trip; junk never raises anything but SegmentError)."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textdesk.domain.segments import (
    BUILTINS,
    OPERATORS,
    REL_LIMITS,
    All,
    And,
    Attr,
    Bare,
    Bool,
    Campaign,
    Compare,
    DateLit,
    Has,
    Node,
    Not,
    Num,
    Or,
    RelDate,
    SegmentError,
    Str,
    Tag,
    Value,
    check,
    parse,
    render,
    resolve_date,
)

VIP = Tag("vip")
OPTED_OUT = Bare(Attr("opted_out"))


def test_the_issue_example() -> None:
    tree = parse('tag:vip AND state = "TX" AND fields.last_order < -30d AND NOT opted_out')
    assert tree == And(
        (
            VIP,
            Compare(Attr("state"), "=", Str("TX")),
            Compare(Attr("fields", "last_order"), "<", RelDate(-30, "d")),
            Not(OPTED_OUT),
        )
    )


def test_empty_means_everyone() -> None:
    assert parse("") == All()
    assert parse("   \n\t") == All()


def test_and_binds_tighter_than_or() -> None:
    assert parse("tag:a OR tag:b AND tag:c") == Or((Tag("a"), And((Tag("b"), Tag("c")))))
    assert parse("tag:a AND tag:b OR tag:c") == Or((And((Tag("a"), Tag("b"))), Tag("c")))
    assert parse("(tag:a OR tag:b) AND tag:c") == And((Or((Tag("a"), Tag("b"))), Tag("c")))


def test_not_binds_tightest() -> None:
    assert parse("NOT tag:a AND tag:b") == And((Not(Tag("a")), Tag("b")))
    assert parse("NOT (tag:a AND tag:b)") == Not(And((Tag("a"), Tag("b"))))
    assert parse("not not opted_out") == Not(Not(OPTED_OUT))


def test_keywords_are_case_insensitive() -> None:
    assert parse("tag:a and NoT tag:b Or HAS email") == parse("tag:a AND NOT tag:b OR has email")
    assert parse("opted_out = TRUE") == Compare(Attr("opted_out"), "=", Bool(True))
    assert parse("created_at < TODAY") == Compare(Attr("created_at"), "<", RelDate(0, "d"))


@pytest.mark.parametrize("op", OPERATORS)
def test_every_operator(op: str) -> None:
    assert parse(f'first_name {op} "x"') == Compare(Attr("first_name"), op, Str("x"))
    assert parse(f'first_name{op}"x"') == Compare(Attr("first_name"), op, Str("x"))


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('"TX"', Str("TX")),
        ("'TX'", Str("TX")),
        (r'"say \"hi\""', Str('say "hi"')),
        (r"'it\'s'", Str("it's")),
        (r'"a\\b\nc\td"', Str("a\\b\nc\td")),
        ('""', Str("")),
        ("42", Num(42)),
        ("-7", Num(-7)),
        ("+7", Num(7)),
        ("3.25", Num(3.25)),
        ("true", Bool(True)),
        ("false", Bool(False)),
        ("2026-01-31", DateLit(date(2026, 1, 31))),
        ("-30d", RelDate(-30, "d")),
        ("-2w", RelDate(-2, "w")),
        ("-6m", RelDate(-6, "m")),
        ("-1y", RelDate(-1, "y")),
        ("+3d", RelDate(3, "d")),
        ("today", RelDate(0, "d")),
    ],
)
def test_values(text: str, value: Value) -> None:
    assert parse(f"fields.x = {text}") == Compare(Attr("fields", "x"), "=", value)


def test_numbers_keep_how_they_were_written() -> None:
    tree = parse("zip = 02134")
    assert isinstance(tree, Compare) and isinstance(tree.value, Num)
    assert tree.value.raw == "02134" and render(tree) == "zip = 02134"


def test_other_conditions() -> None:
    assert parse("has email") == Has(Attr("email"))
    assert parse("has fields.last_order") == Has(Attr("fields", "last_order"))
    assert parse('tag:"two words"') == Tag("two words")
    assert parse("tag: vip-2026") == Tag("vip-2026")
    assert parse("campaign:12") == Campaign(12)
    assert parse("fields.member") == Bare(Attr("fields", "member"))
    assert parse("last_inbound > -7d") == Compare(Attr("last_inbound"), ">", RelDate(-7, "d"))
    assert parse("State = 'tx'") == Compare(Attr("state"), "=", Str("tx"))


@pytest.mark.parametrize(
    ("query", "position", "message"),
    [
        ('state = "TX" AND zip =', 22, "expected a value after '=', found end of query"),
        ("state = TX", 8, "expected a value after '=' (text goes in quotes: \"TX\")"),
        ("state", 5, "expected an operator (= != ~ > >= < <=) after 'state', found end of query"),
        ("state AND tag:a", 6, "expected an operator"),
        ("colour = 'red'", 0, "unknown attribute 'colour'"),
        ("tag:vip AND", 11, "expected a condition"),
        ("tag:vip tag:b", 8, "expected AND, OR or end of query, found 'tag'"),
        ("(tag:vip OR tag:b", 17, "expected ')' to close the '(' at position 0"),
        ("tag:vip)", 7, "unmatched ')'"),
        ("tag:", 4, "expected a tag name after 'tag:'"),
        ('tag:""', 4, "expected a tag name, found an empty string"),
        ("tag vip", 4, "expected ':' after 'tag'"),
        ("campaign:x", 9, "expected a campaign id"),
        ("campaign:1.5", 9, "expected a campaign id"),
        ("campaign:0", 9, "expected a campaign id"),
        ('first_name = "abc', 13, 'unterminated string: expected a closing "'),
        (r'first_name = "a\qb"', 15, "unknown escape '\\q'"),
        ("created_at > 2026-02-30", 13, "'2026-02-30' is not a valid date"),
        ("created_at > 30d", 13, "relative dates need a sign: -30d (30d ago) or +30d"),
        ("created_at > -30x", 13, "unknown unit 'x'"),
        ("created_at > -99999y", 13, "too far"),
        ("fields.x = 12abc", 11, "malformed number '12abc'"),
        ("fields.x = 1" + "0" * 40, 11, "the number is too long"),
        ("fields = 1", 7, "expected '.' and a field key after 'fields'"),
        ("fields. = 1", 8, "expected a custom field key after 'fields.'"),
        ("has", 3, "expected an attribute after 'has', found end of query"),
        ("has tag:vip", 4, "unknown attribute 'tag'"),
        ("state ! 'x'", 6, "expected '!=', found '!'"),
        ("state = 'x' & tag:a", 12, "unexpected character '&'"),
        ("AND tag:a", 0, "expected a condition"),
        ("true", 0, "expected a condition"),
        ("()", 1, "expected a condition"),
        # The day after 9999-12-31 does not exist in Python's calendar.
        ("created_at = 9999-12-31", 13, "out of range: dates run from 1000-01-01 to 9998-12-31"),
        ("fields.born < 0999-12-31", 14, "out of range"),
        # Neither engine binds an integer beyond 64 bits.
        ("fields.x > 9223372036854775808", 11, "out of range: whole numbers run from"),
        ("campaign:99999999999999999999", 9, "out of range"),
    ],
)
def test_errors_point_at_the_position(query: str, position: int, message: str) -> None:
    with pytest.raises(SegmentError) as info:
        parse(query)
    assert info.value.position == position, str(info.value)
    assert message in info.value.message, str(info.value)
    assert str(info.value).startswith(f"position {position}: ")


def test_the_supported_dates_and_numbers_parse() -> None:
    parse("created_at >= 1000-01-01 AND created_at <= 9998-12-31")
    parse("fields.x > 9223372036854775807 AND fields.x > -9223372036854775808")
    parse("fields.x > 99999999999999999999.0")


def test_the_message_reads_like_the_issue_asks() -> None:
    with pytest.raises(SegmentError) as info:
        parse("tag:vip AND zip =")
    assert str(info.value) == "position 17: expected a value after '=', found end of query"


def test_deep_nesting_is_refused_cleanly() -> None:
    with pytest.raises(SegmentError, match="nests deeper"):
        parse("(" * 500 + "tag:a" + ")" * 500)
    with pytest.raises(SegmentError, match="nests deeper"):
        parse("NOT " * 500 + "tag:a")


# --- type check -----------------------------------------------------------------------------------

TYPES = {"last_order": "date", "spend": "number", "plan": "text", "member": "boolean"}


@pytest.mark.parametrize(
    "query",
    [
        "fields.last_order < -30d",
        "fields.last_order = 2026-01-01",
        "fields.spend >= 10.5",
        'fields.plan ~ "gold"',
        "fields.plan = 12",
        "fields.member",
        "fields.member != false",
        "has fields.member",
        "zip = 12345",
        "created_at > today",
        "last_outbound <= -1w",
        "NOT opted_out",
        "opted_out = false",
    ],
)
def test_check_accepts(query: str) -> None:
    check(parse(query), TYPES)


@pytest.mark.parametrize(
    ("query", "position", "message"),
    [
        ("fields.nope = 1", 0, "unknown custom field 'fields.nope'"),
        ("tag:a OR has fields.nope", 13, "unknown custom field"),
        ('fields.spend = "10"', 15, "'fields.spend' is a number: expected a number, found \"10\""),
        ("fields.spend = true", 15, "expected a number"),
        ('fields.last_order < "2026-01-01"', 20, "expected a date"),
        ("fields.last_order ~ 'x'", 0, "'~' (contains) works on text"),
        ("created_at = 5", 13, "expected a date"),
        ("state = true", 8, "expected a text value in quotes"),
        ("state = -3d", 8, "expected a text value in quotes"),
        ("fields.member = 1", 16, "expected true or false"),
        ("fields.member > false", 0, "expected '=' or '!='"),
        ("fields.plan", 0, "'fields.plan' is text, not true/false"),
        ("has opted_out", 4, "always present"),
        ("opted_out ~ 'x'", 0, "'~' (contains) works on text"),
    ],
)
def test_check_refuses(query: str, position: int, message: str) -> None:
    with pytest.raises(SegmentError) as info:
        check(parse(query), TYPES)
    assert info.value.position == position, str(info.value)
    assert message in info.value.message, str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (RelDate(0, "d"), date(2026, 3, 31)),
        (RelDate(-30, "d"), date(2026, 3, 1)),
        (RelDate(2, "w"), date(2026, 4, 14)),
        (RelDate(-1, "m"), date(2026, 2, 28)),  # clamped to the month's last day
        (RelDate(-13, "m"), date(2025, 2, 28)),
        (RelDate(11, "m"), date(2027, 2, 28)),
        (RelDate(-1, "y"), date(2025, 3, 31)),
        (DateLit(date(2020, 2, 29)), date(2020, 2, 29)),
    ],
)
def test_resolve_date(value: RelDate | DateLit, expected: date) -> None:
    assert resolve_date(value, date(2026, 3, 31)) == expected


# --- properties -----------------------------------------------------------------------------------

_keys = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
_attrs = st.one_of(
    st.sampled_from(sorted(BUILTINS)).map(Attr),
    _keys.map(lambda k: Attr("fields", k)),
)
_values: st.SearchStrategy[Value] = st.one_of(
    st.text(max_size=12).map(Str),
    st.integers(min_value=-(10**12), max_value=10**12).map(Num),
    # Numbers people write: up to 12 digits with up to 4 decimals (the lexer refuses 30+).
    st.integers(min_value=-(10**12), max_value=10**12).map(lambda i: Num(i / 10**4)),
    st.booleans().map(Bool),
    st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 12, 31)).map(DateLit),
    st.sampled_from(sorted(REL_LIMITS.items())).flatmap(
        lambda unit: st.integers(-unit[1], unit[1]).map(lambda n: RelDate(n, unit[0]))
    ),
)
_leaves: st.SearchStrategy[Node] = st.one_of(
    st.builds(Compare, _attrs, st.sampled_from(OPERATORS), _values),
    _keys.map(lambda k: Bare(Attr("fields", k))),
    st.just(OPTED_OUT),
    _attrs.map(Has),
    st.text(min_size=1, max_size=10).filter(lambda s: s.strip() != "").map(Tag),
    st.integers(min_value=1, max_value=10**9).map(Campaign),
)
_trees: st.SearchStrategy[Node] = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        inner.map(Not),
        st.lists(inner, min_size=2, max_size=4).map(lambda xs: And(tuple(xs))),
        st.lists(inner, min_size=2, max_size=4).map(lambda xs: Or(tuple(xs))),
    ),
    max_leaves=12,
)


@settings(max_examples=400)
@given(_trees)
def test_render_then_parse_round_trips(tree: Node) -> None:
    text = render(tree)
    assert parse(text) == tree, text
    assert render(parse(text)) == text


_alphabet = st.sampled_from(
    [
        *"abcdefghijklmnopqrstuvwxyz_ .:()\"'\\-+=!~<>0123456789dwmy\n\t",
        *("AND", "OR", "NOT", "has", "tag:", "fields.", "campaign:", "2026-01-31", "today"),
        *("state", "opted_out", "zip", "true", "false", "é", "\x00"),
    ]
)


@settings(max_examples=800)
@given(st.lists(_alphabet, max_size=30).map(" ".join) | st.text(max_size=60))
def test_junk_only_ever_raises_segment_error(text: str) -> None:
    try:
        tree = parse(text)
    except SegmentError as exc:
        assert 0 <= exc.position <= len(text)
        return
    # Whatever parsed renders to text that parses to the same tree.
    assert parse(render(tree)) == tree
    try:
        check(tree, TYPES)
    except SegmentError as exc:
        assert 0 <= exc.position <= len(text)


@given(
    st.sampled_from(sorted(REL_LIMITS.items())).flatmap(
        lambda unit: st.integers(-unit[1], unit[1]).map(lambda n: RelDate(n, unit[0]))
    ),
    st.dates(min_value=date(2000, 1, 1), max_value=date(2100, 12, 31)),
)
def test_every_allowed_relative_date_resolves(value: RelDate, today: date) -> None:
    day = resolve_date(value, today)
    assert (day >= today) == (value.amount >= 0) or day == today
