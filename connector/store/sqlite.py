"""SQLite backend: the embedded default. WAL, synchronous=FULL; reads on a connection per
thread, writes on one connection per process, committed in groups (group_commit.py).

The file is checked before every transaction: one that was deleted or replaced while the
connector ran (threads would keep writing to the unlinked one, and a new connection would make
an empty one) stops every write with StoreUnavailable, as does a full disk.
"""

import fcntl
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any
from urllib.request import pathname2url

from connector.store.base import Store, StoreUnavailable
from connector.store.group_commit import WAIT_SECONDS, GroupCommit, Turn, stuck
from connector.store.migrations import migrate
from connector.utc import when

BUSY_TIMEOUT_MS = 10_000
LOW_SPACE_BYTES = 1024 * 1024  # /health warns below this much free space beside the file
_OPENING = threading.RLock()  # the group, made under it, makes the write-turn locks too
MISSING = (-1, -1)  # the identity of a database deleted before this process opened it
log = logging.getLogger(__name__)
# SQLite's primary result codes that mean "nothing can be stored now", and what to tell.
UNAVAILABLE = {
    sqlite3.SQLITE_FULL: "the disk holding it is full",
    sqlite3.SQLITE_IOERR: "the disk holding it fails (I/O error)",
    sqlite3.SQLITE_READONLY: "it cannot be written (read-only)",
    sqlite3.SQLITE_CANTOPEN: "it cannot be opened",
}


def _enable_wal(conn: sqlite3.Connection) -> None:
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


class _Connection(sqlite3.Connection):
    """A connection a weak reference can name: close() finds every thread's reading
    connection, and a thread that ends still frees its own. `pid`: the process that opened it."""

    pid = 0


def _flock(fd: int, deadline: float) -> None:
    """Take the lock file's exclusive lock by `deadline` (monotonic), else StoreUnavailable.
    flock cannot be given a timeout, so a busy lock is polled, at first every 0.1 ms: a
    commit takes milliseconds, so the waiter still comes in soon after it."""
    pause = 0.0001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise stuck("the database's write lock (another worker holds it)", WAIT_SECONDS)
            time.sleep(pause)
            pause = min(pause * 2, 0.002)


class SqliteStore(Store):
    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        # (pid, lock among this process's threads, lock file)
        self._writer: tuple[int | None, threading.Lock | None, int | None] = (None, None, None)
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) once the schema is in
        self._failing: tuple[float, str] | None = None  # (since, reason) while writes fail
        self._group: GroupCommit | None = None  # this process's GroupCommit
        self._readers: weakref.WeakSet[_Connection] = weakref.WeakSet()  # each thread's
        self._readers_lock = threading.Lock()

    def _check_file(self) -> None:
        """Raise StoreUnavailable unless the path is still the file this store opened: one
        stat, cheap enough for every transaction."""
        if self._identity is None:
            return
        if self._identity is MISSING:
            raise self._log(self._missing())
        try:
            st = os.stat(self.path)
            found = (st.st_dev, st.st_ino)
        except OSError:
            found = None
        if found != self._identity:
            raise self._log(
                f"the SQLite database DATABASE_PATH={self.path} is not the file the connector "
                f"opened: it was {'replaced' if found else 'deleted'} while the connector ran, "
                "so nothing is stored. Put the file back and restart the connector (restarted "
                "on an empty file, it forgets every opt-out and every send it made)"
            )

    def _missing(self) -> str:
        return (
            f"the SQLite database DATABASE_PATH={self.path} is missing, but {self.path}-lock "
            "shows one was there: it was deleted or moved, so nothing is stored. Put it back "
            "and restart; or, to start on an empty database (forgetting every opt-out and "
            f"send), delete {self.path}-lock too and restart"
        )

    def _unavailable(self, exc: BaseException) -> StoreUnavailable | None:
        """StoreUnavailable for an error that means nothing can be stored, else None."""
        code = getattr(exc, "sqlite_errorcode", None) or getattr(
            exc.__cause__, "sqlite_errorcode", 0
        )
        code = code or 0
        what = UNAVAILABLE.get(code & 0xFF)
        if what is None:
            return None
        reason = f"the SQLite database DATABASE_PATH={self.path} takes no writes: {what}"
        self._failing = (time.time(), reason)
        return self._log(reason)

    @staticmethod
    def _log(reason: str) -> StoreUnavailable:
        log.error("nothing stored, answered 503: %s", reason)
        return StoreUnavailable(reason)

    def _connect(self, **kwargs: Any) -> _Connection:
        # Once the schema is in place, never create the file: a missing one is an error.
        target = self.path
        if self._identity is not None:
            target = f"file:{pathname2url(os.path.abspath(self.path))}?mode=rw"
        conn = sqlite3.connect(
            target,
            isolation_level=None,
            timeout=BUSY_TIMEOUT_MS / 1000,
            factory=_Connection,
            uri=self._identity is not None,
            **kwargs,
        )
        conn.pid = os.getpid()
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            _enable_wal(conn)
            # FULL: an answer we gave (a 200 to MoEngage, a 2xx to Vonage) survives power loss.
            conn.execute("PRAGMA synchronous = FULL")
        except BaseException:
            conn.close()
            raise
        return conn

    def _connection(self) -> sqlite3.Connection:
        # A connection never crosses a fork or a thread: gunicorn forks workers after import.
        # (check_same_thread=False only so that close() may close it from another thread.)
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            self._check_file()
            conn = self._connect(check_same_thread=False)
            self._local.conn, self._local.pid = conn, os.getpid()
            with self._readers_lock:
                self._readers.add(conn)
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """This process's writes share commits (GroupCommit); the file is checked first."""
        try:
            self._check_file()
            group = self._group
            if group is None or group.pid != os.getpid():
                with _OPENING:
                    if self._group is None or self._group.pid != os.getpid():
                        writer = self._connect(check_same_thread=False)
                        self._group = GroupCommit(writer, self._turn)
                group = self._group
            with group.transaction() as conn:
                yield conn
        except sqlite3.Error as exc:
            raise self._unavailable(exc) or exc
        self._failing = None

    def _turn(self) -> Turn:
        """(take, give back): the write turn of `_write_turn`, in two calls a group can split;
        taking it waits at most WAIT_SECONDS, then raises StoreUnavailable."""
        self._write_turn_locks()
        _, threads, lock_file = self._writer
        assert threads is not None and lock_file is not None

        def take() -> None:
            deadline = time.monotonic() + WAIT_SECONDS
            if not threads.acquire(timeout=WAIT_SECONDS):
                raise stuck("this worker's write turn", WAIT_SECONDS)
            try:
                _flock(lock_file, deadline)
            except BaseException:
                threads.release()
                raise

        def give_back() -> None:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_UN)
            finally:
                threads.release()

        return take, give_back

    @contextmanager
    def _solo_transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction alone on this thread's connection (schema steps)."""
        # IMMEDIATE takes the write lock up front: a deferred read-then-write transaction fails
        # with "database is locked" under concurrent workers, whatever the busy timeout.
        try:
            conn = self._connection()
            self._check_file()
            with self._write_turn():
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    # SQLite rolls back by itself after some errors (a full disk, say), and a
                    # failed COMMIT leaves the transaction open: end it either way.
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise self._unavailable(exc) or exc
        self._failing = None

    @contextmanager
    def _write_turn(self) -> Iterator[None]:
        """Writers queue here first: a thread lock, then a file lock shared by all workers.

        SQLite's own wait for a busy database sleeps and polls (up to 100 ms a try), so under
        load some writers wait seconds while the lock sits free; a queued writer here wakes
        as soon as the one before it commits. busy_timeout still covers other programs.
        """
        self._write_turn_locks()
        _, threads, lock_file = self._writer
        assert threads is not None and lock_file is not None
        with threads:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _write_turn_locks(self) -> None:
        if self._writer[0] != os.getpid():  # a new worker: its own locks, never the parent's
            with _OPENING:
                if self._writer[0] != os.getpid():
                    lock_file = os.open(f"{self.path}-lock", os.O_RDWR | os.O_CREAT, 0o600)
                    self._writer = (os.getpid(), threading.Lock(), lock_file)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            conn = self._connection()
            self._check_file()
            return conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._unavailable(exc) or exc

    def init_schema(self) -> list[int]:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        if not os.path.exists(self.path) and os.path.exists(f"{self.path}-lock"):
            # The lock file is made with the database: it was deleted. A worker gunicorn starts
            # again meanwhile must not begin a new, empty one; it answers 503 like the others
            # (and stays up, so theirs keep the deleted file open for recovery).
            self._identity = MISSING
            log.error("%s", self._missing())
            return []
        ran = migrate(self, {"id": "INTEGER PRIMARY KEY AUTOINCREMENT", "real": "REAL"})
        st = os.stat(self.path)
        self._identity = (st.st_dev, st.st_ino)  # from now on, this file and no other
        return ran

    def problems(self) -> list[str]:
        """Why writes may fail though the file answers: the last write found no disk, or the
        disk is all but full."""
        found = []
        if self._failing:
            since, reason = self._failing
            found.append(f"{reason} (since {when(since)})")
        try:
            disk = os.statvfs(os.path.dirname(os.path.abspath(self.path)))
        except OSError:
            return found
        free = disk.f_bavail * disk.f_frsize
        if free < LOW_SPACE_BYTES:
            found.append(
                f"the disk holding DATABASE_PATH={self.path} has {free // 1024} KiB free: "
                "writes fail once it is full"
            )
        return found

    def schema_version(self) -> int:
        if not self.query("SELECT 1 FROM sqlite_master WHERE name = 'schema_version'"):
            return 0
        rows = self.query("SELECT version FROM schema_version")
        return rows[0][0] if rows else 0

    def schema_transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        return self._solo_transaction()  # BEGIN IMMEDIATE behind the lock file, alone

    def close(self) -> None:
        """Close what this process opened: every thread's reading connection, the shared
        writing one and the lock file. A later use opens them again."""
        pid = os.getpid()
        with _OPENING:
            with self._readers_lock:
                readers, self._readers = list(self._readers), weakref.WeakSet()
            group, self._group = self._group, None
            writer, self._writer = self._writer, (None, None, None)
            self._local = threading.local()
        for conn in readers:
            if conn.pid == pid:  # a parent's are the parent's to close
                conn.close()
        if group is not None and group.pid == pid:
            group.close()
        if writer[0] == pid and writer[2] is not None:
            os.close(writer[2])

    def describe(self) -> str:
        return f"sqlite:{self.path}"
