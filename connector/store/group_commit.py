"""Group commit for SQLite: one fsync for every write transaction of a process that queued
while the last commit was on disk."""

import os
import sqlite3
import threading
from contextlib import contextmanager

MAX_GROUP = 64  # transactions one commit covers at most, so a steady stream cannot delay it


class _Group:
    def __init__(self):
        self.members = 0
        self.done = threading.Event()  # its own, so a commit wakes its members only
        self.error = None


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
    """

    def __init__(self, conn, turn):
        self.pid = os.getpid()
        self.conn = conn
        self.take_turn, self.give_turn = turn()
        # Threads waiting for the connection; each release wakes one (waking all of them
        # cost a sixth of a webhook's CPU under load).
        self._cond = threading.Condition()
        self._busy = False  # a body, a BEGIN or a COMMIT has the connection
        self._wanting = 0
        self._group = None  # the open transaction's _Group, if one is open

    @contextmanager
    def transaction(self):
        with self._cond:
            self._wanting += 1
            while self._busy:
                self._cond.wait()
            self._busy, self._wanting = True, self._wanting - 1
            group = self._group
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

    def _run_body(self, group):
        try:
            self.conn.execute("SAVEPOINT body")
        except BaseException as exc:
            group.error = exc
            raise

    def _undo_body(self, group, exc):
        """Undo only this body's writes; if that cannot be done, the whole group fails."""
        if group.error is not None:
            return
        try:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK TO body")
                self.conn.execute("RELEASE body")
                return
        except sqlite3.Error as error:
            exc = error
        group.error = exc  # SQLite rolled back the transaction (or could not undo the body)

    def _begin(self):
        self.take_turn()
        try:
            # IMMEDIATE takes the write lock up front: a deferred read-then-write transaction
            # fails with "database is locked" under concurrent workers, whatever busy_timeout.
            self.conn.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.give_turn()
            raise
        self._group = _Group()
        return self._group

    def _finish(self, group):
        """Commit now if no one waits to join (or the group is full), else wait for the one who
        will; either way return once the group's commit is over."""
        with self._cond:
            join = self._wanting and group.members < MAX_GROUP and group.error is None
            if join:
                self._busy = False
                self._cond.notify()
            else:
                self._group = None
        if join:
            group.done.wait()
            return
        try:
            if group.error is None:
                self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            group.error = exc
        try:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
        finally:
            self.give_turn()
            self._release(group)

    def _release(self, group):
        with self._cond:
            self._busy = False
            self._cond.notify()
        if group is not None:
            group.done.set()
