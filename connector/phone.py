"""Phone numbers: read what MoEngage sends as Vonage's E.164-without-plus, and mask for logs.

The reading is `phonenumbers`' (Google's libphonenumber): which lengths each country's numbers
can have, and each country's trunk prefix. Only "possible" (a length the country uses) is
asked, never "valid" (a range known to be allocated): a range opened after this copy of the
metadata was made must still be sent to. docs/setup.md (How numbers are read) has the table.
"""

import re

import phonenumbers
from phonenumbers import NumberParseException

_PUNCTUATION = re.compile(r"[\s\-.()\[\]/]")
_DIGITS = re.compile(r"[0-9]+")
_POSSIBLE = phonenumbers.ValidationResult.IS_POSSIBLE


class Unreadable(ValueError):
    """`to` is no number to send to; `why` says so without naming `to` (for the CLI)."""

    def __init__(self, why, message=None):
        super().__init__(message or f"`to` is not a phone number: {why}")
        self.why = why


def normalise(value: str | int, default_country: str = "") -> str:
    """Return the number Vonage expects (E.164 digits, no `+`), or raise ValueError saying why.

    `+` or `00` first: international. Otherwise national in `default_country` (ISO 3166
    alpha-2, with or without its trunk prefix), unless only the international reading is
    possible; with no `default_country`, international when possible for its country code.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError("`to` must be a string or an integer")  # noqa: TRY004 - callers answer 400
    if isinstance(value, int) and value <= 0 or str(value).lstrip().startswith("-"):
        raise ValueError("`to` must be a phone number, not a negative or zero number")
    text = _PUNCTUATION.sub("", str(value))
    international = text.startswith(("+", "00"))
    digits = text.removeprefix("+") if text.startswith("+") else text.removeprefix("00")
    if not _DIGITS.fullmatch(digits):
        raise Unreadable("it may hold only digits, spaces, `-`, `.`, `()` and a first `+`")
    if international:
        return _international(digits) or _refuse("no number of its country code is this long")
    if default_country:
        found = _national(digits, default_country) or _international(digits)
        return found or _refuse(
            f"neither a {default_country} number (DEFAULT_COUNTRY) nor an international one"
        )
    found = _international(digits)
    if found:
        return found
    if not possible_somewhere(digits):
        _refuse("no country has numbers of this length")
    national = (
        "has no `+` or `00` and is not a possible international number (country code "
        "first): it looks like a national number. Set DEFAULT_COUNTRY to the country national "
        "numbers belong to, or send it with its country code"
    )
    raise Unreadable(f"it {national}", f"`to` {national}")


def _refuse(why):
    raise Unreadable(why)


def _e164(parsed):
    # "Local only" (dialled without its area code) is no number to send to: not possible here.
    if parsed is None or phonenumbers.is_possible_number_with_reason(parsed) != _POSSIBLE:
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)[1:]


def _parse(text, region):
    try:
        return phonenumbers.parse(text, region)
    except NumberParseException:
        return None


def _international(digits):
    """`digits` read with their country code first, or None when not possible so."""
    return _e164(_parse("+" + digits, None)) if digits[:1] != "0" else None


def _national(digits, region):
    """`digits` read as a number of `region` (trunk prefix or not), or None when not possible.

    Digits that start with the region's own country code and are possible without it are
    that country's number written without `+` (`4915123456789` in DE): the library reads
    them so only when the longer reading is impossible, which some countries' long numbers
    are not. Either way the number stays in `region`'s country.
    """
    code = str(phonenumbers.country_code_for_region(region))
    if digits.startswith(code) and _e164(_parse(digits[len(code) :], region)):
        return _international(digits)
    return _e164(_parse(digits, region))


def possible_somewhere(digits: str) -> bool:
    """True when some country has national numbers like `digits` (only asked before a 400)."""
    return any(_national(digits, region) for region in phonenumbers.SUPPORTED_REGIONS)


def mask(number):
    """Keep the last 4 digits only, so logs can be matched to a user without exposing the number."""
    number = str(number or "")
    return "*" * max(len(number) - 4, 0) + number[-4:] if len(number) > 4 else "****"
