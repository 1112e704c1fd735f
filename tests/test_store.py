"""The store's guarantees, the same on both backends: what base.py's docstrings promise."""

import logging
import threading
from urllib.parse import urlsplit, urlunsplit

import pgtest
import pytest

from connector.settings import load_settings
from connector.store import OPTIN, OPTOUT, PostgresStore, SqliteStore, open_store

KEY = "dup:abc"
NUMBER = "447700900000"
OK = {"trackingId": "uuid-1", "status": "sent"}


def claim(store, now, window=60.0, stale_after=9.0, key=KEY):
    return store.claim_send(key, now, window, stale_after, NUMBER, "c-1", "user-1")


def all_at_once(count, action):
    """Run `action(i)` in `count` threads released together; their results, in order."""
    results = [None] * count
    barrier = threading.Barrier(count)

    def run(i):
        barrier.wait()
        results[i] = action(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


# -- sends -------------------------------------------------------------------------------------
def test_first_claim_is_new(store):
    first = claim(store, 100.0)
    assert first.kind == "new" and first.token
    assert store.send_outcome(KEY) == (first.token, "pending", None, None)


def test_claim_while_pending_waits_for_the_first(store):
    first = claim(store, 100.0)
    second = claim(store, 101.0)
    assert second.kind == "wait" and second.token == first.token


def test_remembered_answer_is_replayed_inside_the_window(store):
    first = claim(store, 100.0)
    store.finish_send(KEY, first.token, 200, OK, 101.0, remember=True, message_uuid="uuid-1")
    again = claim(store, 160.0)
    assert (again.kind, again.status, again.answer) == ("replay", 200, OK)
    assert store.find_send("uuid-1")["recipient"] == NUMBER


def test_after_the_window_the_key_is_taken_again(store):
    first = claim(store, 100.0)
    store.finish_send(KEY, first.token, 200, OK, 101.0, remember=True)
    again = claim(store, 161.0)
    assert again.kind == "new" and again.token != first.token
    assert store.send_outcome(KEY).state == "pending"


def test_no_window_replays_forever(store):
    first = claim(store, 100.0, window=None)
    store.finish_send(KEY, first.token, 504, {"status": "failed"}, 101.0, remember=True)
    again = claim(store, 100.0 + 10 * 365 * 86400, window=None)
    assert (again.kind, again.status) == ("replay", 504)


def test_failure_not_remembered_lets_the_next_claim_send(store):
    first = claim(store, 100.0)
    store.finish_send(KEY, first.token, 402, {"status": "failed"}, 101.0, remember=False)
    outcome = store.send_outcome(KEY)
    assert (outcome.state, outcome.status) == ("failed", 402)  # shown to sends already waiting
    assert claim(store, 102.0).kind == "new"


def test_send_pending_past_stale_after_counts_as_a_remembered_504(store):
    claim(store, 100.0)
    late = claim(store, 109.5, stale_after=9.0)
    assert (late.kind, late.status) == ("replay", 504)
    assert "may have been sent" in late.answer["error"]
    outcome = store.send_outcome(KEY)
    assert (outcome.state, outcome.status) == ("done", 504)


def test_finish_with_a_stale_token_changes_nothing(store):
    first = claim(store, 100.0)
    store.finish_send(KEY, first.token, 402, {"status": "failed"}, 101.0, remember=False)
    second = claim(store, 102.0)
    store.finish_send(KEY, first.token, 200, OK, 103.0, remember=True)
    assert store.send_outcome(KEY) == (second.token, "pending", None, None)
    store.finish_send(KEY, second.token, 200, OK, 104.0, remember=True)
    assert store.send_outcome(KEY) == (second.token, "done", 200, OK)


def test_unknown_key_has_no_outcome(store):
    assert store.send_outcome("dup:none") is None
    assert store.find_send("no-such-uuid") is None


def test_concurrent_claims_make_exactly_one_new(store):
    kinds = all_at_once(16, lambda i: claim(store, 100.0 + i / 1000).kind)
    assert sorted(kinds) == ["new"] + ["wait"] * 15


def test_concurrent_claims_of_an_expired_key_make_exactly_one_new(store):
    first = claim(store, 100.0)
    store.finish_send(KEY, first.token, 200, OK, 101.0, remember=True)
    kinds = all_at_once(16, lambda i: claim(store, 500.0).kind)
    assert sorted(kinds) == ["new"] + ["wait"] * 15


# -- contacts and subscriptions ----------------------------------------------------------------
def test_older_subscription_change_is_ignored(store):
    assert store.set_subscription(NUMBER, OPTOUT, 200.0, 1.0, sync=False) == (True, [])
    assert store.set_subscription(NUMBER, OPTIN, 199.0, 2.0, sync=False) == (False, [])
    assert store.is_opted_out(NUMBER)


def test_equal_timestamp_lets_the_later_change_win(store):
    store.set_subscription(NUMBER, OPTOUT, 200.0, 1.0, sync=False)
    assert store.set_subscription(NUMBER, OPTIN, 200.0, 2.0, sync=False).applied
    assert not store.is_opted_out(NUMBER)


def test_opted_out_lists_newest_first(store):
    store.set_subscription("447700900001", OPTOUT, 100.0, 1.0, sync=False)
    store.set_subscription("447700900002", OPTOUT, 300.0, 1.0, sync=False)
    store.set_subscription("447700900003", OPTIN, 400.0, 1.0, sync=False)
    store.set_subscription("447700900004", OPTOUT, 200.0, 1.0, sync=False)
    assert [row.number for row in store.opted_out()] == [
        "447700900002",
        "447700900004",
        "447700900001",
    ]


def test_contact_is_remembered_and_replaced(store):
    assert store.customer_for(NUMBER) is None
    store.remember_contact(NUMBER, "user-1", 1.0, sync=False)
    store.remember_contact(NUMBER, "user-2", 2.0, sync=False)
    assert store.customer_for(NUMBER) == "user-2"


def test_change_waiting_for_a_customer_is_queued_once_the_contact_is_known(store):
    assert store.set_subscription(NUMBER, OPTOUT, 100.0, 1.0, sync=True) == (True, [])
    assert store.opted_out() == [(NUMBER, 100.0, 0)]
    [event_id] = store.remember_contact(NUMBER, "user-1", 2.0, sync=True)
    assert store.remember_contact(NUMBER, "user-1", 3.0, sync=True) == []
    assert store.opted_out() == [(NUMBER, 100.0, 1)]
    event = store.lease_event(event_id, 4.0, 30.0).event
    assert event.target == "data_api"
    assert event.payload == {"customer_id": "user-1", "subscription": OPTOUT, "number": NUMBER}


def test_change_for_a_known_contact_is_queued_at_once(store):
    store.remember_contact(NUMBER, "user-1", 1.0, sync=True)
    applied, [event_id] = store.set_subscription(NUMBER, OPTIN, 100.0, 2.0, sync=True)
    assert applied and store.lease_event(event_id, 3.0, 30.0).event.payload["subscription"] == OPTIN


def test_without_sync_nothing_is_queued(store):
    store.set_subscription(NUMBER, OPTOUT, 100.0, 1.0, sync=False)
    assert store.remember_contact(NUMBER, "user-1", 2.0, sync=False) == []
    assert store.pending_events() == []


# -- the outbox --------------------------------------------------------------------------------
def status(store, uuid, name, final=False, now=1.0):
    recorded = store.record_status(uuid, name, final, {"status": name, "id": uuid}, now)
    return recorded.outcome, recorded.event_id


def test_status_is_stored_once_per_message_and_status(store):
    kind, event_id = status(store, "m-1", "delivered", final=True)
    assert kind == "new"
    assert status(store, "m-1", "delivered", final=True) == ("pending", event_id)
    store.event_sent(event_id, 2.0)
    assert status(store, "m-1", "delivered", final=True) == ("duplicate", event_id)


def test_status_after_a_forwarded_final_one_is_superseded(store):
    _, final_id = status(store, "m-1", "delivered", final=True)
    store.event_sent(final_id, 2.0)
    assert status(store, "m-1", "submitted") == ("superseded", None)
    assert status(store, "m-2", "submitted")[0] == "new"


def test_pending_status_is_superseded_when_a_final_one_was_forwarded_first(store):
    _, early_id = status(store, "m-1", "submitted")
    _, final_id = status(store, "m-1", "delivered", final=True)
    assert store.lease_event(final_id, 2.0, 30.0).outcome == "leased"
    store.event_sent(final_id, 3.0)
    assert store.lease_event(early_id, 4.0, 30.0).outcome == "superseded"
    assert store.pending_events() == []


def test_concurrent_identical_statuses_are_stored_once(store):
    results = all_at_once(12, lambda i: status(store, "m-1", "delivered", final=True))
    kinds = sorted(kind for kind, _ in results)
    assert kinds == ["new"] + ["pending"] * 11
    assert len({event_id for _, event_id in results}) == 1


def test_lease_is_exclusive_until_it_lapses(store):
    _, event_id = status(store, "m-1", "delivered", final=True)
    lease = store.lease_event(event_id, 10.0, 30.0)
    event = lease.event
    assert (lease.outcome, lease.until) == ("leased", 40.0)
    assert (event.id, event.message_uuid, event.is_final, event.attempts) == (
        event_id,
        "m-1",
        True,
        0,
    )
    # A status event is stored without trackingId (it is message_uuid) and read back with it.
    assert event.payload == {"trackingId": "m-1", "status": "delivered", "id": "m-1"}
    assert store.lease_event(event_id, 39.0, 30.0) == ("busy", None, 40.0)
    assert store.event_lease(event_id) == ("pending", 40.0)
    assert store.lease_event(event_id, 40.0, 30.0).event.attempts == 1


def test_a_new_status_can_be_stored_already_leased_as_lease_event_would_lease_it(store):
    payload = {"status": "delivered", "id": "m-1"}
    outcome, event_id, lease = store.record_status("m-1", "delivered", True, payload, 10.0, 30.0)
    assert outcome == "new" and lease.outcome == "leased" and lease.until == 40.0
    leased_later = status(store, "m-2", "delivered", final=True)
    read_back = store.lease_event(leased_later[1], 10.0, 30.0).event
    assert lease.event._replace(id=0, message_uuid="", dedupe_key="") == read_back._replace(
        id=0, message_uuid="", dedupe_key="", payload=lease.event.payload
    )
    assert lease.event.payload == {"trackingId": "m-1", "status": "delivered", "id": "m-1"}
    assert store.lease_event(event_id, 39.0, 30.0) == ("busy", None, 40.0)  # ours alone
    again = store.record_status("m-1", "delivered", True, payload, 11.0, 30.0)
    assert again == ("pending", event_id, None)  # a redelivery leases nothing
    assert store.lease_event(event_id, 40.0, 30.0).event.attempts == 1  # one attempt begun


def test_failed_forward_stays_pending_and_can_be_leased_again(store):
    _, event_id = status(store, "m-1", "delivered", final=True)
    until = store.lease_event(event_id, 10.0, 30.0).until
    store.event_failed(event_id, "MoEngage answered 503" + "x" * 600, until)
    [(pending_id, target, attempts, last_error, created_at)] = store.pending_events()
    assert (pending_id, target, attempts, created_at) == (event_id, "tracking", 1, 1.0)
    assert last_error.startswith("MoEngage answered 503") and len(last_error) == 500
    assert store.lease_event(event_id, 11.0, 30.0).event.attempts == 1


def test_sent_event_is_never_leased_again(store):
    _, event_id = status(store, "m-1", "delivered", final=True)
    store.lease_event(event_id, 10.0, 30.0)
    store.event_sent(event_id, 11.0)
    assert store.lease_event(event_id, 100.0, 30.0).outcome == "sent"
    assert store.lease_event(987654, 100.0, 30.0).outcome == "gone"


def test_a_lapsed_holders_failure_leaves_the_new_lease_alone(store):
    _, event_id = status(store, "m-1", "delivered", final=True)
    old = store.lease_event(event_id, 10.0, 5.0)
    new = store.lease_event(event_id, 16.0, 5.0)  # the first holder's lease lapsed at 15
    store.event_failed(event_id, "MoEngage answered 503", old.until)
    assert store.event_lease(event_id) == ("pending", new.until)
    assert store.lease_event(event_id, 17.0, 5.0).outcome == "busy"


def test_lease_length_is_per_target(store):
    store.remember_contact(NUMBER, "user-1", 1.0, sync=True)
    _, [event_id] = store.set_subscription(NUMBER, OPTIN, 100.0, 2.0, sync=True)
    assert store.lease_event(event_id, 10.0, {"tracking": 5.0, "data_api": 20.0}).until == 30.0


def test_leasable_events_skip_live_leases_and_put_the_most_tried_last(store):
    ids = [status(store, f"m-{i}", "delivered", final=True)[1] for i in range(4)]
    store.event_failed(ids[0], "503", store.lease_event(ids[0], 10.0, 5.0).until)
    store.lease_event(ids[1], 10.0, 5.0)  # held until 15
    store.event_sent(ids[2], 11.0)
    assert store.leasable_events(12.0, 10) == [ids[3], ids[0]]
    assert store.leasable_events(15.0, 10) == [ids[3], ids[0], ids[1]]
    assert store.leasable_events(15.0, 1) == [ids[3]]


def test_one_caller_gets_each_turn_of_a_shared_task(store):
    results = all_at_once(8, lambda i: store.claim_turn("sweep", 100.0, 10.0))
    assert sorted(results) == [False] * 7 + [True]
    assert store.next_turn("sweep") == 110.0
    assert not store.claim_turn("sweep", 109.0, 10.0)
    assert store.claim_turn("sweep", 110.0, 10.0) and store.next_turn("sweep") == 120.0


def test_pending_syncs_name_the_numbers_moengage_has_not_accepted(store):
    store.remember_contact(NUMBER, "user-1", 1.0, sync=True)
    _, [event_id] = store.set_subscription(NUMBER, OPTOUT, 100.0, 2.0, sync=True)
    assert store.subscription(NUMBER) == (OPTOUT, 100.0) and store.subscription("1") is None
    assert store.pending_syncs() == {NUMBER}
    store.event_sent(event_id, 3.0)
    assert store.pending_syncs() == set()


def test_pending_events_are_oldest_first_and_limited(store):
    ids = [status(store, f"m-{i}", "delivered", final=True)[1] for i in range(5)]
    store.event_sent(ids[1], 2.0)
    assert [row.id for row in store.pending_events()] == [ids[0], ids[2], ids[3], ids[4]]
    assert [row.id for row in store.pending_events(limit=2)] == [ids[0], ids[2]]


def inbound(store, uuid, subscription, event_ts, sync=False):
    return store.record_inbound(
        uuid, NUMBER, subscription, event_ts, {"message_uuid": uuid}, event_ts, sync
    )


def test_inbound_stop_is_stored_and_forwarded_once(store):
    first, [event_id] = inbound(store, "in-1", OPTOUT, 100.0)
    assert first and store.is_opted_out(NUMBER)
    assert inbound(store, "in-1", OPTOUT, 100.0) == (False, [event_id])
    store.event_sent(event_id, 2.0)
    assert inbound(store, "in-1", OPTOUT, 100.0) == (False, [])


def test_redelivered_old_stop_does_not_undo_a_newer_start(store):
    inbound(store, "in-1", OPTOUT, 100.0)
    inbound(store, "in-2", OPTIN, 200.0)
    inbound(store, "in-1", OPTOUT, 100.0)
    inbound(store, "in-0", OPTOUT, 50.0)  # first seen now, but older than the START
    assert not store.is_opted_out(NUMBER)


def test_inbound_stop_from_a_known_contact_queues_the_data_api_write(store):
    store.remember_contact(NUMBER, "user-1", 1.0, sync=True)
    first, ids = inbound(store, "in-1", OPTOUT, 100.0, sync=True)
    targets = [store.lease_event(i, 101.0, 30.0).event.target for i in ids]
    assert first and sorted(targets) == ["data_api", "tracking"]


def test_inbound_reply_without_keyword_changes_no_subscription(store):
    first, [_] = inbound(store, "in-1", None, 100.0)
    assert first and store.opted_out() == [] and not store.is_opted_out(NUMBER)


def test_ping_answers(store):
    store.ping()


# -- choosing the backend ----------------------------------------------------------------------
def test_without_database_url_the_store_is_the_sqlite_file(tmp_path):
    store = open_store(load_settings({"database_path": str(tmp_path / "x.db")}, environ={}))
    assert isinstance(store, SqliteStore) and store.describe() == f"sqlite:{tmp_path / 'x.db'}"
    store.close()


def test_database_url_of_another_kind_is_refused_without_showing_it():
    settings = load_settings({"database_url": "mysql://app:s3cret@db.example.com/app"}, environ={})
    with pytest.raises(ValueError, match="postgres:// or postgresql://, not mysql://") as info:
        open_store(settings)
    assert "s3cret" not in str(info.value)


@pytest.mark.skipif(not pgtest.URL, reason=pgtest.SKIP_REASON)
def test_herokus_postgres_url_selects_postgresql_and_its_password_is_never_shown(caplog):
    with pgtest.fresh_schema() as url:
        parts = urlsplit(url)
        secret = parts.password or "pw-s3cret"  # a trust-auth test server ignores it
        heroku = urlunsplit(
            parts._replace(
                scheme="postgres", netloc=f"{parts.username}:{secret}@{parts.hostname}:{parts.port}"
            )
        )
        with caplog.at_level(logging.DEBUG):
            store = open_store(load_settings({"database_url": heroku}, environ={}))
            try:
                assert isinstance(store, PostgresStore)
                store.ping()
                assert store.describe() == f"postgresql:{parts.hostname}:{parts.port}{parts.path}"
            finally:
                store.close()
    assert f"state kept in postgresql:{parts.hostname}" in caplog.text
    assert secret not in caplog.text
