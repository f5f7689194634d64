"""Inbound-message classifier: opt-out, opt-in and help detection, explainable and deterministic.

Why this module exists
----------------------
A consumer's reply can revoke consent in two ways (compliance reference §1, §2):

* **Keyword tier.** The whole message, once trimmed and case-folded, is a keyword such as
  ``STOP``. CTIA says de-minimis differences (case, punctuation) must not matter, so we also
  accept ``"Stop."``, ``"*STOP*"``, ``"stop stop"`` and ``"Stop 🛑"``.
* **Free-text tier.** Since the FCC 2024 order (47 CFR 64.1200(a)(10), effective Apr 11, 2025),
  consent can be revoked by *any reasonable means*: ``"please stop texting me"`` or
  ``"take me off your list"`` must be honoured even though no provider filters them.

The carrier/CPaaS layer only handles a subset of the keyword tier (Twilio: single words only,
no punctuation tolerance, §1.4), so the platform classifies every inbound message itself and
uses :func:`provider_confirms` to avoid sending a second confirmation when the provider has
already sent one (§1.5).

Design
------
No model and no network: a message is tokenised once, each word is canonicalised (spelling
variants such as ``txt``/``stpo``/``unsubscibe``, elongations such as ``STOOOP``, masked
profanity such as ``F***``), and a fixed, ordered list of rules runs over each sentence. Every
rule has an id (``ft.stop_texting``), a description and an example; :data:`RULES` lists them
and ``docs/classifier.md`` documents them. Each result says which rule fired, why, and which
part of the original text matched.

A missed opt-out is worse than a false flag, so the rules lean towards ``OPT_OUT``: when a
message might be a revocation but might not, the result is ``OPT_OUT`` with confidence
``"likely"``. Consumers of the result decide by policy (see :attr:`Classification.needs_review`):
``"certain"`` opt-outs are suppressed at once; ``"likely"`` ones are suppressed at once under
the default *auto* policy and flagged for a human under the *review* policy.

Everything here is pure: stdlib only, no I/O, safe to call from any layer.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from types import MappingProxyType
from typing import Final, Literal

__all__ = [
    "HELP_KEYWORDS",
    "OPT_IN_KEYWORDS",
    "OPT_OUT_KEYWORDS",
    "PROVIDER_KEYWORDS",
    "PROVIDER_OPT_IN_KEYWORDS",
    "RULES",
    "Classification",
    "Confidence",
    "Intent",
    "Rule",
    "Tier",
    "classify",
    "normalize_body",
    "provider_confirms",
]


class Intent(StrEnum):
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"
    NONE = "none"


class Tier(StrEnum):
    KEYWORD = "keyword"  # the whole (normalized) message is a keyword
    FREE_TEXT = "free_text"  # a phrase inside the message matched a rule


Confidence = Literal["certain", "likely"]


@dataclass(frozen=True, slots=True)
class Classification:
    """The verdict for one inbound message, with enough detail to explain it to a human.

    ``confidence`` for ``OPT_OUT``: ``"certain"`` means suppress at once whatever the policy;
    ``"likely"`` means a reasonable person could read the message as a revocation but it is not
    unambiguous: suppress under the *auto* policy, flag for review under the *review* policy.
    For ``NONE``, ``"likely"`` means a trigger word was present but a guard (negation, noun
    use, phrasal verb, ...) judged it benign; ``rule`` then names the guard.
    """

    intent: Intent
    tier: Tier | None
    keyword: str | None  # canonical keyword, only for tier KEYWORD
    confidence: Confidence
    rule: str | None
    explanation: str
    matched_text: str | None

    @property
    def is_opt_out(self) -> bool:
        return self.intent is Intent.OPT_OUT

    @property
    def needs_review(self) -> bool:
        """True for an opt-out that an organisation on the *review* policy should flag."""
        return self.intent is Intent.OPT_OUT and self.confidence == "likely"


@dataclass(frozen=True, slots=True)
class Rule:
    """Metadata of one free-text rule or guard (for docs and explainability)."""

    id: str
    intent: Intent
    confidence: Confidence
    description: str
    example: str


# --- keyword lists ------------------------------------------------------------------------------

#: Whole-message opt-out keywords (matched after :func:`normalize_body` and accent folding).
#: The first ten are CTIA/FCC/provider words; REMOVE is on AWS's default list; the rest are the
#: common forms in French (ARRET, ARRETE: AWS and Twilio Proxy lists), Spanish (ALTO, BAJA,
#: PARAR, CANCELAR), Portuguese (SAIR, PARAR, CANCELAR) and German (STOPP). Longer foreign
#: phrases ("no me envíes más mensajes") are handled by the free-text tier.
OPT_OUT_KEYWORDS: Final[tuple[str, ...]] = (
    "STOP",
    "STOPALL",
    "STOP ALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "REVOKE",
    "OPTOUT",
    "OPT OUT",
    "REMOVE",
    "ARRET",
    "ARRETE",
    "ALTO",
    "BAJA",
    "PARAR",
    "CANCELAR",
    "SAIR",
    "STOPP",
)

#: Whole-message re-opt-in keywords. START/UNSTOP/YES are the carrier and CPaaS convention;
#: the others are unambiguous when they are the whole message.
OPT_IN_KEYWORDS: Final[tuple[str, ...]] = (
    "START",
    "UNSTOP",
    "YES",
    "SUBSCRIBE",
    "RESUBSCRIBE",
    "OPTIN",
    "OPT IN",
)

#: Whole-message help keywords: HELP/INFO (CTIA) plus AIDE (fr) and AYUDA (es).
HELP_KEYWORDS: Final[tuple[str, ...]] = ("HELP", "INFO", "AIDE", "AYUDA")

#: Exact opt-out keywords that a provider blocks and confirms itself (compliance §1.3).
PROVIDER_KEYWORDS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "twilio": frozenset(
            {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"}
        ),
        "telnyx": frozenset(
            {"STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"}
        ),
    }
)

#: Exact re-opt-in keywords that a provider unblocks and confirms itself (compliance §1.3).
PROVIDER_OPT_IN_KEYWORDS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "twilio": frozenset({"START", "YES", "UNSTOP"}),
        "telnyx": frozenset({"START", "UNSTOP"}),
    }
)

_KEYWORD_INTENT: Final[Mapping[str, Intent]] = MappingProxyType(
    {
        **{k: Intent.OPT_OUT for k in OPT_OUT_KEYWORDS},
        **{k: Intent.OPT_IN for k in OPT_IN_KEYWORDS},
        **{k: Intent.HELP for k in HELP_KEYWORDS},
    }
)
# "S T O P" / "S.T.O.P" and "OPT-OUT": the keywords without their spaces.
_SPELLED_KEYWORD: Final[Mapping[str, str]] = MappingProxyType(
    {k.replace(" ", ""): k for k in reversed(tuple(_KEYWORD_INTENT))}
)


# --- normalization ------------------------------------------------------------------------------


def _case_fold(text: str) -> str:
    """NFKC + casefold + upper, repeated until stable (a few code points need two rounds)."""
    for _ in range(4):
        folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())
        folded = unicodedata.normalize("NFKC", folded.upper())
        if folded == text:
            break
        text = folded
    return text


def _is_core(ch: str) -> bool:
    return unicodedata.category(ch)[0] in "LN"


def _strip_edges(text: str) -> str:
    """Drop leading/trailing characters that are not letters or digits (punctuation, emoji,
    symbols, spaces, invisible format characters); keep combining marks attached to the last
    letter."""
    start = next((i for i, ch in enumerate(text) if _is_core(ch)), None)
    if start is None:
        return ""
    end = max(i for i, ch in enumerate(text) if _is_core(ch)) + 1
    while end < len(text) and unicodedata.category(text[end])[0] == "M":
        end += 1
    return text[start:end]


def normalize_body(body: str) -> str:
    """Canonical form of a message for keyword comparison and display.

    NFKC, case-folded then upper-cased, surrounding whitespace/punctuation/emoji removed, inner
    whitespace collapsed to single spaces. Accents are kept (``"Arrête"`` → ``"ARRÊTE"``);
    keyword matching folds them separately. Idempotent.

    >>> normalize_body("  Stop!! 🛑")
    'STOP'
    """
    text = body
    for _ in range(4):
        result = " ".join(_strip_edges(_case_fold(text)).split())
        if result == text:
            break
        text = result
    return text


_APOSTROPHES: Final = frozenset("'\u2019\u2018\u02bc\u0060\u00b4\u2032\uff07")


@lru_cache(maxsize=4096)
def _fold_char(ch: str) -> str:
    """One character → upper-case, accent-free, compatibility-decomposed text (0..n chars)."""
    if ch in _APOSTROPHES:
        return "'"
    out = unicodedata.normalize("NFKD", ch).casefold().upper()
    return "".join(c for c in unicodedata.normalize("NFKD", out) if not unicodedata.combining(c))


# --- lexicon ------------------------------------------------------------------------------------

# Spelling variants: canonical word(s) → the ways people type them (folded upper case). A table
# of facts about how people type, not of rules: the rules only ever see the canonical words.
_VARIANTS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "STOP": "STPO SOTP TSOP STOPP STAHP STAPH STAWP STAP STP SYOP STOIP",
        "STOP IT": "STOPIT",
        "STOP TEXTING": "STOPTEXTING",
        "CANCEL": "CANCLE CANCELL CANSEL CACNEL",
        "TEXT": "TXT",
        "TEXTS": "TEXTZ TXTS",
        "TEXTING": "TXTING TXTIN TEXTIN TEXTN TXTN TEXTNG TXTNG TEXING TEXTIG",
        "TEXTED": "TXTD",
        "MESSAGE": "MSG",
        "MESSAGES": "MSGS MSGES MESSEGES MESAGES MESSAGS MESSGES MASSAGES",
        "MESSAGING": "MSGING MSGN MESSAGIN",
        "SMS": "SMSS SMSES",
        "SPAMMING": "SPAMING SPAMMIN",
        "HARASSING": "HARRASSING HARASING HARRASING HARASSIN",
        "HARASSMENT": "HARRASSMENT HARASMENT",
        "CONTACTING": "CONTACTIN",
        "YOU": "U YU",
        "YOUR": "UR YR",
        "PLEASE": "PLZ PLS PLSS PLEAS PLEASEE PLIS PLEEZ PLX",
        "DONT": "DNT DOTN",
        "DO NOT": "DONOT",
        "CANT": "CANNOT",
        "NEVER": "NVR",
        "ANYMORE": "ANYMOR NEMORE",
        "NO MORE": "NOMORE",
        "NO MAS": "NOMAS",
        "THANKS": "THX THNX THANX TNX TY",
        "THANK YOU": "THANKYOU",
        "NUMBER": "NUMBA NUMBR NMBR",
        "REMOVE": "RMV",
        "REMOVE ME": "REMOVEME",
        "AGAIN": "AGIAN",
        "FUCKING": "FUCKIN FKN FCKING FKING FUKING FUCKEN EFFING",
        "FREAKING": "FRICKIN FRIGGIN FRIGGING FREAKIN",
        "FUCK": "FK FCK FUK FUQ",
    }
)
_SPELLING: Final[Mapping[str, str]] = MappingProxyType(
    {variant: canon for canon, variants in _VARIANTS.items() for variant in variants.split()}
)

# Prefix families: any word starting with the key is that word (unsubscribed, unsubscribing,
# unsub; desuscribirme; désabonnement; descadastre; abmelden/abgemeldet is not covered).
_PREFIX_WORDS: Final[tuple[tuple[str, str], ...]] = (
    ("UNSUB", "UNSUBSCRIBE"),
    ("DESUSCRI", "DESUSCRIBIR"),
    ("DESABONN", "DESABONNER"),
    ("DESINSCRI", "DESINSCRIRE"),
    ("DESCADASTR", "DESCADASTRAR"),
    ("DESINSCREV", "DESCADASTRAR"),
    ("ABMELD", "ABMELDEN"),
    ("ABBESTELL", "ABMELDEN"),
)

# Hyphenated or run-together compounds kept as one word.
_COMPOUNDS: Final = frozenset(
    {"OPTOUT", "OPTIN", "STOPALL", "NONSTOP", "UNSUBSCRIBE", "EMAIL", "RESUBSCRIBE", "UNSTOP"}
)

_MASK_CHARS: Final = "*#@$%"
_MASKED_RE: Final = re.compile(r"^([A-Z]+)[*#@$%]+([A-Z]*)$")


def _osa_distance(a: str, b: str) -> int:
    """Optimal-string-alignment edit distance (Damerau-Levenshtein without substring edits)."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[len(b)]


def _squeeze(word: str, keep: int) -> str:
    """Collapse runs of 3+ identical characters to ``keep`` characters."""
    return re.sub(r"(.)\1{2,}", lambda m: m.group(1) * keep, word)


@lru_cache(maxsize=8192)
def _canon_word(word: str) -> str:
    """A folded word (letters or digits only) → canonical word(s), space-separated."""
    if word in _SPELLING:
        return _SPELLING[word]
    if re.search(r"(.)\1\1", word):  # elongation: STOOOOP, PLEEEASE, NOOOO, OFFFF
        for keep in (1, 2):
            cand = _squeeze(word, keep)
            if cand in _SPELLING:
                return _SPELLING[cand]
            if cand in _VOCAB:
                return cand
        word = _squeeze(word, 1)
    for prefix, canon in _PREFIX_WORDS:
        if word.startswith(prefix):
            return canon
    if 8 <= len(word) <= 13 and word[:2] == "UN" and _osa_distance(word, "UNSUBSCRIBE") <= 2:
        return "UNSUBSCRIBE"
    return word


def _split_alnum(word: str) -> list[str]:
    """Leetspeak digits between letters (ST0P) become letters; then letters and digits split
    (STOP2QUIT → STOP 2 QUIT)."""
    if word.isalpha() or word.isdigit():
        return [word]
    leet = {"0": "O", "1": "I", "3": "E"}
    chars = list(word)
    for i in range(1, len(chars) - 1):
        if chars[i] in leet and chars[i - 1].isalpha() and chars[i + 1].isalpha():
            chars[i] = leet[chars[i]]
    return re.findall(r"[^\W\d_]+|\d+", "".join(chars))


def _words_of_token(token: str) -> list[tuple[str, str]]:
    """A raw folded token → list of (raw word, canonical word) pairs.

    Handles masked profanity (F***, SH*T), hyphenated compounds (OPT-OUT, NON-STOP), English
    contractions (DON'T → DONT) versus French elision (M'ECRIRE → M ECRIRE), leetspeak and
    spelling variants.
    """
    masked = _MASKED_RE.match(token)
    if masked and len(masked.group(1)) <= 2:
        head, tail = masked.groups()
        if head == "F":
            word = "FUCKING" if tail.endswith(("ING", "IN", "N")) else "FUCK"
        elif head in ("SH", "S"):
            word = "SHIT"
        else:
            word = head + tail
        return [(word, word)]
    token = token.strip(_MASK_CHARS)
    for ch in _MASK_CHARS:
        token = token.replace(ch, "-")
    out: list[tuple[str, str]] = []
    parts = [p for p in token.split("-") if p]
    joined = "".join(parts).replace("'", "")
    if len(parts) > 1 and (joined in _COMPOUNDS or _canon_word(joined) in _COMPOUNDS):
        parts = [joined]
    for part in parts:
        pieces = part.split("'")
        if len(pieces) == 2 and pieces[1] in {"T", "S", "M", "LL", "RE", "VE", "D"}:
            pieces = [pieces[0] + pieces[1]]
        for piece in pieces:
            split = _split_alnum(piece)
            for word in split:
                # the keyword tier compares what was typed: ST0P is not the keyword STOP
                raw = word if split == [piece] else piece
                out.extend((raw, canon) for canon in _canon_word(word).split())
    return out


# --- tokenisation -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Word:
    raw: str  # folded word as typed (keyword tier)
    text: str  # canonical word (free-text tier)
    start: int  # span in the original body
    end: int
    phrase: int  # words in one phrase are not separated by any punctuation or emoji
    sentence: int  # sentences are separated by . ! ? ; : newline


@dataclass(frozen=True, slots=True)
class _Analysis:
    body: str
    words: tuple[_Word, ...]
    questions: frozenset[int]  # sentence ids that end with (or start with) a question mark
    laughter: bool  # lol/haha/😂: the message may be banter

    def sentences(self) -> list[list[_Word]]:
        grouped: dict[int, list[_Word]] = {}
        for w in self.words:
            grouped.setdefault(w.sentence, []).append(w)
        return list(grouped.values())

    def phrases(self) -> list[list[_Word]]:
        grouped: dict[int, list[_Word]] = {}
        for w in self.words:
            grouped.setdefault(w.phrase, []).append(w)
        return list(grouped.values())


_TOKEN_RE: Final = re.compile(r"[^\W_]+(?:[-'*#@$%]+[^\W_]+)*[*#@$%]*")
_STRONG_SEPARATORS: Final = frozenset(".!?;:\n\r\u2026\u3002\u00bf\u00a1")
_JOINERS: Final = frozenset("&+*#@$%~^_='")
_LAUGH_RE: Final = re.compile(r"^(?:LOL+|LMF?AO+|ROFL|JK|(?:HA){2,}H?|(?:HE){2,}|HAHA\w*)$")
_LAUGH_EMOJI: Final = frozenset("\U0001f602\U0001f923\U0001f606\U0001f61c\U0001f61d")


def _analyse(body: str) -> _Analysis:
    folded_chars: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(body):
        for c in _fold_char(ch):
            folded_chars.append(c)
            origin.append(i)
    origin.append(len(body))
    folded = "".join(folded_chars)

    words: list[_Word] = []
    questions: set[int] = set()
    phrase = sentence = 0
    prev_end = 0
    for m in _TOKEN_RE.finditer(folded):
        sep = folded[prev_end : m.start()]
        if words:
            if any(c in _STRONG_SEPARATORS for c in sep):
                if "?" in sep:
                    questions.add(sentence)
                sentence += 1
                phrase += 1
            elif any(not c.isspace() and c not in _JOINERS for c in sep):
                phrase += 1
        if "\u00bf" in sep:  # Spanish opening question mark
            questions.add(sentence)
        prev_end = m.end()
        start, end = origin[m.start()], origin[m.end() - 1] + 1
        for raw, canon in _words_of_token(m.group()):
            words.append(_Word(raw, canon, start, end, phrase, sentence))
    if "?" in folded[prev_end:]:
        questions.add(sentence)
    laughter = any(_LAUGH_RE.match(w.text) for w in words) or any(c in _LAUGH_EMOJI for c in body)
    return _Analysis(body, tuple(words), frozenset(questions), laughter)


# --- word classes used by the rules ---------------------------------------------------------------


def _wordset(words: str) -> frozenset[str]:
    """Space-separated words → frozenset (keeps the long word lists readable)."""
    return frozenset(words.split())


def _alt(words: str) -> str:
    """Space-separated alternatives → a non-capturing regex group (longest first)."""
    options = sorted(set(words.split("|")), key=len, reverse=True)
    return "(?:" + "|".join(options) + ")"


# nouns for messages and the annoyance they cause
_MSG_NOUN: Final = _alt(
    "TEXT|TEXTS|MESSAGE|MESSAGES|SMS|SPAM|EMAIL|EMAILS|CALLS|NOTIFICATION|NOTIFICATIONS|"
    "ALERT|ALERTS|REMINDER|REMINDERS|UPDATES|PROMOTIONS|PROMOS|PROMO|ADS|ADVERTISEMENTS|ADVERTS|"
    "OFFERS|DEALS|NEWSLETTERS|NEWSLETTER|SOLICITATIONS|SOLICITING|COMMUNICATION|COMMUNICATIONS|"
    "MAILINGS|BLASTS|CRAP|SHIT|JUNK|NONSENSE|BS|BULLSHIT|GARBAGE|MADNESS|HARASSMENT"
)
# gerunds of contacting somebody
_CONTACT_ING: Final = _alt(
    "TEXTING|MESSAGING|CONTACTING|CALLING|SPAMMING|EMAILING|BOTHERING|BUGGING|HARASSING|"
    "PESTERING|HOUNDING|PINGING|WRITING|SOLICITING|HITTING ME UP|BLOWING UP|BLOWING UP MY PHONE|"
    "BLOWING MY PHONE UP|SENDING ME|SENDING US"
)
# determiners and adjectives that may sit between "stop" and the message noun
_MID: Final = _alt(
    "THESE|THIS|THOSE|THE|THAT|YOUR|ALL|ANY|ANYMORE|MORE|FURTHER|STUPID|DAMN|FUCKING|FREAKING|"
    "ANNOYING|RANDOM|SPAM|PROMOTIONAL|MARKETING|AUTOMATED|GROUP|MASS|BULK|DAILY|CONSTANT|"
    "WITH THE|WITH|ALL OF|THEM|ME|US|FUCKIN|GODDAMN|BLOODY|DUMB|ENDLESS|TEXT|SMS"
)
_STOP_VERB: Final = _alt("STOP|QUIT|CEASE|HALT|DISCONTINUE|END|CANCEL")
_RECEIVE: Final = _alt("SENDING|SEND|GETTING|RECEIVING|GET|RECEIVE")
_OBJ: Final = _alt("ME|US|MY NUMBER|THIS NUMBER|MY PHONE|THIS PHONE|MY CELL")
_FILLER_WORDS: Final = _wordset(
    "PLEASE KINDLY OK OKAY K THANKS NOW JUST ALREADY IT THIS THAT ME US AGAIN SERIOUSLY "
    "REALLY IMMEDIATELY ASAP SIR MAAM MADAM BRO BRUH DUDE MAN GUYS YALL LOL LMAO HAHA FUCK "
    "FUCKING FREAKING DAMN DAMMIT GODDAMN SHIT HELL WTF FFS OMG OMFG GOD JESUS UGH JEEZ GEEZ "
    "NO NOPE NAH YES YEAH YEP HEY HI HELLO YO WELL SO AND OH AH UM UMM HMM SORRY POR FAVOR "
    "PORFA PORFAVOR GRACIAS YA MERCI SVP SIL VOUS PLAIT BITTE DANKE OBRIGADO OBRIGADA ALL "
    "RIGHT"
)
_FILLER: Final = _alt("|".join(sorted(_FILLER_WORDS)) + "|THANK YOU")
_END: Final = rf"(?: {_FILLER})*$"  # only fillers until the end of the sentence

_NEG_WORDS: Final = _wordset(
    "DONT NEVER NOT CANT WONT DIDNT DOESNT COULDNT WOULDNT SHOULDNT ISNT ARENT WASNT AINT "
    "NOTHING NOBODY"
)
_NEG_SKIP: Final = _wordset(
    "EVER EVEN PLEASE JUST REALLY NEED NEEDS HAVE HAS WANT WANNA TO GONNA GOING GOTTA WILL BE "
    "ABLE CAN COULD SHOULD LET MAKE IT YOU REASON MEAN MEANT SAID SAY ASKED ASK TOLD TELL"
)
_YOU: Final = frozenset({"YOU", "YALL"})
_ADVERBS: Final = frozenset({"EVER", "EVEN", "JUST", "REALLY"})
_COMPLAINT_SUBJECT: Final = _wordset("YOU YALL IT THEY THIS THESE THAT TEXTS MESSAGES YOUR THEM")
_SELF_SUBJECT: Final = _wordset("I WE ILL WELL IM IVE ID WED WEVE SHE HE")
_SELF_SKIP: Final = _wordset(
    "HAD HAVE TO NEED NEEDED GOTTA GONNA WILL SHOULD COULD CAN MIGHT MAY MUST WANT WANTED "
    "JUST ALSO ALWAYS PROBABLY GOING DO DID AM WAS"
)
_NOUN_BEFORE_STOP: Final = _wordset(
    "BUS NEXT THE A AN MY YOUR OUR THEIR HIS HER ONE NON PIT FULL TRUCK LAST FIRST SECOND "
    "THIRD FINAL REST GAS TRAIN SUBWAY TRAM METRO QUICK SHORT EACH EVERY ANOTHER WHICH WHAT "
    "MORE WAY TRAFFIC DOOR TOUR WHISTLE SCHOOL BACK THAT THIS"
)
_BENIGN_AFTER_STOP: Final = _wordset(
    "BY IN AT OVER OFF ON FOR TO AND THERE HERE AROUND SHORT SIGN SIGNS LIGHT LIGHTS WATCH "
    "LOSS GAP MOTION BEING WHEN IF AFTER BEFORE UNTIL ONCE WHILE HALFWAY BACK OUT THE A AN "
    "THAT THOSE HIS HER THEIR OUR HIM HER SHOP"
)
_CLAUSE_START: Final = _wordset(
    "I IM ID IVE ILL WHO WHAT WHY THIS YOU YOURE WRONG NOT DONT DO NO PLEASE THANKS IT ITS "
    "THATS STOP SERIOUSLY LEAVE REMOVE UNSUBSCRIBE TAKE WE HOW"
)
_CONTACT_ING_WORDS: Final = _wordset(
    "TEXTING MESSAGING CONTACTING CALLING SPAMMING EMAILING BOTHERING BUGGING HARASSING "
    "PESTERING HOUNDING PINGING WRITING SOLICITING SENDING ASKING HITTING BLOWING"
)


# --- rules ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _PatternRule:
    meta: Rule
    pattern: re.Pattern[str]
    negatable: bool  # a negation right before the match cancels it ("don't unsubscribe me")
    reason: str  # completes "'<matched>' <reason>"


def _rule(
    rule_id: str,
    intent: Intent,
    confidence: Confidence,
    pattern: str,
    description: str,
    example: str,
    reason: str,
    *,
    negatable: bool = True,
) -> _PatternRule:
    return _PatternRule(
        Rule(rule_id, intent, confidence, description, example),
        re.compile(pattern),
        negatable,
        reason,
    )


_O: Final = Intent.OPT_OUT
_C: Final[Confidence] = "certain"

_PATTERN_RULES: Final[tuple[_PatternRule, ...]] = (
    _rule(
        "ft.stop_texting",
        _O,
        _C,
        rf"\b{_STOP_VERB} (?:{_RECEIVE} )?(?:{_OBJ} )?(?:{_MID} ){{0,3}}"
        rf"(?:{_MSG_NOUN}|{_CONTACT_ING})\b",
        "stop/quit/cease/end/cancel/discontinue + (sending/getting) + (me) + up to three "
        "determiners or "
        "adjectives + a message noun (texts, messages, alerts, spam, crap...) or a contacting "
        "gerund (texting, calling, spamming, bugging, harassing...)",
        "please stop texting me",
        "asks to stop messages",
    ),
    _rule(
        "ft.stop_sending",
        _O,
        _C,
        rf"\b{_STOP_VERB} {_RECEIVE}(?: (?:ME|US|THIS|THESE|THAT|THOSE|THEM|ANYTHING|STUFF|IT))*"
        + _END,
        "stop/quit + sending/getting/receiving + (me/these/them/anything) at the end of a sentence",
        "Ok, I'm done. Stop sending",
        "asks to stop sending",
    ),
    _rule(
        "ft.unsubscribe",
        _O,
        _C,
        r"\b(?:UNSUBSCRIBE|DESUSCRIBIR|DESABONNER|DESINSCRIRE|DESCADASTRAR|ABMELDEN|"
        r"(?:DAR|DARME|DAME|DENME|DEME|DOY|DARNOS) DE BAJA|DE BAJA)\b",
        "any form of unsubscribe (unsubscribed, unsub, misspellings within 2 edits), es "
        "desuscribir/dar de baja, fr désabonner/désinscrire, pt descadastrar, de abmelden",
        "how do I unsubscribe?",
        "asks to unsubscribe",
    ),
    _rule(
        "ft.opt_out",
        _O,
        _C,
        r"\b(?:OPT|OPTED|OPTING) (?:ME |US |MYSELF )?OUT\b|\bOPTOUT\b",
        "opt out / opt me out / opted out / opting out (FCC per se words)",
        "I want to opt out",
        "asks to opt out",
    ),
    _rule(
        "ft.revoke",
        _O,
        _C,
        r"\bREVOK(?:E|ED|ING)\b|\b(?:WITHDRAW|WITHDRAWING|RESCIND) (?:MY |ALL |ANY )?"
        r"(?:CONSENT|PERMISSION|AUTHORIZATION)\b|\b(?:DO NOT|DONT|NO LONGER) "
        r"(?:CONSENT|GIVE (?:YOU )?(?:CONSENT|PERMISSION))\b",
        "revoke (FCC per se word), withdraw/rescind consent, I do not consent",
        "I revoke consent to receive messages",
        "revokes consent",
    ),
    _rule(
        "ft.remove_me",
        _O,
        _C,
        r"\b(?:REMOVE|DELETE|ERASE|UNLIST|SCRUB|PURGE|LOSE|FORGET) (?:ME|US|MYSELF|THIS NUMBER|"
        r"THIS PHONE|MY (?:NUMBER|NAME|INFO|INFORMATION|CONTACT|DETAILS|DATA|PHONE|CELL|MOBILE|"
        r"EMAIL))\b"
        r"|\b(?:TAKE|GET|DROP|PULL|CROSS|KICK) (?:ME|US|MY NUMBER|MY NAME|THIS NUMBER) "
        r"(?:(?:OFF|OUT OF|FROM)(?: (?:OF|YOUR|THE|THIS|THAT|ALL|ANY|YALL|THESE|YOU GUYS))*"
        r"(?: (?:MAILING|TEXT|TEXTING|CALL|CONTACT|SMS|MARKETING|MESSAGING|EMAIL|DISTRIBUTION|"
        r"SUBSCRIPTION|BROADCAST|PROMO|STUPID|DAMN|FUCKING))* (?:LIST|LISTS|DATABASE|SYSTEM|"
        r"CONTACTS|RECORDS|FILE|FILES|ROSTER)\b|OFF(?: (?:THIS|IT|THAT))?" + _END + r")"
        r"|\bMY (?:NUMBER|NAME|CONTACT INFO|CONTACT INFORMATION|INFO|INFORMATION|DETAILS|"
        r"PHONE NUMBER|CELL) (?:REMOVED|DELETED|TAKEN OFF|ERASED)\b"
        r"|\b(?:BE|GET|BEING) (?:REMOVED|DELETED|UNSUBSCRIBED|TAKEN OFF)\b",
        "remove/delete/lose + me/my number/my info; take/get me off + (your/this) list; "
        "my number removed; be removed. 'likely' when 'remove me from ...' names no list or "
        "messages ('remove me from the Friday class')",
        "take me off your list",
        "asks to be removed",
    ),
    _rule(
        "ft.do_not_list",
        _O,
        _C,
        r"\b(?:PUT|ADD|PLACE) (?:ME|MY NUMBER|THIS NUMBER|US) (?:ON|TO|IN) (?:YOUR |THE )?"
        r"(?:DO NOT|DONT|NO|DNC|OPT OUT|OPTOUT|UNSUBSCRIBE|BLOCK|BLOCKED|SUPPRESSION)\b"
        r"|\b(?:DO NOT|DONT) (?:CALL|TEXT|CONTACT|DISTURB) (?:LIST|REGISTRY)\b|\bDNC\b",
        "put me on your do-not-contact list; the do not call list; DNC",
        "add me to your do not text list",
        "refers to a do-not-contact list",
        negatable=False,
    ),
    _rule(
        "ft.do_not_contact",
        _O,
        _C,
        r"\b(?:DONT|DO NOT|NEVER|NOT)(?: (?:EVER|EVEN|PLEASE|AGAIN))? (?:"
        r"(?:TEXT|MESSAGE|CONTACT|CALL|SMS|EMAIL|WRITE|BOTHER|SPAM|HIT|REACH OUT TO) "
        r"(?:ME|US|THIS NUMBER|MY NUMBER|MY PHONE|THIS PHONE|HERE|TO ME|AGAIN|ANYMORE)"
        r"|(?:TEXT|MESSAGE|CONTACT|CALL|SMS|EMAIL|WRITE)" + _END + r"|SEND (?:ME|US|ANY|ANYTHING"
        r"|MORE|ANYMORE|THESE|THIS|YOUR))",
        "don't/do not/never + text/contact/call/message + me (or end of sentence); don't send me. "
        "'likely' when a time limit follows ('don't text me before 9am', '... back')",
        "don't text me anymore",
        "asks not to be contacted",
        negatable=False,
    ),
    _rule(
        "ft.no_more",
        _O,
        _C,
        rf"\bNO (?:MORE|MAS|MAIS|FURTHER) (?:{_MID} ){{0,2}}(?:{_MSG_NOUN}|MENSAJES|MENSAJE|"
        rf"TEXTOS|MENSAGENS|MENSAGEM|TEXTING|MESSAGING|CONTACT)\b"
        rf"|^(?:{_FILLER} )*NO (?:{_MSG_NOUN}|MORE TEXTING)(?: (?:{_FILLER}|ANYMORE|EVER))*$"
        r"|\bPLUS DE (?:SMS|MESSAGES|TEXTOS|PUB|PUBS|PUBLICITE)\b"
        r"|\bKEINE (?:WEITEREN |MEHR )?(?:SMS|NACHRICHTEN|WERBUNG|TEXTE)\b",
        "no more + texts/messages/promos (en, es 'no más mensajes', pt 'mais'); fr 'plus de "
        "SMS'; de 'keine SMS'",
        "no more texts",
        "asks for no more messages",
    ),
    _rule(
        "ft.no_more_bare",
        _O,
        "likely",
        rf"^(?:{_FILLER} )*NO (?:MORE|MAS|MAIS)(?: (?:{_FILLER}|ANYMORE|EVER))*$",
        "'no more' (no más, não mais) as a whole sentence, without saying more of what",
        "No more please",
        "asks for no more (of the messages, presumably)",
    ),
    _rule(
        "ft.leave_alone",
        _O,
        _C,
        r"\bLEAVE (?:ME|US|MY \w+) (?:THE FUCK |THE HELL |TF |FUCKING |THE FUCKING |THE F )?"
        r"(?:ALONE|BE)\b"
        r"|\bDEJ\w* EN PAZ\b|\b(?:FICHEZ|FICHE|FOUTEZ|FOUS) MOI LA PAIX\b"
        r"|\bLAISSE[ZR]? MOI TRANQUILLE\b|\bME DEIX[AE]M? EM PAZ\b"
        r"|\bLASS(?:EN SIE|T)? MICH IN RUHE\b",
        "leave me alone (en), déjame en paz (es), fichez-moi la paix (fr), me deixa em paz (pt), "
        "lass mich in Ruhe (de)",
        "leave me alone",
        "asks to be left alone",
    ),
    _rule(
        "ft.already_asked",
        _O,
        _C,
        r"\b(?:ASKED|TOLD|SAID|REPLIED|TEXTED|SENT|REQUESTED|WROTE|SAYING|ASKING|TELLING) "
        r"(?:YOU |YALL |YOU GUYS )?(?:TO |THAT )?(?:PLEASE )?(?:STOP|UNSUBSCRIBE|OPT OUT|OPTOUT|"
        r"REMOVE|TAKE ME OFF|NOT TO (?:TEXT|CONTACT|MESSAGE))\b"
        r"|\bHOW MANY TIMES\b",
        "I said STOP / I told you to stop / how many times...",
        "I said STOP",
        "says the person already asked to stop",
    ),
    _rule(
        "ft.no_longer_want",
        _O,
        _C,
        r"\b(?:DONT|DO NOT|DOESNT|DOES NOT|NO LONGER|NEVER) (?:WANT|WANTS|WISH|WISHES|NEED|LIKE)"
        rf"(?: TO)?(?: {_RECEIVE})?"
        rf"(?: (?:{_MID}|OF)){{0,4}} (?:{_MSG_NOUN}|THESE" + _END + ")"
        r"|\b(?:RATHER|PREFER) NOT (?:TO )?(?:GET|RECEIVE) (?:THESE|THIS|THEM|ANY|YOUR|TEXTS|"
        r"MESSAGES)\b",
        "I don't want / she doesn't want / no longer wish to receive + (these) texts; I'd rather "
        "not get these",
        "I no longer wish to receive these messages",
        "says the person does not want the messages",
        negatable=False,
    ),
    _rule(
        "ft.es_stop",
        _O,
        _C,
        r"\bNO (?:ME|NOS) (?:ENVIES|ENVIE|ENVIEN|MANDES|MANDE|MANDEN|ESCRIBAS|ESCRIBA|ESCRIBAN|"
        r"CONTACTES|CONTACTE|CONTACTEN|LLAMES|LLAME|LLAMEN|MOLESTES|MOLESTE|MOLESTEN|TEXTEES)\b"
        r"|\bNO (?:QUIERO|DESEO|QUEREMOS|NECESITO) (?:RECIBIR |MAS |SUS |TUS |ESTOS |LOS |SUS )*"
        r"(?:MENSAJES|MENSAJE|TEXTOS|SMS|NOTIFICACIONES|PROMOCIONES|LLAMADAS)\b"
        r"|\b(?:DEJA|DEJEN|DEJE|DEJAR|PARA|PAREN|PARE|PARAR|PAREM) DE (?:ME |NOS )?"
        r"(?:ENVIAR|MANDAR|ESCRIBIR|CONTACTAR|LLAMAR|MOLESTAR|TEXTEAR|ESCREVER|LIGAR|INCOMODAR)"
        r"\w*"
        r"|\b(?:BORR|ELIMIN|QUIT|SAQU|SAC)(?:ENME|AME|EME|ADME)\b"
        r"|\b(?:BORRA|BORREN|BORRAR|ELIMINA|ELIMINEN|ELIMINAR|QUITA|QUITEN|QUITAR) "
        r"(?:MI NUMERO|MI NOMBRE|MIS DATOS)\b",
        "Spanish (and the shared Portuguese form): no me envíes/mandes más, no quiero recibir "
        "mensajes, deja de escribirme, pare de me mandar, bórrenme, borra mi número",
        "no me envíes más mensajes",
        "asks (es/pt) to stop messages",
    ),
    _rule(
        "ft.fr_stop",
        _O,
        _C,
        r"\b(?:ARRETE|ARRETEZ|ARRETER|ARRETES|CESSE|CESSEZ|CESSER|STOP) (?:DE |D )?"
        r"(?:M |ME |NOUS )?(?:ECRIRE|ENVOYER|CONTACTER|APPELER|HARCELER|SPAMMER|TEXTER|DERANGER|"
        r"EMBETER)\b"
        r"|\b(?:ARRETE|ARRETEZ|STOP) (?:LES|VOS|CES|TES) (?:SMS|MESSAGES|TEXTOS|ENVOIS|PUBS|"
        r"PUBLICITES|APPELS)\b"
        r"|\bNE (?:M|ME|NOUS) (?:ECRIVEZ|ECRIS|ENVOYEZ|ENVOIE|ENVOIES|CONTACTEZ|CONTACTE|APPELEZ|"
        r"APPELLE|DERANGEZ) PLUS\b"
        r"|\bJE NE (?:VEUX|SOUHAITE|DESIRE) PLUS\b"
        r"|\b(?:RETIREZ|RETIRE|SUPPRIMEZ|SUPPRIME|ENLEVEZ|ENLEVE|EFFACEZ|EFFACE) "
        r"(?:MOI|MON NUMERO|NOUS)\b",
        "French: arrête(z) de m'écrire/m'envoyer, arrêtez les SMS, ne m'écrivez plus, je ne veux "
        "plus, retirez-moi",
        "arrête de m'écrire",
        "asks (fr) to stop messages",
    ),
    _rule(
        "ft.pt_stop",
        _O,
        _C,
        r"\bNAO (?:QUERO|DESEJO|QUEREMOS) (?:MAIS |RECEBER |SUAS |ESSAS |ESTAS |AS )*"
        r"(?:MENSAGENS|MENSAGEM|SMS|TORPEDOS|NOTIFICACOES|LIGACOES)\b"
        r"|\bNAO (?:ME )?(?:MANDE|MANDEM|ENVIE|ENVIEM|ESCREVA|ESCREVAM|CONTATE|CONTATEM|LIGUE|"
        r"LIGUEM|PERTURBE) MAIS\b"
        r"|\b(?:ME )?(?:REMOVA|REMOVAM|REMOVER|TIRE|TIREM|TIRA|EXCLUA|EXCLUAM|EXCLUIR|APAGUE|"
        r"APAGA|APAGUEM) (?:ME |MEU NUMERO |O MEU NUMERO )?(?:DA|DESSA|DESTA) LISTA\b",
        "Portuguese: não quero (mais) receber mensagens, não me mande mais, me tire da lista",
        "não quero mais receber mensagens",
        "asks (pt) to stop messages",
    ),
    _rule(
        "ft.de_stop",
        _O,
        _C,
        r"\b(?:HOREN|HOR|HORT|HOERT|HOEREN|HOER) (?:SIE |BITTE |DOCH )*AUF (?:(?:MIR|MICH|UNS) )?"
        r"(?:ZU )?(?:SCHREIBEN|SIMSEN|KONTAKTIEREN|NERVEN|BELASTIGEN|ANZURUFEN)\b|\bAUFHOREN\b"
        r"|\b(?:LOSCHEN|LOSCHE|LOSCHT|ENTFERNEN|ENTFERNE|ENTFERNT|STREICHEN) "
        r"(?:SIE |BITTE )*(?:MEINE NUMMER|MICH|MEINE DATEN|MEINEN KONTAKT)\b"
        r"|\b(?:SCHREIBEN|SCHREIB|KONTAKTIEREN|SCHICKEN|SCHICK|SENDEN) (?:SIE )?(?:MIR|MICH|UNS) "
        r"(?:BITTE )?(?:NICHT MEHR|NIE WIEDER|KEINE)\b"
        r"|\bNICHT MEHR (?:SCHREIBEN|KONTAKTIEREN|ANSCHREIBEN|SIMSEN|SENDEN|ANRUFEN)\b",
        "German: hören Sie auf, mir zu schreiben; löschen Sie meine Nummer; (schreiben Sie mir) "
        "nicht mehr (schreiben)",
        "lösche meine nummer",
        "asks (de) to stop messages",
    ),
    # --- likely: a reasonable person could read these as revocation, but not unambiguously
    _rule(
        "ft.cancel_subscription",
        _O,
        "likely",
        r"\b(?:CANCEL|END|TERMINATE|STOP) (?:MY |THE |THIS |ALL |YOUR )?(?:SUBSCRIPTION|"
        r"SUBSCRIPTIONS|MEMBERSHIP|ENROLLMENT|ENROLMENT)\b",
        "cancel my subscription/membership (may mean the product, not the messages)",
        "cancel my subscription",
        "may ask to cancel messages (or only a product)",
    ),
    _rule(
        "ft.complaint",
        _O,
        "likely",
        r"\b(?:YOU|YALL|THEY|YOUR TEXTS) (?:KEEP|KEEPS|KEPT) (?:ON )?(?:TEXTING|MESSAGING|"
        r"CONTACTING|SENDING|SPAMMING|CALLING|BUGGING|BOTHERING)\b"
        r"|\bWHY (?:AM I|ARE YOU|DO YOU|DOES THIS|IS THIS|DO I|DOES THIS NUMBER|ARE YALL|IS "
        r"SOMEONE) (?:STILL )?(?:KEEP )?(?:GETTING|RECEIVING|TEXTING|MESSAGING|CONTACTING|SENDING|"
        r"SPAMMING|CALLING)\b|\bSTILL (?:GETTING|RECEIVING) (?:THESE|YOUR|TEXTS|MESSAGES)\b"
        r"|\bTHIS IS (?:SPAM|HARASSMENT|ANNOYING)\b|^SPAM$"
        r"|\bREPORT(?:ED|ING)? (?:YOU|THIS|AS SPAM|FOR SPAM|TO THE FCC|TO THE FTC)\b"
        rf"|\bTOO MANY (?:OF )?(?:THESE |THIS |YOUR )?(?:{_MSG_NOUN}|THESE)\b"
        rf"|\bENOUGH (?:ALREADY )?(?:WITH )?(?:THE |THESE |YOUR )?{_MSG_NOUN}\b",
        "complaints about the messages: you keep texting me, why am I still getting these, this "
        "is spam, reported as spam, too many texts",
        "why do you keep texting me",
        "complains about the messages",
    ),
    _rule(
        "ft.no_consent",
        _O,
        "likely",
        r"\b(?:NEVER|DIDNT|DID NOT) (?:SIGNED|SIGN) UP\b|\bNEVER (?:SUBSCRIBED|OPTED IN|CONSENTED|"
        r"AGREED TO|GAVE (?:YOU )?(?:MY NUMBER|PERMISSION|CONSENT))\b"
        r"|\b(?:HOW|WHERE) DID (?:YOU|YALL) GET (?:MY|THIS) NUMBER\b",
        "I never signed up / never consented / how did you get my number",
        "I never signed up for this",
        "says the person never consented",
        negatable=False,
    ),
    _rule(
        "ft.wrong_number",
        _O,
        "likely",
        r"\bWRONG (?:NUMBER|PERSON|GUY|GIRL|LADY|NUM)\b|\bYOU HAVE THE WRONG\b"
        r"|\bNOT THE RIGHT (?:PERSON|NUMBER)\b|\bNUMERO EQUIVOCADO\b|\bMAUVAIS NUMERO\b"
        r"|\bNUMERO ERRADO\b|\bFALSCHE NUMMER\b",
        "wrong number / wrong person (es número equivocado, fr mauvais numéro, pt número errado, "
        "de falsche Nummer): the recipient never consented",
        "Wrong number",
        "says this is the wrong number",
        negatable=False,
    ),
    _rule(
        "ft.not_interested",
        _O,
        "likely",
        rf"\b(?:NOT|NO LONGER|NEVER) INTERESTED(?:{_END}| (?:ANYMORE|IN (?:THIS|THESE|THAT|YOUR|"
        rf"ANY|ANYTHING)|REMOVE|STOP))"
        r"|\bNO (?:ESTOY|ESTAMOS) INTERESAD[OA]S?\b|\bNO ME INTERESA\b|\bPAS INTERESSE\b"
        r"|\bNAO TENHO INTERESSE\b|\bKEIN INTERESSE\b",
        "not interested (alone or 'in this/your ...'); es no me interesa, fr pas intéressé, pt "
        "não tenho interesse, de kein Interesse",
        "not interested",
        "declines further contact",
        negatable=False,
    ),
    _rule(
        "ft.hostile",
        _O,
        "likely",
        r"\b(?:FUCK|PISS|BUZZ|BACK|SOD|BUGGER|SHOVE) OFF\b|\bGO AWAY\b|\bGET LOST\b"
        r"|\bSCREW YOU\b|\bFUCK (?:YOU|YALL|YOURSELF|THIS|OUTTA HERE)\b|\bGO TO HELL\b",
        "hostile dismissals: f*** off, go away, get lost, screw you",
        "fuck off",
        "is a hostile dismissal",
        negatable=False,
    ),
    _rule(
        "ft.block",
        _O,
        "likely",
        rf"^(?:{_FILLER} )*BLOCK(?: (?:THIS NUMBER|{_FILLER}))*$"
        r"|\b(?:IM|I AM|IMMA|I WILL|ILL|GONNA|GOING TO) (?:BLOCK|REPORT|BLOCKING|REPORTING) "
        r"(?:YOU|THIS|YOUR)\b",
        "bare 'block' reply, or a threat to block/report the sender",
        "Block",
        "threatens or asks to block",
    ),
    _rule(
        "ft.discontinue",
        _O,
        "likely",
        rf"^(?:{_FILLER} )*(?:DISCONTINUE|CEASE AND DESIST|CEASE|HALT)" + _END,
        "discontinue / cease and desist as a whole sentence",
        "Please discontinue",
        "asks to discontinue",
    ),
    _rule(
        "ft.foreign_stop_word",
        _O,
        "likely",
        rf"^(?:{_FILLER} )*(?:PARA|PARE|PAREN|BASTA|HOR AUF|HOREN SIE AUF)" + _END,
        "es/pt 'para'/'pare'/'basta', de 'hör auf' as a whole sentence",
        "Por favor pare",
        "is a foreign word for stop",
    ),
)

# Opt-in free text: only when no opt-out rule fired.
_OPT_IN_RULES: Final[tuple[_PatternRule, ...]] = (
    _rule(
        "ft.resubscribe",
        Intent.OPT_IN,
        "likely",
        r"\b(?:RESUBSCRIBE|UNSTOP|OPTIN)\b|\bOPT (?:ME |BACK |ME BACK )*IN\b"
        r"|\b(?:START|RESUME) (?:TEXTING|SENDING|MESSAGING)(?: (?:ME|US))?(?: \w+)? AGAIN\b"
        r"|^(?:PLEASE )?(?:SIGN|ADD|PUT|SUBSCRIBE) ME (?:BACK )?(?:UP|IN|ON)?(?: AGAIN)?"
        + _END
        + rf"|\bWANT (?:TO )?(?:GET|RECEIVE) (?:YOUR |THE |THESE )?{_MSG_NOUN} (?:AGAIN|BACK)\b",
        "resubscribe, unstop, opt (me back) in, start texting me again, sign me back up",
        "Please start texting me again",
        "asks to receive messages again",
    ),
)

_GENERIC_STOP_RULE: Final = Rule(
    "ft.stop_word",
    Intent.OPT_OUT,
    "certain",
    "a 'stop' (or variant: stahp, stpo, STOOOP) that no guard explains away. 'certain' at the "
    "end of a sentence ('wrong number stop', 'make it stop') or before a new clause ('stop who "
    "is this'); 'likely' before other words ('Stop asking me for money'), in a question, or as "
    "a complaint ('the texts never stop')",
    "u kept texting me STOP it",
)
_PHRASE_RULE: Final = Rule(
    "ft.keyword_phrase",
    Intent.OPT_OUT,
    "certain",
    "a phrase (text between punctuation or emoji) that is an opt-out keyword plus only filler "
    "words (please, now, it, thanks, profanity, por favor, merci...); CANCEL/END/QUIT (and "
    "foreign words whose other meanings are common) give 'likely', as does a keyword phrase in "
    "a question",
    "who is this? stop",
)
_VARIANT_RULE: Final = Rule(
    "ft.keyword_variant",
    Intent.OPT_OUT,
    "certain",
    "the whole message is a misspelt, elongated or leetspeak form of a keyword (stpo, stahp, "
    "STOPPPP, ST0P, unsubscibe)",
    "stahp",
)
_OPT_IN_PHRASE_RULE: Final = Rule(
    "ft.opt_in_phrase",
    Intent.OPT_IN,
    "likely",
    "the whole message is START/UNSTOP/SUBSCRIBE/OPT IN plus fillers (YES is excluded: 'yes "
    "please' is usually an answer to a question, not a re-subscription)",
    "unstop please",
)
_HELP_PHRASE_RULE: Final = Rule(
    "ft.help_phrase",
    Intent.HELP,
    "likely",
    "the whole message is HELP/INFO/AYUDA/AIDE plus fillers, or 'help me', 'more info'",
    "help please",
)

_GUARDS: Final[tuple[Rule, ...]] = (
    Rule(
        "g.negated",
        Intent.NONE,
        "likely",
        "a negation within five words before the trigger (don't, never, can't, won't, no need "
        "to; only ever/please/just/want/you/to/have/said... may sit in between): 'don't stop "
        "the deliveries'. Not a negation when 'you' follows it ('why don't you stop') or when "
        "'you', 'it' or the texts are the subject right before it ('you never stop texting "
        "me': a complaint, so opt-out likely)",
        "I can't stop smiling",
    ),
    Rule(
        "g.noun",
        Intent.NONE,
        "likely",
        "'stop' used as a noun: bus/next/last/pit/full/non stop, the/my/a stop",
        "bus stop at 5th",
    ),
    Rule(
        "g.phrasal_verb",
        Intent.NONE,
        "likely",
        "'stop' followed by by/in/at/over/for/to/and..., by a determiner and a non-message noun "
        "('stop the presses'), or by a gerund that is not about contacting ('stop worrying')",
        "stop by tomorrow?",
    ),
    Rule(
        "g.prefers_text",
        Intent.NONE,
        "likely",
        "'don't call me' (or email) when the same sentence asks for texts instead",
        "Don't call me, text me",
    ),
    Rule(
        "g.self_subject",
        Intent.NONE,
        "likely",
        "the sender talks about themselves stopping: 'I had to stop', 'we'll stop'",
        "I'll stop at the pharmacy on the way",
    ),
)

#: Every free-text rule and guard, in priority order (for docs and tests).
RULES: Final[tuple[Rule, ...]] = (
    _VARIANT_RULE,
    _PHRASE_RULE,
    *(r.meta for r in _PATTERN_RULES if r.meta.confidence == "certain"),
    _GENERIC_STOP_RULE,
    *(r.meta for r in _PATTERN_RULES if r.meta.confidence == "likely"),
    _OPT_IN_PHRASE_RULE,
    *(r.meta for r in _OPT_IN_RULES),
    _HELP_PHRASE_RULE,
    *_GUARDS,
)
_PRIORITY: Final[Mapping[str, int]] = MappingProxyType({r.id: i for i, r in enumerate(RULES)})

# Every word the rules mention: elongation squeezing prefers a known word (OFFFF → OFF, not OF).
_VOCAB: Final = frozenset(
    word
    for source in (
        *(r.pattern.pattern for r in _PATTERN_RULES),
        *(r.pattern.pattern for r in _OPT_IN_RULES),
        " ".join(_FILLER_WORDS),
        " ".join(_SPELLING.values()),
        " ".join(_KEYWORD_INTENT),
        "ALONE LEAVE OFF TOO NO",
    )
    for word in re.findall(r"[A-Z]{2,}", source)
)

# Keyword phrase rule: which keywords count and how sure a bare keyword inside a longer
# message is.
_PHRASE_OPT_OUT: Final[Mapping[str, Confidence]] = MappingProxyType(
    {
        **{k.replace(" ", ""): "certain" for k in OPT_OUT_KEYWORDS},
        "CANCEL": "likely",
        "END": "likely",
        "QUIT": "likely",
        "CANCELAR": "likely",
        "PARAR": "likely",
        "ALTO": "likely",
        "BAJA": "certain",
        "ARRETEZ": "certain",
        "DESUSCRIBIR": "certain",
        "DESABONNER": "certain",
        "DESINSCRIRE": "certain",
        "DESCADASTRAR": "certain",
        "ABMELDEN": "certain",
    }
)
_PHRASE_OPT_IN: Final = frozenset({"START", "UNSTOP", "SUBSCRIBE", "RESUBSCRIBE", "OPTIN"})
_PHRASE_HELP: Final = frozenset({"HELP", "INFO", "AYUDA", "AIDE", "AJUDA", "HILFE"})


# --- classification -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Candidate:
    rule: str
    intent: Intent
    confidence: Confidence
    start: int
    end: int
    reason: str


def _join_keyword(words: Sequence[str]) -> list[str]:
    """OPT OUT → OPTOUT, STOP ALL → STOPALL, OPT IN → OPTIN (for phrase matching)."""
    out: list[str] = []
    for w in words:
        if out and (out[-1], w) in {("OPT", "OUT"), ("STOP", "ALL"), ("OPT", "IN")}:
            out[-1] += w
        else:
            out.append(w)
    return out


def _core_words(words: Sequence[str]) -> list[str]:
    """Drop filler words ("thank you" counts as one filler)."""
    out: list[str] = []
    for i, w in enumerate(words):
        if w in _FILLER_WORDS or w == "THANK" or (w == "YOU" and i and words[i - 1] == "THANK"):
            continue
        out.append(w)
    return out


def _keyword_tier(analysis: _Analysis) -> Classification | None:
    raws = [w.raw for w in analysis.words]
    if not raws:
        return None
    joined = " ".join(raws)
    keyword: str | None = None
    how = ""
    if joined in _KEYWORD_INTENT:
        keyword, how = joined, "is the keyword"
    elif len(raws) > 1 and all(len(r) == 1 and r.isalpha() for r in raws):
        keyword, how = _SPELLED_KEYWORD.get("".join(raws)), "spells out the keyword"
    else:
        for size in (1, 2):
            unit = raws[:size]
            if len(raws) > size and len(raws) % size == 0 and raws == unit * (len(raws) // size):
                candidate = " ".join(unit)
                if candidate in _KEYWORD_INTENT:
                    keyword, how = candidate, "repeats the keyword"
    if keyword is None:
        return None
    return Classification(
        intent=_KEYWORD_INTENT[keyword],
        tier=Tier.KEYWORD,
        keyword=keyword,
        confidence="certain",
        rule="kw.exact" if how == "is the keyword" else "kw.variant",
        explanation=f"whole message {how} {keyword}",
        matched_text=normalize_body(analysis.body),
    )


def _negation(words: Sequence[_Word], i: int) -> Literal["none", "negated", "complaint"]:
    """Is the word at index ``i`` negated by a word shortly before it (same phrase)?"""
    steps = 0
    j = i - 1
    while j >= 0 and steps < 5 and words[j].phrase == words[i].phrase:
        w = words[j].text
        if w in _NEG_WORDS or (w == "NO" and j + 1 < i and words[j + 1].text in {"NEED", "REASON"}):
            if j + 1 < i and words[j + 1].text in _YOU:
                return "none"  # "why don't you stop", "won't you stop": a request
            between = {x.text for x in words[j + 1 : i]}
            if j > 0 and words[j - 1].text in _COMPLAINT_SUBJECT and between <= _ADVERBS:
                return "complaint"  # "you never stop texting me", not "you don't have to stop"
            return "negated"
        if w not in _NEG_SKIP:
            return "none"
        j -= 1
        steps += 1
    return "none"


_TEXT_VERBS: Final = frozenset({"TEXT", "MESSAGE", "SMS", "CONTACT", "SEND", "SPAM", "BOTHER"})
_PREFERS_TEXT_RE: Final = re.compile(
    r"\b(?:TEXT|MESSAGE) (?:ME|US)\b|\bTEXT(?:ING)? (?:IS|ONLY|INSTEAD)\b|\bJUST TEXT\b"
    r"|\bTEXTS? (?:ARE|IS) (?:FINE|OK|OKAY|BETTER)\b"
)
_QUALIFIERS: Final = _wordset(
    "BEFORE AFTER UNTIL TILL TIL DURING AT ON TODAY TONIGHT TOMORROW BACK WHILE WHEN SO IN "
    "EARLY LATE THIS ABOUT"
)


_LIST_NOUN_RE: Final = re.compile(
    rf"\b(?:LIST|LISTS|DATABASE|SYSTEM|CONTACTS|RECORDS|FILE|FILES|ROSTER|{_MSG_NOUN}|"
    r"THIS|THESE|IT|EVERYTHING|ALL)\b"
)
_OTHER_PARTY: Final = frozenset({"YOU", "YALL", "HIM", "HER", "THEM"})


def _self_subject(texts: Sequence[str], i: int) -> bool:
    """Is the subject of the verb at ``i`` the sender ("I'll stop", "we had to stop")?"""
    j = i - 1
    while j >= 0 and texts[j] in _SELF_SKIP:
        j -= 1
    return j >= 0 and texts[j] in _SELF_SUBJECT


def _pattern_candidates(
    sentence: Sequence[_Word], rules: Sequence[_PatternRule], guards: list[_Candidate]
) -> list[_Candidate]:
    texts = [w.text for w in sentence]
    line = " ".join(texts)
    offsets: list[int] = []
    pos = 0
    for t in texts:
        offsets.append(pos)
        pos += len(t) + 1
    found: list[_Candidate] = []
    for rule in rules:
        for m in rule.pattern.finditer(line):
            if m.end() == m.start():
                continue
            first = max(i for i, off in enumerate(offsets) if off <= m.start())
            last = max(i for i, off in enumerate(offsets) if off < m.end())
            confidence = rule.meta.confidence
            if rule.meta.id == "ft.do_not_contact":
                rest = line[: m.start()] + " | " + line[m.end() :]
                verbs = set(texts[first : last + 1])
                if not verbs & _TEXT_VERBS and _PREFERS_TEXT_RE.search(rest):
                    guards.append(
                        _Candidate(
                            "g.prefers_text",
                            Intent.NONE,
                            "likely",
                            sentence[first].start,
                            sentence[last].end,
                            "refuses calls or email but asks for texts instead",
                        )
                    )
                    continue
                if last + 1 < len(texts) and texts[last + 1] in _QUALIFIERS:
                    confidence = "likely"  # "don't text me before 9am": a limit, maybe not a stop
            if (
                rule.meta.id == "ft.remove_me"
                and last + 1 < len(texts)
                and texts[last + 1] in {"FROM", "OFF"}
                and not _LIST_NOUN_RE.search(" ".join(texts[last + 1 :]))
            ):
                confidence = "likely"  # "remove me from the Friday class": maybe a booking
            if (
                rule.meta.id == "ft.stop_texting"
                and _self_subject(texts, first)
                and last + 1 < len(texts)
                and texts[last + 1] in _OTHER_PARTY
            ):
                guards.append(
                    _Candidate(
                        "g.self_subject",
                        Intent.NONE,
                        "likely",
                        sentence[first].start,
                        sentence[last + 1].end,
                        "is the sender saying they will stop texting the business",
                    )
                )
                continue
            if rule.negatable:
                neg = _negation(sentence, first)
                if neg == "negated":
                    guards.append(
                        _Candidate(
                            "g.negated",
                            Intent.NONE,
                            "likely",
                            sentence[first].start,
                            sentence[last].end,
                            f"is negated, so rule {rule.meta.id} does not apply",
                        )
                    )
                    continue
                if neg == "complaint":
                    confidence = "likely"
            found.append(
                _Candidate(
                    rule.meta.id,
                    rule.meta.intent,
                    confidence,
                    sentence[first].start,
                    sentence[last].end,
                    rule.reason,
                )
            )
    return found


def _guard(word: _Word, rule_id: str, reason: str) -> _Candidate:
    return _Candidate(rule_id, Intent.NONE, "likely", word.start, word.end, reason)


def _stop_word_candidates(
    sentence: Sequence[_Word], is_question: bool, guards: list[_Candidate]
) -> list[_Candidate]:
    """The generic rule for a bare 'stop' inside a longer sentence, with its guards."""
    found: list[_Candidate] = []
    for i, word in enumerate(sentence):
        if word.text != "STOP":
            continue

        same_phrase = [w for w in sentence if w.phrase == word.phrase]
        k = same_phrase.index(word)
        before = [w.text for w in same_phrase[:k]]
        after = [w.text for w in same_phrase[k + 1 :]]
        if (
            before
            and before[-1] in _NOUN_BEFORE_STOP
            and not (before[-1] in {"THIS", "THAT"} and not after)
        ):
            guards.append(
                _guard(word, "g.noun", f"uses 'stop' as a noun ('{before[-1].lower()} stop')")
            )
            continue
        neg = _negation(sentence, i)
        if neg == "negated":
            guards.append(_guard(word, "g.negated", "negates 'stop'"))
            continue
        core_after = _core_words(after)
        if neg == "complaint":
            if (
                not core_after
                or core_after[0] in {"ME", "US"}
                or core_after[0] in _CONTACT_ING_WORDS
            ):
                found.append(
                    _Candidate(
                        _GENERIC_STOP_RULE.id,
                        Intent.OPT_OUT,
                        "likely",
                        word.start,
                        word.end,
                        "complains that the messages never stop",
                    )
                )
            else:
                guards.append(
                    _guard(word, "g.negated", "negates 'stop' about something other than messages")
                )
            continue
        if _self_subject(before, len(before)):  # "I had to stop", "we'll stop"
            guards.append(
                _guard(word, "g.self_subject", "is the sender talking about their own stop")
            )
            continue
        if not core_after:
            confidence: Confidence = "likely" if is_question else "certain"
            found.append(
                _Candidate(
                    _GENERIC_STOP_RULE.id,
                    Intent.OPT_OUT,
                    confidence,
                    word.start,
                    same_phrase[-1].end,
                    "ends with the opt-out word STOP",
                )
            )
            continue
        nxt = core_after[0]
        if nxt in _BENIGN_AFTER_STOP or (nxt.endswith("ING") and nxt not in _CONTACT_ING_WORDS):
            guards.append(
                _guard(
                    word,
                    "g.phrasal_verb",
                    f"uses 'stop {nxt.lower()}', not a request to stop messages",
                )
            )
            continue
        confidence = "certain" if nxt in _CLAUSE_START and not is_question else "likely"
        found.append(
            _Candidate(
                _GENERIC_STOP_RULE.id,
                Intent.OPT_OUT,
                confidence,
                word.start,
                word.end,
                "contains the opt-out word STOP",
            )
        )
    return found


def _phrase_candidates(analysis: _Analysis) -> list[_Candidate]:
    found: list[_Candidate] = []
    for phrase in analysis.phrases():
        core = _join_keyword(_core_words([w.text for w in phrase]))
        if not core or len(set(core)) != 1:
            continue
        word = core[0]
        if word in _PHRASE_OPT_OUT:
            confidence = _PHRASE_OPT_OUT[word]
            if phrase[0].sentence in analysis.questions:
                confidence = "likely"  # "unsubscribe? no way": echoing the word, maybe
            found.append(
                _Candidate(
                    _PHRASE_RULE.id,
                    Intent.OPT_OUT,
                    confidence,
                    phrase[0].start,
                    phrase[-1].end,
                    f"is the opt-out keyword {word} with only filler words",
                )
            )
    return found


def _best(candidates: Sequence[_Candidate]) -> _Candidate:
    return min(
        candidates,
        key=lambda c: (c.confidence != "certain", _PRIORITY.get(c.rule, 999), c.start),
    )


def _result(analysis: _Analysis, cand: _Candidate) -> Classification:
    matched = analysis.body[cand.start : cand.end]
    rule_note = f" (rule {cand.rule})"
    return Classification(
        intent=cand.intent,
        tier=Tier.FREE_TEXT if cand.intent is not Intent.NONE else None,
        keyword=None,
        confidence=cand.confidence,
        rule=cand.rule,
        explanation=f"'{matched}' {cand.reason}{rule_note}",
        matched_text=matched,
    )


def _variant_tier(analysis: _Analysis) -> _Candidate | None:
    """Whole message = a spelling variant of a keyword (stpo, STOOOP, ST0P, unsubscibe)."""
    core = _join_keyword([w.text for w in analysis.words])
    if len(set(core)) == 1 and core[0] in _PHRASE_OPT_OUT:
        return _Candidate(
            _VARIANT_RULE.id,
            Intent.OPT_OUT,
            "certain",
            analysis.words[0].start,
            analysis.words[-1].end,
            f"is a variant spelling of the keyword {core[0]}",
        )
    return None


def _whole_message_phrase(analysis: _Analysis) -> _Candidate | None:
    words = [w.text for w in analysis.words]
    core = _join_keyword(_core_words(words))
    start, end = analysis.words[0].start, analysis.words[-1].end
    if core and len(set(core)) == 1 and core[0] in _PHRASE_OPT_IN:
        return _Candidate(
            _OPT_IN_PHRASE_RULE.id,
            Intent.OPT_IN,
            "likely",
            start,
            end,
            f"is the opt-in keyword {core[0]} with filler words",
        )
    if (core and len(set(core)) == 1 and core[0] in _PHRASE_HELP) or core in (
        ["HELP", "ME"],
        ["MORE", "INFO"],
        ["I", "NEED", "HELP"],
        ["NEED", "HELP"],
    ):
        return _Candidate(_HELP_PHRASE_RULE.id, Intent.HELP, "likely", start, end, "asks for help")
    return None


def classify(body: str) -> Classification:
    """Classify one inbound message. Never raises; deterministic; no I/O.

    >>> classify("Stop.").keyword
    'STOP'
    >>> classify("please stop texting me").rule
    'ft.stop_texting'
    >>> classify("stop by tomorrow?").intent
    <Intent.NONE: 'none'>
    """
    analysis = _analyse(body)
    if not analysis.words:
        return Classification(
            Intent.NONE, None, None, "certain", None, "no words in the message", None
        )
    keyword = _keyword_tier(analysis)
    if keyword is not None:
        return keyword

    guards: list[_Candidate] = []
    found: list[_Candidate] = []
    variant = _variant_tier(analysis)
    if variant is not None:
        found.append(variant)
    found.extend(_phrase_candidates(analysis))
    for sentence in analysis.sentences():
        is_question = sentence[0].sentence in analysis.questions
        found.extend(_pattern_candidates(sentence, _PATTERN_RULES, guards))
        found.extend(_stop_word_candidates(sentence, is_question, guards))
    opt_outs = [c for c in found if c.intent is Intent.OPT_OUT]
    if opt_outs:
        best = _best(opt_outs)
        if analysis.laughter and best.confidence == "certain" and best.rule != _VARIANT_RULE.id:
            best = _Candidate(
                best.rule,
                best.intent,
                "likely",
                best.start,
                best.end,
                best.reason + "; laughter suggests banter, so only likely",
            )
        return _result(analysis, best)

    phrase = _whole_message_phrase(analysis)
    if phrase is not None:
        return _result(analysis, phrase)
    opt_ins: list[_Candidate] = []
    for sentence in analysis.sentences():
        opt_ins.extend(_pattern_candidates(sentence, _OPT_IN_RULES, guards))
    if opt_ins:
        return _result(analysis, _best(opt_ins))
    if guards:
        return _result(analysis, _best(guards))
    return Classification(
        Intent.NONE, None, None, "certain", None, "no opt-out, opt-in or help wording found", None
    )


def provider_confirms(provider: str, body: str, *, intent: Intent = Intent.OPT_OUT) -> bool:
    """Would ``provider`` itself act on ``body`` and send its own confirmation?

    Mirrors the provider's exact-keyword rule: the body trimmed and upper-cased must equal one
    of its keywords. No punctuation tolerance (Twilio does not block ``"STOP."``, §1.4), no
    inner-whitespace tolerance. When this is True the platform must not send a second
    confirmation; it still records the opt-out itself. Unknown providers → False (the platform
    confirms). ``intent=Intent.OPT_IN`` asks the same about re-subscription keywords.
    """
    table = {Intent.OPT_OUT: PROVIDER_KEYWORDS, Intent.OPT_IN: PROVIDER_OPT_IN_KEYWORDS}.get(intent)
    if table is None:
        return False
    keywords = table.get(provider.strip().lower())
    return keywords is not None and body.strip().upper() in keywords
