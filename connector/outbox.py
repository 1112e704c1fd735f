"""Forward stored events to MoEngage: each posted by one worker at a time, marked sent only
once MoEngage accepted it, and left pending (for a redelivery or `flask push`) otherwise."""

import logging
import time

from . import phone
from .moengage import NotAccepted

log = logging.getLogger(__name__)
LEASE_SECONDS = 30.0  # longer than one forward can take; a crashed worker's lease lapses


def push(services, event_ids):
    """Forward the given events; True when none is left failed (sent, superseded, or being
    sent by another worker right now)."""
    store, client = services.store, services.moengage
    delivered = True
    for event_id in event_ids:
        event = store.lease_event(event_id, time.time(), LEASE_SECONDS)
        if event is None:
            continue
        try:
            status = client.deliver(event)
        except NotAccepted as exc:
            store.event_failed(event.id, str(exc))
            log.warning(
                "forward %s failed (attempt %d): %s; kept pending",
                _name(event),
                event.attempts + 1,
                exc,
            )
            delivered = False
            continue
        store.event_sent(event.id, time.time())
        log.info("forward %s accepted by MoEngage (%s)", _name(event), status)
    return delivered


def push_pending(services, limit=1000):
    """Forward every pending event once, oldest first; return (sent ids, still pending ids)."""
    sent, left = [], []
    for event_id, *_ in services.store.pending_events(limit):
        (sent if push(services, [event_id]) else left).append(event_id)
    return sent, left


def _name(event):
    if event.target == "data_api":
        return (
            f"{event.payload['subscription']} of "
            f"{phone.mask(event.payload.get('number'))} to the Data API"
        )
    return event.dedupe_key
