"""Which country a number reaches, from `phonenumbers` (libphonenumber's metadata): its region
(ISO 3166 alpha-2) and English name, for trace, report and doctor. The library's metadata,
not a table of our own, so a new country code or a split of one is learnt with an upgrade.
"""

from collections import namedtuple

import phonenumbers
from phonenumbers import NumberParseException, geocoder
from phonenumbers.geodata.locale import LOCALE_DATA

Country = namedtuple("Country", "region name code")  # ("GB", "United Kingdom", 44)
UNKNOWN = "ZZ"  # the library's "no region"


def of(number: str) -> Country:
    """The Country of an E.164 number (digits, `+` or not); region "ZZ" when none is known."""
    digits = "".join(c for c in str(number or "") if c.isdigit())
    try:
        parsed = phonenumbers.parse("+" + digits)
    except NumberParseException:
        return Country(UNKNOWN, "", None)
    # A number of an allocated range names its own region (Canada, not the US, for +1 416...);
    # any other is taken as of its country code's main region (+44 7700 900... is GB).
    code = parsed.country_code or 0
    region = phonenumbers.region_code_for_number(parsed)
    region = region or phonenumbers.region_code_for_country_code(code)
    name = geocoder.country_name_for_number(parsed, "en") or name_of(region)
    return Country(region, name, code)


def key(number: str) -> str:
    """What warnings group a number's country by: its region ("IN"), or its calling code
    ("800") for a number of no one country (+800 freephone, +882 networks)."""
    country = of(number)
    return country.region if country.region.isalpha() else str(country.code or "")


def name_of(region: str) -> str:
    """The English name of a region code, e.g. "India" for "IN"; "" when unknown."""
    names = LOCALE_DATA.get(region) or {}
    name = names.get("en", "")
    return names.get(name[1:], "") if name.startswith("*") else name


def describe(key: str) -> str:
    """'+91 (India)' for a region code ("IN") or a calling code ("91", as warnings recorded
    before regions were kept); '+999' for a code the library does not know."""
    if key.isdigit() or not key:
        code = int(key or 0)
        region = phonenumbers.region_code_for_country_code(code)
    else:
        code, region = phonenumbers.country_code_for_region(key), key
    name = name_of(region)
    if not code:
        return "an unknown country"
    return f"+{code} ({name})" if name else f"+{code}"


def label(number: str) -> str:
    """'GB (United Kingdom)': the country a number reaches, as trace and report show it."""
    country = of(number)
    if country.name:
        return f"{country.region} ({country.name})"
    return f"+{country.code}" if country.code else "unknown"
