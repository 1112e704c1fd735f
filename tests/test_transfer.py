"""Copying a SQLite file into another store: everything once, opt-outs first, newer wins."""

import time

import pytest
from test_upgrade import MESSAGE, load_first_release

from connector.store import OPTIN, OPTOUT, SqliteStore
from connector.store.transfer import NotAConnectorDatabase, copy_sqlite

OK = {"trackingId": "uuid-1", "status": "sent"}


@pytest.fixture
def old(tmp_path):
    """The SQLite file a team is moving from, with a little of everything in it."""
    store = SqliteStore(str(tmp_path / "old.db"))
    store.init_schema()
    store.set_subscription("447700900001", OPTOUT, 100.0, 1.0, sync=False)
    store.set_subscription("447700900002", OPTIN, 100.0, 1.0, sync=False)
    store.remember_contact("447700900001", "user-1", 1.0, sync=False)
    claim = store.claim_send("ref:1", 10.0, None, 9.0, "447700900001")
    store.finish_send("ref:1", claim.token, 200, OK, 11.0, remember=True, message_uuid="uuid-1")
    _, sent_id, _ = store.record_status("uuid-1", "delivered", True, {"status": "delivered"}, 12.0)
    store.event_sent(sent_id, 13.0)
    _, pending_id, _ = store.record_status("uuid-2", "failed", True, {"status": "failed"}, 14.0)
    store.lease_event(pending_id, 15.0, 3600.0)
    yield store
    store.close()


def test_everything_is_copied(old, store):
    counts = copy_sqlite(old.path, store)
    assert counts == [
        ("opt-outs and opt-ins", 2, 2),
        ("contacts", 1, 1),
        ("sends", 1, 1),
        ("events", 2, 2),
    ]
    assert store.is_opted_out("447700900001") and not store.is_opted_out("447700900002")
    assert store.customer_for("447700900001") == "user-1"
    replay = store.claim_send("ref:1", 1e9, None, 9.0, "447700900001")
    assert (replay.kind, replay.status, replay.answer) == ("replay", 200, OK)
    assert store.record_status("uuid-1", "delivered", True, {}, 20.0).outcome == "duplicate"
    [(event_id, target, attempts, _, created_at)] = store.pending_events()
    assert (target, attempts, created_at) == ("tracking", 1, 14.0)
    assert store.lease_event(event_id, 16.0, 30.0).outcome == "leased"  # the old lease stayed


def test_a_second_run_copies_nothing_and_duplicates_nothing(old, store):
    copy_sqlite(old.path, store)
    assert [copied for _, copied, _ in copy_sqlite(old.path, store)] == [0, 0, 0, 0]
    assert len(store.pending_events()) == 1
    assert len(store.opted_out()) == 1


def test_newer_subscriptions_and_contacts_win_either_way(old, store):
    store.set_subscription("447700900001", OPTIN, 200.0, 2.0, sync=False)  # newer than the copy's
    store.set_subscription("447700900002", OPTIN, 50.0, 2.0, sync=False)  # older than the copy's
    store.remember_contact("447700900001", "user-9", 0.5, sync=False)  # older than the copy's
    counts = {what: copied for what, copied, _ in copy_sqlite(old.path, store)}
    assert counts["opt-outs and opt-ins"] == 1 and counts["contacts"] == 1
    assert not store.is_opted_out("447700900001")
    assert store.opted_out() == []
    assert store.customer_for("447700900001") == "user-1"


def test_copied_events_get_ids_after_the_targets_own(old, store):
    _, own_id, _ = store.record_status("uuid-9", "delivered", True, {}, 1.0)
    copy_sqlite(old.path, store)
    ids = [row[0] for row in store.pending_events()]
    assert ids[0] == own_id and len(ids) == 2 and ids[1] > own_id


def test_a_file_that_is_not_the_connectors_is_refused(tmp_path, store):
    other = tmp_path / "other.db"
    other.write_bytes(b"not a database at all" * 100)
    with pytest.raises(NotAConnectorDatabase, match="not a SQLite database"):
        copy_sqlite(str(other), store)
    empty = SqliteStore(str(tmp_path / "empty.db"))
    empty.query("CREATE TABLE unrelated (x)")
    with pytest.raises(NotAConnectorDatabase, match="not the connector's database"):
        copy_sqlite(empty.path, store)
    empty.close()


def test_a_file_from_before_the_rollback_guard_is_copied_with_its_tracking_ids(tmp_path, store):
    """A first-release file (sends.message_uuid, not yet tracking_id) copies as well."""
    path = str(tmp_path / "first.db")
    load_first_release({"database_path": path}, "sqlite", time.time())
    counts = {what: copied for what, copied, _ in copy_sqlite(path, store)}
    assert counts["sends"] == 2
    assert store.find_send(MESSAGE)["recipient"] == "447700900003"
