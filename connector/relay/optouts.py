"""Opt-outs as an operator handles them: whether a number's state has reached MoEngage, and
opting a number back in by hand (`flask optin` and the console's Opt-outs page)."""

import time
from typing import TYPE_CHECKING, NamedTuple

from connector.diagnostics import trail
from connector.relay import outbox
from connector.store import OPTIN, OPTOUT

if TYPE_CHECKING:
    from connector.relay.services import Services
    from connector.settings import Settings


def sync_state(settings: "Settings", waiting: bool, synced: bool) -> str:
    """Where a number's opt-out or opt-in stands with MoEngage's Data API, and why."""
    if waiting:
        return "queued for MoEngage, not accepted yet (`push` retries it)"
    if synced:
        return "synced to MoEngage"
    if not settings.data_api_enabled:
        return (
            "not synced: the MoEngage Data API is not configured "
            "(MOENGAGE_WORKSPACE_ID, MOENGAGE_DATA_API_KEY)"
        )
    return "not synced: no customer_id known yet (synced when a send names one)"


class OptIn(NamedTuple):
    """What `opt_in` did. `outcome`: "not opted out", "later stop" (its STOP carries a Vonage
    timestamp later than this machine's clock, which wins without `force`), "newer stop" (a STOP
    arrived meanwhile) or "opted in"; then `sync`: "off" (no Data API), "no customer" (synced
    once a send names one), "synced", "superseded" (a STOP came in meanwhile: MoEngage gets
    that) or "pending"."""

    outcome: str
    stop_ts: float | None
    now: float
    sync: str | None = None


def opt_in(services: "Services", number: str, force: bool = False) -> OptIn:
    """Opt a number back in by hand, as `flask optin` and the console do, and sync it to
    MoEngage. Kept in the number's history as made by hand."""
    store, settings = services.store, services.settings
    stored = store.subscription(number)
    now = time.time()
    if stored is None or stored.state != OPTOUT:
        return OptIn("not opted out", None, now)
    stamp = now
    if stored.event_ts > now:  # a later Vonage timestamp wins: only `force` outranks it
        if not force:
            return OptIn("later stop", stored.event_ts, now)
        stamp = stored.event_ts  # an equal timestamp: the later arrival, this one, wins
    change = store.set_subscription(number, OPTIN, stamp, now, settings.data_api_enabled)
    if not change.applied:
        return OptIn("newer stop", stored.event_ts, now)
    trail.note("subscription", None, None, number, state=OPTIN, by="hand")
    if not settings.data_api_enabled:
        return OptIn("opted in", stored.event_ts, now, "off")
    if not change.event_ids:
        return OptIn("opted in", stored.event_ts, now, "no customer")
    outcomes = set(outbox.push(services, change.event_ids).values())
    if outcomes <= {outbox.SENT, outbox.DONE}:
        sync = "synced"
    elif outbox.SUPERSEDED in outcomes:
        sync = "superseded"
    else:
        sync = "pending"
    return OptIn("opted in", stored.event_ts, now, sync)
