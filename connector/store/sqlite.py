"""SQLite backend: the embedded default. WAL, synchronous=FULL; reads on a connection per thread,
writes on one connection per process, committed in groups (see `GroupCommit`)."""

import fcntl
import os
import sqlite3
import threading
import time
from contextlib import contextmanager

from .base import Store
from .migrations import migrate

BUSY_TIMEOUT_MS = 10_000
MAX_GROUP = 64  # transactions one commit covers at most, so a steady stream cannot delay it
_OPENING = threading.RLock()  # the group, made under it, makes the write-turn locks too


def _enable_wal(conn):
    """WAL is kept in the file, so only a new file needs the switch. Workers that open a new
    file at once all try it; the switch needs an exclusive lock that SQLite does not wait for
    (busy_timeout does not apply), so the losers retry instead of failing to boot."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


class SqliteStore(Store):
    def __init__(self, path):
        self.path = path
        self._local = threading.local()
        self._writer = (None, None, None)  # (pid, lock among this process's threads, lock file)
        self._group = None

    def _connect(self, **kwargs):
        conn = sqlite3.connect(
            self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, **kwargs
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        _enable_wal(conn)
        # FULL: an answer we gave (a 200 to MoEngage, a 2xx to Vonage) survives power loss.
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    def _connection(self):
        # A connection never crosses a fork or a thread: gunicorn forks workers after import.
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = self._connect()
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def transaction(self):
        """This process's writes share commits: see GroupCommit."""
        group = self._group
        if group is None or group.pid != os.getpid():
            with _OPENING:
                if self._group is None or self._group.pid != os.getpid():
                    self._group = GroupCommit(self._connect(check_same_thread=False), self._turn)
            group = self._group
        return group.transaction()

    def _turn(self):
        """(take, give back): the write turn of `_write_turn`, in two calls a group can split."""
        self._write_turn_locks()
        _, threads, lock_file = self._writer

        def take():
            threads.acquire()
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX)
            except BaseException:
                threads.release()
                raise

        def give_back():
            fcntl.flock(lock_file, fcntl.LOCK_UN)
            threads.release()

        return take, give_back

    @contextmanager
    def _solo_transaction(self):
        # IMMEDIATE takes the write lock up front: a deferred read-then-write transaction fails
        # with "database is locked" under concurrent workers, whatever the busy timeout.
        conn = self._connection()
        with self._write_turn():
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def _write_turn(self):
        """Writers queue here first: a thread lock, then a file lock shared by all workers.

        SQLite's own wait for a busy database sleeps and polls (up to 100 ms a try), so under
        load some writers wait seconds while the lock sits free; a queued writer here wakes
        as soon as the one before it commits. busy_timeout still covers other programs.
        """
        self._write_turn_locks()
        _, threads, lock_file = self._writer
        with threads:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _write_turn_locks(self):
        if self._writer[0] != os.getpid():  # a new worker: its own locks, never the parent's
            with _OPENING:
                if self._writer[0] != os.getpid():
                    lock_file = os.open(f"{self.path}-lock", os.O_RDWR | os.O_CREAT, 0o600)
                    self._writer = (os.getpid(), threading.Lock(), lock_file)

    def query(self, sql, params=()):
        return self._connection().execute(sql, params).fetchall()

    def init_schema(self):
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        return migrate(self, {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "real": "REAL"})

    def schema_version(self):
        if not self.query("SELECT 1 FROM sqlite_master WHERE name = 'schema_version'"):
            return 0
        rows = self.query("SELECT version FROM schema_version")
        return rows[0][0] if rows else 0

    def schema_transaction(self):
        return self._solo_transaction()  # BEGIN IMMEDIATE behind the lock file, alone

    def close(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    def describe(self):
        return f"sqlite:{self.path}"


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
