"""Evidence for the warnings: counters per cause, added up in memory and written to the
`evidence` table at most every EVIDENCE_FLUSH_SECONDS per worker, after a response has gone
out. Every worker and instance reads the same rows, and a send pays one dict update.

A row is one cause (`key`, e.g. `carrier:91:1480`) of one warning (`code`): how many times it
was seen in the current episode, since when, when last, and the last occurrence's detail
(never a secret or a full number). An episode ends when a cause was not seen for
WARNING_CLEAR_SECONDS; the next sighting starts a new count.
"""

import json
import threading
import time

from connector.utc import iso

_UPSERT = (
    "INSERT INTO evidence (key, code, count, since, last_seen, detail) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET"
    " count = CASE WHEN evidence.last_seen < ? THEN excluded.count"
    " ELSE evidence.count + excluded.count END,"
    " since = CASE WHEN evidence.last_seen < ? THEN excluded.since ELSE evidence.since END,"
    " last_seen = CASE WHEN excluded.last_seen > evidence.last_seen THEN excluded.last_seen"
    " ELSE evidence.last_seen END,"
    " detail = excluded.detail"
)


class Evidence:
    """One per app: the counters this worker saw since its last flush."""

    def __init__(self, flush_seconds, clear_seconds):
        self.flush_seconds = flush_seconds
        self.clear_seconds = clear_seconds
        self._counts = {}
        self._lock = threading.Lock()
        self._flushed = float("-inf")  # a worker's first sighting is written at once

    def seen(self, code, key, **detail):
        """Count one sighting of cause `key` of warning `code`."""
        now = time.time()
        with self._lock:
            entry = self._counts.get(key)
            if entry is None:
                self._counts[key] = [code, 1, now, now, detail]
            else:
                entry[1] += 1
                entry[3] = now
                entry[4] = detail

    def due(self):
        return bool(self._counts) and time.monotonic() - self._flushed >= self.flush_seconds

    def flush(self, store):
        """Write the counters in one transaction; on failure they are counted again next time."""
        with self._lock:
            taken, self._counts = self._counts, {}
            self._flushed = time.monotonic()
        if not taken:
            return
        try:
            with store.transaction() as tx:
                for key, (code, count, first, last, detail) in sorted(taken.items()):
                    episode_over = first - self.clear_seconds
                    tx.execute(
                        _UPSERT,
                        (
                            key,
                            code,
                            count,
                            first,
                            last,
                            json.dumps(detail),
                            episode_over,
                            episode_over,
                        ),
                    )
        except Exception:
            with self._lock:
                for key, entry in taken.items():
                    self._counts.setdefault(key, entry)
            raise


def read(store, since):
    """{key: row} of the causes seen after `since` (epoch seconds)."""
    return {
        key: {
            "code": code,
            "count": count,
            "since": first,
            "last_seen": last,
            "detail": json.loads(detail),
        }
        for key, code, count, first, last, detail in store.query(
            "SELECT key, code, count, since, last_seen, detail FROM evidence WHERE last_seen >= ?",
            (since,),
        )
    }


def warning(code, message, fix, row):
    """One warning as /health and `doctor` show it, from its evidence row."""
    return {
        "code": code,
        "message": message,
        "fix": fix,
        "since": iso(row["since"]),
        "count": row["count"],
    }
