"""What the console's Overview, Messages and Opt-outs pages show, read from the store.

Each read is bounded for a store of millions of messages: the Overview sums the hourly tally
(store/tally.py), lists are pages of an indexed query, and a message is the trail's own trace.
"""

import json
import time
from datetime import UTC, datetime

from connector import countries, phone
from connector.diagnostics import vonage_errors
from connector.store import OPTOUT
from connector.store import tally as console_tally

PERIODS = {"24h": (24, 1), "7d": (7 * 24, 1), "30d": (30 * 24, 24)}  # hours, hours per bar
PAGE = 25


def overview(store, period, api_key=None, now=None):
    """The Overview's figures for the last `period` (a PERIODS key)."""
    now = time.time() if now is None else now
    hours, per_bar = PERIODS[period]
    last = int(now // console_tally.HOUR)
    first = last - hours + 1
    tally = console_tally.read(store, first, api_key or None)
    totals, costs, errors, places = {}, {}, {}, {}
    bars = {}
    for (bucket, name), (n, amount) in tally.items():
        totals[name] = totals.get(name, 0) + n
        kind, _, label = name.partition(":")
        if kind == "cost":
            costs[label] = costs.get(label, 0.0) + amount
        elif kind == "error":
            errors[label] = errors.get(label, 0) + n
        elif kind == "country":
            places[label] = places.get(label, 0) + n
        elif name in ("sends", "delivered", "failed"):
            bar = bars.setdefault((bucket - first) // per_bar, {})
            bar[name] = bar.get(name, 0) + n
    accepted = totals.get("accepted", 0)
    return {
        "period": period,
        "sends": totals.get("sends", 0),
        "answered": totals.get("answered", 0),
        "accepted": accepted,
        "delivered": totals.get("delivered", 0),
        "failed": totals.get("failed", 0),
        "rate": totals.get("delivered", 0) / accepted if accepted else None,
        "parts": totals.get("parts", 0),
        "cost": {c: f"{v:.4f}" for c, v in sorted(costs.items())},
        "opt_outs": totals.get("optout", 0),
        "opt_ins": totals.get("optin", 0),
        "bars": [
            {
                "start": (first + i * per_bar) * console_tally.HOUR,
                **{k: bars.get(i, {}).get(k, 0) for k in ("sends", "delivered", "failed")},
            }
            for i in range(hours // per_bar)
        ],
        "per_bar": per_bar,
        "errors": [
            {
                "code": code,
                "count": n,
                "meaning": vonage_errors.meaning(code),
                "fix": vonage_errors.FIX.get(code),
            }
            for code, n in sorted(errors.items(), key=lambda item: -item[1])
        ],
        "countries": [
            {"country": countries.describe(code), "count": n}
            for code, n in sorted(places.items(), key=lambda item: -item[1])
        ],
        "api_keys": console_tally.api_keys(store, first),
    }


def pending_count(store, cap=10_000):
    return store.query(
        "SELECT COUNT(*) FROM (SELECT 1 FROM events WHERE state = 'pending' LIMIT ?) AS p", (cap,)
    )[0][0]


# -- messages -------------------------------------------------------------------------------
_SEND_COLUMNS = "at, message_uuid, ref, number, detail"
# `stage || ''` keeps the planners (SQLite's above all) off trail_by_stage when a column with
# few rows per value (message_uuid, ref, number) is also named: scanning every send by stage
# took seconds with a million messages.
_STAGE = "stage || '' = "


def messages(store, query, page):
    """(rows, has_more): sends matching `query` (trackingId, client_ref, campaign id or phone
    number; nothing: every send), newest first, each with its latest status."""
    query = (query or "").strip()
    limit, offset = PAGE + 1, page * PAGE
    if not query:
        rows = _sends(store, "stage = 'send'", (), limit, offset)
    else:
        rows = _search(store, query, limit, offset)
    statuses = _latest_statuses(store, [r[1] for r in rows[:PAGE] if r[1]])
    return [_message_row(row, statuses.get(row[1])) for row in rows[:PAGE]], len(rows) > PAGE


def _sends(store, where, params, limit, offset):
    return store.query(
        f"SELECT {_SEND_COLUMNS} FROM trail WHERE {where} ORDER BY at DESC LIMIT ? OFFSET ?",
        (*params, limit, offset),
    )


def _search(store, query, limit, offset):
    for column in ("message_uuid", "ref"):
        rows = _sends(store, f"{_STAGE}'send' AND {column} = ?", (query,), limit, offset)
        if rows:
            return rows
    uuids = [
        row[0]
        for row in store.query(
            "SELECT tracking_id FROM sends WHERE campaign_id = ? AND tracking_id IS NOT NULL"
            " ORDER BY started_at DESC LIMIT ? OFFSET ?",
            (query, limit, offset),
        )
    ]
    if uuids:
        marks = ", ".join("?" for _ in uuids)
        found = store.query(
            f"SELECT {_SEND_COLUMNS} FROM trail WHERE {_STAGE}'send' AND message_uuid IN ({marks})",
            uuids,
        )
        return sorted(found, key=lambda row: -row[0])
    try:
        number = phone.normalise(query)
    except ValueError:
        return []
    return _sends(store, f"{_STAGE}'send' AND number = ?", (number,), limit, offset)


def _latest_statuses(store, uuids):
    if not uuids:
        return {}
    marks = ", ".join("?" for _ in uuids)
    latest = {}
    for uuid, detail in store.query(
        f"SELECT message_uuid, detail FROM trail WHERE {_STAGE}'status'"
        f" AND message_uuid IN ({marks}) ORDER BY at, id",
        uuids,
    ):
        latest[uuid] = json.loads(detail)
    return latest


def _message_row(row, status):
    at, uuid, ref, number, detail = row
    detail = json.loads(detail)
    error = detail.get("error")
    if status:
        code = status.get("code")
        error = f"{code} {vonage_errors.meaning(code)}" if code else error
    return {
        "at": at,
        "trackingId": uuid,
        "ref": ref,
        "to": phone.mask(number),
        "campaign_id": detail.get("campaign_id"),
        "status": status.get("vonage_status") if status else f"answered {detail.get('http')}",
        "error": error,
    }


# -- opt-outs -------------------------------------------------------------------------------
def opt_outs(store, query, page, limit=PAGE):
    """(rows, has_more): opted-out numbers, newest first, with the reply that opted them out."""
    query = (query or "").strip()
    if query:
        try:
            number = phone.normalise(query)
        except ValueError:
            return [], False
        rows = store.query(
            "SELECT number, event_ts, synced FROM subscriptions WHERE state = ? AND number = ?",
            (OPTOUT, number),
        )
    else:
        rows = store.query(
            "SELECT number, event_ts, synced FROM subscriptions WHERE state = ?"
            " ORDER BY event_ts DESC LIMIT ? OFFSET ?",
            (OPTOUT, limit + 1, page * limit),
        )
    replies = _replies(store, [row[0] for row in rows[:limit]])
    return [
        {"number": r[0], "event_ts": r[1], "synced": bool(r[2]), "reply": replies.get(r[0])}
        for r in rows[:limit]
    ], len(rows) > limit


def _replies(store, numbers):
    """The latest opt-out reply of each number: {number: (keyword, message_uuid)}."""
    if not numbers:
        return {}
    marks = ", ".join("?" for _ in numbers)
    found = {}
    for number, uuid, detail in store.query(
        f"SELECT number, message_uuid, detail FROM trail WHERE {_STAGE}'inbound'"
        f" AND number IN ({marks}) ORDER BY at, id",
        numbers,
    ):
        detail = json.loads(detail)
        if detail.get("subscription") == OPTOUT:
            found[number] = (detail.get("keyword"), uuid)
    return found


def when(epoch):
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ") if epoch else ""
