"""Which country a number reaches, from `phonenumbers` (libphonenumber's metadata): its region
(ISO 3166 alpha-2), named in English by `pycountry` (ISO 3166's own list), for trace, report and
doctor. Libraries' data, not a table of our own, so a new country code or a split of one is
learnt with an upgrade. The names do not come from libphonenumber's geocoder: its data holds
every locale's names at once, which tripled a worker's memory (bench/RESULTS.md).
"""

from collections import namedtuple

import phonenumbers
import pycountry
from phonenumbers import NumberParseException

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
    name = name_of(region)
    return Country(region, name, code)


def key(number: str) -> str:
    """What warnings group a number's country by: its region ("IN"), or its calling code
    ("800") for a number of no one country (+800 freephone, +882 networks)."""
    country = of(number)
    return country.region if country.region.isalpha() else str(country.code or "")


def name_of(region: str) -> str:
    """The English name of a region code, e.g. "India" for "IN"; "" when unknown. The common
    name where ISO 3166 has one ("South Korea", not "Korea, Republic of")."""
    country = pycountry.countries.get(alpha_2=region) if len(region) == 2 else None
    if country is None:
        return ""
    return getattr(country, "common_name", None) or country.name


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
