"""Tests for textdesk.domain.templates."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from enum import Enum, StrEnum

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textdesk.domain.templates import (
    BUILTIN_FIELDS,
    MergeField,
    Preview,
    Template,
    TemplateError,
    escape,
    format_value,
    parse_template,
    preview,
    render,
)

KNOWN = (*BUILTIN_FIELDS, "fields.loyalty_tier", "fields.store.city")

# --- parsing ---------------------------------------------------------------------------------


def test_parse_splits_literals_and_fields() -> None:
    t = parse_template("Hi {first_name|there}, tier: {fields.loyalty_tier}!")
    assert t.source == "Hi {first_name|there}, tier: {fields.loyalty_tier}!"
    assert t.parts == (
        "Hi ",
        MergeField("first_name", "there", 3),
        ", tier: ",
        MergeField("fields.loyalty_tier", None, 29),
        "!",
    )
    assert t.fields == frozenset({"first_name", "fields.loyalty_tier"})


@pytest.mark.parametrize(
    ("source", "parts"),
    [
        ("", ()),
        ("plain", ("plain",)),
        ("{first_name}", (MergeField("first_name", None, 0),)),
        ("{ first_name }", (MergeField("first_name", None, 0),)),
        ("{ first_name | there }", (MergeField("first_name", "there", 0),)),
        ("{first_name|my dear friend}", (MergeField("first_name", "my dear friend", 0),)),
        ("{first_name|}", (MergeField("first_name", "", 0),)),
        ("{first_name|a|b}", (MergeField("first_name", "a|b", 0),)),
        ("{first_name|¡hola, amig@!}", (MergeField("first_name", "¡hola, amig@!", 0),)),
        ("{_x.y_2.z}", (MergeField("_x.y_2.z", None, 0),)),
        # escaping
        ("{{", ("{",)),
        ("}}", ("}",)),
        ("{{first_name}}", ("{first_name}",)),
        ("a {{b}} c", ("a {b} c",)),
        ("{{{first_name}}}", ("{", MergeField("first_name", None, 2), "}")),
        ("{{}}", ("{}",)),
        ("x{a}{b}y", ("x", MergeField("a", None, 1), MergeField("b", None, 4), "y")),
    ],
)
def test_parse_cases(source: str, parts: tuple[str | MergeField, ...]) -> None:
    assert parse_template(source).parts == parts


# (source, message, position, field)
PARSE_ERRORS = [
    ("Hi {first_name", "unclosed '{' at position 3", 3, None),
    ("Hi {first_name, reply {STOP}", "unclosed '{' at position 3", 3, None),
    ("{a|fallback {x}", "unclosed '{' at position 0", 0, None),
    ("abc {", "unclosed '{' at position 4", 4, None),
    ("{{{", "unclosed '{' at position 2", 2, None),
    ("Hi }", "unmatched '}' at position 3", 3, None),
    ("Hi {first_name}} ", "unmatched '}' at position 15", 15, None),
    ("}}}", "unmatched '}' at position 2", 2, None),
    ("Hi {}", "empty field name at position 3", 3, None),
    ("Hi {   }", "empty field name at position 3", 3, None),
    ("Hi { |there}", "empty field name at position 3", 3, None),
    ("Hi {first name}", "invalid field name 'first name' at position 3", 3, "first name"),
    ("{1st}", "invalid field name '1st' at position 0", 0, "1st"),
    ("{fields.}", "invalid field name 'fields.' at position 0", 0, "fields."),
    ("{a..b}", "invalid field name 'a..b' at position 0", 0, "a..b"),
    ("{.a}", "invalid field name '.a' at position 0", 0, ".a"),
    ("{näme}", "invalid field name 'näme' at position 0", 0, "näme"),
    ("{first-name}", "invalid field name 'first-name' at position 0", 0, "first-name"),
]


@pytest.mark.parametrize(("source", "message", "position", "field"), PARSE_ERRORS)
def test_parse_errors(source: str, message: str, position: int, field: str | None) -> None:
    with pytest.raises(TemplateError) as info:
        parse_template(source)
    err = info.value
    assert err.message.startswith(message)
    assert str(err) == err.message
    assert err.position == position
    assert err.field == field
    assert isinstance(err, ValueError)
    # render() of a string template reports the same problem
    with pytest.raises(TemplateError, match=r"position \d+"):
        render(source, {})


# (source, message, position, field)
UNKNOWN_FIELDS = [
    (
        "Hi {frist_name}",
        "unknown field 'frist_name' at position 3 (did you mean 'first_name'?)",
        3,
        "frist_name",
    ),
    (
        "{First_Name}",
        "unknown field 'First_Name' at position 0 (did you mean 'first_name'?)",
        0,
        "First_Name",
    ),
    (
        "{ORG_NAME}",
        "unknown field 'ORG_NAME' at position 0 (did you mean 'org_name'?)",
        0,
        "ORG_NAME",
    ),
    (
        "ok {first_name} {fields.loyaltytier}",
        "unknown field 'fields.loyaltytier' at position 16 (did you mean 'fields.loyalty_tier'?)",
        16,
        "fields.loyaltytier",
    ),
    (
        "{loyalty_tier}",
        "unknown field 'loyalty_tier' at position 0 (did you mean 'fields.loyalty_tier'?)",
        0,
        "loyalty_tier",
    ),
    ("{zzzzzzzz}", "unknown field 'zzzzzzzz' at position 0", 0, "zzzzzzzz"),
]


@pytest.mark.parametrize(("source", "message", "position", "field"), UNKNOWN_FIELDS)
def test_unknown_fields_with_suggestions(
    source: str, message: str, position: int, field: str
) -> None:
    with pytest.raises(TemplateError) as info:
        parse_template(source, KNOWN)
    assert info.value.message == message
    assert info.value.position == position
    assert info.value.field == field


def test_known_fields_accepts_builtins_and_dotted_custom_fields() -> None:
    t = parse_template("{first_name} {agent_name} {fields.store.city}", KNOWN)
    assert t.fields == {"first_name", "agent_name", "fields.store.city"}
    # Without known_fields any well-formed name is accepted.
    assert parse_template("{whatever.you.like}").fields == {"whatever.you.like"}
    # An empty collection means "no fields allowed", not "no validation".
    with pytest.raises(TemplateError, match="unknown field 'first_name'"):
        parse_template("{first_name}", ())


def test_template_is_a_hashable_value() -> None:
    assert parse_template("Hi {first_name}") == parse_template("Hi {first_name}")
    assert isinstance(hash(parse_template("Hi {first_name}")), int)


# --- rendering -------------------------------------------------------------------------------

CONTACT: dict[str, object | None] = {
    "first_name": "Ana",
    "last_name": "García",
    "agent_name": "Sam",
    "org_name": "Acme",
    "fields": {"loyalty_tier": "Gold", "store": {"city": "Reno"}, "visits": 3},
}


@pytest.mark.parametrize(
    ("source", "values", "expected"),
    [
        ("Hi {first_name}!", CONTACT, "Hi Ana!"),
        ("{first_name} {last_name}", CONTACT, "Ana García"),
        ("Hi {first_name|there}!", CONTACT, "Hi Ana!"),
        ("Hi {first_name|there}!", {}, "Hi there!"),
        ("Hi {first_name|there}!", {"first_name": None}, "Hi there!"),
        ("Hi {first_name|there}!", {"first_name": ""}, "Hi there!"),
        ("Hi {first_name|there}!", {"first_name": " \t "}, "Hi there!"),
        ("Hi {first_name|}!", {}, "Hi !"),
        ("Hi { first_name | my friend }!", {}, "Hi my friend!"),
        ("Hi {first_name}!", {"first_name": "  Ana  "}, "Hi Ana!"),
        # escaping
        ("{{first_name}} is {first_name}", CONTACT, "{first_name} is Ana"),
        ("}}{{", {}, "}{"),
        # custom fields: nested, flat, deep, and both
        ("Tier: {fields.loyalty_tier}", CONTACT, "Tier: Gold"),
        ("Tier: {fields.loyalty_tier}", {"fields.loyalty_tier": "Silver"}, "Tier: Silver"),
        ("{fields.store.city}", CONTACT, "Reno"),
        ("{fields.store.city}", {"fields.store.city": "Elko"}, "Elko"),
        ("{fields.visits} visits", CONTACT, "3 visits"),
        # flat key wins when it has a value; a blank flat key falls through to nested
        ("{fields.t}", {"fields.t": "flat", "fields": {"t": "nested"}}, "flat"),
        ("{fields.t}", {"fields.t": " ", "fields": {"t": "nested"}}, "nested"),
        ("{fields.t|none}", {"fields": {"t": None}}, "none"),
        ("{fields.t|none}", {"fields": "not a mapping"}, "none"),
        ("{fields.a.b|none}", {"fields": {"a": "leaf"}}, "none"),
        # a name that refers to a group is not a value
        ("{fields|none}", CONTACT, "none"),
        # unicode passes through untouched
        ("¡Hola {first_name}! 😀", CONTACT, "¡Hola Ana! 😀"),
    ],
)
def test_render(source: str, values: Mapping[str, object | None], expected: str) -> None:
    assert render(source, values) == expected
    assert render(parse_template(source), values, strict=False) == expected


@pytest.mark.parametrize(
    ("source", "values", "field", "position"),
    [
        ("Hi {first_name}!", {}, "first_name", 3),
        ("Hi {first_name}!", {"first_name": None}, "first_name", 3),
        ("Hi {first_name}!", {"first_name": "   "}, "first_name", 3),
        ("{first_name|x} {fields.tier}", {"fields": {}}, "fields.tier", 15),
        ("{a} {b}", {"b": 1}, "a", 0),
    ],
)
def test_strict_render_names_the_missing_field(
    source: str, values: Mapping[str, object | None], field: str, position: int
) -> None:
    with pytest.raises(TemplateError) as info:
        render(source, values)
    assert info.value.field == field
    assert info.value.position == position
    assert f"no value for field '{field}' at position {position}" in str(info.value)


def test_non_strict_render_leaves_missing_fields_empty() -> None:
    assert render("Hi {first_name}, {last_name|friend}.", {}, strict=False) == "Hi , friend."


class Tier(StrEnum):
    GOLD = "Gold"


class Level(Enum):
    TWO = 2


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, None),
        ("", None),
        ("  x ", "x"),
        (True, "yes"),
        (False, "no"),
        (0, "0"),
        (-12, "-12"),
        (3.0, "3"),
        (-0.0, "0"),
        (2.5, "2.5"),
        (0.1, "0.1"),
        (1e20, "1e+20"),
        (Decimal("10.50"), "10.50"),
        (Decimal("1E+2"), "100"),
        (dt.date(2024, 5, 1), "2024-05-01"),
        (dt.datetime(2024, 5, 1, 14, 30, 59), "2024-05-01 14:30"),
        (dt.time(9, 5, 7), "09:05"),
        (Tier.GOLD, "Gold"),
        (Level.TWO, "2"),
        (["a", None, " ", "b"], "a, b"),
        ((), None),
        ({"nested": "dict"}, None),
    ],
)
def test_format_value(value: object, text: str | None) -> None:
    assert format_value(value) == text


def test_non_string_values_render_sensibly() -> None:
    values = {"fields": {"points": 1500.0, "member": True, "since": dt.date(2020, 1, 31)}}
    source = "{fields.points} pts, member: {fields.member}, since {fields.since}"
    assert render(source, values) == "1500 pts, member: yes, since 2020-01-31"


# --- preview ---------------------------------------------------------------------------------


def test_preview_gsm() -> None:
    p = preview("Hi {first_name|there}, {last_name}!", {"first_name": "Ana"})
    assert p == Preview(
        text="Hi Ana, !",
        encoding="GSM-7",
        segment_count=1,
        length=9,
        missing_fields=("last_name",),
        non_gsm_chars=(),
    )


def test_preview_reports_ucs2_culprits_from_values() -> None:
    # The template is GSM-7; a contact's name is what forces UCS-2.
    p = preview("Hi {first_name}", {"first_name": "Zoë 😀"})
    assert p.encoding == "UCS-2"
    assert p.non_gsm_chars == ("ë", "😀")
    assert p.segment_count == 1
    assert p.missing_fields == ()


def test_preview_counts_segments() -> None:
    p = preview("{body}", {"body": "x" * 161})
    assert (p.encoding, p.length, p.segment_count) == ("GSM-7", 161, 2)


def test_preview_lists_each_missing_field_once_in_order() -> None:
    p = preview("{b} {a} {b} {c|fallback}", {})
    assert p.missing_fields == ("b", "a")
    assert p.text == "   fallback"


def test_preview_of_invalid_template_raises() -> None:
    with pytest.raises(TemplateError):
        preview("Hi {first_name", {})


# --- properties ------------------------------------------------------------------------------

no_braces = st.text(alphabet=st.characters(blacklist_characters="{}"))


@given(no_braces)
def test_text_without_braces_renders_to_itself(text: str) -> None:
    assert render(text, {}) == text
    assert parse_template(text).fields == frozenset()


@given(st.text())
def test_escaped_text_round_trips(text: str) -> None:
    assert render(escape(text), {}) == text
    assert render(escape(text), CONTACT, strict=False) == text


@settings(max_examples=300)
@given(st.text(alphabet=st.sampled_from(list("{}|. _abz1\n")), max_size=30))
def test_parse_either_succeeds_or_points_inside_the_source(source: str) -> None:
    try:
        t = parse_template(source)
    except TemplateError as err:
        assert 0 <= err.position < len(source)
        assert source[err.position] in "{}"
        assert f"position {err.position}" in err.message
    else:
        assert isinstance(t, Template)
        assert render(t, {}, strict=False) == render(source, {}, strict=False)


@given(
    st.lists(
        st.one_of(
            no_braces,
            st.sampled_from(BUILTIN_FIELDS).map(lambda f: f"{{{f}}}"),
        ),
        max_size=8,
    ),
    st.text(alphabet=st.characters(blacklist_characters="{}"), min_size=1, max_size=5).filter(
        lambda s: s.strip() == s
    ),
)
def test_fields_are_replaced_with_values(chunks: list[str], value: str) -> None:
    source = "".join(chunks)
    values = dict.fromkeys(BUILTIN_FIELDS, value)
    expected = "".join(value if c.startswith("{") else c for c in chunks)
    assert render(source, values) == expected
