"""The SQLite store under several gunicorn workers, and when its file or disk goes away."""

import fcntl
import os
import sqlite3
import subprocess
import threading

import pytest
from conftest import inbound_body, send, status_body, webhook

from connector.store import SqliteStore, StoreUnavailable


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


# -- the file deleted, replaced, or out of disk (SQLite only) ----------------------------------
@pytest.fixture
def backend():
    return "sqlite"


def test_a_deleted_database_is_noticed_and_nothing_is_acknowledged(app, vonage, moengage):
    client, path = app.test_client(), app.extensions["connector"].store.path
    assert send(client, {"to": "447700900000", "text": "before"}).status_code == 200
    for suffix in ("", "-wal", "-shm"):
        os.remove(path + suffix)
    # This thread's connection still writes to the unlinked file; a new thread opens anew.
    answers = [webhook(client, "/webhooks/status", status_body()).status_code]
    answers += in_new_thread(lambda: send(client, {"to": "447700900001", "text": "x"}).status_code)
    answers += in_new_thread(
        lambda: webhook(client, "/webhooks/inbound", inbound_body()).status_code
    )
    assert answers == [503, 503, 503]
    assert len(vonage.requests) == 1 and moengage.requests == []
    assert not os.path.exists(path)  # no empty database made in its place
    health = client.get("/health")
    assert health.status_code == 503
    assert (
        f"DATABASE_PATH={path} is not the file the connector opened" in health.json["problems"][0]
    )


def test_a_worker_started_after_the_database_was_deleted_does_not_start_an_empty_one(
    tmp_path,
):
    path = str(tmp_path / "connector.db")
    SqliteStore(path).init_schema()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    store = SqliteStore(path)
    assert store.init_schema() == []
    with pytest.raises(StoreUnavailable, match="connector.db is missing, but .*-lock shows"):
        store.set_subscription("447700900000", "OPTOUT", 1.0, 1.0, sync=False)
    assert not os.path.exists(path)
    os.remove(path + "-lock")  # the operator's explicit choice: start on an empty database
    SqliteStore(path).init_schema()
    assert os.path.exists(path)


def test_a_replaced_database_is_noticed(app, tmp_path):
    client, path = app.test_client(), app.extensions["connector"].store.path
    other = SqliteStore(str(tmp_path / "other.db"))
    other.init_schema()
    other.close()
    os.replace(tmp_path / "other.db", path)
    response = webhook(client, "/webhooks/status", status_body())
    assert response.status_code == 503 and "it was replaced" in response.json["error"]
    assert "DATABASE_PATH" in client.get("/health").json["problems"][0]


def test_a_full_disk_is_503_with_the_reason_and_shown_in_health(app, moengage):
    client, store = app.test_client(), app.extensions["connector"].store
    assert webhook(client, "/webhooks/inbound", inbound_body("hello")).status_code == 200
    conn = store._group.conn  # the process's writing connection (group commit)
    [(pages,)] = conn.execute("PRAGMA page_count").fetchall()
    conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite answers SQLITE_FULL from now on
    response = webhook(client, "/webhooks/inbound", inbound_body("x" * 20_000))
    assert response.status_code == 503
    assert "takes no writes: the disk holding it is full" in response.json["error"]
    health = client.get("/health")
    assert health.status_code == 503 and "is full" in " ".join(health.json["problems"])
    conn.execute(f"PRAGMA max_page_count = {pages * 100}")  # room again: no restart needed
    assert webhook(client, "/webhooks/inbound", inbound_body("x" * 20_000)).status_code == 200
    assert client.get("/health").status_code == 200


@pytest.fixture
def tiny_disk(tmp_path):
    """A 512 KiB tmpfs (needs root: mount): room for the schema, little more; skipped where
    it cannot be mounted."""
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mountpoint)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode:
        pytest.skip("a tmpfs cannot be mounted here (needs root)")
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_a_really_full_disk_is_503_and_shown_in_health(make_app, tiny_disk):
    app = make_app(database_path=str(tiny_disk / "connector.db"))
    client = app.test_client()
    codes = []
    while not codes or codes[-1] == 200 and len(codes) < 200:
        codes.append(webhook(client, "/webhooks/inbound", inbound_body("y" * 3000)).status_code)
    assert codes[-1] == 503 and set(codes[:-1]) <= {200}
    problems = " ".join(client.get("/health").json["problems"])
    assert "takes no writes: the disk holding it is full" in problems or "KiB free" in problems


def in_new_thread(action):
    results = []
    thread = threading.Thread(target=lambda: results.append(action()))
    thread.start()
    thread.join()
    return results
