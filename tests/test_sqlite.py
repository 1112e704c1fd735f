"""The SQLite store under several gunicorn workers."""

import fcntl
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


def test_writers_of_every_worker_queue_on_one_lock_file(tmp_path):
    # Workers wait their turn on <database>-lock, which wakes the next one as soon as a write
    # commits, instead of SQLite's sleep-and-retry that lets some writers wait for seconds.
    store = SqliteStore(str(tmp_path / "state.db"))
    store.init_schema()
    committed = threading.Event()

    def write():
        store.set_subscription("447700900000", "OPTOUT", 1.0, 1.0, sync=False)
        committed.set()

    with open(tmp_path / "state.db-lock", "w") as other_worker:
        fcntl.flock(other_worker, fcntl.LOCK_EX)
        writer = threading.Thread(target=write)
        writer.start()
        assert not committed.wait(0.3)
        fcntl.flock(other_worker, fcntl.LOCK_UN)
        writer.join(5)
    assert committed.is_set()
    assert store.is_opted_out("447700900000")
    store.close()
