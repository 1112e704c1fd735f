"""Phone numbers: normalise what MoEngage sends to Vonage's E.164-without-plus, and mask for logs."""

import re

_PUNCTUATION = re.compile(r"[\s\-.()+\[\]]")
_E164 = re.compile(r"[1-9][0-9]{6,14}")


def normalise(value):
    """Return the number Vonage expects (7-15 digits, no leading 0), or raise ValueError.

    MoEngage users' numbers come as "+44 7700-900000", "(0044) 7700 900000" or an integer.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError("`to` must be a string or an integer")  # noqa: TRY004 - callers answer 400
    if isinstance(value, int) and value <= 0 or str(value).lstrip().startswith("-"):
        raise ValueError("`to` must be a phone number, not a negative or zero number")
    number = _PUNCTUATION.sub("", str(value))
    number = number.removeprefix("00")
    if not _E164.fullmatch(number):
        raise ValueError(
            "`to` must be a phone number of 7 to 15 digits in international "
            "format (country code first, e.g. 447700900000)"
        )
    return number


def mask(number):
    """Keep the last 4 digits only, so logs can be matched to a user without exposing the number."""
    number = str(number or "")
    return "*" * max(len(number) - 4, 0) + number[-4:] if len(number) > 4 else "****"
