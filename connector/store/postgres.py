"""PostgreSQL backend, used when DATABASE_URL is set: a PaaS wipes the disk a SQLite file lives on.

One connection pool per process, sized to gunicorn's threads. The queries are base.py's; row
locks (`SELECT ... FOR UPDATE`) and `INSERT ... ON CONFLICT` give the guarantees SQLite gets
from `BEGIN IMMEDIATE`. Durability: a COMMIT returns only once its WAL is flushed
(`synchronous_commit = on`, PostgreSQL's default, set again on every connection in case the
server's default differs), so whatever the connector answered survives a crash.
"""

import functools
import os
import threading
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool

from .base import Store
from .migrations import migrate

SCHEMA_LOCK = 0x56534D53  # pg_advisory_xact_lock key: workers starting together migrate once
# MoEngage waits 5 s for a send's answer: waiting longer than that for a connection helps no one.
WAIT_SECONDS = 5.0


@functools.cache
def _dialect(sql):
    # base.py writes `?` placeholders and holds no literal `?` or `%`.
    return sql.replace("?", "%s")


class _Transaction:
    """What base.py's `with self.transaction() as tx` gets: `execute` with `?` placeholders."""

    def __init__(self, conn):
        self.conn = conn

    def execute(self, sql, params=()):
        return self.conn.execute(_dialect(sql), params)

    def executemany(self, sql, rows):
        cursor = self.conn.cursor()
        cursor.executemany(_dialect(sql), rows)
        return cursor


def _configure(conn):
    conn.execute("SET synchronous_commit = on")


class PostgresStore(Store):
    lock = " FOR UPDATE"

    def __init__(self, url, pool_size):
        self.url = url
        self.pool_size = max(pool_size, 1)
        self._pool = None
        self._pid = None
        self._inherited = None
        self._pool_lock = threading.Lock()

    def _connections(self):
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
                    kwargs={"autocommit": True},
                    configure=_configure,
                    check=ConnectionPool.check_connection,
                    timeout=WAIT_SECONDS,
                    name="connector",
                )
                self._pool.open()
                self._pid = os.getpid()
            return self._pool

    @contextmanager
    def transaction(self):
        with self._connections().connection() as conn, conn.transaction():
            yield _Transaction(conn)

    def query(self, sql, params=()):
        with self._connections().connection() as conn:
            return conn.execute(_dialect(sql), params).fetchall()

    def init_schema(self):
        return migrate(self, {"id": "BIGSERIAL PRIMARY KEY", "real": "DOUBLE PRECISION"})

    def _direct(self):
        # Not the pool: a wrong URL or password fails at start with PostgreSQL's own message
        # rather than a pool timeout, and no pooled connection is made before gunicorn forks.
        return psycopg.connect(self.url, connect_timeout=10)

    def schema_version(self):
        with self._direct() as conn:
            if conn.execute("SELECT to_regclass('schema_version')").fetchone()[0] is None:
                return 0
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            return row[0] if row else 0

    @contextmanager
    def schema_transaction(self):
        with self._direct() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            yield _Transaction(conn)

    def close(self):
        with self._pool_lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.close()
            self._pool = None

    def describe(self):
        """`postgresql:host[:port]/dbname`, never the user or password."""
        info = conninfo_to_dict(self.url)
        host = info.get("host") or "localhost"
        port = f":{info['port']}" if info.get("port") else ""
        return f"postgresql:{host}{port}/{info.get('dbname') or info.get('user') or ''}"
