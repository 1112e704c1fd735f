"""How `flask pending` and `flask push` name an event waiting for MoEngage: its trackingId, what
it is (a delivery status, a reply, an opt-out/opt-in sync), its age, its tries and MoEngage's
last answer, so an operator can match it to MoEngage's side and to `flask trace`."""

import time

from connector import phone


def age(seconds):
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def what(event):
    """The event itself: `status delivered`, `reply (opt-out STOP)`, `OPTOUT sync of ...`."""
    payload = event.payload
    if event.target == "data_api":
        return (
            f"{payload.get('subscription')} sync of {phone.mask(payload.get('number'))} "
            "to the Data API"
        )
    if event.dedupe_key.startswith("inbound:"):
        change = {"OPTOUT": "opt-out", "OPTIN": "opt-in"}.get(payload.get("subscription"))
        return f"reply ({change} {payload.get('keyword')})" if change else "reply"
    return f"status {payload.get('status')}"


def describe(event, now=None, accepted=False):
    """`trackingId X, status delivered, 3 min old, 2 tries, MoEngage's last answer: ...`; with
    `accepted`, the event as it stood before the try that MoEngage just accepted."""
    now = time.time() if now is None else now
    tracking = f"trackingId {event.message_uuid}, " if event.message_uuid else ""
    head = f"{tracking}{what(event)}, {age(now - event.created_at)} old"
    if accepted:
        return f"{head}, accepted on try {event.attempts + 1}"
    tries = "1 try" if event.attempts == 1 else f"{event.attempts} tries"
    last = event.last_error or ("none, not tried yet" if not event.attempts else "none yet")
    return f"{head}, {tries}, MoEngage's last answer: {last}"
