"""Content checks for outbound message bodies: what carriers filter, and what costs money.

Why this module exists
----------------------
US carriers filter business texts on content, often silently and "with no recourse"
(compliance reference §6). The composer runs :func:`check` on every draft so an agent
sees a problem before sending rather than as an undelivered message afterwards:

* **Public URL shorteners** (``bit.ly``, ``tinyurl.com``, ...) are forbidden by carrier
  policy; links must be on a domain the business owns. Blocked by default.
* **SHAFT** (Sex, Hate, Alcohol, Firearms, Tobacco): sex and hate content is forbidden for
  US/Canada SMS (blocked by default). Alcohol, tobacco/vape, firearms and cannabis/CBD are
  allowed only behind a robust 21+ age gate (full date of birth or third-party age
  verification), so they produce a warning that says so.
* **Sender identification and opt-out language.** The first message of a conversation or
  campaign to a contact must name the brand and say how to opt out with a widely accepted
  keyword ("Reply STOP to opt out"; "Text 2 to opt out" is non-compliant). Whether a body
  *is* a first message is the caller's knowledge, so it sets
  :attr:`ContentPolicy.require_brand` / :attr:`ContentPolicy.require_opt_out_language`.
* **Encoding and length** (§5): one non-GSM character turns the whole message into UCS-2
  and can more than double its cost, so we warn and, when smart encoding makes the body
  GSM-7 again, offer that text as the fix. Long bodies (more than
  :attr:`ContentPolicy.max_segments_warning` segments) get a warning; bodies over
  :data:`~textdesk.domain.encoding.MAX_BODY_CHARS` characters are always blocked because
  providers reject them.

Limits, deliberately
--------------------
The SHAFT term lists are a *first line*, not moderation. They are short, conservative,
case-insensitive and word-boundary matched ("Essex" is not "sex", "glue gun" is not a
firearm), so they catch the obvious and stay quiet on ordinary business text. They do not
see through misspellings, homoglyphs, leetspeak or images, and a clean result says nothing
about whether the *business* itself is in a forbidden category (§6). The hate list holds a
handful of unambiguous hateful phrases rather than a list of slurs.

Severities are a policy decision: :attr:`ContentPolicy.blocked` lists the codes that block
sending; an organisation may escalate warnings or relax blocks, except
``content.too_long``, which always blocks. A code in ``blocked`` also covers every code
below it, so ``"content.shaft"`` blocks all SHAFT findings.

Everything here is pure: no I/O, no configuration, safe to call from any layer.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from textdesk.domain.encoding import MAX_BODY_CHARS, Encoding, analyze, smart_encode

__all__ = [
    "AGE_GATED_CODES",
    "CODE_LONG",
    "CODE_MISSING_BRAND",
    "CODE_MISSING_OPT_OUT",
    "CODE_SHAFT_ALCOHOL",
    "CODE_SHAFT_CANNABIS",
    "CODE_SHAFT_FIREARMS",
    "CODE_SHAFT_HATE",
    "CODE_SHAFT_SEX",
    "CODE_SHAFT_TOBACCO",
    "CODE_TOO_LONG",
    "CODE_UCS2",
    "CODE_URL_SHORTENER",
    "DEFAULT_BLOCKED",
    "OPT_OUT_SUGGESTION",
    "PUBLIC_SHORTENERS",
    "ContentPolicy",
    "Finding",
    "Severity",
    "check",
    "find_urls",
    "has_brand",
    "has_opt_out_language",
    "is_public_shortener",
]

CODE_URL_SHORTENER: Final = "content.url_shortener"
CODE_SHAFT_SEX: Final = "content.shaft.sex"
CODE_SHAFT_HATE: Final = "content.shaft.hate"
CODE_SHAFT_ALCOHOL: Final = "content.shaft.alcohol"
CODE_SHAFT_TOBACCO: Final = "content.shaft.tobacco"
CODE_SHAFT_FIREARMS: Final = "content.shaft.firearms"
CODE_SHAFT_CANNABIS: Final = "content.shaft.cannabis"
CODE_MISSING_BRAND: Final = "content.missing_brand"
CODE_MISSING_OPT_OUT: Final = "content.missing_opt_out_language"
CODE_UCS2: Final = "content.ucs2"
CODE_LONG: Final = "content.long"
CODE_TOO_LONG: Final = "content.too_long"

#: Categories allowed only behind a 21+ age gate (warnings by default).
AGE_GATED_CODES: Final[frozenset[str]] = frozenset(
    {CODE_SHAFT_ALCOHOL, CODE_SHAFT_TOBACCO, CODE_SHAFT_FIREARMS, CODE_SHAFT_CANNABIS}
)

#: Codes that block sending unless an organisation relaxes them.
DEFAULT_BLOCKED: Final[frozenset[str]] = frozenset(
    {CODE_URL_SHORTENER, CODE_SHAFT_SEX, CODE_SHAFT_HATE, CODE_TOO_LONG}
)

#: The standard opt-out sentence suggested when a first message lacks one.
OPT_OUT_SUGGESTION: Final = "Reply STOP to opt out."


class Severity(StrEnum):
    """What the composer does with a finding."""

    WARNING = "warning"  # show it; sending is allowed
    BLOCK = "block"  # sending is refused until the body changes


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem with a body.

    ``span`` is a ``(start, end)`` pair of character offsets into the body that was checked
    (``body[start:end]`` is the offending text), or ``None`` when the problem is about the
    body as a whole or about something missing. ``fix``, when present, is a complete
    replacement body that resolves this finding alone; it is computed from the original
    body, so after applying one fix, check again rather than applying another.
    """

    code: str
    severity: Severity
    message: str
    span: tuple[int, int] | None = None
    fix: str | None = None


@dataclass(frozen=True, slots=True)
class ContentPolicy:
    """Per-organisation, per-message settings for :func:`check`."""

    brand_names: tuple[str, ...] = ()  # the org's names; any one identifies the sender
    require_brand: bool = False  # caller sets this for a first message to a contact
    require_opt_out_language: bool = False  # likewise
    blocked: frozenset[str] = DEFAULT_BLOCKED  # codes (or code prefixes) that block
    max_segments_warning: int = 3  # more segments than this -> content.long

    def severity_of(self, code: str) -> Severity:
        """BLOCK if ``code`` or one of its dotted prefixes is in :attr:`blocked`."""
        if code == CODE_TOO_LONG:
            return Severity.BLOCK
        parts = code.split(".")
        for i in range(len(parts), 0, -1):
            if ".".join(parts[:i]) in self.blocked:
                return Severity.BLOCK
        return Severity.WARNING


# --- URLs ------------------------------------------------------------------------------

#: Shared, public link-shortening domains. The first ten are the example carrier blocklist
#: in the compliance reference (§6); the rest are other widely used public shorteners.
#: First-party-only shorteners (``youtu.be``, ``amzn.to``) are not listed: they cannot hide
#: an arbitrary destination, which is what carriers object to. Subdomains match too.
PUBLIC_SHORTENERS: Final[frozenset[str]] = frozenset(
    {
        # compliance reference §6
        "bit.ly",
        "bitly.com",
        "tinyurl.com",
        "t.ly",
        "cutt.ly",
        "is.gd",
        "ow.ly",
        "rebrand.ly",
        "rb.gy",
        "tiny.cc",
        # other well-known public shorteners
        "j.mp",
        "bit.do",
        "goo.gl",
        "t.co",
        "buff.ly",
        "shorturl.at",
        "s.id",
        "v.gd",
        "lnkd.in",
        "bl.ink",
        "short.io",
        "tiny.one",
        "adf.ly",
        "shorte.st",
        "tr.im",
        "x.gd",
        "clck.ru",
        "dub.sh",
        "kutt.it",
        "t2m.io",
        "shrtco.de",
        "qrco.de",
    }
)

# Common TLDs that make a scheme-less "word.tld" a link without "www." or a path. Anything
# with a scheme, a "www." prefix or a path ("acme.xyz/a") counts regardless of its TLD.
_COMMON_TLDS: Final = frozenset(
    (
        *("com", "net", "org", "edu", "gov", "info", "biz", "io", "co", "us", "ca", "uk"),
        *("me", "app", "dev", "ai", "ly", "gl", "gd", "at", "cc", "id", "in", "ink", "to"),
        *("tv", "xyz", "site", "online", "store", "shop", "link", "page", "club", "health"),
        *("care", "dental", "law"),
    )
)

# Dots that browsers and IDNA treat as label separators (ASCII, ideographic, fullwidth,
# halfwidth ideographic).
_DOTS: Final = ".\u3002\uff0e\uff61"

_URL_RE: Final = re.compile(
    # Not glued to a word, an e-mail local part, another host or a path.
    r"(?<![\w@/\-" + _DOTS + r"])"
    r"(?P<scheme>[a-z][a-z0-9+.\-]{0,15}://)?"
    r"(?(scheme)(?:[^\s/?#@]+@)?)"  # user:password@, only after a scheme
    r"(?P<host>[\w\-]+(?:[" + _DOTS + r"][\w\-]+)+)"
    r"(?P<port>:\d{1,5}(?!\w))?"
    r"(?P<rest>[/?#]\S*)?",
    re.IGNORECASE,
)

# Punctuation that ends a sentence, not a URL, when it is the last thing in a match.
_TRAILING: Final = frozenset(".,;:!?'\"*…’”»" + _DOTS)
_BRACKETS: Final = {")": "(", "]": "[", "}": "{", ">": "<"}


def _strip_trailing(url: str) -> str:
    """Drop sentence punctuation and unbalanced closing brackets from the end of ``url``."""
    # Open-minus-close count per bracket pair, kept up to date as characters are dropped.
    balance = {close: url.count(open_) - url.count(close) for close, open_ in _BRACKETS.items()}
    end = len(url)
    while end:
        last = url[end - 1]
        if last in _BRACKETS and balance[last] < 0:
            balance[last] += 1
        elif last not in _TRAILING:
            break
        end -= 1
    return url[:end]


def _normalize_host(raw: str) -> str:
    host = unicodedata.normalize("NFKC", raw)
    for dot in _DOTS[1:]:
        host = host.replace(dot, ".")
    return host.lower()


def _is_valid_host(host: str, *, has_scheme: bool, has_path: bool) -> bool:
    labels = host.split(".")
    if any(not label or label[0] in "-_" or label[-1] in "-_" for label in labels):
        return False
    if has_scheme:
        return True
    tld = labels[-1]
    if not (tld.startswith("xn--") or (len(tld) >= 2 and tld.isalpha())):
        return False
    return labels[0] == "www" or has_path or tld in _COMMON_TLDS or is_public_shortener(host)


def find_urls(body: str) -> list[tuple[str, int, int]]:
    """Links in ``body`` as ``(host, start, end)``; ``body[start:end]`` is the link text.

    Handles ``https://`` and scheme-less links (``bit.ly/abc``, ``www.acme.com``),
    upper case, internationalised hosts and ideographic or fullwidth dots, and trailing
    sentence punctuation or an unbalanced closing bracket. Hosts are NFKC-normalised and
    lower-cased. E-mail addresses are not links. A scheme-less ``word.word`` counts only
    when it starts with ``www.``, has a path, ends in a common TLD or is a known shortener,
    so "e.g." or "3.5" or "done.Thanks" are not links.
    """
    urls: list[tuple[str, int, int]] = []
    for match in _URL_RE.finditer(body):
        start = match.start()
        text = _strip_trailing(match.group(0))
        if not text:
            continue
        host_start = match.start("host") - start
        host_end = min(match.end("host") - start, len(text))
        host = _normalize_host(text[host_start:host_end])
        has_path = len(text) > host_end and text[host_end:].lstrip(":0123456789")[:1] == "/"
        if not _is_valid_host(host, has_scheme=bool(match.group("scheme")), has_path=has_path):
            continue
        urls.append((host, start, start + len(text)))
    return urls


def is_public_shortener(host: str) -> bool:
    """True when ``host`` (lower-case) is a public shortener or a subdomain of one."""
    host = host.rstrip(".")
    return any(host == s or host.endswith("." + s) for s in PUBLIC_SHORTENERS)


def _shortener_of(host: str) -> str:
    host = host.rstrip(".")
    return next(s for s in sorted(PUBLIC_SHORTENERS) if host == s or host.endswith("." + s))


# --- opt-out language ----------------------------------------------------------------

# Keywords that opt out with carriers/CPaaS and under the FCC per se list (§1.1-1.3).
_OPT_OUT_KEYWORDS: Final = r"(?:STOP\s?ALL|STOP|END|CANCEL|UNSUBSCRIBE|QUIT|REVOKE|OPT[\s\-]?OUT)"
_QUOTE: Final = "[\"'“”‘’*«»]?"

# "Reply STOP to opt out", "Text STOP to unsubscribe", "Txt STOP 2 quit", "reply with the
# word STOP", "Send 'END' to 12345", "Text back STOP". Case-insensitive.
_VERB_KEYWORD_RE: Final = re.compile(
    r"\b(?:reply|respond|text|txt|send|msg|message)(?:\s+back)?"
    r"(?:\s+with)?(?:\s+the\s+word)?\s*[:\-]?\s*" + _QUOTE + _OPT_OUT_KEYWORDS + r"(?![a-z])",
    re.IGNORECASE,
)

# "STOP to end", "STOP2END", "STOP=quit", "STOP to opt out". Without a verb the keyword
# must be written in capitals, as the standard wording does, so that prose such as "stop
# to end the call" does not count.
_BARE_KEYWORD_RE: Final = re.compile(
    r"(?<![\w])"
    + _QUOTE
    + r"(?-i:STOP|END|CANCEL|UNSUBSCRIBE|QUIT|REVOKE|OPT[\s\-]?OUT|OPTOUT|STOPALL)"
    + _QUOTE
    + r"\s*(?:to|2|=|:|-)\s*"
    r"(?:end|quit|stop|cancel|unsubscribe|unsub|opt[\s\-]?out|be\s+removed|remove)\b",
    re.IGNORECASE,
)


def has_opt_out_language(body: str) -> bool:
    """Whether ``body`` tells the reader how to opt out with a widely accepted keyword.

    The keyword must be STOP or one of the CTIA/FCC words (END, CANCEL, UNSUBSCRIBE, QUIT,
    REVOKE, OPT OUT), next to an instruction verb ("Reply STOP to opt out", "Txt STOP 2
    quit") or, in capitals, followed by what it does ("STOP to end"). "Text 2 to opt out"
    does not qualify: the reference (§6) calls it non-compliant and carriers filter it.
    """
    return bool(_VERB_KEYWORD_RE.search(body) or _BARE_KEYWORD_RE.search(body))


# --- SHAFT -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Category:
    code: str
    label: str
    pattern: re.Pattern[str]
    advice: str


def _terms(*alternatives: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)(?:" + "|".join(alternatives) + r")(?!\w)", re.IGNORECASE)


_AGE_GATE: Final = (
    "carriers allow it only behind a robust 21+ age gate (full date of birth or a "
    "third-party age check, not a yes/no question), on a campaign registered as age-gated"
)

# Tools and toys that are called guns.
_NOT_FIREARM: Final = "".join(
    f"(?<!{tool} )"
    for tool in (
        *("glue", "nail", "heat", "spray", "staple", "caulk", "caulking", "water"),
        *("squirt", "nerf", "massage", "paint", "grease", "radar"),
    )
)

_CATEGORIES: Final[tuple[_Category, ...]] = (
    _Category(
        CODE_SHAFT_SEX,
        "sexual content",
        _terms(
            r"porn(?:o|ography|ographic)?",
            r"xxx",
            r"nsfw",
            r"nudes",
            r"naked\s+(?:pics|photos|videos)",
            r"sexting",
            r"sex\s+(?:chat|cams?|videos?|tapes?|toys?|dates?|parties|party)",
            r"sexy\s+singles",
            r"hot\s+singles",
            r"erotica?",
            r"escort\s+(?:services?|agency|agencies|girls?)",
            r"onlyfans",
            r"camgirls?",
        ),
        "sex-related content is forbidden for US and Canadian SMS",
    ),
    _Category(
        CODE_SHAFT_HATE,
        "hateful content",
        _terms(
            r"heil\s+hitler",
            r"sieg\s+heil",
            r"white\s+power",
            r"race\s+war\s+now",
            r"(?:kill|exterminate|gas|deport)\s+(?:all\s+)?(?:the\s+)?"
            r"(?:jews|muslims|blacks|gays|immigrants|mexicans|asians|arabs|christians)",
            r"death\s+to\s+(?:all\s+)?(?:jews|muslims|blacks|gays|immigrants)",
        ),
        "hateful content is forbidden for US and Canadian SMS",
    ),
    _Category(
        CODE_SHAFT_ALCOHOL,
        "alcohol",
        _terms(
            r"beers?",
            r"wines?",
            r"vodka",
            r"whiske?y",
            r"bourbon",
            r"tequila",
            r"mezcal",
            r"cognac",
            r"champagne",
            r"prosecco",
            r"liquor",
            r"liqueurs?",
            r"brewery",
            r"breweries",
            r"hard\s+seltzers?",
            r"alcoholic\s+(?:drinks?|beverages?)",
        ),
        _AGE_GATE,
    ),
    _Category(
        CODE_SHAFT_TOBACCO,
        "tobacco or vaping",
        _terms(
            r"cigarettes?",
            r"e-?cigs?",
            r"cigars?",
            r"cigarillos?",
            r"tobacco",
            r"vapes?",
            r"vaping",
            r"vape\s+juice",
            r"e-?liquids?",
            r"juul",
            r"hookah",
        ),
        _AGE_GATE + "; vape products are forbidden on toll-free numbers",
    ),
    _Category(
        CODE_SHAFT_FIREARMS,
        "firearms",
        _terms(
            _NOT_FIREARM + r"guns?",
            r"firearms?",
            r"rifles?",
            r"shotguns?",
            r"handguns?",
            r"pistols?",
            r"revolvers?",
            r"ammo",
            r"ammunition",
            r"ar-?15s?",
            r"concealed\s+carry",
        ),
        _AGE_GATE,
    ),
    _Category(
        CODE_SHAFT_CANNABIS,
        "cannabis or CBD",
        _terms(
            r"cannabis",
            r"marijuana",
            r"cbd",
            r"thc",
            r"delta[\s\-]?[89]",
            r"pre-?rolls?",
        ),
        _AGE_GATE + "; cannabis and CBD are a forbidden category for US SMS and on toll-free",
    ),
)


# --- the check -----------------------------------------------------------------------


def _brand_pattern(name: str) -> re.Pattern[str] | None:
    words = name.split()
    if not words:
        return None
    parts = [re.escape(w).replace("'", "['’‘]") for w in words]
    return re.compile(r"(?<!\w)" + r"\s+".join(parts) + r"(?!\w)", re.IGNORECASE)


def has_brand(body: str, brand_names: Iterable[str]) -> bool:
    """Whether any of ``brand_names`` appears in ``body`` as whole words, ignoring case."""
    for name in brand_names:
        pattern = _brand_pattern(name)
        if pattern is not None and pattern.search(body):
            return True
    return False


def _describe_chars(chars: Iterable[str]) -> str:
    shown = [f"'{c}' (U+{ord(c):04X})" for c in chars]
    if len(shown) > 5:
        shown = [*shown[:5], f"and {len(shown) - 5} more"]
    return ", ".join(shown)


def _with_opt_out(body: str) -> str:
    text = body.rstrip()
    if not text:
        return OPT_OUT_SUGGESTION
    if text[-1] not in ".!?":
        text += "."
    return f"{text} {OPT_OUT_SUGGESTION}"


def check(body: str, policy: ContentPolicy = ContentPolicy()) -> tuple[Finding, ...]:
    """All content findings for ``body`` under ``policy``; empty when nothing is wrong.

    Findings that block come first, then warnings; within each group they follow their
    position in the body, with whole-body findings last.
    """
    findings: list[Finding] = []

    def add(
        code: str, message: str, span: tuple[int, int] | None = None, fix: str | None = None
    ) -> None:
        findings.append(Finding(code, policy.severity_of(code), message, span, fix))

    analysis = analyze(body)

    if len(analysis.text) > MAX_BODY_CHARS:
        add(
            CODE_TOO_LONG,
            f"The message is {len(analysis.text)} characters; providers reject bodies "
            f"over {MAX_BODY_CHARS}. Shorten it or split it into separate messages.",
        )

    if analysis.segment_count > policy.max_segments_warning:
        add(
            CODE_LONG,
            f"The message needs {analysis.segment_count} segments ({analysis.encoding}); "
            f"each segment is billed separately. Consider shortening it to "
            f"{policy.max_segments_warning} or fewer.",
        )

    if analysis.encoding is Encoding.UCS2:
        culprits = analysis.non_gsm_chars
        first = min((i for i, ch in enumerate(body) if ch in set(culprits)), default=None)
        span = None if first is None else (first, first + 1)
        smart = smart_encode(body)
        fixed = analyze(smart.text) if smart.changed else None
        if fixed is not None and fixed.encoding is Encoding.GSM7:
            saving = (
                f" ({fixed.segment_count} segment{'s' if fixed.segment_count != 1 else ''} "
                f"instead of {analysis.segment_count})"
                if fixed.segment_count < analysis.segment_count
                else ""
            )
            advice = (
                " Replacing look-alike characters (curly quotes, dashes, ...) with plain "
                f"ones makes it GSM-7 again{saving}."
            )
            fix: str | None = smart.text
        else:
            advice = " Remove these characters to send it as GSM-7."
            fix = None
        add(
            CODE_UCS2,
            f"{_describe_chars(culprits)} cannot be sent in GSM-7, so the whole message "
            f"goes as UCS-2 (70 characters per segment instead of 160).{advice}",
            span,
            fix,
        )

    for host, start, end in find_urls(body):
        if is_public_shortener(host):
            add(
                CODE_URL_SHORTENER,
                f'{_shortener_of(host)} is a public URL shortener ("{body[start:end]}"); '
                "carriers filter these links with no recourse. Use a link on your own "
                "domain.",
                (start, end),
            )

    for category in _CATEGORIES:
        matches = list(category.pattern.finditer(body))
        if matches:
            terms = list(dict.fromkeys(m.group(0).lower() for m in matches))
            quoted = ", ".join(f'"{t}"' for t in terms[:3])
            add(
                category.code,
                f"{quoted} suggests {category.label}: {category.advice}.",
                matches[0].span(),
            )

    if policy.require_brand and not has_brand(body, policy.brand_names):
        names = [n.strip() for n in policy.brand_names if n.strip()]
        if names:
            add(
                CODE_MISSING_BRAND,
                f"A first message must say who is sending it; mention {names[0]}"
                f"{' (or another of your names)' if len(names) > 1 else ''}.",
                fix=f"{names[0]}: {body}",
            )
        else:
            add(
                CODE_MISSING_BRAND,
                "A first message must say who is sending it, and no brand name is set "
                "up for your organisation to check against.",
            )

    if policy.require_opt_out_language and not has_opt_out_language(body):
        add(
            CODE_MISSING_OPT_OUT,
            f'A first message must say how to opt out with a keyword such as STOP, e.g. "'
            f'{OPT_OUT_SUGGESTION}"',
            fix=_with_opt_out(body),
        )

    def order(f: Finding) -> tuple[int, int, int]:
        block = 0 if f.severity is Severity.BLOCK else 1
        return (block, *(f.span if f.span is not None else (len(body) + 1, 0)))

    return tuple(sorted(findings, key=order))
