"""Which status webhooks of a message reach MoEngage, decided per message in one transaction.

- Only statuses of messages this connector sent (a `sends` row has their message_uuid) are
  forwarded. One that arrives before its send is recorded (Vonage's webhook can overtake the
  commit of the send's answer) is `held`: the caller answers 503 and Vonage redelivers. Still
  unknown `foreign_after` seconds after it was first seen, it is `foreign`: dropped.
- The first final status stored wins, whatever became of it since: a later final, or a later
  `sent`, is never forwarded (`superseded`); a `sent` still waiting when a final is stored is
  dropped; a final is not posted while a `sent` of its message is being posted, so MoEngage
  never gets `sent` after the final.

Every decision runs under a per-message lock (SQLite: the whole write transaction is exclusive;
PostgreSQL: an advisory transaction lock on the message_uuid), so two workers or two instances
deciding for one message see each other's rows.
"""

from typing import Any, NamedTuple

from connector.store.rows import _dumps, _event


class Lease(NamedTuple):
    outcome: str  # leased | sent | superseded | blocked | gone | busy
    event: Any  # the Event leased (base.py), or None
    until: float | None


class StatusRecorded(NamedTuple):
    """`record_status`'s result: `outcome` new | pending | duplicate | superseded | held |
    foreign; `lease` the new event already leased to the caller, or None."""

    outcome: str
    event_id: int | None
    lease: Lease | None


_STATUS = "target = 'tracking' AND dedupe_key >= 'status:' AND dedupe_key < 'status;'"
UNMATCHED = ("held", "foreign")  # a status of no message this connector is known to have sent


class Statuses:
    """Mixed into Store: uses its `transaction()`, `lock` and `_add_event`."""

    lock = ""

    def transaction(self) -> Any:
        raise NotImplementedError

    def _add_event(self, tx: Any, *args: Any, **kwargs: Any) -> list[int]:
        raise NotImplementedError

    def lock_message(self, tx: Any, message_uuid: str) -> None:
        """Serialise deciding for one message; a backend without row-level writers (SQLite)
        needs nothing more than its transaction."""

    def record_status(
        self,
        message_uuid: str,
        status: str,
        is_final: bool,
        payload: dict,
        now: float,
        lease: float | dict | None = None,
        foreign_after: float | None = None,
    ) -> StatusRecorded:
        """Store a delivery event for MoEngage once per (message_uuid, status).

        Returns StatusRecorded(outcome, event_id, lease): "new" or "pending" (to be forwarded), "duplicate"
        (MoEngage has it), "superseded" (a final status was stored first), and with
        `foreign_after` (seconds) "held" or "foreign" (see the module). With `lease` (seconds,
        or a {target: seconds} table), a new event is stored already leased to the caller, the
        Lease third, unless a `sent` of the message is being posted; else None.
        """
        key = f"status:{message_uuid}:{status}"
        with self.transaction() as tx:
            self.lock_message(tx, message_uuid)
            row = tx.execute(
                "SELECT id, state, created_at FROM events WHERE dedupe_key = ?" + self.lock, (key,)
            ).fetchone()
            if foreign_after is not None and (row is None or row[1] in UNMATCHED):
                if not self._sent_by_us(tx, message_uuid):
                    return self._unmatched(
                        tx, row, key, message_uuid, payload, is_final, now, foreign_after
                    )
                if row is not None:  # known now: decided as if it arrived now
                    tx.execute("DELETE FROM events WHERE id = ?", (row[0],))
                    row = None
            if row is not None:
                return StatusRecorded(_outcome_of(row[1]), row[0], None)
            if self._final_stored(tx, message_uuid):
                return StatusRecorded("superseded", None, None)
            return self._store_status(tx, key, message_uuid, payload, is_final, now, lease)

    def _store_status(self, tx, key, message_uuid, payload, is_final, now, lease):
        if payload.get("trackingId") == message_uuid:  # _event() puts it back
            payload = {k: v for k, v in payload.items() if k != "trackingId"}
        seconds = lease.get("tracking") if isinstance(lease, dict) else lease
        in_flight = is_final and self._sent_in_flight(tx, message_uuid, None, now)
        until = now + seconds if seconds and not in_flight else None
        added = self._add_event(tx, key, message_uuid, "tracking", payload, is_final, now, until)
        if not added:  # stored meanwhile by a writer that takes no message lock (a copy)
            row = tx.execute("SELECT id, state FROM events WHERE dedupe_key = ?", (key,)).fetchone()
            if row is None:
                return StatusRecorded("duplicate", None, None)
            return StatusRecorded(_outcome_of(row[1]), row[0], None)
        if is_final:
            self._drop_waiting_sent(tx, message_uuid, now)
        if not until:
            return StatusRecorded("new", added[0], None)
        # As lease_event would read it back: the attempts before this one.
        row = (added[0], key, message_uuid, "tracking", _dumps(payload), is_final, 0)
        return StatusRecorded("new", added[0], Lease("leased", _event(row), until))

    def _unmatched(self, tx, row, key, message_uuid, payload, is_final, now, foreign_after):
        """A status of a message with no recorded send: held until `foreign_after` seconds
        after it was first seen, then foreign. Kept as a row, so the wait survives restarts."""
        first_seen = row[2] if row else now
        state = "foreign" if now - first_seen >= foreign_after else "held"
        if row is None:
            added = self._add_event(
                tx, key, message_uuid, "tracking", payload, is_final, now, state=state
            )
            return StatusRecorded(state, added[0] if added else None, None)
        if row[1] != state:
            tx.execute("UPDATE events SET state = ? WHERE id = ?", (state, row[0]))
        return StatusRecorded(state, row[0], None)

    def status_lease_refused(self, tx: Any, event: Any, now: float) -> Lease | None:
        """Why a status event may not be leased now: a Lease, or None when it may."""
        if event.is_final:
            if self._final_stored(tx, event.message_uuid, before=event.id):
                return Lease("superseded", None, None)
            blocking = self._sent_in_flight(tx, event.message_uuid, event.id, now)
            if blocking:
                return Lease("blocked", None, blocking)
            self._drop_waiting_sent(tx, event.message_uuid, now)
            return None
        if self._final_stored(tx, event.message_uuid):
            return Lease("superseded", None, None)
        return None

    # -- the decisions' reads and writes --------------------------------------------------------
    @staticmethod
    def _sent_by_us(tx, message_uuid):
        row = tx.execute("SELECT 1 FROM sends WHERE tracking_id = ? LIMIT 1", (message_uuid,))
        return row.fetchone() is not None

    @staticmethod
    def _final_stored(tx, message_uuid, before=None):
        """Is a final status of the message stored (pending or forwarded)? With `before`, only
        one stored ahead of that event, or already forwarded, counts: the first stored wins."""
        sql = (
            f"SELECT 1 FROM events WHERE message_uuid = ? AND {_STATUS} AND is_final = 1"
            " AND state IN ('pending', 'sent')"
        )
        params = [message_uuid]
        if before is not None:
            sql += " AND (id < ? OR state = 'sent') AND id != ?"
            params += [before, before]
        return tx.execute(sql + " LIMIT 1", params).fetchone() is not None

    @staticmethod
    def _sent_in_flight(tx, message_uuid, other_than, now):
        """The lease end of a `sent` of the message being posted now, or None."""
        row = tx.execute(
            f"SELECT max(lease_until) FROM events WHERE message_uuid = ? AND {_STATUS}"
            " AND is_final = 0 AND state = 'pending' AND lease_until > ? AND id != ?",
            (message_uuid, now, -1 if other_than is None else other_than),
        ).fetchone()
        return row[0] if row else None

    @staticmethod
    def _drop_waiting_sent(tx, message_uuid, now):
        """A final is stored: a `sent` still waiting for MoEngage will never be posted."""
        tx.execute(
            f"UPDATE events SET state = 'superseded', lease_until = NULL WHERE message_uuid = ?"
            f" AND {_STATUS} AND is_final = 0 AND state = 'pending'"
            " AND (lease_until IS NULL OR lease_until <= ?)",
            (message_uuid, now),
        )


def _outcome_of(state):
    if state == "pending":
        return "pending"
    return state if state in ("superseded", *UNMATCHED) else "duplicate"
