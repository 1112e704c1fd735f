"""Vonage webhook bodies -> the events MoEngage is sent. Pure functions and tables."""

import logging
from datetime import UTC, datetime

from .errors import Failure

log = logging.getLogger(__name__)

# Vonage v1 SMS status -> MoEngage delivery status. Anything else is acknowledged, not sent.
STATUS_MAP = {
    "submitted": "sent",
    "delivered": "delivered",
    "rejected": "failed",
    "undeliverable": "failed",
    "failed": "failed",
}
FINAL = {"delivered", "failed"}


MAX_ID = 200  # a message_uuid is 36 characters, a number 15; a longer one is not Vonage's


def require(body, *names):
    """The body as a JSON object whose `names` are non-empty strings of at most MAX_ID
    characters (they are stored and indexed), or Failure(400)."""
    if not isinstance(body, dict):
        raise Failure(400, "the body must be a JSON object")
    missing = [n for n in names if not isinstance(body.get(n), str) or not body[n]]
    if missing:
        raise Failure(400, f"missing or not a string: {', '.join(missing)}")
    long = [n for n in names if len(body[n]) > MAX_ID]
    if long:
        raise Failure(400, f"longer than {MAX_ID} characters: {', '.join(long)}")
    return body


def parse_timestamp(value):
    """Vonage's ISO 8601 timestamp as epoch seconds, or None if absent or unreadable."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def delivery_event(body, status):
    """The JSON posted to MoEngage's delivery tracking URL for one status."""
    event = {"trackingId": body["message_uuid"], "status": status}
    if status == "failed":
        event["error"] = failure_reason(body)
    event["timestamp"] = body.get("timestamp")
    return event


def failure_reason(body):
    """'<code> <detail>' from Vonage's error object (title is the code, e.g. 1250); the raw
    Vonage status when it sent none, so MoEngage's failure breakdown is never empty."""
    error = body.get("error")
    if isinstance(error, dict):
        parts = [str(error[k]).strip() for k in ("title", "detail") if error.get(k)]
        if parts:
            return " ".join(parts)
    return str(body.get("status"))


def inbound_event(body, keyword, subscription):
    """The JSON posted to MoEngage's delivery tracking URL for one inbound reply."""
    return {
        "type": "inbound",
        "messageId": body["message_uuid"],
        "from": body["from"],
        "to": body.get("to"),
        "text": body["text"],
        "keyword": keyword,
        "subscription": subscription,
        "timestamp": body.get("timestamp"),
    }
