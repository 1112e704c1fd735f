"""Classify an inbound reply as an opt-out, an opt-in, or neither."""

import re
from collections.abc import Container

OPTOUT = "OPTOUT"
OPTIN = "OPTIN"
_NOT_WORD = re.compile(r"[^\w\s]|_", re.UNICODE)
_SPACES = re.compile(r"\s+")


def keyword(text: str | None) -> str:
    """The whole message, trimmed, without punctuation, uppercased ("Stop." -> "STOP").

    Vonage's own `sms.keyword` is only the first word, so "Stop sending me the blue one" would
    count as STOP; the whole text is used instead.
    """
    return _SPACES.sub(" ", _NOT_WORD.sub("", text or "")).strip().upper()


def classify(
    text: str | None, opt_out_keywords: Container[str], opt_in_keywords: Container[str]
) -> tuple[str, str | None]:
    """Return (keyword, OPTOUT | OPTIN | None)."""
    word = keyword(text)
    if word in opt_out_keywords:
        return word, OPTOUT
    if word in opt_in_keywords:
        return word, OPTIN
    return word, None
