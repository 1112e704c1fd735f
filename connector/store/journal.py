"""Rows for the `trail` table, queued by a thread and written by that thread's next transaction.

The trail (connector/diagnostics/trail.py) keeps one row per step of a message's life. A transaction of its
own per row would add a commit to every send and webhook, so a row is queued here and
`Store.transaction()` writes what its own thread queued just before it commits: a send's row
rides the transaction that records its answer, a status's the one that leases its forward.
What a request leaves queued when its answer has gone out is written by `Store.flush_journal()`.
Rows parked with `park()` (a request answered where no transaction follows) are written by the
next transaction of any thread, at most PARKED_PER_TRANSACTION at a time.
"""

import collections
import threading
from collections.abc import Sequence
from typing import Any

from connector.store import tally

Row = tuple[float, str, str | None, str | None, str | None, str]

_local = threading.local()
# Bounded: parked rows wait only for the next send or webhook, and are diagnosis, never events.
_parked: collections.deque[Row] = collections.deque(maxlen=10_000)
PARKED_PER_TRANSACTION = 1000  # so no one transaction grows long carrying them
_INSERT = (
    "INSERT INTO trail (at, stage, message_uuid, ref, number, detail) VALUES (?, ?, ?, ?, ?, ?)"
)


def queue(row: Row) -> None:
    """Queue one trail row for this thread's next committed transaction."""
    rows = getattr(_local, "rows", None)
    if rows is None:
        rows = _local.rows = []
    rows.append(row)


def pending() -> bool:
    return bool(getattr(_local, "rows", None))


def drop() -> None:
    """Forget what this thread queued (an earlier request's flush failed): never written elsewhere."""
    _local.rows = []


def park() -> None:
    """Hand this thread's queued rows to whichever thread commits next."""
    rows, _local.rows = getattr(_local, "rows", None) or [], []
    _parked.extend(rows)


def has_parked() -> bool:
    return bool(_parked)


def take() -> Sequence[Row]:
    """This thread's queued rows and up to PARKED_PER_TRANSACTION parked ones, now removed."""
    rows = getattr(_local, "rows", None) or []
    _local.rows = []
    for _ in range(min(len(_parked), PARKED_PER_TRANSACTION)):
        try:
            rows.append(_parked.popleft())
        except IndexError:  # another thread took the last one
            break
    return rows


def write(tx: Any) -> None:
    """Insert what `take()` gives, in the transaction `tx`."""
    rows = take()
    if rows:
        tx.executemany(_INSERT, rows)
        tally.count(tx, rows)  # the console's hourly counters commit with the rows they count
