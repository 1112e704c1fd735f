"""Retention: what is deleted once it is older than RETENTION_DAYS, and what never is.

Deleted: sends (the remembered answer to a client_ref or an identical send) and events MoEngage
already has (sent, or superseded by a final status it has). Never deleted: pending events,
whatever their age (MoEngage does not have them yet), subscriptions (opt-out/opt-in state) and
contacts (number -> customer_id). Rows go in small batches, each its own short transaction, so
a prune never holds the write lock for long; the WHERE of each DELETE repeats the conditions on
the row itself, so a row that changed since it was picked (a send claimed again, an event
requeued) is left alone.
"""

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, NamedTuple


class Pruned(NamedTuple):
    sends: int
    events: int


class Kept(NamedTuple):
    """The rows retention never deletes."""

    pending_events: int
    subscriptions: int
    contacts: int


# A send still `pending` after this long died with its worker (a live one is answered within
# VONAGE_TIMEOUT): it can go like any other once it is also older than the retention.
DEAD_SEND_SECONDS = 3600.0
TALLY_DAYS = 31

_SENDS = "started_at < ? AND (state != 'pending' OR started_at < ?)"
_EVENTS = "created_at < ? AND state != 'pending' AND COALESCE(sent_at, created_at) < ?"


class Retention:
    """Mixed into Store: uses its `transaction()` and `query()`."""

    def transaction(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        raise NotImplementedError

    def prunable(self, cutoff: float, now: float) -> Pruned:
        """Pruned(sends, events): how many rows `prune(cutoff, ...)` would delete now."""
        sends = self.query(
            f"SELECT COUNT(*) FROM sends WHERE {_SENDS}", self._sends_args(cutoff, now)
        )
        events = self.query(f"SELECT COUNT(*) FROM events WHERE {_EVENTS}", (cutoff, cutoff))
        return Pruned(sends[0][0], events[0][0])

    def prune_batch(self, cutoff: float, now: float, limit: int) -> Pruned:
        """Delete up to `limit` sends and `limit` events older than `cutoff`, oldest first, in
        two short transactions; returns Pruned(sends, events) deleted."""
        args = self._sends_args(cutoff, now)
        with self.transaction() as tx:
            sends = tx.execute(
                f"DELETE FROM sends WHERE idem_key IN (SELECT idem_key FROM sends WHERE {_SENDS}"
                f" ORDER BY started_at LIMIT ?) AND {_SENDS}",
                (*args, limit, *args),
            ).rowcount
        with self.transaction() as tx:
            events = tx.execute(
                f"DELETE FROM events WHERE id IN (SELECT id FROM events WHERE {_EVENTS}"
                f" ORDER BY created_at LIMIT ?) AND {_EVENTS}",
                (cutoff, cutoff, limit, cutoff, cutoff),
            ).rowcount
        return Pruned(sends, events)

    def prune_trail(self, cutoff: float, limit: int) -> int:
        """Delete up to `limit` trace steps (`trail`) older than `cutoff`, and warnings' evidence
        last seen before it; returns how many trace steps went. A trace covers the retention
        period, as the sends and events it shows do."""
        with self.transaction() as tx:
            steps = tx.execute(
                "DELETE FROM trail WHERE id IN (SELECT id FROM trail WHERE at < ?"
                " ORDER BY at LIMIT ?)",
                (cutoff, limit),
            ).rowcount
            tx.execute("DELETE FROM evidence WHERE last_seen < ?", (cutoff,))
            # The console's hourly counters: kept for its 30-day Overview whatever the retention.
            oldest = min(cutoff, time.time() - TALLY_DAYS * 86400)
            tx.execute("DELETE FROM console_tally WHERE bucket < ?", (int(oldest // 3600),))
        return steps

    def kept(self) -> Kept:
        """How many rows retention never deletes there are: pending events, subscriptions,
        contacts."""
        return Kept(
            *(
                self.query(f"SELECT COUNT(*) FROM {what}")[0][0]
                for what in ("events WHERE state = 'pending'", "subscriptions", "contacts")
            )
        )

    @staticmethod
    def _sends_args(cutoff: float, now: float) -> tuple[float, float]:
        return (cutoff, min(cutoff, now - DEAD_SEND_SECONDS))
