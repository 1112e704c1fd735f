"""`flask trace ID`: a message's life from the trail, oldest first, one entry per step.

ID is a trackingId (Vonage's message_uuid), a client_ref, or a phone number in any format a
send accepts; a number gives its sends, its replies, and its opt-out/opt-in history.
"""

from datetime import UTC, datetime

from connector import countries, phone
from connector.diagnostics import trail, vonage_errors

FORWARDED = ("new", "pending")
# A message's first step says what it is; a sync with no message is a change made by hand or
# synced when a later send named the user.
DIRECTION = {"inbound": "inbound", "sync": "sync", "subscription": "by hand"}


def iso(epoch):
    return (
        datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def find(store, query, unmask=False, country=""):
    """The trace of `query` as the `--json` object, or None when the trail has nothing on it.
    A number is read as a send's `to` is, national ones as of `country` (DEFAULT_COUNTRY)."""
    query = str(query).strip()
    hide = (lambda n: n) if unmask else phone.mask
    number = None
    rows = trail.by(store, "message_uuid", query)
    if not rows:
        refs = trail.by(store, "ref", query)
        rows = _with_messages(store, refs)
    if not rows:
        try:
            number = phone.normalise(query, country)
        except ValueError:
            return None
        rows = _with_messages(store, trail.by(store, "number", number))
    if not rows:
        return None
    messages = {}
    for row in rows:
        key = row["message_uuid"] or f"-{row['at']}"  # a failed send: a message of its own
        messages.setdefault(key, []).append(row)
    numbers = {row["number"] for row in rows if row["number"] and row["stage"] == "send"}
    number = number or (numbers.pop() if len(numbers) == 1 else None)
    return {
        "query": query,
        "messages": [
            {
                "trackingId": group[0]["message_uuid"],
                "direction": DIRECTION.get(group[0]["stage"], "outbound"),
                "timeline": sorted(
                    (entry for row in _redeliveries(group) for entry in _entries(row, hide)),
                    key=lambda entry: entry["at"],
                ),
            }
            for group in sorted(messages.values(), key=lambda group: group[0]["at"])
        ],
        "subscription": _subscription(store, number, hide) if number else None,
    }


def _with_messages(store, found):
    """The rows found, and every row of the messages among them (their statuses, forwards)."""
    uuids = sorted({row["message_uuid"] for row in found if row["message_uuid"]})
    rows = [row for row in found if not row["message_uuid"]]
    for uuid in uuids:
        rows.extend(trail.by(store, "message_uuid", uuid))
    return sorted(rows, key=lambda row: row["at"])


def _redeliveries(group):
    """Mark each status Vonage posted again (same status, same message) with its count."""
    seen = {}
    for row in sorted(group, key=lambda row: row["at"]):
        if row["stage"] == "status":
            key = row.get("vonage_status")
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > 1:
                row["redelivery"] = seen[key] - 1
        yield row


def _entries(row, hide):
    stage, at = row["stage"], row["at"]
    if stage == "send":
        yield from _send_entries(row, hide)
    elif stage == "status":
        code = row.get("code")
        yield _entry(
            at,
            "status",
            status=row.get("vonage_status"),
            timestamp=row.get("timestamp"),
            code=code,
            reason=row.get("reason"),
            meaning=vonage_errors.meaning(code) if code else None,
            price=row.get("price"),
            currency=row.get("currency"),
            parts=row.get("parts"),
            redelivery=row.get("redelivery"),
            forwarded=row.get("outcome") in FORWARDED,
            why_not=None if row.get("outcome") in FORWARDED else _why_not(row.get("outcome")),
        )
    elif stage in ("forward", "sync"):
        yield _entry(
            at,
            stage,
            event=row.get("event") or row.get("subscription"),
            to=hide(row["number"]) if row.get("number") else None,
            customer_id=row.get("customer_id"),
            attempt=row.get("attempt"),
            http=row.get("http"),
            error=row.get("error"),
            ms=row.get("ms"),
        )
    elif stage == "subscription":
        yield _entry(at, "subscription", state=row.get("state"), by=row.get("by"))
    elif stage == "inbound":
        yield _entry(
            at,
            "inbound",
            **{"from": hide(row["number"])},
            keyword=row.get("keyword"),
            subscription=row.get("subscription"),
            timestamp=row.get("timestamp"),
            redelivery=row.get("redelivery"),
        )
        if row.get("subscription") and not row.get("redelivery"):
            yield _entry(
                at,
                "subscription",
                state=row["subscription"],
                decided_by=row.get("timestamp"),
            )


def _send_entries(row, hide):
    received = row.get("received", row["at"])
    yield _entry(
        received,
        "send",
        to=hide(row["number"]),
        country=countries.label(row["number"]) if row.get("number") else None,
        campaign_id=row.get("campaign_id"),
        client_ref=row.get("ref"),
        customer_id=row.get("customer_id"),
        replay=bool(row.get("replay")),
    )
    vonage = row.get("vonage")
    if vonage:
        yield _entry(
            min(received + vonage["ms"] / 1000, row["at"]),
            "vonage",
            http=vonage.get("status"),
            ms=vonage.get("ms"),
            tries=vonage.get("tries"),
            error=vonage.get("error"),
        )
    yield _entry(
        row["at"],
        "answer",
        http=row.get("http"),
        trackingId=row.get("message_uuid"),
        error=row.get("error"),
        ms=row.get("ms"),
    )


def _why_not(outcome):
    return {
        "duplicate": "a redelivery: MoEngage already has it",
        "superseded": "a final status of this message was stored first (the first one wins)",
        "ignored": "not a status MoEngage tracks",
        "held": "no send of this message recorded yet: answered 503 for Vonage to redeliver",
        "foreign": "not a message this connector sent (none recorded): dropped",
    }.get(outcome, outcome)


def _entry(at, stage, **fields):
    return {"at": iso(at), "stage": stage, **{k: v for k, v in fields.items() if v is not None}}


def _subscription(store, number, hide):
    rows = store.query(
        "SELECT state, event_ts, synced FROM subscriptions WHERE number = ?", (number,)
    )
    history = [
        {"at": iso(row["at"]), "state": row["subscription"], "decided_by": row.get("timestamp")}
        if row["stage"] == "inbound"
        else {"at": iso(row["at"]), "state": row["state"], "decided_by": "by hand"}
        for row in trail.by(store, "number", number)
        if (row["stage"] == "inbound" and row.get("subscription") and not row.get("redelivery"))
        or row["stage"] == "subscription"
    ]
    state, event_ts, synced = rows[0] if rows else (None, None, None)
    return {
        "number": hide(number),
        "state": state,
        "decided_by": iso(event_ts) if event_ts else None,
        "synced_to_moengage": bool(synced) if rows else None,
        "history": history,
    }


# -- the human form -------------------------------------------------------------------------
def lines(traced):
    """One line per step, UTC times, numbers as `find` gave them."""
    out = []
    for message in traced["messages"]:
        title = message["trackingId"] or "(no trackingId: not accepted)"
        out.append(f"{message['direction']} message {title}")
        for entry in message["timeline"]:
            fields = " ".join(
                f"{k}={v}" for k, v in entry.items() if k not in ("at", "stage") and v is not False
            )
            out.append(f"  {entry['at']}  {entry['stage']:<12} {fields}")
    sub = traced["subscription"]
    if sub:
        out.append(
            f"subscription of {sub['number']}: {sub['state'] or 'never opted out'}"
            + (f", decided by Vonage's timestamp {sub['decided_by']}" if sub["decided_by"] else "")
        )
        for change in sub["history"]:
            out.append(f"  {change['at']}  {change['state']} (Vonage: {change['decided_by']})")
    return out
