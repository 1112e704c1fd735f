"""Group commit for SQLite: one fsync for every write transaction of a process that queued
while the last commit was on disk."""

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from connector.store.base import StoreUnavailable

MAX_GROUP = 64  # transactions one commit covers at most, so a steady stream cannot delay it
# The longest a transaction waits for this process's connection or for its group's commit. A
# write takes milliseconds; one that waited this long is behind a wedged or dying disk, and
# its request is answered 503 (MoEngage and Vonage retry) instead of holding its thread.
WAIT_SECONDS = 5.0
log = logging.getLogger(__name__)

Turn = tuple[Callable[[], None], Callable[[], None]]


class _Group:
    def __init__(self) -> None:
        self.members = 0
        self.done = threading.Event()  # its own, so a commit wakes its members only
        self.error: BaseException | None = None


def stuck(what: str, seconds: float) -> StoreUnavailable:
    reason = (
        f"a write to the SQLite database waited over {seconds:g} s for {what}: the disk or "
        "this worker is stuck; retry later"
    )
    log.error("nothing stored, answered 503: %s", reason)
    return StoreUnavailable(reason, retry_after=1)


class GroupCommit:
    """One process's write transactions, committed several at a time: each caller still returns
    only once its own writes are committed with synchronous=FULL, but one fsync covers all the
    transactions that queued while the last commit was on disk.

    Under load a commit's fsync (ms on a busy disk) is what limits writes, not SQLite: with one
    fsync per transaction, sends (two each) stopped at a few hundred per second. Each caller's
    body runs alone on the shared connection inside a SAVEPOINT, so a body that raises undoes
    only its own writes; the body that finds no one else waiting commits the group, and every
    member gets the commit's outcome (an error if it failed, as if its own commit had). Reads
    outside transactions stay on each thread's connection and see only committed data.

    No step can leave the connection taken: whatever raises (a commit, a rollback, giving the
    write turn back), the connection is released and the next transaction can run, and every
    wait ends within `wait` seconds with StoreUnavailable (a 503), never a hung thread.
    """

    def __init__(
        self, conn: sqlite3.Connection, turn: Callable[[], Turn], wait: float = WAIT_SECONDS
    ) -> None:
        self.pid = os.getpid()
        self.conn = conn
        self.wait = wait
        self.take_turn, self.give_turn = turn()
        self._turn_held = False  # the write turn, kept if giving it back failed
        # Threads waiting for the connection; each release wakes one (waking all of them
        # cost a sixth of a webhook's CPU under load).
        self._cond = threading.Condition()
        self._busy = False  # a body, a BEGIN or a COMMIT has the connection
        self._wanting = 0
        self._group: _Group | None = None  # the open transaction's _Group, if one is open

    def close(self, wait: float = 5.0) -> None:
        """Close the connection once no transaction holds it: a background prune or sweep may
        be mid-commit, and closing a sqlite3 connection under another thread crashes it. After
        `wait` it is closed anyway; nothing new starts on it (its store opens a new group)."""
        deadline = time.monotonic() + wait
        with self._cond:
            while (self._busy or self._group is not None) and time.monotonic() < deadline:
                self._cond.wait(max(0.0, min(0.05, deadline - time.monotonic())))
            self._busy = True
            self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        group = self._take_connection()
        if group is None:
            try:
                group = self._begin()
            except BaseException:
                self._release(None)
                raise
        try:
            self._run_body(group)
            yield self.conn
            self.conn.execute("RELEASE body")
            group.members += 1
        except BaseException as exc:
            self._undo_body(group, exc)
            raise
        finally:
            self._finish(group)
        if group.error is not None:
            raise sqlite3.OperationalError(f"commit failed: {group.error}") from group.error

    def _take_connection(self) -> "_Group | None":
        """Wait (at most `wait` s) for the shared connection; the open group, if any."""
        deadline = time.monotonic() + self.wait
        with self._cond:
            self._wanting += 1
            try:
                while self._busy:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise stuck("this worker's connection", self.wait)
                    self._cond.wait(left)
            finally:
                self._wanting -= 1
            self._busy = True
            return self._group

    def _run_body(self, group: _Group) -> None:
        try:
            self.conn.execute("SAVEPOINT body")
        except BaseException as exc:
            group.error = exc
            raise

    def _undo_body(self, group: _Group, exc: BaseException) -> None:
        """Undo only this body's writes; if that cannot be done, the whole group fails."""
        if group.error is not None:
            return
        try:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK TO body")
                self.conn.execute("RELEASE body")
                return
        except Exception as error:  # noqa: BLE001 - whatever it was, the group cannot commit
            exc = error
        group.error = exc  # SQLite rolled back the transaction (or could not undo the body)

    def _begin(self) -> _Group:
        self._settle()
        if not self._turn_held:
            self.take_turn()
            self._turn_held = True
        try:
            # IMMEDIATE takes the write lock up front: a deferred read-then-write transaction
            # fails with "database is locked" under concurrent workers, whatever busy_timeout.
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._give_turn()
            raise
        self._group = _Group()
        return self._group

    def _settle(self) -> None:
        """A transaction a failed ROLLBACK left open is ended before the next one begins."""
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    def _finish(self, group: _Group) -> None:
        """Commit now if no one waits to join (or the group is full), else wait for the one who
        will; either way return once the group's commit is over (or `wait` has passed)."""
        with self._cond:
            join = self._wanting and group.members < MAX_GROUP and group.error is None
            if join:
                self._busy = False
                self._cond.notify()
            else:
                self._group = None
        if join:
            if not group.done.wait(self.wait):
                raise stuck("its group's commit", self.wait)
            return
        try:
            self._commit(group)
        finally:
            try:
                self._give_turn()
            finally:
                self._release(group)

    def _commit(self, group: _Group) -> None:
        try:
            if group.error is None:
                self.conn.execute("COMMIT")
        except BaseException as exc:  # every member is told the commit failed
            group.error = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            try:
                self._settle()
            except Exception as exc:  # noqa: BLE001 - the next _begin rolls back again
                log.error("could not roll back a failed SQLite commit: %s", exc)
                group.error = group.error or exc

    def _give_turn(self) -> None:
        """Give the write turn back; if that fails, this process keeps it, and its next
        transaction uses it and tries again (correctness is SQLite's lock, the turn only
        orders the writers)."""
        try:
            self.give_turn()
            self._turn_held = False
        except Exception:  # logged; the turn is given back at the next commit
            log.exception("could not give the SQLite write turn back; kept for the next write")

    def _release(self, group: _Group | None) -> None:
        try:
            with self._cond:
                self._busy = False
                self._cond.notify()
        finally:
            if group is not None:
                group.done.set()
