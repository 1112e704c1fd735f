"""Contract section 3: replies, STOP/START, opt-out storage and sync to MoEngage."""

import base64
import time

import pytest
from conftest import inbound_body, send, webhook
from standins import Answer, fixture

from connector.relay import outbox

NUMBER = "447700900000"
WORKSPACE = {"moengage_workspace_id": "WS123", "moengage_data_api_key": "data-key-xyz"}


def tracked(moengage):
    return [r["json"] for r in moengage.posts("/sms/dlr/custom/42") if r["status"] == 200]


def track_user_calls(moengage):
    return [r for r in moengage.posts("/v1/customer/") if r["status"] == 200]


@pytest.fixture
def synced_app(make_app, moengage):
    return make_app(**WORKSPACE)


def test_stop_opts_out_and_is_forwarded(app, client, moengage, vonage):
    body = inbound_body("STOP")
    assert webhook(client, "/webhooks/inbound", body).status_code == 200
    assert tracked(moengage) == [
        {
            "type": "inbound",
            "messageId": body["message_uuid"],
            "from": NUMBER,
            "to": "447700900001",
            "text": "STOP",
            "keyword": "STOP",
            "subscription": "OPTOUT",
            "timestamp": "2025-02-03T12:14:25Z",
        }
    ]
    response = send(client, {"to": "+44 7700 900000", "text": "hi"})
    assert response.status_code == 422
    assert vonage.sends() == []


@pytest.mark.parametrize("text", ["stop", " Stop. ", "STOP!", "unsubscribe", "Quit", "end"])
def test_opt_out_keywords(client, moengage, text):
    webhook(client, "/webhooks/inbound", inbound_body(text))
    assert tracked(moengage)[0]["subscription"] == "OPTOUT"


@pytest.mark.parametrize("text", ["Stop sending me the blue one", "STOP ALL now", "hello", ""])
def test_only_the_whole_message_counts(client, moengage, vonage, text):
    webhook(client, "/webhooks/inbound", inbound_body(text))
    assert tracked(moengage)[0]["subscription"] is None
    assert send(client, {"to": NUMBER, "text": "hi"}).status_code == 200


def test_start_opts_back_in(client, moengage, vonage):
    webhook(client, "/webhooks/inbound", inbound_body("STOP", timestamp="2025-02-03T12:00:00Z"))
    webhook(client, "/webhooks/inbound", inbound_body("start", timestamp="2025-02-03T12:00:05Z"))
    assert tracked(moengage)[1]["subscription"] == "OPTIN"
    assert send(client, {"to": NUMBER, "text": "hi"}).status_code == 200


def test_keywords_are_configurable(make_app, moengage, vonage):
    client = make_app(opt_out_keywords=("ARRET",), opt_in_keywords=("REPRISE",)).test_client()
    webhook(client, "/webhooks/inbound", inbound_body("STOP"))
    webhook(client, "/webhooks/inbound", inbound_body("arret"))
    assert [e["subscription"] for e in tracked(moengage)] == [None, "OPTOUT"]


def test_an_older_event_does_not_undo_a_newer_one(client, moengage, vonage):
    webhook(client, "/webhooks/inbound", inbound_body("START", timestamp="2025-02-03T12:00:05Z"))
    webhook(client, "/webhooks/inbound", inbound_body("STOP", timestamp="2025-02-03T12:00:00Z"))
    assert send(client, {"to": NUMBER, "text": "hi"}).status_code == 200


def test_equal_timestamps_the_later_arrival_wins(client, moengage, vonage):
    webhook(client, "/webhooks/inbound", inbound_body("STOP", timestamp="2025-02-03T12:00:00Z"))
    webhook(client, "/webhooks/inbound", inbound_body("START", timestamp="2025-02-03T12:00:00Z"))
    assert send(client, {"to": NUMBER, "text": "hi"}).status_code == 200


def test_a_redelivered_stop_cannot_undo_a_later_start(client, moengage, vonage):
    stop = inbound_body("STOP", timestamp="2025-02-03T12:00:00Z")
    webhook(client, "/webhooks/inbound", stop)
    webhook(client, "/webhooks/inbound", inbound_body("START", timestamp="2025-02-03T12:00:00Z"))
    assert webhook(client, "/webhooks/inbound", stop).status_code == 200
    assert send(client, {"to": NUMBER, "text": "hi"}).status_code == 200
    assert len(tracked(moengage)) == 2


def test_inbound_is_forwarded_once(client, moengage):
    body = inbound_body("hello")
    webhook(client, "/webhooks/inbound", body)
    webhook(client, "/webhooks/inbound", body)
    assert len(tracked(moengage)) == 1


@pytest.mark.parametrize(
    "body",
    [
        {"from": NUMBER, "text": "x"},
        {"message_uuid": "u", "text": "x"},
        {"message_uuid": "u", "from": NUMBER},
        {"message_uuid": "u", "from": NUMBER, "text": 5},
    ],
)
def test_inbound_without_required_fields_is_400(client, moengage, body):
    assert webhook(client, "/webhooks/inbound", body).status_code == 400
    assert moengage.requests == []


def test_sdk_inbound_fixture_parses(client, moengage):
    body = fixture("dotnet-sdk/ShouldDeserializeSms-response.json")
    assert webhook(client, "/webhooks/inbound", body).status_code == 200
    event = tracked(moengage)[0]
    assert event["messageId"] == "52afe398-e31a-4362-8c42-beb0c3b1d098"
    assert (event["keyword"], event["subscription"]) == ("HELLO FROM VONAGE", None)


def test_opt_out_is_written_to_the_last_user_sent_to(synced_app, moengage, vonage):
    client = synced_app.test_client()
    send(client, {"to": NUMBER, "text": "hi", "customer_id": "old-user"})
    send(client, {"to": NUMBER, "text": "hello", "customer_id": "user-42"})
    assert webhook(client, "/webhooks/inbound", inbound_body("STOP")).status_code == 200
    [call] = track_user_calls(moengage)
    assert call["path"] == "/v1/customer/WS123"
    assert (
        call["headers"]["Authorization"]
        == "Basic " + base64.b64encode(b"WS123:data-key-xyz").decode()
    )
    assert call["json"] == {
        "type": "customer",
        "customer_id": "user-42",
        "attributes": {"moe_sms_subscription": "OPTOUT"},
    }


def test_opt_in_is_written_too(synced_app, moengage, vonage):
    client = synced_app.test_client()
    send(client, {"to": NUMBER, "text": "hi", "customer_id": "user-42"})
    webhook(client, "/webhooks/inbound", inbound_body("STOP", timestamp="2025-02-03T12:00:00Z"))
    webhook(client, "/webhooks/inbound", inbound_body("YES", timestamp="2025-02-03T12:01:00Z"))
    assert [
        c["json"]["attributes"]["moe_sms_subscription"] for c in track_user_calls(moengage)
    ] == ["OPTOUT", "OPTIN"]


def test_data_api_host_defaults_to_the_tracking_url_host(synced_app, moengage, vonage):
    client = synced_app.test_client()
    send(client, {"to": NUMBER, "text": "hi", "customer_id": "user-42"})
    webhook(client, "/webhooks/inbound", inbound_body("STOP"))
    assert len(track_user_calls(moengage)) == 1  # the stand-in serves both on one host


def test_no_sync_without_data_api_settings(client, moengage, vonage):
    send(client, {"to": NUMBER, "text": "hi", "customer_id": "user-42"})
    webhook(client, "/webhooks/inbound", inbound_body("STOP"))
    assert moengage.posts("/v1/customer/") == []


def test_unknown_user_is_synced_when_a_send_names_one(synced_app, moengage, vonage):
    client = synced_app.test_client()
    webhook(client, "/webhooks/inbound", inbound_body("STOP"))
    assert moengage.posts("/v1/customer/") == []
    response = send(client, {"to": NUMBER, "text": "hi", "customer_id": "user-42"})
    assert response.status_code == 422
    response.close()  # the sync runs once the answer has gone
    [call] = track_user_calls(moengage)
    assert call["json"]["customer_id"] == "user-42"
    send(client, {"to": NUMBER, "text": "again", "customer_id": "user-42"}).close()
    assert len(track_user_calls(moengage)) == 1


def test_data_api_5xx_is_retried(synced_app, moengage, vonage):
    client = synced_app.test_client()
    send(client, {"to": NUMBER, "text": "hi", "customer_id": "user-42"})
    moengage.script(Answer(200, {}), Answer(502, {}))  # inbound forward ok, Track User 502
    assert webhook(client, "/webhooks/inbound", inbound_body("STOP")).status_code == 200
    assert len(track_user_calls(moengage)) == 1


def test_data_api_down_is_503_and_only_the_sync_is_retried(synced_app, moengage, vonage):
    client = synced_app.test_client()
    send(client, {"to": NUMBER, "text": "hi", "customer_id": "user-42"})
    moengage.script(Answer(200, {}), Answer(500, {}), Answer(500, {}), Answer(500, {}))
    body = inbound_body("STOP")
    assert webhook(client, "/webhooks/inbound", body).status_code == 503
    assert send(client, {"to": NUMBER, "text": "x"}).status_code == 422  # stored already
    assert webhook(client, "/webhooks/inbound", body).status_code == 200
    assert len(tracked(moengage)) == 1
    assert len(track_user_calls(moengage)) == 1


def data_api_received(moengage):
    """Every subscription the Data API was sent, and what it answered, in arrival order."""
    return [
        (r["json"]["attributes"]["moe_sms_subscription"], r["status"])
        for r in moengage.posts("/v1/customer/")
    ]


@pytest.mark.parametrize(
    "word, other, state",
    [("STOP", "START", "OPTOUT"), ("START", "STOP", "OPTIN")],  # and the mirror case
)
def test_a_late_stale_sync_never_overwrites_a_newer_state(
    synced_app, moengage, vonage, word, other, state
):
    client = synced_app.test_client()
    send(client, {"to": NUMBER, "text": "hi", "customer_id": "user-42"})
    first = inbound_body(word, timestamp="2025-02-03T12:00:00Z")
    stale = inbound_body(other, timestamp="2025-02-03T12:01:00Z")
    again = inbound_body(word, timestamp="2025-02-03T12:02:00Z")
    assert webhook(client, "/webhooks/inbound", first).status_code == 200
    moengage.script(Answer(200, {}), *[Answer(503, {})] * 3)  # the middle sync stays pending
    assert webhook(client, "/webhooks/inbound", stale).status_code == 503
    assert webhook(client, "/webhooks/inbound", again).status_code == 200
    # Vonage redelivers the middle reply: its sync carries a state the number no longer has.
    assert webhook(client, "/webhooks/inbound", stale).status_code == 200
    received = data_api_received(moengage)
    assert [s for s, answer in received if answer == 200] == [state, state]
    assert received[-1] == (state, 200)
    store = synced_app.extensions["connector"].store
    assert store.pending_syncs() == set() and store.subscription(NUMBER)[0] == state


def test_a_sync_waits_for_an_older_one_in_flight_and_drops_it_once_stale(
    synced_app, make_app, moengage, vonage
):
    """Two instances on one database: while one posts the number's OPTIN, the other's newer
    OPTOUT waits; the OPTIN, failed and retried later, is dropped, never sent after it."""
    other = make_app(**WORKSPACE)
    send(synced_app.test_client(), {"to": NUMBER, "text": "hi", "customer_id": "user-42"})
    store, other_store = (a.extensions["connector"].store for a in (synced_app, other))
    _, [opt_in] = store.set_subscription(NUMBER, "OPTIN", 10.0, 10.0, True)
    lease = store.lease_event(opt_in, time.time(), 60.0)  # instance 1 is posting it
    assert lease.outcome == "leased"
    _, [opt_out] = other_store.set_subscription(NUMBER, "OPTOUT", 20.0, 20.0, True)
    assert other_store.lease_event(opt_out, time.time(), 60.0).outcome == "busy"
    store.event_failed(opt_in, "MoEngage answered 503", lease.until)
    assert outbox.push(other.extensions["connector"], [opt_in, opt_out]) == {
        opt_in: outbox.SUPERSEDED,
        opt_out: outbox.SENT,
    }
    assert data_api_received(moengage) == [("OPTOUT", 200)]
