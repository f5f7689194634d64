"""Tests for SMS encoding detection, segmentation and smart encoding.

The GSM tables are re-typed here from 3GPP TS 23.038 rather than imported, so a typo
in the module's table cannot make the tests agree with it.
"""

from __future__ import annotations

import itertools
import unicodedata
from dataclasses import FrozenInstanceError

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textdesk.domain.encoding import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    MAX_BODY_CHARS,
    Encoding,
    Replacement,
    SmsAnalysis,
    analyze,
    is_gsm7,
    septet_length,
    smart_encode,
)

# 3GPP TS 23.038 section 6.2.1, default alphabet, rows of 16 in septet order.
SPEC_DEFAULT_TABLE = (
    "@£$¥èéùìòÇ\nØø\rÅå"  # 0x00-0x0F (0x09 is capital Ç per the spec)
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"  # 0x10-0x1F (0x1B is ESC)
    " !\"#¤%&'()*+,-./"  # 0x20-0x2F
    "0123456789:;<=>?"  # 0x30-0x3F
    "¡ABCDEFGHIJKLMNO"  # 0x40-0x4F
    "PQRSTUVWXYZÄÖÑÜ§"  # 0x50-0x5F
    "¿abcdefghijklmno"  # 0x60-0x6F
    "pqrstuvwxyzäöñüà"  # 0x70-0x7F
)
# Section 6.2.1.1, extension table: septet after ESC -> character.
SPEC_EXTENSION_TABLE = {
    0x0A: "\x0c",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}
SPEC_BASIC = sorted(set(SPEC_DEFAULT_TABLE) - {"\x1b"})
SPEC_EXTENSION = sorted(SPEC_EXTENSION_TABLE.values())
GSM_ALL = sorted(set(SPEC_BASIC) | set(SPEC_EXTENSION))

FAMILY = "👨\u200d👩\u200d👧\u200d👦"  # 4 emoji (2 units each) + 3 ZWJ = 11 units
US_FLAG = "🇺🇸"  # two regional indicators, 4 units
CA_FLAG = "🇨🇦"


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def units(analysis: SmsAnalysis, segment: str) -> int:
    if analysis.encoding is Encoding.GSM7:
        return septet_length(segment)
    return utf16_units(segment)


def check_invariants(analysis: SmsAnalysis) -> None:
    assert "".join(analysis.segments) == analysis.text
    assert analysis.segment_count == len(analysis.segments)
    assert all(analysis.segments), "no empty segments"
    assert all(units(analysis, seg) <= analysis.per_segment_limit for seg in analysis.segments)
    assert sum(units(analysis, seg) for seg in analysis.segments) == analysis.length
    last = units(analysis, analysis.segments[-1]) if analysis.segments else 0
    assert analysis.remaining == analysis.per_segment_limit - last
    if analysis.encoding is Encoding.GSM7:
        assert analysis.non_gsm_chars == ()
        assert analysis.per_segment_limit == (160 if analysis.segment_count <= 1 else 153)
    else:
        assert analysis.non_gsm_chars
        assert analysis.per_segment_limit == (70 if analysis.segment_count <= 1 else 67)
        for seg in analysis.segments:
            # Each segment must be valid UTF-16 on its own: no half surrogate pairs.
            code_units = seg.encode("utf-16-le", "surrogatepass")
            first = int.from_bytes(code_units[:2], "little")
            last_unit = int.from_bytes(code_units[-2:], "little")
            assert not 0xDC00 <= first <= 0xDFFF
            assert not 0xD800 <= last_unit <= 0xDBFF


# --- tables ----------------------------------------------------------------------


def test_tables_match_spec() -> None:
    assert len(SPEC_DEFAULT_TABLE) == 128
    assert frozenset(SPEC_BASIC) == GSM7_BASIC
    assert len(GSM7_BASIC) == 127
    assert frozenset(SPEC_EXTENSION) == GSM7_EXTENSION
    assert len(GSM7_EXTENSION) == 10
    assert not GSM7_BASIC & GSM7_EXTENSION
    assert SPEC_DEFAULT_TABLE[0x09] == "Ç"


def test_gsm_chars_are_nfc_stable() -> None:
    # Otherwise normalizing GSM text could change it.
    for ch in GSM_ALL:
        assert unicodedata.normalize("NFC", ch) == ch


@pytest.mark.parametrize("ch", SPEC_BASIC)
def test_every_basic_char_is_one_septet(ch: str) -> None:
    result = analyze(ch)
    assert result.encoding is Encoding.GSM7
    assert result.length == 1
    assert septet_length(ch) == 1
    assert is_gsm7(ch)
    assert result.segments == (ch,)
    assert result.remaining == 159


@pytest.mark.parametrize("ch", SPEC_EXTENSION)
def test_every_extension_char_is_two_septets(ch: str) -> None:
    result = analyze(ch)
    assert result.encoding is Encoding.GSM7
    assert result.length == 2
    assert septet_length(ch) == 2
    assert is_gsm7(ch)
    assert result.remaining == 158


@pytest.mark.parametrize(
    ("ch", "expected_units"),
    [
        ("ç", 1),  # lowercase; only capital Ç is in the spec table
        ("ā", 1),
        ("’", 1),
        ("`", 1),
        ("\t", 1),
        ("\u00a0", 1),
        ("ж", 1),
        ("中", 1),
        ("\x1b", 1),  # the bare escape is not a usable character
        ("😀", 2),
        (US_FLAG, 4),
        (FAMILY, 11),
    ],
)
def test_non_gsm_chars_force_ucs2(ch: str, expected_units: int) -> None:
    assert not is_gsm7(ch)
    result = analyze("hello " + ch)
    assert result.encoding is Encoding.UCS2
    assert result.length == 6 + expected_units
    assert result.segment_count == 1
    assert result.per_segment_limit == 70
    assert result.remaining == 70 - 6 - expected_units
    with pytest.raises(ValueError, match="index 6"):
        septet_length("hello " + ch)


def test_euro_is_extension_not_ucs2() -> None:
    result = analyze("Only 5€ today")
    assert result.encoding is Encoding.GSM7
    assert result.length == 14


def test_non_gsm_chars_distinct_in_first_appearance_order() -> None:
    result = analyze("’a—b’ç😀—")
    assert result.non_gsm_chars == ("’", "—", "ç", "😀")


def test_septet_length_error_names_char_and_index() -> None:
    with pytest.raises(ValueError, match=r"'’' \(U\+2019\) at index 3") as info:
        septet_length("abc’d ç")
    assert "GSM-7" in str(info.value)


def test_encoding_values() -> None:
    assert Encoding("GSM-7") is Encoding.GSM7
    assert Encoding("UCS-2") is Encoding.UCS2
    assert f"{Encoding.GSM7}/{Encoding.UCS2}" == "GSM-7/UCS-2"  # StrEnum formats as value
    assert MAX_BODY_CHARS == 1600


def test_results_are_frozen() -> None:
    result = analyze("hi")
    with pytest.raises(FrozenInstanceError):
        result.length = 3  # type: ignore[misc]


# --- empty and NFC -------------------------------------------------------------------


def test_empty_text() -> None:
    result = analyze("")
    assert result == SmsAnalysis(
        text="",
        encoding=Encoding.GSM7,
        length=0,
        segments=(),
        segment_count=0,
        per_segment_limit=160,
        remaining=160,
        non_gsm_chars=(),
    )
    assert is_gsm7("")
    assert septet_length("") == 0


def test_decomposed_accent_is_normalized_to_gsm() -> None:
    result = analyze("Cafe\u0301 A\u030a")  # e + combining acute, A + combining ring
    assert result.text == "Café Å"
    assert result.encoding is Encoding.GSM7
    assert result.length == 6
    assert is_gsm7("e\u0301")
    assert septet_length("e\u0301") == 1


def test_compatibility_lookalikes_normalize_to_gsm() -> None:
    # OHM SIGN and ANGSTROM SIGN canonically decompose to GSM Ω and Å.
    assert analyze("5\u2126 1\u212b").encoding is Encoding.GSM7


def test_combining_accent_without_gsm_precomposed_form() -> None:
    result = analyze("a\u0304")  # NFC -> ā, which is not GSM
    assert result.text == "ā"
    assert result.encoding is Encoding.UCS2
    result = analyze("x\u0301")  # no precomposed form: 2 code units, one cluster
    assert result.encoding is Encoding.UCS2
    assert result.length == 2
    assert result.non_gsm_chars == ("\u0301",)


# --- GSM-7 boundaries ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "sizes", "limit", "remaining"),
    [
        ("a" * 160, [160], 160, 0),
        ("a" * 161, [153, 8], 153, 145),
        ("a" * 306, [153, 153], 153, 0),
        ("a" * 307, [153, 153, 1], 153, 152),
        ("€" * 80, [80], 160, 0),  # 160 septets still fit one segment
        ("€" * 81, [76, 5], 153, 143),  # 76 pairs = 152 septets per segment
        ("a" * 159 + "€", [153, 7], 153, 145),
    ],
)
def test_gsm7_boundaries(text: str, sizes: list[int], limit: int, remaining: int) -> None:
    result = analyze(text)
    assert result.encoding is Encoding.GSM7
    assert [len(seg) for seg in result.segments] == sizes
    assert result.per_segment_limit == limit
    assert result.remaining == remaining
    check_invariants(result)


def test_extension_char_never_straddles_gsm_boundary() -> None:
    # Septets 153 and 154 would hold ESC and '{': the pair moves whole.
    text = "a" * 152 + "{" + "b" * 20
    result = analyze(text)
    assert result.segments == ("a" * 152, "{" + "b" * 20)
    assert result.length == 174
    assert result.remaining == 153 - 22
    check_invariants(result)


def test_extension_char_that_fits_exactly_stays() -> None:
    text = "a" * 151 + "{" + "b" * 20
    result = analyze(text)
    assert result.segments == ("a" * 151 + "{", "b" * 20)


# --- UCS-2 boundaries ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "sizes", "limit", "remaining"),
    [
        (70, [70], 70, 0),
        (71, [67, 4], 67, 63),
        (134, [67, 67], 67, 0),
        (135, [67, 67, 1], 67, 66),
    ],
)
def test_ucs2_boundaries(count: int, sizes: list[int], limit: int, remaining: int) -> None:
    result = analyze("ж" * count)
    assert result.encoding is Encoding.UCS2
    assert [len(seg) for seg in result.segments] == sizes
    assert result.per_segment_limit == limit
    assert result.remaining == remaining
    check_invariants(result)


def test_emoji_straddling_67_moves_to_next_segment() -> None:
    # The emoji would occupy units 67 and 68: it must not be split.
    text = "a" * 66 + "😀" + "b" * 10
    result = analyze(text)
    assert result.length == 78
    assert result.segments == ("a" * 66, "😀" + "b" * 10)
    assert result.remaining == 67 - 12
    check_invariants(result)


def test_emoji_only_message_counts_two_units_each() -> None:
    assert analyze("😀" * 35).segment_count == 1
    result = analyze("😀" * 36)
    assert [utf16_units(seg) for seg in result.segments] == [66, 6]


def test_zwj_family_kept_together() -> None:
    text = "a" * 60 + FAMILY + "b" * 5
    result = analyze(text)
    assert result.length == 76
    assert result.segments == ("a" * 60, FAMILY + "b" * 5)
    check_invariants(result)


def test_flag_kept_together_and_pairs_from_left() -> None:
    result = analyze("a" * 66 + US_FLAG + "b" * 5)
    assert result.segments == ("a" * 66, US_FLAG + "b" * 5)
    # 63 + 4 = 67 fits exactly; the next flag starts the new segment, not a torn pair.
    result = analyze("a" * 63 + US_FLAG + CA_FLAG)
    assert result.segments == ("a" * 63 + US_FLAG, CA_FLAG)


def test_skin_tone_and_variation_selector_kept_with_base() -> None:
    thumbs = "👍🏽"  # 4 units
    result = analyze("a" * 64 + thumbs + "b" * 5)
    assert result.segments == ("a" * 64, thumbs + "b" * 5)
    heart = "❤\ufe0f"  # 2 units
    result = analyze("ж" * 66 + heart + "b" * 5)
    assert result.segments == ("ж" * 66, heart + "b" * 5)


def test_combining_mark_kept_with_base_in_ucs2() -> None:
    result = analyze("ж" * 66 + "x\u0301" + "b" * 5)
    assert result.segments == ("ж" * 66, "x\u0301" + "b" * 5)


def test_oversized_cluster_is_split_as_last_resort() -> None:
    text = "ж" * 10 + "x" + "\u0301" * 100  # one 101-unit cluster
    result = analyze(text)
    assert result.encoding is Encoding.UCS2
    assert [utf16_units(seg) for seg in result.segments] == [67, 44]
    check_invariants(result)


def test_oversized_emoji_cluster_never_splits_surrogates() -> None:
    # A (silly) ZWJ chain of 30 emoji is one 89-unit cluster; splitting must still
    # happen between code points, leaving 66 units in the first segment.
    chain = "\u200d".join(["😀"] * 30)
    result = analyze("a" + chain)
    assert result.length == 90
    assert [utf16_units(seg) for seg in result.segments] == [67, 23]
    check_invariants(result)


# --- smart encoding ------------------------------------------------------------------

SAMPLE = (
    "Hi Jane, it’s Sam from Acme Dental — your cleaning is tomorrow at 3pm. Reply STOP to opt out."
)


def test_smart_encode_sample_message() -> None:
    before = analyze(SAMPLE)
    assert before.encoding is Encoding.UCS2
    assert [len(seg) for seg in before.segments] == [67, 26]
    assert before.non_gsm_chars == ("’", "—")

    result = smart_encode(SAMPLE)
    assert result.changed
    assert result.text == (
        "Hi Jane, it's Sam from Acme Dental - your cleaning is tomorrow at 3pm. "
        "Reply STOP to opt out."
    )
    assert result.replacements == (Replacement("’", "'", 1), Replacement("—", "-", 1))

    after = analyze(result.text)
    assert after.encoding is Encoding.GSM7
    assert after.segment_count == 1
    assert after.length == 93


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("‘a’ ‚b‛ “c” „d‟", "'a' 'b' \"c\" \"d\""),
        ("5′ 6″", "5' 6\""),
        ("a‐b‑c‒d–e—f―g", "a-b-c-d-e-f-g"),
        ("wait…", "wait..."),
        ("a\u00a0b\u2002c\u200ad\u202fe\u205ff\u3000g", "a b c d e f g"),
        ("a\u2000b\u2001c", "a b c"),  # NFC folds these into U+2002/U+2003 first
        ("zero\u200bwidth\u200c\u200d\ufeff", "zerowidth"),
        ("• one\n• two", "- one\n- two"),
        ("«oui» ‹non›", "\"oui\" 'non'"),
        ("ＡＢＣ１２３！", "ABC123!"),
        ("tab\there", "tab here"),
        ("a\u2028b", "a\nb"),
        ("soft\u00adhyphen", "softhyphen"),
        ("3−2", "3-2"),
    ],
)
def test_smart_encode_examples(text: str, expected: str) -> None:
    result = smart_encode(text)
    assert result.text == expected
    assert result.changed
    assert is_gsm7(result.text)


def test_smart_encode_counts_each_distinct_replacement() -> None:
    result = smart_encode("“Hi” — it’s… it’s")
    assert result.replacements == (
        Replacement("“", '"', 1),
        Replacement("”", '"', 1),
        Replacement("—", "-", 1),
        Replacement("’", "'", 2),
        Replacement("…", "...", 1),
    )


def test_smart_encode_keeps_other_non_gsm_chars() -> None:
    result = smart_encode("Thanks — see you 😀")
    assert result.text == "Thanks - see you 😀"
    assert analyze(result.text).encoding is Encoding.UCS2


def test_smart_encode_keeps_meaningful_joiners() -> None:
    # ZWJ inside an emoji sequence (and ZWNJ in Persian) carries meaning: keep it.
    text = f"{FAMILY} and \u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
    result = smart_encode(text)
    assert result.text == text
    assert not result.changed
    assert result.replacements == ()
    # A stray ZWJ between Latin letters is junk.
    assert smart_encode("a\u200db").text == "ab"


def test_smart_encode_unchanged_for_gsm_text() -> None:
    text = "Hello @ £5 {ok} ~ € Ç"
    result = smart_encode(text)
    assert result.text == text
    assert not result.changed
    assert result.replacements == ()


def test_smart_encode_normalizes_without_reporting_change() -> None:
    result = smart_encode("Cafe\u0301")
    assert result.text == "Café"
    assert not result.changed


def test_smart_encode_renormalizes_after_removal() -> None:
    # Removing ZWSP lets e + U+0301 compose to GSM é; the joiner then sits between
    # GSM text and is removed on the next pass.
    result = smart_encode("e\u200b\u0301\u200dж")
    assert result.text == "éж"
    assert smart_encode(result.text).text == result.text


def test_smart_table_only_maps_non_gsm_to_gsm() -> None:
    from textdesk.domain.encoding import _SMART_TABLE

    for original, replacement in _SMART_TABLE.items():
        assert len(original) == 1
        assert original not in GSM7_BASIC and original not in GSM7_EXTENSION, original
        assert unicodedata.normalize("NFC", original) == original, hex(ord(original))
        assert all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in replacement)


# --- properties ----------------------------------------------------------------------

SPECIALS = [
    "😀",
    "👍",
    "🏽",
    "\ufe0f",
    "\u200d",
    "\u200c",
    "\u200b",
    "🇺",
    "🇸",
    "\u0301",
    "\u0308",
    "ç",
    "ж",
    "’",
    "—",
    "…",
    "\u00a0",
    "•",
    "ＡＢ",
    "\t",
    FAMILY,
    US_FLAG,
]

gsm_text = st.text(alphabet=st.sampled_from(GSM_ALL), max_size=400)
# Pieces may be longer than one character (flags, ZWJ sequences), so build from lists.
mixed_text = st.lists(
    st.one_of(
        st.sampled_from(GSM_ALL),
        st.sampled_from(SPECIALS),
        st.characters(codec="utf-8"),
    ),
    max_size=200,
).map("".join)
any_text = st.one_of(gsm_text, mixed_text)

FAST = settings(max_examples=150, deadline=None)


@FAST
@given(any_text)
def test_segments_concatenate_and_fit(text: str) -> None:
    result = analyze(text)
    assert result.text == unicodedata.normalize("NFC", text)
    assert (result.encoding is Encoding.GSM7) == is_gsm7(text)
    check_invariants(result)


@FAST
@given(gsm_text)
def test_gsm_text_properties(text: str) -> None:
    result = analyze(text)
    assert result.encoding is Encoding.GSM7
    assert result.length == septet_length(text)
    if result.length <= 160:
        assert result.segment_count == (1 if text else 0)
    else:
        # Greedy packing: every segment but the last is full, up to one ESC pair.
        assert all(septet_length(seg) >= 152 for seg in result.segments[:-1])
    check_invariants(result)


@FAST
@given(st.lists(st.sampled_from(GSM_ALL), min_size=1, max_size=400))
def test_escape_pairs_never_split(chars: list[str]) -> None:
    # Model the wire form: each extension char is ESC + septet. A segment boundary may
    # only fall where a character boundary is, never between ESC and its partner.
    text = "".join(chars)
    result = analyze(text)
    offsets = {0}
    total = 0
    for ch in text:
        total += 2 if ch in GSM7_EXTENSION else 1
        offsets.add(total)
    position = 0
    for seg in result.segments:
        position += septet_length(seg)
        assert position in offsets
        assert not seg.endswith("\x1b")


ATOMS = ["a", "ж", " ", "😀", "x\u0301", "👍🏽", FAMILY, US_FLAG, "🇯🇵", "❤\ufe0f", "#\ufe0f\u20e3"]


@FAST
@given(st.lists(st.sampled_from(ATOMS), min_size=1, max_size=120))
def test_ucs2_never_splits_clusters(atoms: list[str]) -> None:
    text = "".join(atoms) + "ж"
    result = analyze(text)
    assert result.encoding is Encoding.UCS2
    boundaries = {0}
    offset = 0
    for atom in [*atoms, "ж"]:
        offset += len(atom)
        boundaries.add(offset)
    position = 0
    for seg in result.segments:
        position += len(seg)
        assert position in boundaries, (position, result.segments)
    check_invariants(result)


@FAST
@given(any_text)
def test_smart_encode_idempotent(text: str) -> None:
    once = smart_encode(text)
    twice = smart_encode(once.text)
    assert twice.text == once.text
    assert not twice.changed
    assert once.changed == bool(once.replacements)
    assert all(r.count > 0 for r in once.replacements)


@FAST
@given(gsm_text)
def test_smart_encode_never_changes_gsm_text(text: str) -> None:
    result = smart_encode(text)
    assert result.text == text
    assert not result.changed


def _mark_after_smart_char(text: str) -> bool:
    from textdesk.domain.encoding import _SMART_TABLE

    normalized = unicodedata.normalize("NFC", text)
    return any(
        a in _SMART_TABLE and unicodedata.category(b).startswith("M")
        for a, b in itertools.pairwise(normalized)
    )


@FAST
@given(any_text.filter(lambda t: not _mark_after_smart_char(t)))
def test_smart_encode_never_touches_gsm_chars(text: str) -> None:
    # Every GSM character of the input survives, in order, in the output. (Excluded:
    # an invisible char directly before a combining mark; see the test below.)
    normalized = unicodedata.normalize("NFC", text)
    result = smart_encode(text).text
    kept = iter(result)
    for ch in normalized:
        if ch in GSM7_BASIC or ch in GSM7_EXTENSION:
            assert ch in kept


def test_removing_invisible_char_before_mark_composes() -> None:
    # The one way a GSM letter changes: a stray zero-width char kept a combining mark
    # off its base; once removed, NFC composes them as the reader already saw them.
    assert smart_encode("a\u200b\u0304").text == "\u0101"
