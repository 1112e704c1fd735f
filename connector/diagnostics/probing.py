"""What counts as MoEngage's or Vonage's own traffic, for the configuration warnings, and what
as probing: anyone can forge a Host header or send a garbage Authorization header, and such
evidence must never be advised as a fix (doctor's `probing` counts it apart)."""

import json
import re

PROBING = 9  # evidence of callers without credentials: counted apart, never advice
VONAGE_KEY = re.compile(r"[0-9A-Za-z]{8}")


def team_key(settings, key):
    """Whether an API key could be the team's: one of VONAGE_API_KEYS when set, else shaped as
    Vonage issues them (8 letters or digits)."""
    if not key:
        return False
    if settings.vonage_api_keys:
        return key in settings.vonage_api_keys
    return bool(VONAGE_KEY.fullmatch(key))


def looks_like_vonage(raw):
    """A webhook body as Vonage posts them: a JSON object carrying a message_uuid."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return isinstance(body, dict) and isinstance(body.get("message_uuid"), str)
