"""The SQLite store under several gunicorn workers."""
import sqlite3
import threading

from connector.store import SqliteStore


def test_new_database_opened_while_another_worker_writes_it_starts(tmp_path):
    # gunicorn's workers all open a new file at once; while one holds the write lock (still in
    # the default rollback mode), another's switch to WAL fails at once, busy_timeout or not.
    path = tmp_path / "new.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.2, other.execute, ("COMMIT",))
    release.start()
    try:
        store = SqliteStore(str(path))
        store.init_schema()
    finally:
        release.join()
        other.close()
    assert store.query("PRAGMA journal_mode") == [("wal",)]
    store.close()
