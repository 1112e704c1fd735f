"""PostgreSQL backend, used when DATABASE_URL is set: a PaaS wipes the disk a SQLite file lives on.

One connection pool per process of at most DATABASE_POOL_SIZE connections, whatever the number
of threads: a database plan allows so many connections, and instances x workers x pool size
must stay under it (README, "Connection budget"). A thread waits at most WAIT_SECONDS for one,
then the request is answered 503 (DatabaseUnavailable). The queries are base.py's; row
locks (`SELECT ... FOR UPDATE`) and `INSERT ... ON CONFLICT` give the guarantees SQLite gets
from `BEGIN IMMEDIATE`. Durability: a COMMIT returns only once its WAL is flushed
(`synchronous_commit = on`, PostgreSQL's default, set again on every connection in case the
server's default differs), so whatever the connector answered survives a crash.
"""

import functools
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from connector.store import pg_locks
from connector.store.base import Store, StoreUnavailable
from connector.store.migrations import migrate

log = logging.getLogger(__name__)
SCHEMA_LOCK = 0x56534D53  # pg_advisory_xact_lock key: workers starting together migrate once
MESSAGE_LOCK = 0x4D534753  # (MESSAGE_LOCK, hashtext(message_uuid)): one decider per message
# MoEngage waits 5 s for a whole send. Queries take milliseconds, so a thread that waited 1 s
# for a connection is behind a database that is down or swamped: answering 503 then leaves
# MoEngage time to retry, where waiting out its budget (the old 5 s) left it no answer at all.
WAIT_SECONDS = 1.0
PING_WAIT_SECONDS = 0.5  # /health answers within 1 s even with the database down
# Pool connections: a connection attempt to an unreachable host gives up after this (it runs in
# the pool's own threads, never a request's), and a connection whose packets go unacknowledged
# this long is dropped by the kernel instead of hanging a query for minutes.
CONNECT_TIMEOUT = 5
TCP_USER_TIMEOUT_MS = 5000
APPLICATION_NAME = "vonage-sms-connector"
CHECK_AFTER_IDLE_SECONDS = 1.0
DATABASE_TIME = "SELECT extract(epoch FROM clock_timestamp())::float8"


class DatabaseUnavailable(StoreUnavailable):
    """No database connection in time, or it broke: answered 503, so the caller retries."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"the database is unavailable: {reason}; retry later", retry_after=1)


@functools.cache
def _dialect(sql: str) -> str:
    # base.py writes `?` placeholders and holds no literal `?` or `%`.
    return sql.replace("?", "%s")


class _Transaction:
    """What base.py's `with self.transaction() as tx` gets: `execute` with `?` placeholders."""

    def __init__(self, conn: psycopg.Connection) -> None:
        self.conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.conn.execute(_dialect(sql), params)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> Any:
        cursor = self.conn.cursor()
        cursor.executemany(_dialect(sql), rows)
        return cursor


def _configure(limits: pg_locks.Timeouts, conn: psycopg.Connection) -> None:
    conn.execute(pg_locks.settings_sql(limits))


def _check_if_idle(conn: psycopg.Connection) -> None:
    """Check a connection before use only if it sat idle: one used a moment ago was alive then,
    and checking every time would add a round trip to every query (a third of a send's). An
    idle one may have been cut by a database restart or failover; it is replaced before a
    request gets it. One cut while busy fails its query: DatabaseUnavailable, 503, replaced."""
    if time.monotonic() - getattr(conn, "_connector_used", 0.0) > CHECK_AFTER_IDLE_SECONDS:
        ConnectionPool.check_connection(conn)


class PostgresStore(Store):
    lock = " FOR UPDATE"

    def lock_message(self, tx, message_uuid: str) -> None:
        """Held to the transaction's end; a row lock cannot do it, since a message's first
        status has no row to lock yet. Two messages sharing a hash only wait for each other."""
        tx.execute("SELECT pg_advisory_xact_lock(?, hashtext(?))", (MESSAGE_LOCK, message_uuid))

    def __init__(self, url: str, pool_size: int, budget: float | None = None) -> None:
        """`budget`: the seconds a request's statements must fit in (VONAGE_TIMEOUT); their
        lock and statement timeouts are shares of it (pg_locks.py). None: an operator's
        command, which may take its time."""
        self.url = url
        self.pool_size = max(pool_size, 1)
        self.timeouts = pg_locks.timeouts(budget)
        self._lock_waits = pg_locks.LockWaits()
        self._pool: ConnectionPool | None = None
        self._pid: int | None = None
        self._inherited: ConnectionPool | None = None
        self._pool_lock = threading.Lock()
        self._use: dict[str, int] = {"in_use": 0, "waiting": 0}  # this process's threads

    def _connections(self) -> ConnectionPool:
        # A pool never crosses a fork: its threads stay behind and its sockets are the parent's.
        pool = self._pool
        if pool is not None and self._pid == os.getpid():
            return pool
        with self._pool_lock:
            if self._pool is None or self._pid != os.getpid():
                # An inherited pool is kept, not closed: closing would end the parent's sessions.
                self._inherited = self._pool
                self._pool = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self.pool_size,
                    open=False,
                    kwargs=self._pool_kwargs(),
                    configure=functools.partial(_configure, self.timeouts),
                    check=_check_if_idle,
                    timeout=WAIT_SECONDS,
                    name="connector",
                )
                self._pool.open()
                self._pid = os.getpid()
                self._use = {"in_use": 0, "waiting": 0}
            return self._pool

    def _pool_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": CONNECT_TIMEOUT,
            "tcp_user_timeout": TCP_USER_TIMEOUT_MS,
        }
        # Named in pg_stat_activity, so the connections the budget counts can be seen
        # (`SELECT count(*) FROM pg_stat_activity WHERE application_name = '...'`).
        if "application_name" not in conninfo_to_dict(self.url):
            kwargs["application_name"] = APPLICATION_NAME
        return kwargs

    @contextmanager
    def _connection(self, wait: float = WAIT_SECONDS) -> Iterator[psycopg.Connection]:
        """A pooled connection, or DatabaseUnavailable after `wait` s or when it breaks."""
        pool = self._connections()
        try:
            self._count("waiting", 1)
            try:
                conn = pool.getconn(timeout=wait)
            finally:
                self._count("waiting", -1)
        except PoolTimeout:
            raise self._unavailable(wait) from None
        self._count("in_use", 1)
        try:
            with conn:  # as pool.connection() does: commit or roll back, then give it back
                yield conn
        except psycopg.errors.LockNotAvailable as exc:
            relation = self._lock_waits.saw(exc)
            log.warning("database row lock wait ran out: %s is held by another session", relation)
            raise pg_locks.DatabaseLocked(relation, self.timeouts.lock) from None
        except psycopg.errors.QueryCanceled:
            log.warning("database statement ran over %s s", self.timeouts.statement)
            raise pg_locks.StatementTooSlow(self.timeouts.statement) from None
        except psycopg.OperationalError as exc:
            # The server went away under this request.
            log.warning("database connection failed: %s", type(exc).__name__)
            raise DatabaseUnavailable(f"its connection failed ({type(exc).__name__})") from None
        finally:
            setattr(conn, "_connector_used", time.monotonic())  # noqa: B010 - psycopg's object
            pool.putconn(conn)  # a broken one is replaced
            self._count("in_use", -1)

    def _count(self, what: str, change: int) -> None:
        with self._pool_lock:
            self._use[what] += change

    def _unavailable(self, wait: float) -> "DatabaseUnavailable":
        if self._use["in_use"] >= self.pool_size:
            reason = (
                f"all {self.pool_size} connections of this worker (DATABASE_POOL_SIZE) stayed "
                f"busy for {wait:g} s"
            )
        else:
            reason = f"PostgreSQL gave no connection within {wait:g} s (down or unreachable?)"
        log.warning("database unavailable: %s", reason)
        return DatabaseUnavailable(reason)

    @contextmanager
    def _transaction(self) -> Iterator[_Transaction]:
        with self._connection() as conn, conn.transaction():
            yield _Transaction(conn)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._connection() as conn:
            return conn.execute(_dialect(sql), params).fetchall()

    def ping(self) -> None:
        with self._connection(PING_WAIT_SECONDS) as conn:
            conn.execute("SELECT 1")

    def database_time(self) -> float:
        """The database server's clock (epoch seconds): the one every instance shares. Waits
        no longer than /health's ping for a connection: a request may be the one measuring."""
        with self._connection(PING_WAIT_SECONDS) as conn:
            row = conn.execute(DATABASE_TIME).fetchone()
        assert row is not None  # a SELECT of one value always has its row
        return float(row[0])

    def lock_waits(self) -> list[pg_locks.LockWait]:
        """Tables a statement of this worker lately gave up waiting on, and the sessions of
        other clients holding locks on the connector's tables in a long transaction."""
        try:
            with self._connection(PING_WAIT_SECONDS) as conn:
                rows = conn.execute(pg_locks.HOLDERS, (self.timeouts.lock,)).fetchall()
        except (StoreUnavailable, psycopg.Error) as exc:  # the waits seen are still told
            log.warning("could not look for sessions holding locks: %s", type(exc).__name__)
            rows = []
        holders = [pg_locks.Holder(*row) for row in rows]
        return pg_locks.report(self._lock_waits, holders, time.time())

    def pool_use(self) -> dict[str, int]:
        """This worker's pool for /health: its limit, connections open, in use, waiters."""
        if self._pool is None or self._pid != os.getpid():
            return {"size": self.pool_size, "open": 0, "in_use": 0, "waiting": 0}
        stats = self._pool.get_stats()
        return {
            "size": self.pool_size,
            "open": stats["pool_size"],
            **self._use,
        }

    def init_schema(self) -> list[int]:
        return migrate(self, {"id": "BIGSERIAL PRIMARY KEY", "real": "DOUBLE PRECISION"})

    def _direct(self) -> psycopg.Connection:
        # Not the pool: a wrong URL or password fails at start with PostgreSQL's own message
        # rather than a pool timeout, and no pooled connection is made before gunicorn forks.
        return psycopg.connect(self.url, connect_timeout=10)

    def schema_version(self) -> int:
        with self._direct() as conn:
            found = conn.execute("SELECT to_regclass('schema_version')").fetchone()
            if found is None or found[0] is None:
                return 0
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            return row[0] if row else 0

    @contextmanager
    def schema_transaction(self) -> Iterator[_Transaction]:
        with self._direct() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            yield _Transaction(conn)

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.close()
            self._pool = None

    def describe(self) -> str:
        """`postgresql:host[:port]/dbname`, never the user or password."""
        info = conninfo_to_dict(self.url)
        host = info.get("host") or "localhost"
        port = f":{info['port']}" if info.get("port") else ""
        return f"postgresql:{host}{port}/{info.get('dbname') or info.get('user') or ''}"
