"""The flask commands: push pending events, list and lift opt-outs, requeue, copy-sqlite."""

import time

import pytest
from conftest import inbound_body, send, status_body, webhook
from standins import Answer

from connector.store import OPTOUT, SqliteStore

WORKSPACE = {"moengage_workspace_id": "WS123", "moengage_data_api_key": "data-key-xyz"}


def test_push_sends_what_an_outage_left_pending(app, moengage):
    client = app.test_client()
    moengage.script(Answer(503, {}), Answer(503, {}))
    webhook(client, "/webhooks/status", status_body("submitted"))
    webhook(client, "/webhooks/status", status_body("delivered", message_uuid="other-message"))
    runner = app.test_cli_runner()
    assert "2 pending" in runner.invoke(args=["pending"]).output
    result = runner.invoke(args=["push"])
    assert result.exit_code == 0
    assert "2 sent, 0 still pending" in result.output
    accepted = [r["json"]["status"] for r in moengage.requests if r["status"] == 200]
    assert accepted == ["sent", "delivered"]
    assert "0 sent, 0 still pending" in runner.invoke(args=["push"]).output


def test_push_while_moengage_is_still_down_fails_and_keeps_them(app, moengage):
    moengage.script(Answer(503, {}), Answer(500, {}))
    webhook(app.test_client(), "/webhooks/status", status_body())
    result = app.test_cli_runner().invoke(args=["push"])
    assert result.exit_code == 1
    assert "MoEngage answered 500" in result.output and "1 still pending" in result.output


def test_push_does_not_call_sent_what_another_worker_holds(app, moengage):
    moengage.script(Answer(503, {}))
    webhook(app.test_client(), "/webhooks/status", status_body())
    store = app.extensions["connector"].store
    [(event_id, *_)] = store.pending_events()
    store.lease_event(event_id, time.time(), 60.0)  # a worker is forwarding it (or died)
    result = app.test_cli_runner().invoke(args=["push"])
    assert result.exit_code == 1
    assert f"#{event_id} tracking: NOT sent, a connector worker holds it until" in result.output
    assert "0 sent, 1 still pending" in result.output
    assert len(moengage.requests) == 1 and len(store.pending_events()) == 1


def test_requeue_resends_events_after_a_wrong_tracking_url(make_app, moengage):
    app = make_app()
    webhook(app.test_client(), "/webhooks/status", status_body())
    runner = app.test_cli_runner()
    result = runner.invoke(args=["requeue", "--since", "2000-01-01T00:00:00Z"])
    assert "1 events pending again" in result.output
    assert "1 sent" in runner.invoke(args=["push"]).output
    assert len(moengage.requests) == 2


def test_optouts_lists_masked_numbers(app, moengage):
    webhook(app.test_client(), "/webhooks/inbound", inbound_body("STOP", sender="447700900123"))
    output = app.test_cli_runner().invoke(args=["optouts"]).output
    assert "********0123" in output and "447700900123" not in output
    assert "1 opted out" in output


def test_optouts_name_why_a_number_is_not_synced(make_app, moengage, vonage):
    webhook(make_app().test_client(), "/webhooks/inbound", inbound_body("STOP"))
    app = make_app()  # the same database
    output = app.test_cli_runner().invoke(args=["optouts"]).output
    assert "not synced: the MoEngage Data API is not configured" in output
    assert "customer_id" not in output
    synced = make_app(**WORKSPACE)
    output = synced.test_cli_runner().invoke(args=["optouts"]).output
    assert "not synced: no customer_id known yet" in output
    moengage.script(*[Answer(503, {})] * 3)  # the sync, queued by the send, is refused
    send(synced.test_client(), {"to": "447700900000", "text": "hi", "customer_id": "user-1"})
    output = synced.test_cli_runner().invoke(args=["optouts"]).output
    assert "queued for MoEngage, not accepted yet" in output


def test_optin_by_hand_lifts_the_opt_out_and_syncs_it(make_app, moengage, vonage):
    app = make_app(**WORKSPACE)
    client = app.test_client()
    send(client, {"to": "447700900000", "text": "hi", "customer_id": "user-42"})
    webhook(client, "/webhooks/inbound", inbound_body("STOP"))
    result = app.test_cli_runner().invoke(args=["optin", "+44 7700 900000"])
    assert "opted in" in result.output and "synced" in result.output
    calls = [
        r["json"]["attributes"]["moe_sms_subscription"] for r in moengage.posts("/v1/customer/")
    ]
    assert calls == ["OPTOUT", "OPTIN"]
    assert send(client, {"to": "447700900000", "text": "back"}).status_code == 200


def test_optin_never_claims_what_a_later_vonage_timestamp_outranks(make_app, moengage):
    app = make_app(**WORKSPACE)
    future = inbound_body("STOP", timestamp="2099-01-01T00:00:00Z")  # the server's clock is behind
    webhook(app.test_client(), "/webhooks/inbound", future)
    runner, store = app.test_cli_runner(), app.extensions["connector"].store
    refused = runner.invoke(args=["optin", "447700900000"])
    assert refused.exit_code == 1
    assert "stays opted out" in refused.output and "opted in" not in refused.output
    assert "2099-01-01 00:00:00Z" in refused.output and "--force" in refused.output
    assert store.is_opted_out("447700900000")
    forced = runner.invoke(args=["optin", "--force", "447700900000"])
    assert forced.exit_code == 0 and "********0000 opted in" in forced.output
    assert not store.is_opted_out("447700900000")


def test_optin_of_a_number_not_opted_out_changes_nothing(app):
    result = app.test_cli_runner().invoke(args=["optin", "447700900000"])
    assert "is not opted out" in result.output


@pytest.fixture
def old_file(tmp_path):
    store = SqliteStore(str(tmp_path / "old.db"))
    store.init_schema()
    store.set_subscription("447700900001", OPTOUT, 100.0, 1.0, sync=False)
    store.close()
    return store.path


def test_copy_sqlite_prints_what_it_copied_and_can_run_again(app, backend, old_file):
    if backend != "postgres":
        pytest.skip("copy-sqlite copies into PostgreSQL")
    runner = app.test_cli_runner()
    first = runner.invoke(args=["copy-sqlite", old_file])
    assert first.exit_code == 0, first.output
    assert f"Copied {old_file} into postgresql:" in first.output
    assert "opt-outs and opt-ins: 1 of 1 copied" in first.output
    assert "sends: 0 of 0 copied" in first.output
    assert app.extensions["connector"].store.is_opted_out("447700900001")
    again = runner.invoke(args=["copy-sqlite", old_file])
    assert again.exit_code == 0 and "opt-outs and opt-ins: 0 of 1 copied" in again.output


def test_copy_sqlite_needs_database_url(make_app, old_file):
    result = make_app(database_url="").test_cli_runner().invoke(args=["copy-sqlite", old_file])
    assert result.exit_code == 1
    assert "DATABASE_URL is not set" in result.output


def test_copy_sqlite_refuses_a_missing_file(app, tmp_path):
    result = app.test_cli_runner().invoke(args=["copy-sqlite", str(tmp_path / "none.db")])
    assert result.exit_code == 2 and "does not exist" in result.output
