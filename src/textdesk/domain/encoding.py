"""SMS encoding: GSM-7 vs UCS-2 detection, segment splitting and "smart encoding".

Why this module exists
----------------------
Carriers bill, rate-limit and report delivery per *segment*, not per message, and
how many segments a body needs depends entirely on its encoding:

* **GSM-7** (3GPP TS 23.038 default alphabet) packs each character into 7 bits, so
  160 characters fit into the 140-octet SMS payload. Ten characters
  (``^ { } \\ [ ~ ] | €`` and form feed) live in an *extension table* that is reached
  through an ESC (0x1B) prefix, so each of them costs two septets.
* If even one character is outside GSM-7, the *whole* message switches to **UCS-2**
  (UTF-16 in practice) at 16 bits per code unit, and only 70 fit. One curly
  apostrophe pasted from a word processor therefore makes a campaign cost roughly
  2.3x as much (160 / 70). That is why :func:`smart_encode` exists.
* Concatenated (multipart) messages spend 6 octets of every segment on the User Data
  Header that lets the handset reassemble them, leaving 153 septets (GSM-7) or 67
  code units (UCS-2) per segment.

Splitting rules (normative, from our compliance reference)
-----------------------------------------------------------
* Text is NFC-normalized first: macOS/iOS input and copy-paste can yield decomposed
  sequences (``e`` + U+0301) that look exactly like GSM ``é`` but would otherwise
  force UCS-2, and we must count what we actually send.
* GSM-7 segments never split an escape pair: an ESC without its second septet
  renders as garbage (or a space) on the handset, so an extension character that
  would straddle a boundary moves whole to the next segment.
* UCS-2 segments never split a surrogate pair (a half pair is invalid UTF-16 and
  shows as a replacement box) and avoid splitting a grapheme cluster (an emoji
  family or a flag torn in half displays as separate people or letters). A cluster
  is only split when it alone exceeds one segment.

We deliberately support only the default alphabet and its extension table, not the
national language shift tables (Turkish, Spanish, Portuguese, Indic, ...): carrier
and aggregator support for them is inconsistent, so counting with them would
under-estimate what a message really costs.

Everything here is pure: no I/O, no configuration, safe to call from any layer.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "GSM7_MULTI_LIMIT",
    "GSM7_SINGLE_LIMIT",
    "MAX_BODY_CHARS",
    "UCS2_MULTI_LIMIT",
    "UCS2_SINGLE_LIMIT",
    "Encoding",
    "Replacement",
    "SmartEncodingResult",
    "SmsAnalysis",
    "analyze",
    "is_gsm7",
    "septet_length",
    "smart_encode",
]

#: Upper bound on a message body, in characters. It matches the cap most providers
#: enforce (ten 160-character segments); validators use it, :func:`analyze` does not.
MAX_BODY_CHARS: Final = 1600

#: Units available in a lone segment vs. each part of a concatenated message. The
#: multipart figures are lower because every part carries a 6-octet UDH.
GSM7_SINGLE_LIMIT: Final = 160
GSM7_MULTI_LIMIT: Final = 153
UCS2_SINGLE_LIMIT: Final = 70
UCS2_MULTI_LIMIT: Final = 67

_ESC: Final = "\x1b"

# The 3GPP TS 23.038 default alphabet in code-point order, 16 septets per row.
# Position 0x09 is CAPITAL C WITH CEDILLA ('Ç'), as printed in the spec's table. Many
# implementations (and some handsets) use lowercase 'ç' there; we follow the spec, so
# lowercase 'ç' is *not* GSM-7 here and forces UCS-2. Position 0x1B is the ESC that
# introduces extension-table characters; it is a control septet, not something a
# user can type, so it is excluded from the usable set below.
_GSM7_DEFAULT_TABLE: Final = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)

GSM7_BASIC: Final[frozenset[str]] = frozenset(_GSM7_DEFAULT_TABLE) - {_ESC}

# Extension table entries usable in the default (non-national) configuration. Each
# is transmitted as ESC + septet, hence costs 2. Form feed (0x0A in the extension
# table) is included because the spec defines it, even though handsets rarely
# render it as a page break.
GSM7_EXTENSION: Final[frozenset[str]] = frozenset("^{}\\[~]|€\x0c")

_GSM7_ALL: Final = GSM7_BASIC | GSM7_EXTENSION


class Encoding(StrEnum):
    """The data coding a message will be sent with."""

    GSM7 = "GSM-7"
    UCS2 = "UCS-2"


@dataclass(frozen=True, slots=True)
class SmsAnalysis:
    """How a body will be encoded and segmented.

    ``length``, ``per_segment_limit`` and ``remaining`` are in septets for GSM-7
    (extension characters count 2) and in UTF-16 code units for UCS-2 (characters
    outside the BMP, i.e. most emoji, count 2).
    """

    text: str  # the NFC-normalized text that was measured
    encoding: Encoding
    length: int
    segments: tuple[str, ...]  # "".join(segments) == text; () for the empty text
    segment_count: int
    per_segment_limit: int  # 160/153 (GSM-7) or 70/67 (UCS-2), single vs. multipart
    remaining: int  # units left in the last segment before another one is needed
    non_gsm_chars: tuple[str, ...]  # distinct culprits forcing UCS-2, first-seen order


@dataclass(frozen=True, slots=True)
class Replacement:
    """One kind of substitution :func:`smart_encode` made, and how often."""

    original: str
    replacement: str  # "" when the character was removed
    count: int


@dataclass(frozen=True, slots=True)
class SmartEncodingResult:
    """Outcome of :func:`smart_encode`.

    ``changed`` is true exactly when at least one replacement was made. NFC
    normalization alone does not count as a change: it is invisible to the reader
    and :func:`analyze` applies it anyway, so there is nothing to show the user.
    """

    text: str
    replacements: tuple[Replacement, ...]
    changed: bool


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _septets(ch: str) -> int:
    # Extension characters go on the air as ESC + septet.
    return 2 if ch in GSM7_EXTENSION else 1


def _utf16_units(text: str) -> int:
    # Code points above the BMP become a surrogate pair: two 16-bit units.
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)


def is_gsm7(text: str) -> bool:
    """Whether ``text`` (after NFC normalization) can be sent as GSM-7."""
    return all(ch in _GSM7_ALL for ch in _nfc(text))


def septet_length(text: str) -> int:
    """Number of GSM-7 septets ``text`` needs (extension characters count 2).

    Raises ValueError naming the first character that is not GSM-7 and its index in
    the NFC-normalized text, so callers can point the user at the culprit.
    """
    normalized = _nfc(text)
    total = 0
    for index, ch in enumerate(normalized):
        if ch not in _GSM7_ALL:
            raise ValueError(
                f"character {ch!r} (U+{ord(ch):04X}) at index {index} is not in the GSM-7 alphabet"
            )
        total += _septets(ch)
    return total


# --- grapheme clusters -----------------------------------------------------------
#
# A deliberately small approximation of Unicode extended grapheme clusters (UAX #29)
# built only on `unicodedata`, good enough to keep what users perceive as one
# character in one segment: base + combining marks, emoji + variation selector /
# skin-tone modifier / keycap, ZWJ emoji sequences, regional-indicator pairs (flags),
# tag sequences (subdivision flags) and CR LF. Hangul jamo runs, Indic conjuncts and
# prepend characters are not modelled; NFC already composes modern Hangul.

_ZWJ: Final = "\u200d"
_ZWNJ: Final = "\u200c"


def _is_regional_indicator(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def _is_extend(ch: str) -> bool:
    cp = ord(ch)
    return (
        unicodedata.category(ch) in ("Mn", "Me", "Mc")  # combining, enclosing, spacing marks
        or ch in (_ZWJ, _ZWNJ)
        or 0xFE00 <= cp <= 0xFE0F  # variation selectors (text vs. emoji presentation)
        or 0x1F3FB <= cp <= 0x1F3FF  # emoji skin-tone modifiers
        or 0xE0020 <= cp <= 0xE007F  # tag characters (e.g. the England flag)
        or 0xE0100 <= cp <= 0xE01EF  # variation selectors supplement
    )


def _is_pictographic(ch: str) -> bool:
    # Stand-in for Extended_Pictographic, which unicodedata does not expose. The
    # 1F000-1FFFD block range also covers emoji newer than Python's Unicode database.
    return unicodedata.category(ch) == "So" or 0x1F000 <= ord(ch) <= 0x1FFFD


def _is_control(ch: str) -> bool:
    # Controls and separators never absorb following marks (UAX #29 GB4/GB5).
    category = unicodedata.category(ch)
    return category in ("Cc", "Zl", "Zp") or (category == "Cf" and not _is_extend(ch))


def _grapheme_clusters(text: str) -> Iterator[str]:
    n = len(text)
    i = 0
    while i < n:
        start = i
        first = text[i]
        i += 1
        if first == "\r" and i < n and text[i] == "\n":
            i += 1
        elif not _is_control(first):
            # Flags are *pairs* of regional indicators; a run of them pairs up from
            # the left, so "USCA" (4 RIs) is two flags, not one blob.
            if _is_regional_indicator(first) and i < n and _is_regional_indicator(text[i]):
                i += 1
            pictographic = _is_pictographic(first)
            while i < n:
                ch = text[i]
                if _is_extend(ch) or (
                    pictographic and text[i - 1] == _ZWJ and _is_pictographic(ch)
                ):
                    i += 1
                else:
                    break
        yield text[start:i]


# --- segmentation ----------------------------------------------------------------


def _pack(atoms: Iterator[tuple[str, int]], limit: int) -> tuple[list[str], int]:
    """Greedily pack indivisible ``(piece, cost)`` atoms into segments of ``limit``.

    Every atom must cost at most ``limit``. Returns the segments and the units used
    in the last one. Greedy is optimal here because atoms must stay in order.
    """
    segments: list[str] = []
    parts: list[str] = []
    used = 0
    for piece, cost in atoms:
        if parts and used + cost > limit:
            segments.append("".join(parts))
            parts = []
            used = 0
        parts.append(piece)
        used += cost
    if parts:
        segments.append("".join(parts))
    return segments, used


def _gsm7_atoms(text: str) -> Iterator[tuple[str, int]]:
    # Each character is an atom, so an ESC pair can never be torn apart.
    for ch in text:
        yield ch, _septets(ch)


def _ucs2_atoms(text: str) -> Iterator[tuple[str, int]]:
    for cluster in _grapheme_clusters(text):
        units = _utf16_units(cluster)
        if units <= UCS2_MULTI_LIMIT:
            yield cluster, units
        else:
            # The cluster cannot fit any segment, so it has to be split; do it per
            # code point, which still keeps every surrogate pair whole.
            for ch in cluster:
                yield ch, _utf16_units(ch)


def analyze(text: str) -> SmsAnalysis:
    """Work out encoding, length and the exact segment texts for ``text``."""
    normalized = _nfc(text)
    non_gsm = tuple(dict.fromkeys(ch for ch in normalized if ch not in _GSM7_ALL))

    if non_gsm:
        encoding = Encoding.UCS2
        length = _utf16_units(normalized)
        single, multi = UCS2_SINGLE_LIMIT, UCS2_MULTI_LIMIT
        atoms = _ucs2_atoms
    else:
        encoding = Encoding.GSM7
        length = sum(_septets(ch) for ch in normalized)
        single, multi = GSM7_SINGLE_LIMIT, GSM7_MULTI_LIMIT
        atoms = _gsm7_atoms

    if not normalized:
        segments: list[str] = []
        limit, last_used = single, 0
    elif length <= single:
        segments = [normalized]
        limit, last_used = single, length
    else:
        limit = multi
        segments, last_used = _pack(atoms(normalized), multi)

    return SmsAnalysis(
        text=normalized,
        encoding=encoding,
        length=length,
        segments=tuple(segments),
        segment_count=len(segments),
        per_segment_limit=limit,
        remaining=limit - last_used,
        non_gsm_chars=non_gsm,
    )


# --- smart encoding ----------------------------------------------------------------
#
# Typographic characters that word processors, phones and CMSs insert silently, each
# with a GSM-7 stand-in that reads the same in a text message. Only non-GSM
# characters may appear as keys (so GSM text is never touched) and every value must
# be pure GSM-7; both are checked by the tests. Keys must also be NFC-stable because
# lookup happens after normalization: U+2000/U+2001 are absent for that reason, NFC
# turns them into U+2002/U+2003 which are listed. We do not strip accents from
# letters (e.g. 'ā' -> 'a'): that would misspell names, and paying for UCS-2 is the
# right call for such text.
_SMART_GROUPS: Final[tuple[tuple[str, str], ...]] = (
    # Single quotes, apostrophes, primes, grave/acute used as apostrophes, and the
    # single guillemets.
    ("\u2018\u2019\u201a\u201b\u2032\u2035\u00b4\u0060\u02bc\u2039\u203a", "'"),
    # Double quotes, double primes and guillemets.
    ("\u201c\u201d\u201e\u201f\u2033\u2036\u00ab\u00bb", '"'),
    # Hyphen, non-breaking hyphen, figure/en/em dash, horizontal bar, minus sign,
    # hyphen bullet, small em dash, small hyphen-minus, two-/three-em dashes.
    ("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2043\ufe58\ufe63\u2e3a\u2e3b", "-"),
    # Bullets used as list markers.
    ("\u2022\u2023\u25e6\u2219", "-"),
    # Horizontal ellipsis and its one-dot sibling.
    ("\u2026", "..."),
    ("\u2024", "."),
    # Fraction and division slashes.
    ("\u2044\u2215", "/"),
    # No-break, en/em/thin/hair... spaces, narrow no-break, medium math, ideographic,
    # ogham space mark, and tab (not in GSM-7, common in pasted text).
    (
        "\u00a0\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u205f\u3000\u1680\t",
        " ",
    ),
    # Unicode line/paragraph separators and NEL become an ordinary line feed.
    ("\u2028\u2029\u0085", "\n"),
    # Invisible characters: zero-width space/non-joiner/joiner, BOM / zero-width
    # no-break space, word joiner, soft hyphen. Removing them changes nothing visible.
    ("\u200b\u200c\u200d\ufeff\u2060\u00ad", ""),
)


def _build_smart_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for chars, replacement in _SMART_GROUPS:
        for ch in chars:
            table[ch] = replacement
    # Fullwidth ASCII (U+FF01-U+FF5E, from CJK input methods) maps to plain ASCII. The
    # only ASCII target outside GSM-7 is the backtick, which already has an entry.
    for cp in range(0xFF01, 0xFF5F):
        ascii_ch = chr(cp - 0xFEE0)
        table[chr(cp)] = ascii_ch if ascii_ch in _GSM7_ALL else table[ascii_ch]
    return table


_SMART_TABLE: Final[Mapping[str, str]] = MappingProxyType(_build_smart_table())

# Joiners are only "junk" between ordinary text. Between two non-GSM characters they
# are meaningful: ZWJ builds emoji sequences (family, rainbow flag) and ZWJ/ZWNJ
# shape Persian and Indic scripts. Such text stays UCS-2 regardless, so stripping
# them would change what the reader sees for no saving.
_JOINERS: Final = frozenset((_ZWJ, _ZWNJ))


def _is_meaningful_neighbor(ch: str) -> bool:
    return ch not in _GSM7_ALL and ch not in _SMART_TABLE


def _keeps_joiner(text: str, index: int) -> bool:
    return (
        0 < index < len(text) - 1
        and _is_meaningful_neighbor(text[index - 1])
        and _is_meaningful_neighbor(text[index + 1])
    )


def _replace_once(text: str, counts: dict[str, int]) -> tuple[str, bool]:
    out: list[str] = []
    replaced = False
    for index, ch in enumerate(text):
        replacement = _SMART_TABLE.get(ch)
        if replacement is None or (ch in _JOINERS and _keeps_joiner(text, index)):
            out.append(ch)
            continue
        out.append(replacement)
        counts[ch] = counts.get(ch, 0) + 1
        replaced = True
    return "".join(out), replaced


def smart_encode(text: str) -> SmartEncodingResult:
    """Replace typographic look-alikes with GSM-7 equivalents to avoid UCS-2.

    Only characters outside GSM-7 are ever replaced, so GSM-7 text comes back
    unchanged. The result may still be UCS-2 when other non-GSM characters (emoji,
    non-Latin scripts) remain; callers should :func:`analyze` it. Each distinct
    replacement is reported once with its count, in order of first appearance.
    """
    counts: dict[str, int] = {}
    current = _nfc(text)
    # Removing a character can let NFC compose its neighbours ("e", ZWSP, U+0301
    # becomes "é"), which can change whether a joiner next to them is meaningful.
    # So re-normalize and repeat until nothing changes; this makes the function
    # idempotent. It terminates because NFC never produces a table character, so
    # each pass strictly reduces how many of them are left (usually one pass).
    while True:
        current, replaced = _replace_once(current, counts)
        if not replaced:
            break
        current = _nfc(current)
    replacements = tuple(
        Replacement(original=ch, replacement=_SMART_TABLE[ch], count=count)
        for ch, count in counts.items()
    )
    return SmartEncodingResult(text=current, replacements=replacements, changed=bool(counts))
