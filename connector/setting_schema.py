"""One setting's declaration: its variable, kind, default, allowed values, secrecy and help.

connector/settings.py lists every setting once; the loader, gunicorn.conf.py, `.env.example` and
docs/settings.md's table all follow from that list (connector/settings_docs.py).
A value outside what is allowed stops the start with the variable and what it allows, never
a secret's value: a typo must not become a silent fallback (a negative rate read as "no limit").
"""

import math
from dataclasses import dataclass
from urllib.parse import urlsplit

import phonenumbers

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
POSTGRES = " postgres:// or postgresql://"


class SettingError(ValueError):
    """Settings that stop the start, one line each, naming the variable and what it allows."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(f"configuration: {p}" for p in self.problems))


@dataclass(frozen=True)
class Setting:
    env: str
    field: str
    kind: str  # a key of PARSERS
    default: str  # as it would be written in the environment ("" = none)
    help: str
    group: str
    secret: bool = False
    required: bool = False  # empty starts, but /health answers 503 naming it
    minimum: float | None = None
    above: bool = False  # `minimum` itself is not allowed
    maximum: float | None = None
    adds: str = ""  # url: the path the connector appends, so the value must not end with it
    zero: str = ""  # what 0 means, where it is allowed
    unit: str = ""
    none: str = "none"  # the default as the docs say it, when there is no literal one
    example: str = ""  # a valid value other than the default

    def read(self, raw: str | None) -> object:
        """The typed value of `raw` (the default when empty); ValueError names what is allowed."""
        text = raw.strip() if isinstance(raw, str) else ""
        try:
            return PARSERS[self.kind](self, text or self.default)
        except (ValueError, TypeError):
            # The store said this of DATABASE_URL before it was declared; operators may grep it.
            must = "start with" + POSTGRES if self.kind == "postgres" else f"be {self.allowed()}"
            shown = " (its value, a secret, is not shown)" if self.secret else f", not {text!r}"
            raise ValueError(f"{self.env} must {must}{shown}") from None

    def allowed(self) -> str:
        """What the setting accepts, in words (error messages and the docs' table)."""
        if self.kind in ("number", "integer"):
            return self._range()
        return ALLOWED[self.kind](self)

    def _range(self):
        what = "a number" if self.kind == "number" else "a whole number"
        low = self.minimum
        if self.maximum is not None:
            words = f"{what} {'above' if self.above else 'from'} {low:g}"
            words += f" {'and at most' if self.above else 'to'} {self.maximum:g}"
        elif self.above:
            words = f"{what} above {low:g}"
        else:
            words = f"{what} of at least {low:g}"
        if self.unit:
            words += f" ({self.unit})"
        if self.zero:
            words += f"; 0 = {self.zero}"
        return words


def _number(setting, text):
    value = float(text) if setting.kind == "number" else int(text)
    if not math.isfinite(value):
        raise ValueError(text)
    low = setting.minimum
    if low is not None and (value < low or (setting.above and value == low)):
        raise ValueError(text)
    if setting.maximum is not None and value > setting.maximum:
        raise ValueError(text)
    return value


def _url(setting, text):
    if not text:
        return ""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        raise ValueError(text)
    if setting.adds and (parts.query or _ends_with_part_of(parts.path, setting.adds)):
        raise ValueError(text)
    return text.rstrip("/") if setting.adds else text


def _ends_with_part_of(path, adds):
    """Whether `path` already ends with the start of what the connector appends (`/v1` or
    `/v1/messages` of `/v1/messages`): that URL would be doubled."""
    path = path.rstrip("/").lower()
    segments = adds.strip("/").split("/")
    return any(path.endswith("/" + "/".join(segments[:n])) for n in range(1, len(segments) + 1))


def _postgres(setting, text):
    if text and urlsplit(text).scheme not in ("postgres", "postgresql"):
        raise ValueError(text)
    return text


def _switch(setting, text):
    if text not in ("0", "1"):
        raise ValueError(text)
    return text == "1"


def _choice(setting, text):
    if text.upper() not in LOG_LEVELS:
        raise ValueError(text)
    return text.upper()


def _region(setting, text):
    if text and text.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(text)
    return text.upper()


def _password(setting, text):
    if text and len(text) < 12:
        raise ValueError(text)
    return text


PARSERS = {
    "text": lambda setting, text: text,
    "list": lambda setting, text: tuple(s.strip() for s in text.split(",") if s.strip()),
    "words": lambda setting, text: tuple(w.strip().upper() for w in text.split(",") if w.strip()),
    "number": _number,
    "integer": _number,
    "url": _url,
    "postgres": _postgres,
    "switch": _switch,
    "choice": _choice,
    "region": _region,
    "password": _password,
}

ALLOWED = {
    "text": lambda s: "any text",
    "list": lambda s: "a comma-separated list",
    "words": lambda s: "comma-separated words (any case)",
    "url": lambda s: (
        "an http:// or https:// URL with a host"
        + (
            f", without the path `{s.adds}` the connector adds itself, nor a query"
            if s.adds
            else ""
        )
    ),
    "postgres": lambda s: "a URL starting with" + POSTGRES,
    "switch": lambda s: "0 or 1",
    "choice": lambda s: ", ".join(LOG_LEVELS) + " (any case)",
    "region": lambda s: (
        "an ISO 3166 alpha-2 region the `phonenumbers` library knows "
        "(e.g. GB, US, IN; any case), or empty"
    ),
    "password": lambda s: "empty (off) or at least 12 characters",
}
