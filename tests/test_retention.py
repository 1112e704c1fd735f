"""Retention: sends and forwarded events older than RETENTION_DAYS go, by themselves and with
`flask prune`; pending events, opt-outs and contacts never do, and prunes never clash."""

import threading
import time
import uuid

import psycopg
import pytest
from conftest import AUTH, send, status_body, webhook
from test_store import all_at_once

from connector.relay import retention
from connector.store import OPTOUT

DAY = 86400.0
NOW = 1_800_000_000.0
OLD = NOW - 10 * DAY  # older than the 5-day default
NUMBER = "447700900000"


def sent(store, now, n=0):
    """One send as the connector makes it, with its two status events forwarded."""
    message = str(uuid.UUID(int=n + 1))
    key = f"ref:{n:064x}"
    claim = store.claim_send(key, now, None, 9.0, NUMBER, "campaign-1", "user-1")
    answer = {"trackingId": message, "status": "sent"}
    store.finish_send(key, claim.token, 200, answer, now + 0.2, True, message)
    for status, final in (("sent", False), ("delivered", True)):
        _, event_id, _ = store.record_status(message, status, final, {"status": status}, now + 1)
        store.lease_event(event_id, now + 1, 30.0)
        store.event_sent(event_id, now + 1.1)
    return key, message


def count(store, table, where="1 = 1"):
    return store.query(f"SELECT COUNT(*) FROM {table} WHERE {where}")[0][0]


def prune(store, days=5.0, now=NOW, **kw):
    settings = type("S", (), {"retention_days": days})
    return retention.prune(store, settings, now, **kw)[:2]  # (sends, events)


def test_old_sends_and_forwarded_events_go_and_the_rest_stays(store):
    for n in range(3):
        sent(store, OLD, n)
    recent = sent(store, NOW - DAY, 10)
    # An old event MoEngage never accepted, an opt-out and a contact, all from long ago.
    store.record_status("old-pending", "failed", True, {"status": "failed"}, OLD - 100 * DAY)
    store.record_inbound("in-1", NUMBER, OPTOUT, OLD - 100 * DAY, {}, OLD - 100 * DAY, False)
    store.remember_contact(NUMBER, "user-1", OLD - 100 * DAY, False)
    pending_inbound = count(store, "events", "state = 'pending'")

    assert prune(store, batch=2) == (3, 6)  # batches smaller than the work: all still go

    assert count(store, "sends") == 1 and store.send_outcome(recent[0])[1] == "done"
    assert count(store, "events", "state = 'sent'") == 2
    assert count(store, "events", "state = 'pending'") == pending_inbound == 2
    assert store.is_opted_out(NUMBER) and store.customer_for(NUMBER) == "user-1"
    assert prune(store) == (0, 0)


def test_a_client_ref_is_remembered_for_the_retention_then_forgotten(store):
    key, _ = sent(store, NOW - 4 * DAY)
    assert store.claim_send(key, NOW, None, 9.0, NUMBER).kind == "replay"
    prune(store, now=NOW + 2 * DAY)
    assert store.claim_send(key, NOW + 2 * DAY, None, 9.0, NUMBER).kind == "new"


def test_superseded_events_go_too_but_an_event_sent_recently_stays(store):
    message = "m-1"
    store.record_status(message, "sent", False, {}, OLD)  # left pending ...
    _, final, _ = store.record_status(message, "delivered", True, {}, OLD)
    store.lease_event(final, OLD, 30.0)
    store.event_sent(final, OLD)  # ... then a final one was forwarded: superseded
    assert store.lease_event(final - 1, OLD, 30.0).outcome == "superseded"
    _, late, _ = store.record_status("m-2", "delivered", True, {}, OLD)
    store.lease_event(late, NOW, 30.0)
    store.event_sent(late, NOW - 60)  # pending for ten days, accepted a minute ago
    assert prune(store) == (0, 2)
    assert [r[0] for r in store.query("SELECT id FROM events")] == [late]


def test_a_send_still_pending_goes_only_once_it_is_surely_dead(store):
    store.claim_send("dup:a", NOW - 1000, 60.0, 9.0, NUMBER)
    store.claim_send("dup:b", NOW - 7200, 60.0, 9.0, NUMBER)
    assert prune(store, days=0.001) == (1, 0)
    assert store.send_outcome("dup:a") is not None


def test_dry_run_counts_what_a_prune_removes(store):
    sent(store, OLD)
    sent(store, NOW, 1)
    edge = NOW - 5 * DAY
    assert store.prunable(edge, NOW) == (1, 2)
    assert count(store, "sends") == 2
    assert prune(store) == (1, 2)
    assert store.prunable(edge, NOW) == (0, 0)


def test_concurrent_prunes_delete_each_row_once_and_only_one_takes_the_turn(store):
    for n in range(40):
        sent(store, OLD, n)
    store.record_status("keep", "failed", True, {}, OLD)
    done = all_at_once(4, lambda i: prune(store, batch=7))
    assert sum(d[0] for d in done) == 40 and sum(d[1] for d in done) == 80
    assert count(store, "sends") == 0 and count(store, "events") == 1
    turns = all_at_once(8, lambda i: store.claim_turn("prune", NOW, 60.0))
    assert turns.count(True) == 1
    assert not store.claim_turn("prune", NOW + 59, 60.0)
    assert store.claim_turn("prune", NOW + 60, 60.0)


def test_a_request_prunes_after_its_answer_once_per_turn(make_app, store, moengage):
    app = make_app(retention_days=1.0)
    client = app.test_client()
    now = time.time()
    sent(store, now - 2 * DAY, 1)
    response = client.get("/health")
    assert count(store, "sends") == 1  # not while the request is being answered
    response.close()  # the answer has gone
    app.extensions["connector"].pruner.wait()
    assert count(store, "sends") == 0 and count(store, "events") == 0

    sent(store, now - 2 * DAY, 2)  # the turn was taken: not before the interval is over
    client.get("/health").close()
    other = make_app(retention_days=1.0)  # another worker or instance
    other.test_client().get("/health").close()
    app.extensions["connector"].pruner.wait()
    other.extensions["connector"].pruner.wait()
    assert count(store, "sends") == 1


def test_a_failing_prune_never_fails_the_request(make_app, store, moengage, caplog):
    app = make_app(retention_days=1.0)
    ctx = app.extensions["connector"]

    def broken(*args):
        raise RuntimeError("disk on fire")

    ctx.store.prune_batch = broken
    response = send(app.test_client(), {"to": NUMBER, "text": "hi"}, AUTH)
    assert response.status_code == 200
    response.close()
    app.extensions["connector"].pruner.wait()
    assert "prune failed" in caplog.text


def test_the_prune_runs_off_the_request_thread(make_app, store, moengage):
    """gunicorn reads a keep-alive connection's next request only once the thread that
    answered the last is free: a prune there would hold MoEngage's next send."""
    app = make_app(retention_days=1.0)
    threads = []

    def record(*args):
        threads.append(threading.current_thread())
        return (0, 0)

    app.extensions["connector"].store.prune_batch = record
    app.test_client().get("/health").close()
    app.extensions["connector"].pruner.wait()
    assert threads and threads[0] is not threading.current_thread()


def test_prune_command_reports_and_dry_run_removes_nothing(make_app, store, moengage):
    app = make_app(retention_days=1.0)
    runner = app.test_cli_runner()
    webhook(app.test_client(), "/webhooks/status", status_body())  # recent, and its send: kept
    sent(store, time.time() - 2 * DAY, 7)
    store.record_inbound("in-1", NUMBER, OPTOUT, 1.0, {}, 1.0, False)
    output = runner.invoke(args=["prune", "--dry-run"]).output
    assert "RETENTION_DAYS=1" in output
    assert "would remove 1 sends and 2 forwarded events" in output
    assert count(store, "sends") == 2
    result = runner.invoke(args=["prune"])
    assert result.exit_code == 0
    assert "removed 1 sends, 2 forwarded events and 0 trace steps" in result.output
    assert "kept: 1 pending events, 1 opt-out/opt-in states, 0 contacts" in result.output
    assert count(store, "sends") == 1 and count(store, "events") == 2


def test_a_status_is_kept_compact_and_forwarded_whole_again(make_app, store, moengage):
    app = make_app()
    webhook(app.test_client(), "/webhooks/status", status_body())
    (stored,) = store.query("SELECT payload FROM events")[0]
    assert stored == '{"status":"delivered","timestamp":"2025-02-03T12:14:25Z"}'
    runner = app.test_cli_runner()
    runner.invoke(args=["requeue", "--since", "2000-01-01T00:00:00Z"])
    runner.invoke(args=["push"])
    first, again = (r["json"] for r in moengage.requests)
    assert first == again and first["trackingId"] == status_body()["message_uuid"]


def fill(store, n, now, tag):
    """`n` forwarded sends with their two status events, in one transaction (fast)."""
    with store.transaction() as tx:
        for i in range(n):
            message = f"{tag}-{i:06d}-{uuid.uuid4()}"
            tx.execute(
                "INSERT INTO sends (idem_key, token, state, http_status, answer, tracking_id,"
                " recipient, started_at, finished_at) VALUES (?, ?, 'done', 200, ?, ?, ?, ?, ?)",
                (f"ref:{uuid.uuid4().hex * 2}", "t" * 32, "{}", message, NUMBER, now, now),
            )
            for status in ("sent", "delivered"):
                tx.execute(
                    "INSERT INTO events (dedupe_key, message_uuid, target, payload, state,"
                    " created_at, sent_at) VALUES (?, ?, 'tracking', ?, 'sent', ?, ?)",
                    (f"status:{message}:{status}", message, '{"status":"x"}' * 4, now, now),
                )


def size(store, backend):
    if backend == "sqlite":
        store.query("PRAGMA wal_checkpoint(TRUNCATE)")
        return store.query("PRAGMA page_count")[0][0] * store.query("PRAGMA page_size")[0][0]
    with psycopg.connect(store.url, autocommit=True) as conn:
        conn.execute("VACUUM sends, events")  # what autovacuum does after a prune's deletes
        return conn.execute(
            "SELECT pg_total_relation_size('sends') + pg_total_relation_size('events')"
        ).fetchone()[0]


def test_the_database_stops_growing_once_traffic_and_retention_are_steady(store, backend):
    sizes = []
    for day in range(16):  # each day as many sends as the day before, the older ones pruned
        fill(store, 300, NOW + day * DAY, day)
        prune(store, days=0.5, now=NOW + day * DAY, batch=1000)
        assert count(store, "sends") == 300
        sizes.append(size(store, backend))
    # Without pruning the last day would be 16 times the first. SQLite reuses its free pages
    # at once; PostgreSQL's B-tree indexes recycle emptied pages a VACUUM later, so they
    # settle (after ~2 weeks here) below twice what the first day's rows took.
    bound = 1.1 if backend == "sqlite" else 2.0
    assert max(sizes[1:]) <= sizes[1] * bound, sizes


def test_retention_days_takes_fractions_and_refuses_less_than_a_day():
    """At least 1: Vonage redelivers a webhook for 24 h, and a status or client_ref pruned
    sooner would be forwarded or sent a second time."""
    from connector.settings import load_settings

    assert load_settings(environ={}).retention_days == 5.0
    assert load_settings(environ={"RETENTION_DAYS": "1.5"}).retention_days == 1.5
    for bad in ("0", "-1", "week", "nan", "0.001", "0.99"):
        with pytest.raises(ValueError, match="RETENTION_DAYS"):
            load_settings(environ={"RETENTION_DAYS": bad})


def test_trace_steps_and_old_evidence_go_with_the_retention(store):
    with store.transaction() as tx:
        for at in (OLD, NOW - 60):
            tx.execute(
                "INSERT INTO trail (at, stage, message_uuid, detail) VALUES (?, 'status', 'm', '{}')",
                (at,),
            )
        for key, last in (("old", OLD), ("recent", NOW - 60)):
            tx.execute(
                "INSERT INTO evidence (key, code, count, since, last_seen, detail)"
                " VALUES (?, 3, 1, ?, ?, '{}')",
                (key, last, last),
            )
    assert retention.prune(store, type("S", (), {"retention_days": 5.0}), NOW).steps == 1
    assert store.query("SELECT at FROM trail") == [(NOW - 60,)]
    assert store.query("SELECT key FROM evidence") == [("recent",)]
