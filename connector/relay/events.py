"""Vonage webhook bodies -> the events MoEngage is sent. Pure functions and tables.

Vonage posts Messages API webhooks in the version the application's "Webhook version" names:
v1 (flat: `to`, `from` and `text` strings, `error: {title, detail}`) or v0.1 (`to`/`from`
objects, `message.content.text`, `error: {code, reason}`). `read_status` and `read_inbound` give
either in v1's shape, so both become the same events. A signed webhook of a kind that is not an
SMS text (another channel, media) raises `Untranslated`: acknowledged and counted, since a 4xx
is never retried and the body may be the only copy of a reply.
"""

import logging
from datetime import UTC, datetime

from connector.errors import Failure

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


class Untranslated(Exception):
    """A signed Vonage webhook the connector does not forward; `form` says what it was."""

    def __init__(self, form):
        super().__init__(form)
        self.form = form


def read_status(body):
    """A status webhook in v1's shape, whichever version Vonage posted; Failure(400) when it
    names no message_uuid and status."""
    body = require(body, "message_uuid", "status")
    to, sender, error = body.get("to"), body.get("from"), body.get("error")
    old_error = isinstance(error, dict) and ("code" in error or "reason" in error)
    if not (isinstance(to, dict) or isinstance(sender, dict) or old_error):
        return body
    v1 = {**body, "to": _address(to), "from": _address(sender), "webhook_version": "v0.1"}
    if isinstance(to, dict) and to.get("type"):
        v1["channel"] = to["type"]
    if old_error:
        code, reason = error.get("code"), error.get("reason")
        v1["error"] = {"title": None if code is None else str(code), "detail": reason}
    return v1


def read_inbound(body):
    """An inbound SMS in v1's shape (`from`, `to`, `text` strings); Untranslated for another
    channel's reply or one without text, Failure(400) for a body that is no inbound webhook."""
    body = require(body, "message_uuid")
    if isinstance(body.get("from"), dict):
        body = _inbound_v01(body)
    else:
        channel, kind = body.get("channel", "sms"), body.get("message_type", "text")
        if channel != "sms" or kind != "text":
            raise Untranslated(f"v1 {channel} {kind} inbound")
    body = require(body, "message_uuid", "from")
    if not isinstance(body.get("text"), str):
        raise Failure(400, "missing or not a string: text")
    return body


def _inbound_v01(body):
    sender, message = body["from"], body.get("message")
    channel = sender.get("type")
    if channel != "sms":
        raise Untranslated(f"v0.1 {channel} inbound")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, dict) or content.get("type") != "text":
        kind = content.get("type") if isinstance(content, dict) else "no"
        raise Untranslated(f"v0.1 sms inbound with {kind} content")
    v1 = {key: value for key, value in body.items() if key not in ("from", "to", "message")}
    v1.update(
        channel="sms",
        webhook_version="v0.1",
        to=_address(body.get("to")),
        text=content.get("text"),
        sms=message.get("sms"),
    )
    if isinstance(sender.get("number"), str):
        v1["from"] = sender["number"]
    return v1


def _address(value):
    """v0.1's `{"type", "number"}` (or `id`, for chat channels) as v1's plain string."""
    if isinstance(value, dict):
        return value.get("number") or value.get("id")
    return value


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
