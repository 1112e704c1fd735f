"""The trail: one row per step of a message's life, read by `flask trace` and `flask report`.

A step is queued per thread by `note()` and written by the next transaction that thread
commits (connector/store/journal.py), so a send's row rides the transaction that records its
answer and a status's row the one that leases its forward: recording adds no commit to the hot
path. What is still queued when the request's answer has gone out (a replayed send, an ignored
status) is written then, in a transaction of its own (`Store.flush_journal`).

Stages and their `detail`: `send` (the request, Vonage's answer and ours, in one row),
`status` (a verified Vonage status and what became of it), `forward` and `sync` (one attempt
to give an event to MoEngage's tracking URL or Data API), `inbound` (a reply, with the
opt-out/opt-in it decided), `subscription` (one made by hand). Rows hold full numbers, as the `sends` table does: only
`trace --json --unmask` shows them.
"""

import json
import re
import threading
import time

from connector.store import journal

_local = threading.local()  # the Vonage call of this thread's send, until its row is queued
_VONAGE_STATUS = re.compile(r"^Vonage (\d{3})\b")


def note(stage, message_uuid=None, ref=None, number=None, at=None, **detail):
    """Queue one step; the thread's next committed transaction writes it (store/journal.py)."""
    detail = {k: v for k, v in detail.items() if v is not None}
    journal.queue(
        (
            time.time() if at is None else at,
            stage,
            message_uuid,
            ref,
            number,
            json.dumps(detail, separators=(",", ":")),
        )
    )


def drop():
    """Forget what an earlier request left queued (its flush failed): never write it elsewhere."""
    journal.drop()
    _local.vonage = None


# -- one send: Vonage's part is kept per thread until the send's row is queued ----------------
def vonage_begin():
    _local.vonage = {"t0": time.monotonic(), "answers": []}


def vonage_answered(status):
    """One HTTP answer from Vonage (called in vonage.py's loop: its tries are these)."""
    vonage = getattr(_local, "vonage", None)
    if vonage is not None:
        vonage["answers"].append(status)


def vonage_end(error=None):
    vonage = getattr(_local, "vonage", None)
    if vonage is not None:
        vonage["ms"] = round((time.monotonic() - vonage["t0"]) * 1000, 1)
        vonage["error"] = error


def _take_vonage(started):
    vonage, _local.vonage = getattr(_local, "vonage", None), None
    if vonage is None or vonage["t0"] < started or "ms" not in vonage:
        return None
    answers = vonage["answers"]
    status = answers[-1] if answers else None
    if status is None and vonage["error"]:
        found = _VONAGE_STATUS.match(vonage["error"])
        status = int(found.group(1)) if found else None
    return {
        "status": status,
        "ms": vonage["ms"],
        "tries": max(len(answers), 1),
        "error": vonage["error"],
    }


def sent(req, status, answer, started, replay=False, api_key=None):
    """Queue the send's row: what MoEngage asked, Vonage's answer, ours, and the API key of a
    send Vonage took (the console's filter by key). Returns Vonage's part (None when Vonage was
    not called) for the warnings."""
    now = time.time()
    elapsed = time.monotonic() - started
    vonage = None if replay else _take_vonage(started)
    note(
        "send",
        answer.get("trackingId") if status == 200 else None,
        req.client_ref,
        req.to,
        at=now,
        received=round(now - elapsed, 3),
        campaign_id=req.campaign_id,
        customer_id=req.customer_id,
        replay=replay or None,
        http=status,
        error=answer.get("error"),
        ms=round(elapsed * 1000, 1),
        vonage=vonage,
        api_key=api_key,
    )
    return vonage


# -- reading --------------------------------------------------------------------------------
_COLUMNS = "at, stage, message_uuid, ref, number, detail"


def _rows(rows):
    return [
        {
            "at": at,
            "stage": stage,
            "message_uuid": uuid,
            "ref": ref,
            "number": number,
            **json.loads(detail),
        }
        for at, stage, uuid, ref, number, detail in rows
    ]


def by(store, column, value):
    """Every row whose `column` (message_uuid, ref or number) is `value`, oldest first."""
    assert column in ("message_uuid", "ref", "number")
    return _rows(
        store.query(f"SELECT {_COLUMNS} FROM trail WHERE {column} = ? ORDER BY at, id", (value,))
    )


def since(store, stages, start, end=None):
    """Rows of the given stages in [start, end), oldest first (the report's day)."""
    marks = ", ".join("?" for _ in stages)
    sql = f"SELECT {_COLUMNS} FROM trail WHERE stage IN ({marks}) AND at >= ?"
    params = [*stages, start]
    if end is not None:
        sql += " AND at < ?"
        params.append(end)
    return _rows(store.query(sql + " ORDER BY at, id", params))
