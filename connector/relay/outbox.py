"""Forward stored events to MoEngage: each posted by one worker at a time (a lease in the
database), marked sent only once MoEngage accepted it, and left pending otherwise, for
Vonage's redelivery, the periodic sweep or `flask push`.

A caller is told what really happened to each event: a webhook is answered 200 only when
MoEngage has every one of its events, never because another worker holds a lease on one.
"""

import logging
import math
import os
import threading
import time

from connector import phone
from connector.clients.moengage import (
    CONNECT_TIMEOUT,
    DATA_API_RETRIES,
    RETRY_PAUSE,
    NotAccepted,
    Shed,
)
from connector.diagnostics import observe

log = logging.getLogger(__name__)

SENT = "sent"  # forwarded by this call
DONE = "done"  # MoEngage already had it (another worker forwarded it meanwhile)
# Dropped, never sent: a final status MoEngage has made it moot, or (a subscription sync) the
# number's state changed since, and MoEngage gets the newer state instead.
SUPERSEDED = "superseded"
BUSY = "busy"  # another worker holds its lease (forwarding it now, or died doing so)
FAILED = "failed"  # MoEngage did not accept it; still pending
SHED = "shed"  # not tried: MoEngage is not answering (moengage_gate.py); still pending
DELIVERED = (SENT, DONE, SUPERSEDED)

LEASE_MARGIN = 1.0
SWEEP_TASK = "outbox-sweep"
SWEEP_BATCH = 200
SWEEP_BUDGET = 300.0  # seconds one sweep may run; others join it once the next turn is due
SWEEP_GIVE_UP = 3  # failures in a row that end a sweep (and an operator's push)
PUSH_PAGE = 500  # events an operator's push reads at a time


def lease_seconds(settings):
    """How long a lease holds, per target: the longest one forward can take, plus a margin.
    Short, so an event whose worker died mid-forward is free again within seconds."""
    one = CONNECT_TIMEOUT + settings.moengage_timeout
    return {
        "tracking": one + LEASE_MARGIN,
        "data_api": (1 + DATA_API_RETRIES) * one + DATA_API_RETRIES * RETRY_PAUSE + LEASE_MARGIN,
    }


def forward(services, event_id, wait=0.0):
    """Forward one event; its outcome (SENT, DONE, BUSY or FAILED).

    An event leased by another worker is waited for up to `wait` seconds: the holder may
    finish it (DONE), fail it (then this call tries), or have died (its lease lapses, and
    this call takes it over). So is a final status whose message's `sent` is being posted:
    MoEngage must have that one first.
    """
    store, clock = services.store, services.clock
    deadline = time.monotonic() + wait
    pause = 0.02
    while True:
        lease = store.lease_event(event_id, clock.now(), lease_seconds(services.settings))
        if lease.outcome == "leased":
            return post(services, lease)
        if lease.outcome == "superseded":
            return SUPERSEDED
        if lease.outcome == "blocked":
            if time.monotonic() >= deadline:
                return BUSY
            time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
            pause = min(pause * 2, 0.25)
            continue
        if lease.outcome != "busy":
            return DONE
        # Waiting holds a thread too: not while MoEngage is known not to answer.
        if services.moengage.gate.circuit_open():
            return BUSY
        if not _holder_finished(store, clock, event_id, deadline):
            return BUSY


def _holder_finished(store, clock, event_id, deadline):
    """Poll until the event is settled or its lease released or lapsed; False at `deadline`."""
    pause = 0.02
    while time.monotonic() < deadline:
        time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
        pause = min(pause * 2, 0.25)
        lease = store.event_lease(event_id)
        if lease is None or lease.state != "pending":
            return True
        if lease.lease_until is None or lease.lease_until <= clock.now():
            return True
    return False


def post(services, lease):
    """Post the event `lease` holds: SENT, or FAILED or SHED (it stays pending)."""
    event = lease.event
    started = time.monotonic()
    try:
        status = services.moengage.deliver(event)
    except Shed as exc:  # logged by the gate, once, not once per event
        observe.forwarded(services, event, started, error=str(exc), shed=True)
        services.store.event_failed(event.id, str(exc), lease.until)
        return SHED
    except NotAccepted as exc:
        observe.forwarded(services, event, started, error=str(exc))
        services.store.event_failed(event.id, str(exc), lease.until)
        log.warning(
            "forward %s failed (attempt %d): %s; kept pending",
            _name(event),
            event.attempts + 1,
            exc,
        )
        return FAILED
    observe.forwarded(services, event, started, status=status)
    services.store.event_sent(event.id, services.clock.now())
    log.info("forward %s accepted by MoEngage (%s)", _name(event), status)
    return SENT


def push(services, event_ids, wait=0.0):
    """Forward the given events; {event_id: outcome}."""
    return {event_id: forward(services, event_id, wait) for event_id in event_ids}


def push_pending(services, each=None, deadline=math.inf):
    """Forward every event pending now, oldest first, as an operator asks (`flask push`, the
    console's "Push now"); events that come meanwhile are the sweep's. Stops after
    SWEEP_GIVE_UP failures in a row (MoEngage is still down, as the sweep does) or at
    `deadline` (monotonic). `each(event, outcome)` is called as each outcome is known.

    Returns ({outcome: count}, gave_up)."""
    counts = dict.fromkeys((SENT, SUPERSEDED, DONE, BUSY, FAILED, SHED), 0)
    failed_in_a_row = 0
    for event in pending_at_start(services.store):
        if time.monotonic() >= deadline:
            break
        outcome = forward(services, event.id)
        counts[outcome] += 1
        if each is not None:
            each(event, outcome)
        failed_in_a_row = failed_in_a_row + 1 if outcome in (FAILED, SHED) else 0
        if failed_in_a_row >= SWEEP_GIVE_UP:
            return counts, True
    return counts, False


def pending_at_start(store):
    """The events pending now, oldest first, read PUSH_PAGE at a time."""
    upto, after = store.last_event_id(), 0
    while page := store.pending_listing(PUSH_PAGE, after=after, upto=upto):
        yield from page
        after = page[-1].id


def sweep(services, budget=SWEEP_BUDGET):
    """Forward pending events no live lease holds, least tried first, batch after batch while
    MoEngage accepts some; returns how many were sent. It stops after a batch where MoEngage
    accepted none (only events it refuses are left) or SWEEP_GIVE_UP failures in a row
    (MoEngage is still down: the next turn tries again)."""
    deadline = time.monotonic() + budget
    sent = 0
    while time.monotonic() < deadline:
        accepted = failed_in_a_row = 0
        for event_id in services.store.leasable_events(services.clock.now(), SWEEP_BATCH):
            outcome = forward(services, event_id)
            accepted += outcome == SENT
            failed_in_a_row = failed_in_a_row + 1 if outcome in (FAILED, SHED) else 0
            if failed_in_a_row >= SWEEP_GIVE_UP or time.monotonic() >= deadline:
                return sent + accepted
        sent += accepted
        if not accepted:
            break
    return sent


class Sweeper:
    """Runs `sweep` every `interval` seconds while requests arrive, in a thread of its own, so
    no request waits for it. The turn is taken in the database, so one worker of all sweeps
    each time; a request itself only compares two clocks. It picks up what a failed forward
    left pending and any event whose lease lapsed with a worker that died."""

    def __init__(self, interval):
        self.interval = interval
        self._lock = threading.Lock()
        self._reset()

    def _reset(self):
        self._pid = os.getpid()
        self._running = False
        # A worker's first sweep comes one interval after it starts.
        self._next_check = time.monotonic() + self.interval

    def poke(self, services):
        """Start a sweep in the background if this worker may be due one."""
        if self.interval <= 0:
            return
        if self._pid != os.getpid():  # forked: the parent's thread did not come along
            self._reset()
        if self._running or time.monotonic() < self._next_check:
            return
        with self._lock:
            if self._running:
                return
            self._running = True
        self._thread = threading.Thread(
            target=self._run, args=(services,), name="outbox-sweep", daemon=True
        )
        self._thread.start()

    def wait(self, timeout=10.0):
        """Until the sweep started last is over (a clean shutdown, tests)."""
        thread = getattr(self, "_thread", None)
        if thread is not None and self._pid == os.getpid():
            thread.join(timeout)

    def _run(self, services):
        store = services.store
        try:
            now = services.clock.now()  # the turn is kept on the database's clock
            if store.claim_turn(SWEEP_TASK, now, self.interval):
                self._next_check = time.monotonic() + self.interval
                sent = sweep(services)
                if sent:
                    log.info("sweep forwarded %d pending events", sent)
            else:
                # Never more than an interval away: a turn due later is a clock step back,
                # and the next claim takes it.
                wait = min(store.next_turn(SWEEP_TASK) - now, self.interval)
                self._next_check = time.monotonic() + wait
        except Exception:  # a sweep that fails is logged and tried next turn
            log.exception("sweep of pending events failed")
            self._next_check = time.monotonic() + self.interval
        finally:
            self._running = False


def _name(event):
    if event.target == "data_api":
        return (
            f"{event.payload['subscription']} of "
            f"{phone.mask(event.payload.get('number'))} to the Data API"
        )
    return event.dedupe_key
