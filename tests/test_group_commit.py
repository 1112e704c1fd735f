"""SQLite writes of one process share commits, and each keeps its own atomicity."""

import threading
import time

import pytest

from connector.store import SqliteStore


@pytest.fixture
def sqlite_store(tmp_path):
    store = SqliteStore(str(tmp_path / "state.db"))
    store.init_schema()
    yield store
    store.close()


def _insert(tx, number):
    tx.execute(
        "INSERT INTO contacts (number, customer_id, updated_at) VALUES (?, 'c', 0)", (number,)
    )


def _numbers(store):
    return {row[0] for row in store.query("SELECT number FROM contacts")}


def _runner():
    """(run, outcomes): run(name, store, body) runs `body(tx)` in a transaction and records
    "ok" or the exception under `name`."""
    outcomes = {}

    def run(name, store, body):
        try:
            with store.transaction() as tx:
                body(tx)
            outcomes[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - the test reports what each got
            outcomes[name] = exc

    return run, outcomes


def _wait_until(condition):
    deadline = time.monotonic() + 5
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_transactions_queued_during_one_share_its_commit_and_a_failing_one_undoes_only_itself(
    sqlite_store,
):
    commits = []
    with sqlite_store.transaction() as tx:
        _insert(tx, "0")
    group = sqlite_store._group
    group.conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    run, outcomes = _runner()
    release = threading.Event()

    def first(tx):
        _insert(tx, "1")
        release.wait(5)

    def failing(tx):
        _insert(tx, "2")
        raise RuntimeError("this body fails")

    threads = [threading.Thread(target=run, args=("first", sqlite_store, first))]
    threads[0].start()
    _wait_until(lambda: group._busy)
    for name, body in (
        ("failing", failing),
        ("third", lambda tx: _insert(tx, "3")),
        ("fourth", lambda tx: _insert(tx, "4")),
    ):
        threads.append(threading.Thread(target=run, args=(name, sqlite_store, body)))
        threads[-1].start()
    _wait_until(lambda: group._wanting == 3)
    release.set()
    for thread in threads:
        thread.join(5)
    assert outcomes["first"] == outcomes["third"] == outcomes["fourth"] == "ok"
    assert isinstance(outcomes["failing"], RuntimeError)
    assert _numbers(sqlite_store) == {"0", "1", "3", "4"}  # the failing one's row undone
    assert commits == ["COMMIT"]  # three transactions, one commit (one fsync)


def test_a_group_whose_transaction_is_lost_fails_every_member_loudly(sqlite_store):
    with sqlite_store.transaction() as tx:
        _insert(tx, "0")
    group = sqlite_store._group
    run, outcomes = _runner()
    release = threading.Event()

    def first(tx):
        _insert(tx, "1")
        release.wait(5)

    def loses_all(tx):
        tx.execute("ROLLBACK")  # what SQLite does itself on a full disk or an I/O error
        raise RuntimeError("disk full")

    threads = [threading.Thread(target=run, args=("first", sqlite_store, first))]
    threads[0].start()
    _wait_until(lambda: group._busy)
    threads.append(threading.Thread(target=run, args=("loses", sqlite_store, loses_all)))
    threads[-1].start()
    _wait_until(lambda: group._wanting == 1)
    release.set()
    for thread in threads:
        thread.join(5)
    # The first body's write was lost with the group: it must not be told it committed.
    assert "commit failed" in str(outcomes["first"])
    assert isinstance(outcomes["loses"], RuntimeError)
    assert _numbers(sqlite_store) == {"0"}
    with sqlite_store.transaction() as tx:  # the connection is usable again
        _insert(tx, "5")
    assert _numbers(sqlite_store) == {"0", "5"}


def test_the_first_write_of_a_new_worker_makes_its_locks_and_commits(sqlite_store):
    # A forked worker has neither write-turn locks nor a group yet: its first write makes both.
    sqlite_store._writer, sqlite_store._group = (None, None, None), None
    writer = threading.Thread(target=lambda: _numbers(sqlite_store) or _write(sqlite_store))
    writer.start()
    writer.join(5)
    assert not writer.is_alive()
    assert _numbers(sqlite_store) == {"9"}


def _write(store):
    with store.transaction() as tx:
        _insert(tx, "9")
