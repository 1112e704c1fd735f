"""The store's queries, shared by both backends: what must survive a restart, and nothing else.

Every method that reads then writes runs in one `transaction()`, which the backend makes
exclusive (SQLite `BEGIN IMMEDIATE`; PostgreSQL row locks via `self.lock`), so concurrent
workers never both claim the same send or forward the same event.
"""

import json
import uuid
from collections import namedtuple

from ..errors import Failure
from .retention import Retention
from .statuses import Lease, Statuses

Claim = namedtuple("Claim", "kind token status answer")  # kind: new | replay | wait
Event = namedtuple("Event", "id dedupe_key message_uuid target payload is_final attempts")

OPTOUT = "OPTOUT"
OPTIN = "OPTIN"
_EVENT_COLUMNS = "id, dedupe_key, message_uuid, target, payload, is_final, attempts"


class StoreUnavailable(Failure):
    """Nothing can be stored right now (the database file is gone, the disk is full, no
    PostgreSQL connection): the request is answered 503 with this reason (Vonage and MoEngage
    retry), /health names it."""

    def __init__(self, reason, retry_after=None):
        super().__init__(503, reason, retry_after=retry_after)


def _dumps(value):
    """Stored JSON without the spaces json.dumps adds by default: bytes kept per send."""
    return json.dumps(value, separators=(",", ":"))


def _event(row):
    payload = json.loads(row[4])
    if row[1].startswith("status:") and "trackingId" not in payload:
        payload = {"trackingId": row[2], **payload}  # stored without it: it is message_uuid
    return Event(row[0], row[1], row[2], row[3], payload, bool(row[5]), row[6])


class Store(Statuses, Retention):
    lock = ""  # appended to a SELECT whose row the transaction then updates

    # -- backend hooks -------------------------------------------------------------------------
    def transaction(self):
        """Context manager yielding an object with `execute(sql, params)` -> cursor."""
        raise NotImplementedError

    def query(self, sql, params=()):
        """Run one read outside any transaction and return all rows."""
        raise NotImplementedError

    # -- sends ---------------------------------------------------------------------------------
    def claim_send(
        self, key, now, window, stale_after, recipient, campaign_id=None, customer_id=None
    ):
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
                " answer = NULL, message_uuid = NULL, recipient = ?, campaign_id = ?,"
                " customer_id = ?, started_at = ?, finished_at = NULL WHERE idem_key = ?",
                (token, recipient, campaign_id, customer_id, now, key),
            )
            return Claim("new", token, None, None)

    def finish_send(self, key, token, status, answer, now, remember, message_uuid=None):
        """Record the answer; `remember` replays it to identical sends, else it is only shown to
        sends already waiting on this one."""
        with self.transaction() as tx:
            tx.execute(
                "UPDATE sends SET state = ?, http_status = ?, answer = ?, message_uuid = ?,"
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
                "INSERT INTO sends (idem_key, token, state, http_status, message_uuid, recipient,"
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

    def send_outcome(self, key):
        """(token, state, http_status, answer) of `key`, or None."""
        rows = self.query(
            "SELECT token, state, http_status, answer FROM sends WHERE idem_key = ?", (key,)
        )
        if not rows:
            return None
        token, state, status, answer = rows[0]
        return token, state, status, json.loads(answer) if answer else None

    def has_legacy_refs(self):
        """Any `client_ref` key of the form used before keys included the secret (`ref:`)?"""
        return bool(
            self.query("SELECT 1 FROM sends WHERE idem_key >= 'ref:' AND idem_key < 'ref;' LIMIT 1")
        )

    def find_send(self, message_uuid):
        """The send that got this `message_uuid`, as a dict, or None (for tracing)."""
        rows = self.query(
            "SELECT recipient, campaign_id, customer_id, started_at, http_status"
            " FROM sends WHERE message_uuid = ?",
            (message_uuid,),
        )
        if not rows:
            return None
        return dict(
            zip(("recipient", "campaign_id", "customer_id", "started_at", "http_status"), rows[0])
        )

    # -- credentials ---------------------------------------------------------------------------
    def credentials_accepted(self, pair_hash, now):
        """Vonage accepted this key and secret (by their keyed hash) at `now`."""
        with self.transaction() as tx:
            tx.execute(
                "INSERT INTO accepted_credentials (pair_hash, accepted_at) VALUES (?, ?)"
                " ON CONFLICT (pair_hash) DO UPDATE SET accepted_at = excluded.accepted_at"
                " WHERE excluded.accepted_at > accepted_credentials.accepted_at",
                (pair_hash, now),
            )

    def credentials_accepted_at(self, pair_hash):
        """When Vonage last accepted this key and secret, or None."""
        rows = self.query(
            "SELECT accepted_at FROM accepted_credentials WHERE pair_hash = ?", (pair_hash,)
        )
        return rows[0][0] if rows else None

    # -- contacts and subscriptions ------------------------------------------------------------
    def remember_contact(self, number, customer_id, now, sync):
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

    def customer_for(self, number):
        rows = self.query("SELECT customer_id FROM contacts WHERE number = ?", (number,))
        return rows[0][0] if rows else None

    def is_opted_out(self, number):
        rows = self.query("SELECT state FROM subscriptions WHERE number = ?", (number,))
        return bool(rows) and rows[0][0] == OPTOUT

    def subscription(self, number):
        """(state, Vonage event_ts) stored for `number`, or None."""
        rows = self.query("SELECT state, event_ts FROM subscriptions WHERE number = ?", (number,))
        return tuple(rows[0]) if rows else None

    def opted_out(self):
        """[(number, event_ts, synced)] of every opted-out number, newest first."""
        return self.query(
            "SELECT number, event_ts, synced FROM subscriptions WHERE state = ?"
            " ORDER BY event_ts DESC",
            (OPTOUT,),
        )

    def _set_subscription(self, tx, number, state, event_ts, now):
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

    def _sync_subscription(self, tx, key, number, state, now, sync, message_uuid=None):
        """Queue the change for MoEngage's Data API when the number's user is known."""
        if not sync:
            return []
        row = tx.execute("SELECT customer_id FROM contacts WHERE number = ?", (number,)).fetchone()
        if row is None:
            return []
        return self._queue_sync(tx, key, number, row[0], state, now, message_uuid)

    def _queue_sync(self, tx, key, number, customer_id, state, now, message_uuid=None):
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

    def set_subscription(self, number, state, event_ts, now, sync):
        """A change made by hand (`flask optin`); returns (applied, new event ids)."""
        with self.transaction() as tx:
            if not self._set_subscription(tx, number, state, event_ts, now):
                return False, []
            key = f"manual:{number}:{event_ts}:{uuid.uuid4().hex[:8]}"
            return True, self._sync_subscription(tx, key, number, state, now, sync)

    # -- the outbox ----------------------------------------------------------------------------
    def _add_event(
        self, tx, key, message_uuid, target, payload, is_final, now, until=None, state="pending"
    ):
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

    def record_inbound(self, message_uuid, number, subscription, event_ts, payload, now, sync):
        """Store an inbound reply's forward and, the first time it is seen, its opt-out/opt-in.

        A redelivered reply changes nothing, so an old STOP cannot undo a newer START. Returns
        (first_time, ids of this reply's events still pending).
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
            return first, ids

    def lease_event(self, event_id, now, seconds):
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
            until = now + (seconds[event.target] if isinstance(seconds, dict) else seconds)
            tx.execute(
                "UPDATE events SET lease_until = ?, attempts = attempts + 1 WHERE id = ?",
                (until, event_id),
            )
            return Lease("leased", event, until)

    def event_lease(self, event_id):
        """(state, lease_until) of an event, or None: how a worker waits for another's forward."""
        rows = self.query("SELECT state, lease_until FROM events WHERE id = ?", (event_id,))
        return tuple(rows[0]) if rows else None

    def event_sent(self, event_id, now):
        """MoEngage has it: sent, whoever holds the lease now."""
        with self.transaction() as tx:
            tx.execute(
                "UPDATE events SET state = 'sent', sent_at = ?, lease_until = NULL,"
                " last_error = NULL WHERE id = ?",
                (now, event_id),
            )

    def event_failed(self, event_id, error, until):
        """Release the lease taken until `until`, keeping the event pending. A lease that lapsed
        and was taken by another worker meanwhile is theirs: it is left alone."""
        with self.transaction() as tx:
            tx.execute(
                "UPDATE events SET lease_until = NULL, last_error = ?"
                " WHERE id = ? AND state = 'pending' AND lease_until = ?",
                (error[:500], event_id, until),
            )

    def pending_events(self, limit=1000):
        """[(id, target, attempts, last_error, created_at)] still waiting for MoEngage."""
        return self.query(
            "SELECT id, target, attempts, last_error, created_at FROM events"
            " WHERE state = 'pending' ORDER BY id LIMIT ?",
            (limit,),
        )

    def leasable_events(self, now, limit):
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

    def pending_syncs(self):
        """Numbers whose opt-out/opt-in is queued for the Data API and not accepted yet."""
        rows = self.query(
            "SELECT payload FROM events WHERE state = 'pending' AND target = 'data_api'"
        )
        return {json.loads(row[0]).get("number") for row in rows}

    # -- shared schedule -----------------------------------------------------------------------
    def claim_turn(self, task, now, interval):
        """True for the one caller, across all workers and instances on this database, whose
        turn it is to run `task` (due at most every `interval` seconds); it is then next due
        `interval` from now. Anyone else gets False and `next_turn(task)` says when to ask."""
        with self.transaction() as tx:
            return (
                tx.execute(
                    "INSERT INTO schedule (task, next_at) VALUES (?, ?) ON CONFLICT (task)"
                    " DO UPDATE SET next_at = excluded.next_at WHERE schedule.next_at <= ?",
                    (task, now + interval, now),
                ).rowcount
                == 1
            )

    def next_turn(self, task):
        rows = self.query("SELECT next_at FROM schedule WHERE task = ?", (task,))
        return rows[0][0] if rows else 0.0

    def requeue_events(self, since):
        """Mark tracking events accepted since `since` as pending again; returns how many."""
        with self.transaction() as tx:
            return tx.execute(
                "UPDATE events SET state = 'pending', lease_until = NULL"
                " WHERE state = 'sent' AND target = 'tracking' AND sent_at >= ?",
                (since,),
            ).rowcount

    def ping(self):
        self.query("SELECT 1")

    def problems(self):
        """What stops writes though the database answers, for /health; a backend says."""
        return []
