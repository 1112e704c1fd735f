"""SQLite backend: the embedded default. WAL, synchronous=FULL, one connection per thread."""

import fcntl
import os
import sqlite3
import threading
import time
from contextlib import contextmanager

from .base import Store
from .migrations import migrate

BUSY_TIMEOUT_MS = 10_000
_OPENING = threading.Lock()


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

    def _connection(self):
        # A connection never crosses a fork or a thread: gunicorn forks workers after import.
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            _enable_wal(conn)
            # FULL: an answer we gave (a 200 to MoEngage, a 2xx to Vonage) survives power loss.
            conn.execute("PRAGMA synchronous = FULL")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextmanager
    def transaction(self):
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
        if self._writer[0] != os.getpid():  # a new worker: its own locks, never the parent's
            with _OPENING:
                if self._writer[0] != os.getpid():
                    lock_file = os.open(f"{self.path}-lock", os.O_RDWR | os.O_CREAT, 0o600)
                    self._writer = (os.getpid(), threading.Lock(), lock_file)
        _, threads, lock_file = self._writer
        with threads:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

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
        return self.transaction()  # BEGIN IMMEDIATE behind the lock file: one writer at a time

    def close(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        self._local.conn = None

    def describe(self):
        return f"sqlite:{self.path}"
