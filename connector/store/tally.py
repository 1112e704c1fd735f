"""The console's counters: what the Overview shows, added up as the trail is written.

`count(tx, rows)` runs inside the transaction that writes trail rows (trail.write), so a send's
counters commit with its answer and a status's with its forward: nothing is counted twice or
lost, and the Overview sums one row per hour and name instead of scanning a million messages.
A message's delivery, failure, cost and parts are counted once, from its first final status
(the one the store recorded as new); redeliveries and statuses after a final one are not.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from connector import countries

if TYPE_CHECKING:
    from connector.store import Store

HOUR = 3600
SHARDS = 8  # rows per hour and name: concurrent PostgreSQL transactions rarely share one
DELIVERED = "delivered"
FAILED = ("rejected", "undeliverable", "failed")

_UPSERT = (
    "INSERT INTO console_tally (bucket, api_key, name, shard, n, amount, last_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (bucket, api_key, name, shard) DO UPDATE SET"
    " n = console_tally.n + excluded.n, amount = console_tally.amount + excluded.amount,"
    " last_at = CASE WHEN excluded.last_at > console_tally.last_at"
    " THEN excluded.last_at ELSE console_tally.last_at END"
)


def count(tx: Any, rows: Sequence[tuple]) -> None:
    """Add the trail rows just written to the hour they happened in."""
    totals: dict[tuple[int, str, str], tuple[int, float, float]] = {}
    for at, stage, message_uuid, _ref, number, detail in rows:
        for api_key, name, n, amount in _names(tx, stage, message_uuid, number, json.loads(detail)):
            key = (int(at // HOUR), api_key or "", name)
            n0, amount0, last0 = totals.get(key, (0, 0.0, 0.0))
            totals[key] = (n0 + n, amount0 + amount, max(last0, at))
    if totals:
        shard = random.randrange(SHARDS)
        # Sorted, so two transactions always lock rows in the same order (no deadlock).
        tx.executemany(
            _UPSERT,
            [
                (b, k, name, shard, n, a, last)
                for (b, k, name), (n, a, last) in sorted(totals.items())
            ],
        )


def _names(tx, stage, message_uuid, number, detail):
    """(api_key, counter name, n, amount) for one trail row."""
    if stage == "send":
        key = detail.get("api_key")
        yield key, "sends", 1, 0.0
        if detail.get("http") == 200:
            yield key, "answered", 1, 0.0
            if message_uuid and not detail.get("replay"):
                yield key, "accepted", 1, 0.0
    elif stage == "status":
        yield None, "statuses", 1, 0.0
        state = detail.get("vonage_status")
        if detail.get("outcome") == "new" and (state == DELIVERED or state in FAILED):
            yield from _final(tx, message_uuid, number, state, detail)
    elif stage == "inbound" and not detail.get("redelivery"):
        if detail.get("subscription") in ("OPTOUT", "OPTIN"):
            yield None, detail["subscription"].lower(), 1, 0.0
    elif stage == "subscription" and detail.get("state") in ("OPTOUT", "OPTIN"):
        yield None, detail["state"].lower(), 1, 0.0
    elif stage in ("forward", "sync") and detail.get("http"):
        yield None, f"{stage}_ok", 1, 0.0


def _final(tx, message_uuid, number, state, detail):
    key = _send_key(tx, message_uuid)
    if state == DELIVERED:
        yield key, "delivered", 1, 0.0
    else:
        yield key, "failed", 1, 0.0
        yield key, f"error:{detail.get('code') or state}", 1, 0.0
        if number:
            yield key, f"country:{countries.key(number)}", 1, 0.0
    if detail.get("price") is not None:
        yield key, f"cost:{detail.get('currency') or '?'}", 0, _float(detail["price"])
    if detail.get("parts") is not None:
        yield key, "parts", int(_float(detail["parts"])), 0.0


def _send_key(tx, message_uuid):
    """The API key the message was sent with, from its send's trail row. `stage || ''` keeps
    SQLite on trail_by_message: without statistics it picked trail_by_stage and scanned every
    send's row, inside the write transaction of every status webhook."""
    row = tx.execute(
        "SELECT detail FROM trail WHERE message_uuid = ? AND stage || '' = 'send' LIMIT 1",
        (message_uuid,),
    ).fetchone()
    return json.loads(row[0]).get("api_key") if row else None


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


# -- reading --------------------------------------------------------------------------------
def read(
    store: Store, start_bucket: int, api_key: str | None = None
) -> dict[tuple[int, str], tuple[int, float]]:
    """{(bucket, name): (n, amount)} from `start_bucket` on, for one API key or all."""
    sql = "SELECT bucket, name, SUM(n), SUM(amount) FROM console_tally WHERE bucket >= ?"
    params: list[int | str] = [start_bucket]
    if api_key is not None:
        sql += " AND api_key = ?"
        params.append(api_key)
    rows = store.query(sql + " GROUP BY bucket, name", params)
    return {(bucket, name): (int(n), float(amount)) for bucket, name, n, amount in rows}


def api_keys(store: Store, start_bucket: int) -> list[str]:
    """The API keys that sent since `start_bucket`, sorted."""
    rows = store.query(
        "SELECT DISTINCT api_key FROM console_tally WHERE bucket >= ? AND api_key != ''",
        (start_bucket,),
    )
    return sorted(row[0] for row in rows)


def last_seen(store: Store, name: str) -> float | None:
    """When a counter last moved (the Setup page's live checks), or None."""
    rows = store.query(
        "SELECT MAX(last_at) FROM console_tally WHERE name = ? AND bucket ="
        " (SELECT MAX(bucket) FROM console_tally WHERE name = ?)",
        (name, name),
    )
    return rows[0][0] if rows else None
