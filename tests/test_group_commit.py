"""SQLite writes of one process share commits, and each keeps its own atomicity."""

import os
import threading
import time

import pytest
from conftest import SIGNATURE_SECRET, send

from connector import create_app, start
from connector.store import SqliteStore, StoreUnavailable


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


# -- faults: no step can wedge the process's writes ------------------------------------------
def _in_time(call, seconds=5.0):
    """Run `call()` in a thread; its result, or a failed test if it has not ended by then."""
    done = {}
    thread = threading.Thread(target=lambda: done.setdefault("result", _outcome(call)))
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "blocked: the process's writes are wedged"
    result = done["result"]
    if isinstance(result, BaseException):
        raise result
    return result


def _outcome(call):
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - handed to the test's thread
        return exc


def _fail_once(real, error):
    calls = []

    def failing(*args):
        if not calls:
            calls.append(1)
            raise error
        return real(*args)

    return failing


def test_a_failure_to_give_the_write_turn_back_wedges_nothing(sqlite_store):
    _write(sqlite_store)  # the group exists
    group = sqlite_store._group
    group.give_turn = _fail_once(group.give_turn, OSError("flock failed"))
    run, outcomes = _runner()
    release = threading.Event()

    def first(tx):
        _insert(tx, "1")
        release.wait(5)

    threads = [threading.Thread(target=run, args=("first", sqlite_store, first))]
    threads[0].start()
    _wait_until(lambda: group._busy)
    threads.append(
        threading.Thread(target=run, args=("member", sqlite_store, lambda tx: _insert(tx, "2")))
    )
    threads[-1].start()
    _wait_until(lambda: group._wanting == 1)
    release.set()
    for thread in threads:
        thread.join(5)
    assert outcomes == {"first": "ok", "member": "ok"}  # committed, whatever the turn did
    _in_time(lambda: _insert_alone(sqlite_store, "3"))
    _in_time(lambda: _insert_alone(sqlite_store, "4"))
    assert _numbers(sqlite_store) == {"9", "1", "2", "3", "4"}
    assert not group._busy and not group._turn_held  # given back by the next commit


class _Faulty:
    """The group's connection, with the statements named in `fail` raising once each."""

    def __init__(self, conn, *fail):
        self.conn, self.fail = conn, list(fail)

    def execute(self, sql, *args):
        if sql in self.fail:
            self.fail.remove(sql)
            raise RuntimeError(f"{sql} failed")
        return self.conn.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self.conn, name)


@pytest.mark.parametrize(
    "fail", [("COMMIT",), ("COMMIT", "ROLLBACK"), ("BEGIN IMMEDIATE",), ("SAVEPOINT body",)]
)
def test_a_step_of_a_transaction_that_raises_fails_it_alone_and_the_next_one_commits(
    sqlite_store, fail
):
    _write(sqlite_store)
    group = sqlite_store._group
    group.conn = _Faulty(group.conn, *fail)
    with pytest.raises(Exception, match="failed"):
        _in_time(lambda: _insert_alone(sqlite_store, "1"))
    _in_time(lambda: _insert_alone(sqlite_store, "2"))
    assert _numbers(sqlite_store) == {"9", "2"}  # the failed one's write undone, not half-kept
    assert not group._busy and not group.conn.fail


def test_a_wait_for_a_stuck_connection_ends_with_store_unavailable(sqlite_store):
    _write(sqlite_store)
    group = sqlite_store._group
    group.wait = 0.3
    release = threading.Event()
    holder = threading.Thread(target=lambda: _hold(sqlite_store, release))
    holder.start()
    _wait_until(lambda: group._busy)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="waited over 0.3 s"):
        _in_time(lambda: _insert_alone(sqlite_store, "1"))
    assert time.monotonic() - started < 2.0
    release.set()
    holder.join(5)
    _in_time(lambda: _insert_alone(sqlite_store, "2"))
    assert _numbers(sqlite_store) == {"9", "2"} and group._wanting == 0


def test_a_member_whose_commit_never_comes_gets_store_unavailable(sqlite_store):
    _write(sqlite_store)
    group = sqlite_store._group
    group.wait = 0.3
    run, outcomes = _runner()
    release = threading.Event()

    def first(tx):
        _insert(tx, "1")
        release.wait(5)

    threads = [threading.Thread(target=run, args=("member", sqlite_store, first))]
    threads[0].start()
    _wait_until(lambda: group._busy)
    threads.append(
        threading.Thread(target=run, args=("commits", sqlite_store, lambda tx: _insert(tx, "2")))
    )
    threads[-1].start()
    _wait_until(lambda: group._wanting == 1)
    group.conn = _Slow(group.conn, "COMMIT", 1.0)  # a disk that stalls the commit
    release.set()  # the first body joins the group; the second one's commit is slow
    for thread in threads:
        thread.join(5)
    assert isinstance(outcomes["member"], StoreUnavailable)
    assert "its group's commit" in str(outcomes["member"])
    assert outcomes["commits"] == "ok"
    _in_time(lambda: _insert_alone(sqlite_store, "3"))


class _Slow(_Faulty):
    def __init__(self, conn, sql, seconds):
        super().__init__(conn)
        self.sql, self.seconds = sql, seconds

    def execute(self, sql, *args):
        if sql == self.sql:
            time.sleep(self.seconds)
        return self.conn.execute(sql, *args)


def _hold(store, release):
    with store.transaction() as tx:
        _insert(tx, "held")
        release.wait(5)
        tx.execute("DELETE FROM contacts WHERE number = 'held'")


def _insert_alone(store, number):
    with store.transaction() as tx:
        _insert(tx, number)


def _open_files(path):
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(path):
            found.append(target)
    return found


def test_close_closes_every_connection_and_file_it_opened(tmp_path):
    path = str(tmp_path / "state.db")
    store = SqliteStore(path)
    store.init_schema()
    readers = [threading.Thread(target=lambda: _numbers(store)) for _ in range(3)]
    kept = threading.Event()
    alive = threading.Thread(target=lambda: (_numbers(store), kept.set(), time.sleep(1)))
    alive.start()  # a thread still running, its connection open
    for thread in readers:
        thread.start()
        thread.join(5)
    kept.wait(5)
    _write(store)
    _numbers(store)
    assert _open_files(path)  # the files are open while in use
    store.close()
    assert _open_files(path) == []
    alive.join(5)
    _insert_alone(store, "10")  # usable again after close: opened afresh
    assert _numbers(store) == {"9", "10"}
    store.close()
    assert _open_files(path) == []


def test_a_send_behind_a_stuck_write_answers_503_not_a_hang(tmp_path, vonage, moengage):
    app = start(
        create_app(
            {
                "database_path": str(tmp_path / "connector.db"),
                "database_url": "",
                "vonage_api_url": vonage.url,
                "moengage_delivery_url": f"{moengage.url}/sms/dlr/custom/42",
                "vonage_signature_secrets": (SIGNATURE_SECRET,),
                "vonage_from": "Acme",
            }
        )
    )
    store = app.extensions["connector"].store
    try:
        _write(store)
        store._group.wait = 0.5
        release = threading.Event()
        holder = threading.Thread(target=lambda: _hold(store, release))
        holder.start()
        _wait_until(lambda: store._group._busy)
        body = {"to": "447700900000", "text": "Flash sale", "client_ref": "stuck-1"}
        answer = _in_time(lambda: send(app.test_client(), body), seconds=3)
        assert answer.status_code == 503, answer.json
        assert "waited over 0.5 s" in answer.json["error"]
        assert answer.headers["Retry-After"] == "1"
        assert vonage.sends() == []  # nothing sent that could not be recorded
        release.set()
        holder.join(5)
        assert send(app.test_client(), body).status_code == 200  # MoEngage's retry
    finally:
        app.extensions["connector"].close()
