"""A store holding N messages as the connector leaves them, written in bulk for bench.console:
per message a `sends` row, a forwarded final status in `events`, the trail's send, status and
forward rows and the console's hourly tally; some failures, opt-outs and pending events.

The rows are the ones the connector writes (same columns, same detail JSON), spread over the
last 30 days; writing them through HTTP would take hours, and only reading them is measured.
"""

import json
import random
import time
import uuid

from connector.store.tally import HOUR

NUMBERS = 100_000  # distinct recipients: about N / 100,000 messages each
CAMPAIGNS = 100
OPT_OUTS = 10_000
PENDING = 500
BATCH = 20_000
DAYS = 30


def _dumps(value):
    return json.dumps(value, separators=(",", ":"))


def fill(store, n, now=None, seed=7):
    """Write `n` messages; returns a few of their identifiers to search for."""
    rng = random.Random(seed)
    now = time.time() if now is None else now
    tally, sample = {}, {}
    for start in range(0, n, BATCH):
        rows = [_message(rng, i, now) for i in range(start, min(n, start + BATCH))]
        _write(store, rows)
        for message in rows:
            _count(tally, message)
        sample = sample or {"uuid": rows[0]["uuid"], "ref": rows[0]["ref"],
                            "number": rows[0]["number"], "campaign": rows[0]["campaign"]}  # fmt: skip
    _write_tally(store, tally)
    _opt_outs(store, rng, now)
    _pending(store, now)
    return sample


def _message(rng, i, now):
    at = now - rng.random() * DAYS * 86400
    failed = rng.random() < 0.05
    return {
        "uuid": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "ref": f"order-{i}",
        "number": f"4477009{rng.randrange(NUMBERS):05d}",
        "campaign": f"camp-{rng.randrange(CAMPAIGNS)}",
        "at": at,
        "state": "rejected" if failed else "delivered",
        "code": "1250" if failed else None,
    }


def _write(store, rows):
    with store.transaction() as tx:
        tx.executemany(
            "INSERT INTO sends (idem_key, token, state, http_status, answer, tracking_id,"
            " recipient, campaign_id, customer_id, started_at, finished_at)"
            " VALUES (?, ?, 'done', 200, ?, ?, ?, ?, ?, ?, ?)",
            [(f"ref:{m['ref']}", "t", _dumps({"trackingId": m["uuid"], "status": "sent"}),
              m["uuid"], m["number"], m["campaign"], f"user-{m['number']}", m["at"],
              m["at"] + 0.2) for m in rows],
        )  # fmt: skip
        tx.executemany(
            "INSERT INTO events (dedupe_key, message_uuid, target, payload, is_final, state,"
            " attempts, created_at, sent_at) VALUES (?, ?, 'tracking', ?, 1, 'sent', 1, ?, ?)",
            [(f"status:{m['uuid']}:{_moengage(m)}", m["uuid"],
              _dumps({"status": _moengage(m), "error": m["code"]}), m["at"] + 5, m["at"] + 5)
             for m in rows],
        )  # fmt: skip
        tx.executemany(
            "INSERT INTO trail (at, stage, message_uuid, ref, number, detail)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [row for m in rows for row in _trail(m)],
        )


def _moengage(message):
    return "delivered" if message["state"] == "delivered" else "failed"


def _trail(m):
    at = m["at"]
    vonage = {"status": 202, "ms": 201.3, "tries": 1}
    send = {"received": round(at - 0.21, 3), "campaign_id": m["campaign"],
            "customer_id": f"user-{m['number']}", "http": 200, "ms": 210.4, "vonage": vonage,
            "api_key": "benchkey"}  # fmt: skip
    status = {"vonage_status": m["state"], "timestamp": "2026-11-23T10:00:09Z",
              "price": "0.0333", "currency": "EUR", "parts": "1", "outcome": "new"}  # fmt: skip
    if m["code"]:
        status.update(code=m["code"], reason="Unroutable")
    forward = {"event": _moengage(m), "attempt": 1, "ms": 5.2, "http": 200}
    return [
        (at, "send", m["uuid"], m["ref"], m["number"], _dumps(send)),
        (at + 5, "status", m["uuid"], None, m["number"], _dumps(status)),
        (at + 5.01, "forward", m["uuid"], None, None, _dumps(forward)),
    ]


def _count(tally, m):
    bucket = int(m["at"] // HOUR)
    names = ["sends", "answered", "accepted", "statuses", "forward_ok", "parts", "cost:EUR"]
    names += ["delivered"] if m["state"] == "delivered" else ["failed", "error:1250", "country:44"]
    for name in names:
        n, amount, last = tally.get((bucket, name), (0, 0.0, 0.0))
        tally[(bucket, name)] = (
            n + (0 if name == "cost:EUR" else 1),
            amount + (0.0333 if name == "cost:EUR" else 0.0),
            max(last, m["at"]),
        )


def _write_tally(store, tally):
    key = {"sends", "answered", "accepted", "delivered", "failed", "parts", "cost:EUR",
           "error:1250", "country:44"}  # fmt: skip
    with store.transaction() as tx:
        tx.executemany(
            "INSERT INTO console_tally (bucket, api_key, name, shard, n, amount, last_at)"
            " VALUES (?, ?, ?, 0, ?, ?, ?)",
            [(bucket, "benchkey" if name in key else "", name, n, amount, last)
             for (bucket, name), (n, amount, last) in tally.items()],
        )  # fmt: skip


def _opt_outs(store, rng, now):
    with store.transaction() as tx:
        tx.executemany(
            "INSERT INTO subscriptions (number, state, event_ts, updated_at, synced)"
            " VALUES (?, 'OPTOUT', ?, ?, 1) ON CONFLICT (number) DO NOTHING",
            [(f"4477009{i:05d}", now - rng.random() * 86400 * DAYS, now)
             for i in range(0, NUMBERS, NUMBERS // OPT_OUTS)],
        )  # fmt: skip


def _pending(store, now):
    with store.transaction() as tx:
        tx.executemany(
            "INSERT INTO events (dedupe_key, message_uuid, target, payload, is_final, state,"
            " attempts, last_error, created_at) VALUES (?, ?, 'tracking', '{}', 0, 'pending',"
            " 3, 'MoEngage answered 503', ?)",
            [(f"status:pending-{i}:sent", f"pending-{i}", now - 600 + i) for i in range(PENDING)],
        )
