"""The store's queries, shared by both backends: what must survive a restart, and nothing else.

Every method that reads then writes runs in one `transaction()`, which the backend makes
exclusive (SQLite `BEGIN IMMEDIATE`; PostgreSQL row locks via `self.lock`), so concurrent
workers never both claim the same send or forward the same event.
"""

import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, NamedTuple, Protocol

from connector.errors import Failure
from connector.store import journal
from connector.store.refused import RefusedPairs
from connector.store.retention import Retention
from connector.store.rows import _dumps, _event
from connector.store.statuses import Lease, Statuses


class Claim(NamedTuple):
    kind: str  # new | replay | wait
    token: str
    status: int | None
    answer: Any


class SendOutcome(NamedTuple):
    """What `send_outcome` knows of a send: `state` pending | done | failed."""

    token: str
    state: str
    status: int | None
    answer: Any


class InboundRecorded(NamedTuple):
    first: bool  # the first time this reply was seen
    event_ids: list[int]  # its events still pending


class SubscriptionSet(NamedTuple):
    applied: bool
    event_ids: list[int]  # syncs queued for MoEngage's Data API


class Subscription(NamedTuple):
    state: str  # OPTOUT | OPTIN
    event_ts: float  # Vonage's timestamp of the reply that set it


class OptedOut(NamedTuple):
    number: str
    event_ts: float
    synced: int


class PendingEvent(NamedTuple):
    id: int
    target: str
    attempts: int
    last_error: str | None
    created_at: float


class Pending(NamedTuple):
    """An event still waiting for MoEngage, as `pending` and `push` describe it."""

    id: int
    dedupe_key: str
    message_uuid: str | None
    target: str
    payload: dict[str, Any]
    attempts: int
    last_error: str | None
    created_at: float


class EventLease(NamedTuple):
    state: str
    lease_until: float | None


class Tx(Protocol):
    """What a transaction yields, whatever the backend."""

    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Any: ...


OPTOUT = "OPTOUT"
OPTIN = "OPTIN"
_EVENT_COLUMNS = "id, dedupe_key, message_uuid, target, payload, is_final, attempts"
# Seconds a shared turn may be due beyond its interval before it counts as a clock step: two
# workers' `now` differ by the time one waited for the row, never by this much.
STEP_TOLERANCE = 5.0


class StoreUnavailable(Failure):
    """Nothing can be stored right now (the database file is gone, the disk is full, no
    PostgreSQL connection): the request is answered 503 with this reason (Vonage and MoEngage
    retry), /health names it."""

    def __init__(self, reason: str, retry_after: int | None = None) -> None:
        super().__init__(503, reason, retry_after=retry_after)


def _pending_or_duplicate(state: str) -> str:
    return "pending" if state == "pending" else "duplicate"


class Store(Statuses, Retention, RefusedPairs):
    lock = ""  # appended to a SELECT whose row the transaction then updates

    # -- backend hooks -------------------------------------------------------------------------
    def _transaction(self) -> AbstractContextManager[Any]:
        """Context manager yielding an object with `execute(sql, params)` -> cursor."""
        raise NotImplementedError

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """One atomic unit of work. The trail rows this thread queued (journal.py) are written
        in it just before it commits, so recording a step adds no commit of its own."""
        with self._transaction() as tx:
            yield tx
            journal.write(tx)

    def flush_journal(self, force: bool = False) -> None:
        """Write this thread's queued trail rows (with `force`, the parked ones too) in a
        transaction of their own: a request whose answer has gone out, a worker exiting."""
        if journal.pending() or (force and journal.has_parked()):
            with self.transaction():
                pass

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Run one read outside any transaction and return all rows."""
        raise NotImplementedError

    def init_schema(self) -> list[int]:
        """Migrate to this connector's schema; the steps run."""
        raise NotImplementedError

    def schema_version(self) -> int:
        raise NotImplementedError

    def schema_transaction(self) -> AbstractContextManager[Any]:
        """A transaction for a schema step, alone and serialised across processes."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    # -- sends ---------------------------------------------------------------------------------
    def claim_send(
        self,
        key: str,
        now: float,
        window: float | None,
        stale_after: float,
        recipient: str,
        campaign_id: str | None = None,
        customer_id: str | None = None,
    ) -> Claim:
        """Take `key` for a new send, or say why not.

        `replay`: a remembered answer (a 200 or 504) younger than `window` (None = forever).
        `wait`: an identical send is with Vonage right now; poll `send_outcome(key, token)`.
        A send left pending longer than `stale_after` died with its worker: Vonage may have sent
        it, so it counts as a remembered 504.
        """
        token = uuid.uuid4().hex
        with self.transaction() as tx:
            row = None
            while row is None:  # PostgreSQL: None when pruned since our INSERT; insert again
                inserted = tx.execute(
                    "INSERT INTO sends (idem_key, token, state, recipient, campaign_id,"
                    " customer_id, started_at) VALUES (?, ?, 'pending', ?, ?, ?, ?)"
                    " ON CONFLICT (idem_key) DO NOTHING",
                    (key, token, recipient, campaign_id, customer_id, now),
                ).rowcount
                if inserted:
                    return Claim("new", token, None, None)
                row = tx.execute(
                    "SELECT token, state, http_status, answer, started_at, finished_at FROM sends"
                    " WHERE idem_key = ?" + self.lock,
                    (key,),
                ).fetchone()
            old_token, state, status, answer, started, finished = row
            if state == "pending" and now - started < stale_after:
                return Claim("wait", old_token, None, None)
            if state == "pending":
                state, status, finished = "done", 504, started + stale_after
                answer = _dumps(
                    {
                        "status": "failed",
                        "error": "an identical earlier send "
                        "was interrupted while with Vonage; it may have been sent",
                    }
                )
                tx.execute(
                    "UPDATE sends SET state = ?, http_status = ?, answer = ?,"
                    " finished_at = ? WHERE idem_key = ?",
                    (state, status, answer, finished, key),
                )
            if state == "done" and (window is None or now - finished < window):
                return Claim("replay", old_token, status, json.loads(answer))
            tx.execute(
                "UPDATE sends SET token = ?, state = 'pending', http_status = NULL,"
                " answer = NULL, tracking_id = NULL, recipient = ?, campaign_id = ?,"
                " customer_id = ?, started_at = ?, finished_at = NULL WHERE idem_key = ?",
                (token, recipient, campaign_id, customer_id, now, key),
            )
            return Claim("new", token, None, None)

    def finish_send(
        self,
        key: str,
        token: str,
        status: int,
        answer: Any,
        now: float,
        remember: bool,
        message_uuid: str | None = None,
    ) -> None:
        """Record the answer; `remember` replays it to identical sends, else it is only shown to
        sends already waiting on this one."""
        with self.transaction() as tx:
            tx.execute(
                "UPDATE sends SET state = ?, http_status = ?, answer = ?, tracking_id = ?,"
                " finished_at = ? WHERE idem_key = ? AND token = ?",
                (
                    "done" if remember else "failed",
                    status,
                    _dumps(answer),
                    message_uuid,
                    now,
                    key,
                    token,
                ),
            )

    def record_sent(
        self,
        message_uuid: str,
        recipient: str,
        campaign_id: str | None,
        customer_id: str | None,
        now: float,
    ) -> None:
        """Vonage accepted a send that has no idempotency key (no client_ref, and
        SEND_DEDUPE_SECONDS=0): kept as a finished send all the same, so its status webhooks
        are known as this connector's. Its key can never be a send's (those are hashes)."""
        with self.transaction() as tx:
            tx.execute(
                "INSERT INTO sends (idem_key, token, state, http_status, tracking_id, recipient,"
                " campaign_id, customer_id, started_at, finished_at)"
                " VALUES (?, '', 'done', 200, ?, ?, ?, ?, ?, ?) ON CONFLICT (idem_key) DO NOTHING",
                (
                    f"uuid:{message_uuid}",
                    message_uuid,
                    recipient,
                    campaign_id,
                    customer_id,
                    now,
                    now,
                ),
            )

    def send_outcome(self, key: str) -> SendOutcome | None:
        """What is stored of the send `key`, or None."""
        rows = self.query(
            "SELECT token, state, http_status, answer FROM sends WHERE idem_key = ?", (key,)
        )
        if not rows:
            return None
        token, state, status, answer = rows[0]
        return SendOutcome(token, state, status, json.loads(answer) if answer else None)

    def has_legacy_refs(self) -> bool:
        """Any `client_ref` key of the form used before keys included the secret (`ref:`)?"""
        return bool(
            self.query("SELECT 1 FROM sends WHERE idem_key >= 'ref:' AND idem_key < 'ref;' LIMIT 1")
        )

    def find_send(self, message_uuid: str) -> dict[str, Any] | None:
        """The send that got this `message_uuid`, as a dict, or None (for tracing)."""
        rows = self.query(
            "SELECT recipient, campaign_id, customer_id, started_at, http_status"
            " FROM sends WHERE tracking_id = ?",
            (message_uuid,),
        )
        if not rows:
            return None
        return dict(
            zip(("recipient", "campaign_id", "customer_id", "started_at", "http_status"), rows[0])
        )

    # -- credentials ---------------------------------------------------------------------------
    def credentials_accepted(self, pair_hash: str, now: float) -> None:
        """Vonage accepted this key and secret (by their keyed hash) at `now`."""
        with self.transaction() as tx:
            tx.execute(
                "INSERT INTO accepted_credentials (pair_hash, accepted_at) VALUES (?, ?)"
                " ON CONFLICT (pair_hash) DO UPDATE SET accepted_at = excluded.accepted_at"
                " WHERE excluded.accepted_at > accepted_credentials.accepted_at",
                (pair_hash, now),
            )

    def credentials_accepted_at(self, pair_hash: str) -> float | None:
        """When Vonage last accepted this key and secret, or None."""
        rows = self.query(
            "SELECT accepted_at FROM accepted_credentials WHERE pair_hash = ?", (pair_hash,)
        )
        return rows[0][0] if rows else None

    # -- contacts and subscriptions ------------------------------------------------------------
    def remember_contact(self, number: str, customer_id: str, now: float, sync: bool) -> list[int]:
        """Keep the MoEngage user last sent to at `number`; a subscription change that waited
        for a customer_id is queued for MoEngage now (when `sync`). Returns new event ids."""
        with self.transaction() as tx:
            tx.execute(
                "INSERT INTO contacts (number, customer_id, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (number) DO UPDATE SET customer_id = excluded.customer_id,"
                " updated_at = excluded.updated_at",
                (number, customer_id, now),
            )
            if not sync:
                return []
            row = tx.execute(
                "SELECT state, event_ts FROM subscriptions WHERE number = ?"
                " AND synced = 0" + self.lock,
                (number,),
            ).fetchone()
            if row is None:
                return []
            return self._queue_sync(tx, f"sync:{number}:{row[1]}", number, customer_id, row[0], now)

    def customer_for(self, number: str) -> str | None:
        rows = self.query("SELECT customer_id FROM contacts WHERE number = ?", (number,))
        return rows[0][0] if rows else None

    def is_opted_out(self, number: str) -> bool:
        rows = self.query("SELECT state FROM subscriptions WHERE number = ?", (number,))
        return bool(rows) and rows[0][0] == OPTOUT

    def subscription(self, number: str) -> Subscription | None:
        """The state stored for `number`, or None."""
        rows = self.query("SELECT state, event_ts FROM subscriptions WHERE number = ?", (number,))
        return Subscription(*rows[0]) if rows else None

    def opted_out(self) -> list[OptedOut]:
        """Every opted-out number, newest first."""
        rows = self.query(
            "SELECT number, event_ts, synced FROM subscriptions WHERE state = ?"
            " ORDER BY event_ts DESC",
            (OPTOUT,),
        )
        return [OptedOut(*row) for row in rows]

    def _set_subscription(
        self, tx: Tx, number: str, state: str, event_ts: float, now: float
    ) -> bool:
        """Store `state` unless a newer one is stored; an equal timestamp lets the later one win."""
        return (
            tx.execute(
                "INSERT INTO subscriptions (number, state, event_ts, updated_at, synced)"
                " VALUES (?, ?, ?, ?, 0) ON CONFLICT (number) DO UPDATE SET state = excluded.state,"
                " event_ts = excluded.event_ts, updated_at = excluded.updated_at, synced = 0"
                " WHERE excluded.event_ts >= subscriptions.event_ts",
                (number, state, event_ts, now),
            ).rowcount
            == 1
        )

    def _sync_subscription(
        self,
        tx: Tx,
        key: str,
        number: str,
        state: str,
        now: float,
        sync: bool,
        message_uuid: str | None = None,
    ) -> list[int]:
        """Queue the change for MoEngage's Data API when the number's user is known."""
        if not sync:
            return []
        row = tx.execute("SELECT customer_id FROM contacts WHERE number = ?", (number,)).fetchone()
        if row is None:
            return []
        return self._queue_sync(tx, key, number, row[0], state, now, message_uuid)

    def _queue_sync(
        self,
        tx: Tx,
        key: str,
        number: str,
        customer_id: str,
        state: str,
        now: float,
        message_uuid: str | None = None,
    ) -> list[int]:
        tx.execute("UPDATE subscriptions SET synced = 1 WHERE number = ?", (number,))
        return self._add_event(
            tx,
            key,
            message_uuid,
            "data_api",
            {"customer_id": customer_id, "subscription": state, "number": number},
            False,
            now,
        )

    def set_subscription(
        self, number: str, state: str, event_ts: float, now: float, sync: bool
    ) -> SubscriptionSet:
        """A change made by hand (`flask optin`): whether it applied, and the syncs it queued."""
        with self.transaction() as tx:
            if not self._set_subscription(tx, number, state, event_ts, now):
                return SubscriptionSet(False, [])
            key = f"manual:{number}:{event_ts}:{uuid.uuid4().hex[:8]}"
            return SubscriptionSet(True, self._sync_subscription(tx, key, number, state, now, sync))

    # -- the outbox ----------------------------------------------------------------------------
    def _add_event(
        self,
        tx: Tx,
        key: str,
        message_uuid: str | None,
        target: str,
        payload: dict[str, Any],
        is_final: bool,
        now: float,
        until: float | None = None,
        state: str = "pending",
    ) -> list[int]:
        """Insert a pending event (leased until `until`, one attempt begun, if given)."""
        cur = tx.execute(
            "INSERT INTO events (dedupe_key, message_uuid, target, payload, is_final, state,"
            " created_at, lease_until, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (dedupe_key) DO NOTHING",
            (
                key,
                message_uuid,
                target,
                _dumps(payload),
                int(is_final),
                state,
                now,
                until,
                int(bool(until)),
            ),
        )
        if not cur.rowcount:
            return []
        return [tx.execute("SELECT id FROM events WHERE dedupe_key = ?", (key,)).fetchone()[0]]

    def record_inbound(
        self,
        message_uuid: str,
        number: str,
        subscription: str | None,
        event_ts: float,
        payload: dict[str, Any],
        now: float,
        sync: bool,
    ) -> InboundRecorded:
        """Store an inbound reply's forward and, the first time it is seen, its opt-out/opt-in.

        A redelivered reply changes nothing, so an old STOP cannot undo a newer START. Returns
        whether it was the first time, and the ids of this reply's events still pending.
        """
        with self.transaction() as tx:
            first = bool(
                self._add_event(
                    tx, f"inbound:{message_uuid}", message_uuid, "tracking", payload, False, now
                )
            )
            if (
                first
                and subscription
                and self._set_subscription(tx, number, subscription, event_ts, now)
            ):
                self._sync_subscription(
                    tx, f"sub:{message_uuid}", number, subscription, now, sync, message_uuid
                )
            ids = [
                r[0]
                for r in tx.execute(
                    "SELECT id FROM events WHERE message_uuid = ? AND state = 'pending' ORDER BY id",
                    (message_uuid,),
                ).fetchall()
            ]
            return InboundRecorded(first, ids)

    def lease_event(self, event_id: int, now: float, seconds: float | dict[str, float]) -> Lease:
        """Take event `event_id` for one forward attempt, so two workers never post it at once.

        `seconds` is how long the lease holds (a number, or a {target: seconds} table): just
        over the longest a forward may take, so a lease held by a worker that died lapses soon.
        Returns Lease("leased", event, until), or Lease(why not, None, until): "sent" (MoEngage
        has it), "superseded", "gone" (no such event), "busy" (leased by another until `until`)
        or "blocked" (a final status waiting for a `sent` of its message being posted, until
        `until` at the latest).
        """
        with self.transaction() as tx:
            found = tx.execute(
                "SELECT message_uuid, dedupe_key FROM events WHERE id = ?", (event_id,)
            ).fetchone()
            if found is None:
                return Lease("gone", None, None)
            is_status = found[1].startswith("status:")
            if is_status:  # before the row's lock, in the order record_status takes them
                self.lock_message(tx, found[0])
            row = tx.execute(
                f"SELECT {_EVENT_COLUMNS}, state, lease_until FROM events WHERE id = ?" + self.lock,
                (event_id,),
            ).fetchone()
            if row is None:
                return Lease("gone", None, None)
            if row[7] != "pending":
                return Lease("sent" if row[7] == "sent" else row[7], None, None)
            if row[8] is not None and row[8] > now:
                return Lease("busy", None, row[8])
            event = _event(row)
            refused = self.status_lease_refused(tx, event, now) if is_status else None
            if refused is not None:
                if refused.outcome == "superseded":
                    tx.execute("UPDATE events SET state = 'superseded' WHERE id = ?", (event_id,))
                return refused
            if event.target == "data_api":
                why_not = self._sync_blocked(tx, event, now)
                if why_not:
                    return why_not
            until = now + (seconds[event.target] if isinstance(seconds, dict) else seconds)
            tx.execute(
                "UPDATE events SET lease_until = ?, attempts = attempts + 1 WHERE id = ?",
                (until, event_id),
            )
            return Lease("leased", event, until)

    def _sync_blocked(self, tx, event, now):
        """A subscription sync carries the number's current state, sent after any older one:
        one whose state is no longer the number's is superseded, never sent after the newer
        one; while another sync of the number is in flight, it waits ("busy"). The number's
        subscription row is locked first, so leases of its syncs, on any instance, queue."""
        number = event.payload.get("number")
        if not number:
            return None
        row = tx.execute(
            "SELECT state FROM subscriptions WHERE number = ?" + self.lock, (number,)
        ).fetchone()
        if row is not None and row[0] != event.payload.get("subscription"):
            tx.execute("UPDATE events SET state = 'superseded' WHERE id = ?", (event.id,))
            return Lease("superseded", None, None)
        for other, payload, until in tx.execute(
            "SELECT id, payload, lease_until FROM events WHERE state = 'pending'"
            " AND target = 'data_api' AND lease_until > ? AND id != ?",
            (now, event.id),
        ).fetchall():
            if json.loads(payload).get("number") == number:
                return Lease("busy", None, until)
        return None

    def event_lease(self, event_id: int) -> EventLease | None:
        """An event's state and lease, or None: how a worker waits for another's forward."""
        rows = self.query("SELECT state, lease_until FROM events WHERE id = ?", (event_id,))
        return EventLease(*rows[0]) if rows else None

    def event_sent(self, event_id: int, now: float) -> None:
        """MoEngage has it: sent, whoever holds the lease now."""
        with self.transaction() as tx:
            tx.execute(
                "UPDATE events SET state = 'sent', sent_at = ?, lease_until = NULL,"
                " last_error = NULL WHERE id = ?",
                (now, event_id),
            )

    def event_failed(self, event_id: int, error: str, until: float | None) -> None:
        """Release the lease taken until `until`, keeping the event pending. A lease that lapsed
        and was taken by another worker meanwhile is theirs: it is left alone."""
        with self.transaction() as tx:
            tx.execute(
                "UPDATE events SET lease_until = NULL, last_error = ?"
                " WHERE id = ? AND state = 'pending' AND lease_until = ?",
                (error[:500], event_id, until),
            )

    def pending_events(self, limit: int = 1000) -> list[PendingEvent]:
        """The events still waiting for MoEngage, oldest first."""
        rows = self.query(
            "SELECT id, target, attempts, last_error, created_at FROM events"
            " WHERE state = 'pending' ORDER BY id LIMIT ?",
            (limit,),
        )
        return [PendingEvent(*row) for row in rows]

    def count_pending(self) -> int:
        """How many events wait for MoEngage, all of them (a listing is capped)."""
        return self.query("SELECT count(*) FROM events WHERE state = 'pending'")[0][0]

    def pending_listing(
        self, limit: int = 1000, event_id: int | None = None, after: int = 0, upto: int = -1
    ) -> list[Pending]:
        """[Pending] of the events still waiting for MoEngage, oldest first, ids after `after`
        (and at most `upto`, unless -1); or event `event_id` alone, if still pending: what
        `pending` and `push` tell the operator about each."""
        args: tuple[int, ...]
        if event_id is not None:
            where, args = "id = ?", (event_id,)
        else:
            where, args = "id > ? AND (id <= ? OR ? = -1)", (after, upto, upto)
        return [
            Pending(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5], row[6], row[7])
            for row in self.query(
                "SELECT id, dedupe_key, message_uuid, target, payload, attempts, last_error,"
                f" created_at FROM events WHERE state = 'pending' AND {where} ORDER BY id LIMIT ?",
                (*args, limit),
            )
        ]

    def last_event_id(self) -> int:
        """The newest event's id (0 when none): where `push` stops, so it ends."""
        return self.query("SELECT max(id) FROM events")[0][0] or 0

    def leasable_events(self, now: float, limit: int) -> list[int]:
        """Ids of pending events no live lease holds, least tried first: what a sweep forwards.
        An event MoEngage keeps refusing sinks to the end instead of blocking the others."""
        return [
            row[0]
            for row in self.query(
                "SELECT id FROM events WHERE state = 'pending'"
                " AND (lease_until IS NULL OR lease_until <= ?) ORDER BY attempts, id LIMIT ?",
                (now, limit),
            )
        ]

    def pending_syncs(self) -> set[str]:
        """Numbers whose opt-out/opt-in is queued for the Data API and not accepted yet."""
        rows = self.query(
            "SELECT payload FROM events WHERE state = 'pending' AND target = 'data_api'"
        )
        return {json.loads(row[0]).get("number") for row in rows}

    # -- shared schedule -----------------------------------------------------------------------
    def claim_turn(self, task: str, now: float, interval: float) -> bool:
        """True for the one caller, across all workers and instances on this database, whose
        turn it is to run `task` (due at most every `interval` seconds); it is then next due
        `interval` from now. Anyone else gets False and `next_turn(task)` says when to ask.

        A turn due further ahead than `interval` (and STEP_TOLERANCE) was set by a clock that
        has since been stepped back: it is taken now, not an hour late."""
        with self.transaction() as tx:
            return (
                tx.execute(
                    "INSERT INTO schedule (task, next_at) VALUES (?, ?) ON CONFLICT (task)"
                    " DO UPDATE SET next_at = excluded.next_at"
                    " WHERE schedule.next_at <= ? OR schedule.next_at > ?",
                    (task, now + interval, now, now + interval + STEP_TOLERANCE),
                ).rowcount
                == 1
            )

    def next_turn(self, task: str) -> float:
        rows = self.query("SELECT next_at FROM schedule WHERE task = ?", (task,))
        return rows[0][0] if rows else 0.0

    def requeue_events(self, since: float) -> int:
        """Mark tracking events accepted since `since` as pending again; returns how many."""
        with self.transaction() as tx:
            return tx.execute(
                "UPDATE events SET state = 'pending', lease_until = NULL"
                " WHERE state = 'sent' AND target = 'tracking' AND sent_at >= ?",
                (since,),
            ).rowcount

    def ping(self) -> None:
        self.query("SELECT 1")

    def problems(self) -> list[str]:
        """What stops writes though the database answers, for /health; a backend says."""
        return []
