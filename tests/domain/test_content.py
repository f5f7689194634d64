"""Tests for outbound content checks (compliance reference §5 and §6)."""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textdesk.domain.content import (
    AGE_GATED_CODES,
    CODE_LONG,
    CODE_MISSING_BRAND,
    CODE_MISSING_OPT_OUT,
    CODE_SHAFT_ALCOHOL,
    CODE_SHAFT_CANNABIS,
    CODE_SHAFT_FIREARMS,
    CODE_SHAFT_HATE,
    CODE_SHAFT_SEX,
    CODE_SHAFT_TOBACCO,
    CODE_TOO_LONG,
    CODE_UCS2,
    CODE_URL_SHORTENER,
    DEFAULT_BLOCKED,
    PUBLIC_SHORTENERS,
    ContentPolicy,
    Finding,
    Severity,
    check,
    find_urls,
    has_brand,
    has_opt_out_language,
    is_public_shortener,
)
from textdesk.domain.encoding import MAX_BODY_CHARS, Encoding, analyze

DEFAULT = ContentPolicy()
FIRST = ContentPolicy(
    brand_names=("Acme Dental", "Acme"),
    require_brand=True,
    require_opt_out_language=True,
)

# The reference's Smart Encoding example (§5.4): curly apostrophe and em dash force UCS-2.
REFERENCE_EXAMPLE = (
    "Hi Jane, it’s Sam from Acme Dental — your cleaning is tomorrow at 3pm. Reply STOP to opt out."
)


def codes(body: str, policy: ContentPolicy = DEFAULT) -> set[str]:
    return {f.code for f in check(body, policy)}


def only(body: str, code: str, policy: ContentPolicy = DEFAULT) -> Finding:
    found = [f for f in check(body, policy) if f.code == code]
    assert len(found) == 1, found
    return found[0]


# --- check(): table -------------------------------------------------------------------

CASES: list[tuple[str, ContentPolicy, set[str]]] = [
    # clean
    ("Your appointment is tomorrow at 3pm.", DEFAULT, set()),
    ("", DEFAULT, set()),
    ("Acme Dental: see you at 3pm. Reply STOP to opt out.", FIRST, set()),
    # public URL shorteners (§6)
    ("Book here: bit.ly/abc123", DEFAULT, {CODE_URL_SHORTENER}),
    ("Book here: https://BIT.LY/abc123.", DEFAULT, {CODE_URL_SHORTENER}),
    ("Book at https://www.bit.ly/x", DEFAULT, {CODE_URL_SHORTENER}),
    ("Book at tinyurl.com/y and rb.gy/z", DEFAULT, {CODE_URL_SHORTENER}),
    ("Book at https://acme-dental.com/book", DEFAULT, set()),
    ("Email jane@bit.ly with questions", DEFAULT, set()),
    # SHAFT: sex and hate block, the rest warn
    ("Free porn tonight", DEFAULT, {CODE_SHAFT_SEX}),
    ("New XXX videos", DEFAULT, {CODE_SHAFT_SEX}),
    ("Our Essex and Sussex offices are open", DEFAULT, set()),
    ("Sexual health clinic reminder: your visit is at 3pm", DEFAULT, set()),
    ("Join the white power rally", DEFAULT, {CODE_SHAFT_HATE}),
    ("Whitepowerwashing: 20% off driveways", DEFAULT, set()),
    ("I have a hatred of waiting rooms too!", DEFAULT, set()),
    ("2-for-1 craft beer tonight", DEFAULT, {CODE_SHAFT_ALCOHOL}),
    ("Wine tasting Friday", DEFAULT, {CODE_SHAFT_ALCOHOL}),
    ("Sale on vapes and e-liquids", DEFAULT, {CODE_SHAFT_TOBACCO}),
    ("New rifles and ammo in stock", DEFAULT, {CODE_SHAFT_FIREARMS}),
    ("Hot glue gun and nail gun 30% off", DEFAULT, set()),
    ("CBD gummies are back", DEFAULT, {CODE_SHAFT_CANNABIS}),
    ("Your class starts at 5; bring a glass of water", DEFAULT, set()),
    ("Beginners' guns-and-wine night", DEFAULT, {CODE_SHAFT_FIREARMS, CODE_SHAFT_ALCOHOL}),
    # first-message requirements (§6)
    ("See you at 3pm.", FIRST, {CODE_MISSING_BRAND, CODE_MISSING_OPT_OUT}),
    ("acme dental: see you at 3pm. Reply STOP to opt out.", FIRST, set()),
    ("ACME: see you at 3pm. Text STOP to unsubscribe", FIRST, set()),
    ("Acmeville news. Reply STOP to opt out.", FIRST, {CODE_MISSING_BRAND}),
    ("Acme Dental: see you at 3pm. Text 2 to opt out", FIRST, {CODE_MISSING_OPT_OUT}),
    ("See you at 3pm.", ContentPolicy(require_brand=True), {CODE_MISSING_BRAND}),
    ("See you at 3pm.", ContentPolicy(brand_names=("Acme",)), set()),
    # encoding and length (§5)
    ("Price: 5 €", DEFAULT, set()),
    ("See you soon 😀", DEFAULT, {CODE_UCS2}),
    (REFERENCE_EXAMPLE, DEFAULT, {CODE_UCS2}),
    ("a" * 459, DEFAULT, set()),
    ("a" * 460, DEFAULT, {CODE_LONG}),
    ("a" * 460, ContentPolicy(max_segments_warning=4), set()),
    ("a" * (MAX_BODY_CHARS + 1), DEFAULT, {CODE_LONG, CODE_TOO_LONG}),
]


@pytest.mark.parametrize(("body", "policy", "expected"), CASES)
def test_check_codes(body: str, policy: ContentPolicy, expected: set[str]) -> None:
    assert codes(body, policy) == expected


DEFAULT_SEVERITIES = [
    ("bit.ly/x", CODE_URL_SHORTENER, Severity.BLOCK),
    ("porn", CODE_SHAFT_SEX, Severity.BLOCK),
    ("sieg heil", CODE_SHAFT_HATE, Severity.BLOCK),
    ("vodka", CODE_SHAFT_ALCOHOL, Severity.WARNING),
    ("cigarettes", CODE_SHAFT_TOBACCO, Severity.WARNING),
    ("handgun", CODE_SHAFT_FIREARMS, Severity.WARNING),
    ("marijuana", CODE_SHAFT_CANNABIS, Severity.WARNING),
    ("hello 😀", CODE_UCS2, Severity.WARNING),
    ("a" * 500, CODE_LONG, Severity.WARNING),
    ("a" * 1601, CODE_TOO_LONG, Severity.BLOCK),
]


@pytest.mark.parametrize(("body", "code", "severity"), DEFAULT_SEVERITIES)
def test_default_severities(body: str, code: str, severity: Severity) -> None:
    assert only(body, code).severity is severity


def test_missing_brand_and_opt_out_are_warnings_by_default() -> None:
    findings = check("Hi there", FIRST)
    assert {f.code: f.severity for f in findings} == {
        CODE_MISSING_BRAND: Severity.WARNING,
        CODE_MISSING_OPT_OUT: Severity.WARNING,
    }


# --- policy ----------------------------------------------------------------------------


def test_org_can_escalate_a_warning() -> None:
    policy = ContentPolicy(blocked=DEFAULT_BLOCKED | {CODE_SHAFT_CANNABIS, CODE_UCS2})
    assert only("CBD oil", CODE_SHAFT_CANNABIS, policy).severity is Severity.BLOCK
    assert only("hi 😀", CODE_UCS2, policy).severity is Severity.BLOCK
    assert only("beer", CODE_SHAFT_ALCOHOL, policy).severity is Severity.WARNING


def test_prefix_in_blocked_covers_the_codes_below_it() -> None:
    policy = ContentPolicy(blocked=frozenset({"content.shaft"}))
    for code in AGE_GATED_CODES:
        assert policy.severity_of(code) is Severity.BLOCK
    assert policy.severity_of(CODE_URL_SHORTENER) is Severity.WARNING
    # a prefix must end at a dot: "content.sh" is not "content.shaft"
    partial = ContentPolicy(blocked=frozenset({"content.sh"}))
    assert partial.severity_of(CODE_SHAFT_SEX) is Severity.WARNING


def test_org_can_relax_blocks_but_never_too_long() -> None:
    relaxed = ContentPolicy(blocked=frozenset())
    assert only("bit.ly/x", CODE_URL_SHORTENER, relaxed).severity is Severity.WARNING
    assert only("porn", CODE_SHAFT_SEX, relaxed).severity is Severity.WARNING
    assert only("a" * 1601, CODE_TOO_LONG, relaxed).severity is Severity.BLOCK


def test_blocks_sort_first_then_by_position() -> None:
    body = "Beer 😀 and bit.ly/a then tinyurl.com/b"
    findings = check(body)
    assert [f.code for f in findings] == [
        CODE_URL_SHORTENER,
        CODE_URL_SHORTENER,
        CODE_SHAFT_ALCOHOL,
        CODE_UCS2,
    ]
    assert [body[s:e] for s, e in (f.span for f in findings[:2] if f.span)] == [
        "bit.ly/a",
        "tinyurl.com/b",
    ]


def test_findings_are_frozen() -> None:
    finding = check("bit.ly/x")[0]
    with pytest.raises(FrozenInstanceError):
        finding.code = "x"  # type: ignore[misc]


# --- details of individual findings ------------------------------------------------


def test_shortener_finding_names_domain_and_link() -> None:
    body = "Confirm at bit.ly/abc, thanks"
    finding = only(body, CODE_URL_SHORTENER)
    assert finding.span == (11, 21)
    assert body[11:21] == "bit.ly/abc"
    assert "bit.ly is a public URL shortener" in finding.message
    assert "own domain" in finding.message
    assert finding.fix is None


def test_ucs2_fix_from_reference_example_is_gsm7() -> None:
    finding = only(REFERENCE_EXAMPLE, CODE_UCS2)
    assert finding.fix is not None
    fixed = analyze(finding.fix)
    assert fixed.encoding is Encoding.GSM7
    assert fixed.segment_count == 1
    assert analyze(REFERENCE_EXAMPLE).segment_count == 2
    assert finding.fix == REFERENCE_EXAMPLE.replace("’", "'").replace("—", "-")
    assert finding.span == (11, 12)  # the curly apostrophe, first culprit
    assert "U+2019" in finding.message and "U+2014" in finding.message
    assert "1 segment instead of 2" in finding.message
    assert check(finding.fix) == ()


def test_ucs2_without_gsm7_fix() -> None:
    body = "Happy birthday 🎂 “Sam”"
    finding = only(body, CODE_UCS2)
    assert finding.fix is None  # smart encoding cannot remove the emoji
    assert finding.span == (15, 16)


def test_shaft_finding_span_and_age_gate_message() -> None:
    body = "Happy hour: Beer and WINE half price, beer all night"
    finding = only(body, CODE_SHAFT_ALCOHOL)
    assert finding.span == (12, 16)
    assert '"beer", "wine"' in finding.message
    assert "21+" in finding.message


def test_missing_brand_fix_and_message() -> None:
    finding = only("See you at 3pm.", CODE_MISSING_BRAND, FIRST)
    assert "Acme Dental" in finding.message
    assert finding.fix == "Acme Dental: See you at 3pm."
    assert finding.span is None


def test_missing_brand_without_configured_names() -> None:
    finding = only("Hi", CODE_MISSING_BRAND, ContentPolicy(require_brand=True))
    assert finding.fix is None
    assert "no brand name" in finding.message


@pytest.mark.parametrize(
    ("body", "fix"),
    [
        ("See you at 3pm", "See you at 3pm. Reply STOP to opt out."),
        ("See you at 3pm!  ", "See you at 3pm! Reply STOP to opt out."),
        ("", "Reply STOP to opt out."),
    ],
)
def test_missing_opt_out_fix(body: str, fix: str) -> None:
    policy = ContentPolicy(require_opt_out_language=True)
    finding = only(body, CODE_MISSING_OPT_OUT, policy)
    assert finding.fix == fix
    assert has_opt_out_language(fix)


def test_too_long_counts_nfc_characters() -> None:
    decomposed = "e\u0301" * 900  # 1800 code points, 900 after NFC
    assert CODE_TOO_LONG not in codes(decomposed)


# --- has_opt_out_language -------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        "Reply STOP to opt out",
        "Text STOP to unsubscribe",
        "STOP to end",
        "reply STOP to cancel",
        "Txt STOP 2 quit",
        "Reply stop to opt out",
        "Reply END to opt out",
        "Reply with the word STOP to stop receiving messages",
        "Reply 'STOP' to unsubscribe",
        "Reply “STOP” to unsubscribe",
        "Send UNSUBSCRIBE to 12345",
        "Text back QUIT anytime",
        "Msg&data rates may apply. STOP2END",
        "Reply OPT OUT to be removed",
        "Reply STOP",
    ],
)
def test_opt_out_language_accepted(body: str) -> None:
    assert has_opt_out_language(body)


@pytest.mark.parametrize(
    "body",
    [
        "Text 2 to opt out",
        "Reply 2 to unsubscribe",
        "To opt out, let us know",
        "Please don't stop to end the call early",
        "Reply Y to confirm",
        "Reply STOPPED",
        "Replying stop is rude",
        "Unsubscribe at acme.com/unsub",
        "",
    ],
)
def test_opt_out_language_rejected(body: str) -> None:
    assert not has_opt_out_language(body)


# --- brand ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "names", "expected"),
    [
        ("Hi from ACME DENTAL", ("Acme Dental",), True),
        ("Hi from Acme\nDental", ("Acme Dental",), True),
        ("Hi from AcmeDental", ("Acme Dental",), False),
        ("Joe’s Pizza here", ("Joe's Pizza",), True),
        ("AT&T: your bill", ("AT&T",), True),
        ("Acmeville", ("Acme",), False),
        ("anything", ("", "  "), False),
        ("anything", (), False),
    ],
)
def test_has_brand(body: str, names: tuple[str, ...], expected: bool) -> None:
    assert has_brand(body, names) is expected


# --- find_urls ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Go to bit.ly/abc", [("bit.ly", "bit.ly/abc")]),
        ("Go to bit.ly/abc.", [("bit.ly", "bit.ly/abc")]),
        ("Go to BIT.LY/ABC!", [("bit.ly", "BIT.LY/ABC")]),
        ("(see https://acme.com/a_(b))", [("acme.com", "https://acme.com/a_(b)")]),
        ("(see https://acme.com/a)", [("acme.com", "https://acme.com/a")]),
        ("Visit www.acme.xyz, ok?", [("www.acme.xyz", "www.acme.xyz")]),
        ("Visit acme.com.", [("acme.com", "acme.com")]),
        ("Visit acme.example/path", [("acme.example", "acme.example/path")]),
        (
            "http://user:pw@tinyurl.com:8080/x",
            [("tinyurl.com", "http://user:pw@tinyurl.com:8080/x")],
        ),
        ("Buch: https://Bücher.de/x", [("bücher.de", "https://Bücher.de/x")]),
        ("ｂｉｔ．ｌｙ/x", [("bit.ly", "ｂｉｔ．ｌｙ/x")]),
        ("bit。ly/x", [("bit.ly", "bit。ly/x")]),
        ("https://xn--bcher-kva.de", [("xn--bcher-kva.de", "https://xn--bcher-kva.de")]),
        ("a bit.ly/1 b t.co/2", [("bit.ly", "bit.ly/1"), ("t.co", "t.co/2")]),
        ("e.g. version 3.5, i.e. done.Thanks", []),
        ("mail jane@acme.com", []),
        ("Mr.Smith at 10.30", []),
        ("-acme-.com/x", []),
    ],
)
def test_find_urls(body: str, expected: list[tuple[str, str]]) -> None:
    found = find_urls(body)
    assert [(host, body[s:e]) for host, s, e in found] == expected


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("bit.ly", True),
        ("www.bit.ly", True),
        ("bit.ly.", True),
        ("t.co", True),
        ("microsoft.co", False),
        ("notbit.ly", False),
        ("bit.ly.evil.com", False),
        ("acme.com", False),
    ],
)
def test_is_public_shortener(host: str, expected: bool) -> None:
    assert is_public_shortener(host) is expected


def test_reference_shortener_list_is_covered() -> None:
    reference = "bit.ly bitly.com tinyurl.com t.ly cutt.ly is.gd ow.ly rebrand.ly rb.gy tiny.cc"
    assert set(reference.split()) <= PUBLIC_SHORTENERS
    assert all(s == s.lower() and "." in s for s in PUBLIC_SHORTENERS)


@pytest.mark.parametrize("shortener", sorted(PUBLIC_SHORTENERS))
def test_every_shortener_is_found_scheme_less(shortener: str) -> None:
    assert codes(f"Link: {shortener}/abc") == {CODE_URL_SHORTENER}


# --- properties -----------------------------------------------------------------------

TEXT = st.text(
    alphabet=st.one_of(
        st.characters(),
        st.sampled_from(list(" ./:@-STOPbit.lyhttps’—😀\n")),
    ),
    max_size=300,
)
POLICIES = st.builds(
    ContentPolicy,
    brand_names=st.lists(st.text(max_size=10), max_size=3).map(tuple),
    require_brand=st.booleans(),
    require_opt_out_language=st.booleans(),
    max_segments_warning=st.integers(min_value=0, max_value=5),
)


@settings(max_examples=150, deadline=None)
@given(TEXT, POLICIES)
def test_check_never_raises_and_spans_are_in_body(body: str, policy: ContentPolicy) -> None:
    for finding in check(body, policy):
        assert finding.message
        assert isinstance(finding.severity, Severity)
        if finding.span is not None:
            start, end = finding.span
            assert 0 <= start < end <= len(body)
        if finding.code == CODE_UCS2 and finding.fix is not None:
            assert analyze(finding.fix).encoding is Encoding.GSM7


@settings(max_examples=150, deadline=None)
@given(TEXT)
def test_find_urls_hosts_lowercase_and_spans_ordered(body: str) -> None:
    previous_end = 0
    for host, start, end in find_urls(body):
        assert host == host.lower()
        assert "." in host
        assert previous_end <= start < end <= len(body)
        previous_end = end


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(PUBLIC_SHORTENERS)), st.text(alphabet="abcXYZ019", max_size=8))
def test_shortener_links_always_blocked(shortener: str, path: str) -> None:
    body = f"Hi! Book: https://{shortener.upper()}/{path}. Thanks"
    assert only(body, CODE_URL_SHORTENER).severity is Severity.BLOCK


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="abcdefghijklmnop ,.", max_size=80))
def test_appending_opt_out_suggestion_satisfies_check(body: str) -> None:
    policy = ContentPolicy(require_opt_out_language=True)
    for finding in check(body, policy):
        if finding.code == CODE_MISSING_OPT_OUT:
            assert finding.fix is not None
            assert CODE_MISSING_OPT_OUT not in codes(finding.fix, policy)
