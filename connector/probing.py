"""What counts as MoEngage's or Vonage's own traffic, for the configuration warnings, and what
as probing: anyone can forge a Host header or send a garbage Authorization header, and such
evidence must never be advised as a fix (doctor's `probing` counts it apart)."""

import json
import re

from flask import g, request

from .errors import Failure

PROBING = 9  # evidence of callers without credentials: counted apart, never advice
VONAGE_KEY = re.compile(r"[0-9A-Za-z]{8}")


def check_host(ctx, response, expected):
    """A request for another host than PUBLIC_URL's: a configuration fault only when it is
    MoEngage's or Vonage's own (a webhook whose signature held, a send Vonage's credentials
    carried); anyone can forge a Host header, so anything else is counted as probing, and
    the host it named is never kept."""
    if _genuine(response):
        ctx.evidence.seen(8, "host", host=request.host[:100], expected=expected)
    else:
        ctx.evidence.seen(PROBING, "probe:host")


def _genuine(response):
    if request.endpoint == "dispatch.dispatch":  # answered past the credentials' check
        return response.status_code < 400 or response.status_code == 422
    return bool(g.get("signed"))


def team_key(ctx):
    """Whether this request's API key could be the team's: one of VONAGE_API_KEYS when set,
    else shaped as Vonage issues them (8 letters or digits)."""
    from .sending import parse_credentials

    try:
        key, _ = parse_credentials(request.headers.get("Authorization"))
    except Failure:
        return False
    if ctx.settings.vonage_api_keys:
        return key in ctx.settings.vonage_api_keys
    return bool(VONAGE_KEY.fullmatch(key))


def looks_like_vonage(raw):
    """A webhook body as Vonage posts them: a JSON object carrying a message_uuid."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return isinstance(body, dict) and isinstance(body.get("message_uuid"), str)
