"""MoEngage's send request parsed and checked, apart from the send so sending.py stays short."""

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connector import phone
from connector.errors import Failure

MAX_TEXT = 3200
MAX_CLIENT_REF = 100


@dataclass(frozen=True)
class SendRequest:
    to: str
    text: str
    sender: str
    client_ref: str | None = None
    campaign_id: str | None = None
    customer_id: str | None = None
    template_id: str | None = None
    entity_id: str | None = None


def parse_credentials(header: str | None) -> tuple[str, str]:
    """(api_key, api_secret) from `Authorization: Custom key:secret`, split at the first colon."""
    scheme, _, value = (header or "").strip().partition(" ")
    key, colon, secret = value.strip().partition(":")
    if scheme.lower() != "custom" or not colon or not key or not secret:
        raise Failure(401, "Authorization must be `Custom <Vonage API key>:<Vonage API secret>`")
    if not (key + secret).isascii() or not (key + secret).isprintable() or len(value) > 512:
        raise Failure(401, "the Vonage API key and secret must be printable ASCII")
    return key, secret


def _optional(body: Mapping[str, Any], name: str, limit: int | None = None) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise Failure(400, f"`{name}` must be a string")
    value = str(value).strip()
    if limit and len(value) > limit:
        raise Failure(400, f"`{name}` must be at most {limit} characters")
    return value or None


def parse_send(
    body: Mapping[str, Any], default_sender: str | None, default_country: str = ""
) -> SendRequest:
    """Validate MoEngage's body (JSON or form fields); raise Failure(400) naming what is wrong.
    A `to` without its country code is of `default_country` (DEFAULT_COUNTRY)."""
    if "to" not in body or body["to"] in (None, ""):
        raise Failure(400, "`to` is required")
    try:
        to = phone.normalise(body["to"], default_country)
    except ValueError as exc:
        raise Failure(400, str(exc)) from None
    text = body.get("text")
    if not isinstance(text, str) or not text:
        raise Failure(400, "`text` is required and must be a non-empty string")
    if len(text) > MAX_TEXT:
        raise Failure(400, f"`text` is {len(text)} characters; Vonage takes at most {MAX_TEXT}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Failure(400, "`text` is not valid Unicode (it holds a lone surrogate)") from None
    sender = _optional(body, "from", 50) or default_sender
    if not sender:
        raise Failure(400, "no sender: give `from` in the body or set VONAGE_FROM")
    return SendRequest(
        to=to,
        text=text,
        sender=sender,
        client_ref=_optional(body, "client_ref", MAX_CLIENT_REF),
        campaign_id=_optional(body, "campaign_id", 500),
        customer_id=_optional(body, "customer_id", 500),
        template_id=_optional(body, "template_id", 100),
        entity_id=_optional(body, "entity_id", 100),
    )


def idempotency_key(
    pair: str, req: SendRequest, dedupe_seconds: float
) -> tuple[str, float | None] | tuple[None, None]:
    """(key, window): a client_ref is a key for good; otherwise an identical send (sender,
    recipient, text, campaign) is one inside the dedupe window. Both hold only for the same
    API key and secret (`pair`, their keyed hash): a caller with the right key and a wrong
    secret neither replays nor joins another's send. Hashed: the store holds neither."""
    parts: list[str | None]
    window: float | None
    if req.client_ref:
        parts, window = ["ref", pair, req.client_ref], None
    elif dedupe_seconds > 0:
        parts, window = (
            ["dup", pair, req.sender, req.to, req.text, req.campaign_id],
            dedupe_seconds,
        )
    else:
        return None, None
    digest = hashlib.sha256(json.dumps(parts).encode()).hexdigest()
    return f"{parts[0]}2:{digest}", window  # "2": keyed by the pair (credentials.legacy_*)
