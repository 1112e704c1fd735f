"""A send's answer is recorded even when the database blinks as it comes back from Vonage.

Once Vonage has answered, the SMS may be out (a message_uuid is known): the answer must reach
the store, so that MoEngage's retry of that send (same client_ref, or identical) is answered
with it instead of waiting on a claim that never ends and then a permanent 504. So recording
is retried for the time the request has left; if the store still cannot take it (PostgreSQL
restarting, the SQLite file moved away), the request is answered with the true answer anyway,
never a 503 (which MoEngage would retry, sending again), and the answer is kept in this process
and written by a background thread as soon as the store takes writes again. Meanwhile a retry
that reaches this process is answered from memory.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from connector.store import StoreUnavailable

if TYPE_CHECKING:
    from connector.store import Store

log = logging.getLogger(__name__)
PAUSE = 0.1  # between tries within a request
RETRY_EVERY = 0.5  # between background tries
MAX_KEPT = 10_000  # answers kept at most (each a few hundred bytes)
KEPT_FOR = 24 * 3600.0  # MoEngage retries a send for far less than this


class Record(NamedTuple):
    key: str
    token: str
    status: int
    answer: Any
    finished_at: float
    remember: bool
    message_uuid: str | None
    kept_at: float


class LateRecords:
    """This process's send answers the store has not taken yet, retried in the background."""

    def __init__(self) -> None:
        self._kept: dict[str, Record] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def record(self, store: Store, record: Record, deadline: float) -> None:
        """Write `record` (Store.finish_send), trying until `deadline` (monotonic); if the
        store still takes no writes, keep it for the background thread instead of raising."""
        while True:
            try:
                _write(store, record)
                return
            except StoreUnavailable as exc:
                if time.monotonic() + PAUSE >= deadline:
                    self._keep(store, record, exc)
                    return
                time.sleep(PAUSE)

    def answer(self, key: str) -> Record | None:
        """The answer kept for `key` (not in the store yet), if any: a retry's answer."""
        with self._lock:
            return self._kept.get(key)

    def __len__(self) -> int:
        return len(self._kept)

    def flush(self, store: Store) -> None:
        """One last try for each kept answer (the app is closing); what is left is logged."""
        with self._lock:
            waiting = list(self._kept.values())
        left = sum(not self._retry(store, record) for record in waiting)
        if left:
            log.error(
                "%d send answers were never recorded: a retry of those sends gets a 504 "
                "(they may have been sent) instead of their trackingId",
                left,
            )

    def _keep(self, store: Store, record: Record, exc: StoreUnavailable) -> None:
        log.warning(
            "the answer to a send (%s%s) could not be recorded yet: %s; kept, and retried "
            "every %g s until the database takes it",
            record.status,
            f", message_uuid={record.message_uuid}" if record.message_uuid else "",
            exc.reason,
            RETRY_EVERY,
        )
        with self._lock:
            if len(self._kept) >= MAX_KEPT:
                log.error("%d unrecorded send answers kept: the oldest is dropped", MAX_KEPT)
                self._kept.pop(next(iter(self._kept)))
            self._kept[record.key] = record
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, args=(store,), name="send-records", daemon=True
                )
                self._thread.start()

    def _run(self, store: Store) -> None:
        while True:
            time.sleep(RETRY_EVERY)
            with self._lock:
                waiting = list(self._kept.values())
                if not waiting:
                    self._thread = None
                    return
            for record in waiting:
                if not self._retry(store, record):
                    break  # the store still takes nothing: the rest wait for the next turn

    def _retry(self, store: Store, record: Record) -> bool:
        try:
            _write(store, record)
        except StoreUnavailable:
            if time.time() - record.kept_at < KEPT_FOR:
                return False
            log.error("gave up recording the answer to a send after %g s", KEPT_FOR)
        except Exception:  # a bug must not end the thread that keeps the others
            log.exception("could not record the answer to a send")
            return False
        else:
            log.info("recorded the answer to a send kept since the database failed")
        with self._lock:
            if self._kept.get(record.key) is record:
                del self._kept[record.key]
        return True


def _write(store: Store, record: Record) -> None:
    store.finish_send(
        record.key,
        record.token,
        record.status,
        record.answer,
        record.finished_at,
        record.remember,
        record.message_uuid,
    )
