"""Approximate US ZIP-prefix (ZIP3) → state and IANA time-zone table, for quiet hours.

Pure data plus three small lookups; no I/O. Built from general knowledge of USPS ZIP3
assignments and US time-zone boundaries, **not** from a ZIP database, so treat it as an
approximation (compliance reference §3.3: a ZIP database is the better source):

* Each ZIP3 prefix maps to one state and to **every** zone the prefix area may touch. A prefix
  near a zone boundary lists both zones, on purpose: quiet hours intersect the windows of all
  candidate zones, so an extra zone only narrows the sending window (safe), while a missing
  zone could allow a text at 7 AM local time (unsafe). Multi-zone prefixes are in the FL
  panhandle (323-324), AL Phenix City area (368, unofficially Eastern), TN (373-374, 385),
  KY (421-422, 425-427), IN (463, 465, 475), MI Upper Peninsula (498-499), SD (575-576),
  ND (585-586, 588), KS (677-678), NE (690-692), TX El Paso area (798), ID (835), AZ Navajo
  Nation (860, 865: the Nation observes DST, the rest of Arizona does not), NV (898: West
  Wendover and Jackpot keep Mountain time), OR Malheur County (979).
* Zones are named by behaviour since 2007: e.g. Eastern Indiana and Kentucky use
  ``America/New_York``, Alaska outside the Aleutians uses ``America/Anchorage``. A few ZIP5
  exceptions are listed in ``_ZIP5_OVERRIDES`` (Adak and Atka, American Samoa, Saipan).
* Military prefixes (AA 340, AE 090-099, AP 962-966) have a state code but no zone: callers
  fall through to the phone number's zones.
* Prefix 969 is shared by Guam, the Northern Mariana Islands and the freely associated states;
  it maps to Guam, with the ZIP5 overrides above for American Samoa and Saipan.
* Unassigned prefixes inside a range inherit that range's state; they match no real address.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = [
    "CONTIGUOUS_US_ZONES",
    "STATE_CODES",
    "STATE_NAMES",
    "STATE_ZONES",
    "normalize_state",
    "normalize_zip",
    "zip_state",
    "zip_zones",
]

ET = "America/New_York"
CT = "America/Chicago"
MT = "America/Denver"
PT = "America/Los_Angeles"
AZ = "America/Phoenix"  # Mountain Standard Time all year (no DST)
BOISE = "America/Boise"  # southern Idaho and Malheur County, OR (Mountain, with DST)
AK = "America/Anchorage"
ADAK = "America/Adak"  # Aleutians west of 169.5° W (Hawaii-Aleutian, with DST)
HI = "Pacific/Honolulu"
PR = "America/Puerto_Rico"
VI = "America/St_Thomas"
GU = "Pacific/Guam"
MP = "Pacific/Saipan"
AS = "Pacific/Pago_Pago"

#: Strictest fallback when nothing is known about the recipient (lower 48 states).
CONTIGUOUS_US_ZONES: tuple[str, ...] = (ET, CT, MT, AZ, PT)

# (first ZIP3, last ZIP3, state, zones). Ordered, non-overlapping.
_ZIP3_RANGES: tuple[tuple[int, int, str, tuple[str, ...]], ...] = (
    (5, 5, "NY", (ET,)),  # Holtsville IRS
    (6, 7, "PR", (PR,)),
    (8, 8, "VI", (VI,)),
    (9, 9, "PR", (PR,)),
    (10, 27, "MA", (ET,)),
    (28, 29, "RI", (ET,)),
    (30, 38, "NH", (ET,)),
    (39, 49, "ME", (ET,)),
    (50, 54, "VT", (ET,)),
    (55, 55, "MA", (ET,)),
    (56, 59, "VT", (ET,)),
    (60, 69, "CT", (ET,)),
    (70, 89, "NJ", (ET,)),
    (90, 99, "AE", ()),  # military, Europe
    (100, 149, "NY", (ET,)),
    (150, 196, "PA", (ET,)),
    (197, 199, "DE", (ET,)),
    (200, 200, "DC", (ET,)),
    (201, 201, "VA", (ET,)),
    (202, 205, "DC", (ET,)),
    (206, 219, "MD", (ET,)),
    (220, 246, "VA", (ET,)),
    (247, 268, "WV", (ET,)),
    (270, 289, "NC", (ET,)),
    (290, 299, "SC", (ET,)),
    (300, 319, "GA", (ET,)),
    (320, 322, "FL", (ET,)),
    (323, 324, "FL", (ET, CT)),  # Tallahassee / Panama City: Apalachicola River boundary
    (325, 325, "FL", (CT,)),  # Pensacola
    (326, 339, "FL", (ET,)),
    (340, 340, "AA", ()),  # military, Americas
    (341, 349, "FL", (ET,)),
    (350, 367, "AL", (CT,)),
    (368, 368, "AL", (CT, ET)),  # Phenix City area keeps Eastern time unofficially
    (369, 369, "AL", (CT,)),
    (370, 372, "TN", (CT,)),
    (373, 374, "TN", (ET, CT)),  # Chattanooga area: Marion, Grundy, Sequatchie are Central
    (375, 375, "TN", (CT,)),
    (376, 379, "TN", (ET,)),
    (380, 384, "TN", (CT,)),
    (385, 385, "TN", (CT, ET)),  # Cookeville area, next to the Eastern counties
    (386, 397, "MS", (CT,)),
    (398, 399, "GA", (ET,)),
    (400, 419, "KY", (ET,)),
    (420, 420, "KY", (CT,)),  # Paducah
    (421, 422, "KY", (CT, ET)),  # Bowling Green area
    (423, 424, "KY", (CT,)),  # Owensboro, Henderson
    (425, 427, "KY", (ET, CT)),  # Somerset, Elizabethtown: boundary counties
    (430, 459, "OH", (ET,)),
    (460, 462, "IN", (ET,)),
    (463, 463, "IN", (CT, ET)),  # NW Indiana beyond Gary
    (464, 464, "IN", (CT,)),  # Gary
    (465, 465, "IN", (ET, CT)),  # South Bend area incl. Starke County (Central)
    (466, 474, "IN", (ET,)),
    (475, 475, "IN", (ET, CT)),  # SW Indiana incl. Perry and Spencer (Central)
    (476, 477, "IN", (CT,)),  # Evansville
    (478, 479, "IN", (ET,)),
    (480, 497, "MI", (ET,)),
    (498, 499, "MI", (ET, CT)),  # Upper Peninsula: four counties on the WI border are Central
    (500, 528, "IA", (CT,)),
    (530, 549, "WI", (CT,)),
    (550, 567, "MN", (CT,)),
    (569, 569, "DC", (ET,)),
    (570, 574, "SD", (CT,)),
    (575, 576, "SD", (CT, MT)),  # Pierre, Mobridge: near the Missouri River boundary
    (577, 577, "SD", (MT,)),  # Rapid City
    (580, 584, "ND", (CT,)),
    (585, 586, "ND", (CT, MT)),  # Bismarck, Dickinson: SW North Dakota is Mountain
    (587, 587, "ND", (CT,)),
    (588, 588, "ND", (CT, MT)),  # Williston: southern McKenzie County is Mountain
    (590, 599, "MT", (MT,)),
    (600, 629, "IL", (CT,)),
    (630, 658, "MO", (CT,)),
    (660, 676, "KS", (CT,)),
    (677, 678, "KS", (CT, MT)),  # Sherman, Wallace, Greeley, Hamilton counties are Mountain
    (679, 679, "KS", (CT,)),
    (680, 689, "NE", (CT,)),
    (690, 692, "NE", (CT, MT)),  # McCook, North Platte, Valentine: western counties Mountain
    (693, 693, "NE", (MT,)),  # Alliance, Scottsbluff
    (700, 714, "LA", (CT,)),
    (716, 729, "AR", (CT,)),
    (730, 732, "OK", (CT,)),
    (733, 733, "TX", (CT,)),  # Austin IRS
    (734, 749, "OK", (CT,)),
    (750, 797, "TX", (CT,)),
    (798, 798, "TX", (MT, CT)),  # El Paso County outskirts, Hudspeth, Culberson
    (799, 799, "TX", (MT,)),  # El Paso
    (800, 816, "CO", (MT,)),
    (820, 831, "WY", (MT,)),
    (832, 834, "ID", (BOISE,)),
    (835, 835, "ID", (BOISE, PT)),  # Lewiston, Idaho County: Salmon River boundary
    (836, 837, "ID", (BOISE,)),
    (838, 838, "ID", (PT,)),  # Panhandle
    (840, 847, "UT", (MT,)),
    (850, 859, "AZ", (AZ,)),
    (860, 860, "AZ", (AZ, MT)),  # Flagstaff area incl. Navajo Nation (observes DST)
    (861, 864, "AZ", (AZ,)),
    (865, 865, "AZ", (AZ, MT)),  # Window Rock, Chinle (Navajo Nation)
    (870, 884, "NM", (MT,)),
    (885, 885, "TX", (MT,)),  # El Paso
    (889, 897, "NV", (PT,)),
    (898, 898, "NV", (PT, MT)),  # Elko County: West Wendover, Jackpot keep Mountain time
    (900, 961, "CA", (PT,)),
    (962, 966, "AP", ()),  # military, Pacific
    (967, 968, "HI", (HI,)),
    (969, 969, "GU", (GU,)),
    (970, 978, "OR", (PT,)),
    (979, 979, "OR", (PT, BOISE)),  # Ontario, Malheur County (Mountain)
    (980, 994, "WA", (PT,)),
    (995, 999, "AK", (AK,)),
)

_ZIP5_OVERRIDES: Mapping[str, tuple[str, tuple[str, ...]]] = MappingProxyType(
    {
        "99546": ("AK", (ADAK,)),  # Adak
        "99547": ("AK", (ADAK,)),  # Atka
        "96799": ("AS", (AS,)),  # American Samoa
        "96950": ("MP", (MP,)),  # Saipan
        "96951": ("MP", (MP,)),  # Rota
        "96952": ("MP", (MP,)),  # Tinian
    }
)


def _build_zip3() -> tuple[Mapping[str, str], Mapping[str, tuple[str, ...]]]:
    states: dict[str, str] = {}
    zones: dict[str, tuple[str, ...]] = {}
    for first, last, state, tzs in _ZIP3_RANGES:
        for prefix in range(first, last + 1):
            key = f"{prefix:03d}"
            states[key] = state
            zones[key] = tzs
    return MappingProxyType(states), MappingProxyType(zones)


_ZIP3_STATE, _ZIP3_ZONES = _build_zip3()

STATE_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "AL": "Alabama",
        "AK": "Alaska",
        "AZ": "Arizona",
        "AR": "Arkansas",
        "CA": "California",
        "CO": "Colorado",
        "CT": "Connecticut",
        "DE": "Delaware",
        "DC": "District of Columbia",
        "FL": "Florida",
        "GA": "Georgia",
        "HI": "Hawaii",
        "ID": "Idaho",
        "IL": "Illinois",
        "IN": "Indiana",
        "IA": "Iowa",
        "KS": "Kansas",
        "KY": "Kentucky",
        "LA": "Louisiana",
        "ME": "Maine",
        "MD": "Maryland",
        "MA": "Massachusetts",
        "MI": "Michigan",
        "MN": "Minnesota",
        "MS": "Mississippi",
        "MO": "Missouri",
        "MT": "Montana",
        "NE": "Nebraska",
        "NV": "Nevada",
        "NH": "New Hampshire",
        "NJ": "New Jersey",
        "NM": "New Mexico",
        "NY": "New York",
        "NC": "North Carolina",
        "ND": "North Dakota",
        "OH": "Ohio",
        "OK": "Oklahoma",
        "OR": "Oregon",
        "PA": "Pennsylvania",
        "RI": "Rhode Island",
        "SC": "South Carolina",
        "SD": "South Dakota",
        "TN": "Tennessee",
        "TX": "Texas",
        "UT": "Utah",
        "VT": "Vermont",
        "VA": "Virginia",
        "WA": "Washington",
        "WV": "West Virginia",
        "WI": "Wisconsin",
        "WY": "Wyoming",
        "AS": "American Samoa",
        "GU": "Guam",
        "MP": "Northern Mariana Islands",
        "PR": "Puerto Rico",
        "VI": "U.S. Virgin Islands",
        "AA": "Armed Forces Americas",
        "AE": "Armed Forces Europe",
        "AP": "Armed Forces Pacific",
    }
)

#: Every USPS code accepted as a state (50 states, DC, territories, military).
STATE_CODES: frozenset[str] = frozenset(STATE_NAMES)

_NAME_TO_CODE: Mapping[str, str] = MappingProxyType(
    {name.casefold(): code for code, name in STATE_NAMES.items()}
)


def _build_state_zones() -> Mapping[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {code: [] for code in STATE_CODES}
    entries = [(s, z) for _, _, s, z in _ZIP3_RANGES] + list(_ZIP5_OVERRIDES.values())
    for state, tzs in entries:
        for tz in tzs:
            if tz not in out[state]:
                out[state].append(tz)
    return MappingProxyType({code: tuple(tzs) for code, tzs in out.items()})


#: Every zone a state (or territory) spans: the union of its ZIP3 zones.
STATE_ZONES: Mapping[str, tuple[str, ...]] = _build_state_zones()


def normalize_state(state: str | None) -> str | None:
    """USPS code for a code or full name (case-insensitive), or None when not recognised."""
    if state is None:
        return None
    s = state.strip()
    code = s.upper()
    if code in STATE_CODES:
        return code
    return _NAME_TO_CODE.get(" ".join(s.split()).casefold())


def normalize_zip(zip_code: str | None) -> str | None:
    """The five-digit ZIP of ``12345``, ``12345-6789`` or ``123456789``, else None.

    A four-digit value is taken as a ZIP that lost its leading zero in a spreadsheet
    (``2139`` → ``02139``), which is common in CSV imports from New England and New Jersey.
    """
    if zip_code is None:
        return None
    head = zip_code.strip().split("-", 1)[0].strip()
    if not head.isascii() or not head.isdigit():
        return None
    if len(head) == 4:
        return "0" + head
    if len(head) in (5, 9):
        return head[:5]
    return None


def zip_state(zip_code: str | None) -> str | None:
    """The state a ZIP belongs to (from its prefix), or None if unknown."""
    z = normalize_zip(zip_code)
    if z is None:
        return None
    if z in _ZIP5_OVERRIDES:
        return _ZIP5_OVERRIDES[z][0]
    return _ZIP3_STATE.get(z[:3])


def zip_zones(zip_code: str | None) -> tuple[str, ...]:
    """Every IANA zone the ZIP's prefix area may be in; ``()`` if unknown (or military)."""
    z = normalize_zip(zip_code)
    if z is None:
        return ()
    if z in _ZIP5_OVERRIDES:
        return _ZIP5_OVERRIDES[z][1]
    return _ZIP3_ZONES.get(z[:3], ())
