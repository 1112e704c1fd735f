"""`flask trace` and `flask report`: a message's life and a period at a glance, recorded from
real traffic (sends to the Vonage stand-in, signed webhooks, forwards to the MoEngage one)."""

import json

import pytest
from conftest import AUTH, inbound_body, status_body, webhook
from standins import Answer

NUMBER = "447700900000"
USAGE = {"usage": {"currency": "EUR", "price": "0.0333"}, "sms": {"count_total": "2"}}


def done(response):
    """The answer, once closed: what a request leaves to write runs when its answer is out."""
    response.get_data()
    response.close()
    return response


def send(client, **body):
    return done(client.post("/", json={"to": NUMBER, "text": "hi", **body}, headers=AUTH))


def status(client, state, uuid, **extra):
    return done(webhook(client, "/webhooks/status", status_body(state, uuid, **extra)))


def cli(app, *args):
    return app.test_cli_runner().invoke(args=list(args))


@pytest.fixture
def story(app, moengage):
    """A send with client_ref, its statuses (one redelivered), a STOP reply from the number."""
    client = app.test_client()
    uuid = send(
        client, client_ref="order-77", campaign_id="camp-1", customer_id="user-9"
    ).get_json()["trackingId"]
    status(client, "submitted", uuid, **USAGE)
    status(client, "delivered", uuid, **USAGE)
    status(client, "delivered", uuid, **USAGE)  # Vonage redelivers
    done(webhook(client, "/webhooks/inbound", inbound_body("Stop", sender=NUMBER)))
    return uuid


def test_trace_by_tracking_id_prints_each_step_masked(app, story):
    result = cli(app, "trace", story)
    assert result.exit_code == 0, result.output
    out = result.output
    assert NUMBER not in out and "********0000" in out
    stages = [line.split()[1] for line in out.splitlines() if line.startswith("  ")]
    assert stages[:3] == ["send", "vonage", "answer"]
    assert stages.count("status") == 3 and stages.count("forward") == 2
    assert "campaign_id=camp-1" in out and "client_ref=order-77" in out
    assert "customer_id=user-9" in out and "price=0.0333" in out and "parts=2" in out
    assert "redelivery=1" in out and "why_not=a redelivery: MoEngage already has it" in out


def test_trace_json_has_the_timeline_and_the_subscription(app, story):
    result = cli(app, "trace", story, "--json")
    traced = json.loads(result.output)
    assert traced["query"] == story
    [message] = traced["messages"]
    assert message["trackingId"] == story
    timeline = message["timeline"]
    assert [e["stage"] for e in timeline][:3] == ["send", "vonage", "answer"]
    assert timeline[0]["to"] == "********0000" and timeline[0]["replay"] is False
    assert timeline[1]["http"] == 202 and timeline[1]["tries"] == 1
    assert timeline[2]["http"] == 200 and timeline[2]["trackingId"] == story
    statuses = [e for e in timeline if e["stage"] == "status"]
    assert [s["status"] for s in statuses] == ["submitted", "delivered", "delivered"]
    assert [s["forwarded"] for s in statuses] == [True, True, False]
    assert statuses[1]["currency"] == "EUR" and statuses[1]["parts"] == "2"
    forwards = [e for e in timeline if e["stage"] == "forward"]
    assert [(f["event"], f["http"], f["attempt"]) for f in forwards] == [
        ("sent", 200, 1),
        ("delivered", 200, 1),
    ]
    assert all(e["at"].endswith("Z") for e in timeline)
    assert timeline == sorted(timeline, key=lambda e: e["at"])
    assert traced["subscription"]["state"] == "OPTOUT"
    assert traced["subscription"]["number"] == "********0000"


def test_trace_by_client_ref_and_by_number_in_any_format(app, story):
    by_ref = json.loads(cli(app, "trace", "order-77", "--json").output)
    assert [m["trackingId"] for m in by_ref["messages"]] == [story]
    by_number = json.loads(cli(app, "trace", "+44 (7700) 900-000", "--json").output)
    directions = [m["direction"] for m in by_number["messages"]]
    assert directions == ["outbound", "inbound"]
    reply = by_number["messages"][1]["timeline"]
    assert [e["stage"] for e in reply] == ["inbound", "subscription", "forward"]
    assert reply[1]["state"] == "OPTOUT" and reply[1]["decided_by"] == "2025-02-03T12:14:25Z"
    history = by_number["subscription"]["history"]
    assert [h["state"] for h in history] == ["OPTOUT"]
    assert NUMBER not in json.dumps(by_number)


def test_unmask_shows_numbers_only_with_json(app, story):
    unmasked = cli(app, "trace", story, "--json", "--unmask").output
    assert json.loads(unmasked)["messages"][0]["timeline"][0]["to"] == NUMBER
    refused = cli(app, "trace", story, "--unmask")
    assert refused.exit_code != 0 and NUMBER not in refused.output


def test_unknown_id_exits_1(app):
    result = cli(app, "trace", "no-such-thing")
    assert result.exit_code == 1
    assert "nothing recorded for 'no-such-thing'" in result.output


def test_a_refused_send_and_a_replay_are_traced(app, vonage):
    client = app.test_client()
    vonage.script(Answer(422, {"title": "Invalid sender", "detail": "bad from"}))
    assert send(client, client_ref="r-1").status_code == 422
    first = send(client, client_ref="r-2").get_json()["trackingId"]
    assert send(client, client_ref="r-2").get_json()["trackingId"] == first
    refused = json.loads(cli(app, "trace", "r-1", "--json").output)["messages"][0]
    assert refused["trackingId"] is None
    answer = refused["timeline"][-1]
    assert answer["http"] == 422 and "Invalid sender" in answer["error"]
    assert refused["timeline"][1]["http"] == 422  # Vonage's own answer
    replayed = json.loads(cli(app, "trace", "r-2", "--json").output)["messages"][0]
    sends = [e for e in replayed["timeline"] if e["stage"] == "send"]
    assert [s["replay"] for s in sends] == [False, True]


def test_report_counts_answers_deliveries_failures_opt_outs_and_cost(app, moengage):
    client = app.test_client()
    delivered = send(client, campaign_id="c1", text="a").get_json()["trackingId"]
    rejected = send(client, campaign_id="c1", text="b", to="919876543210").get_json()
    other = send(client, campaign_id="c2", text="c").get_json()["trackingId"]
    done(client.post("/", json={"to": NUMBER, "text": "x"}, headers={"Authorization": "x"}))
    status(client, "delivered", delivered, **USAGE)
    error = {"type": "x", "title": "1480", "detail": "Entity Filter"}
    status(client, "rejected", rejected["trackingId"], error=error, to="919876543210")
    status(client, "submitted", other, usage={"currency": "EUR", "price": "0.05"})
    done(webhook(client, "/webhooks/inbound", inbound_body("STOP")))
    done(webhook(client, "/webhooks/inbound", inbound_body("START")))
    result = cli(app, "report", "--since", "2000-01-01T00:00:00Z", "--json")
    built = json.loads(result.output)
    assert built["sends"] == 3  # the 401 never reached the send (no trace of a bad header)
    assert built["by_answer"] == {"200": 3}
    assert built["accepted"] == 3 and built["delivered"] == 1
    assert built["delivery_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert built["failures"] == [
        {
            "code": "1480",
            "count": 1,
            "meaning": "Entity Filter: `entity_id` (DLT principal entity) incorrect or missing",
        }
    ]
    assert built["opt_outs"] == 1 and built["opt_ins"] == 1
    assert built["sms_parts"] == 2 and built["cost"] == {"EUR": "0.0833"}
    campaign = json.loads(cli(app, "report", "--campaign", "c1", "--json").output)
    assert campaign["sends"] == 2 and campaign["cost"] == {"EUR": "0.0333"}
    text = cli(app, "report", "--since", "2000-01-01T00:00:00Z").output
    assert "1480: 1  Entity Filter" in text and "(33.3%)" in text
    assert "0.0833 EUR" in text and "919876543210" not in text


def test_recording_adds_no_transaction_to_a_send_or_a_status(app, moengage, monkeypatch):
    """The send's row rides the transaction recording its answer, the status's the ones that
    forward it: as many commits as without the trail, and written before the answer."""
    store = app.extensions["connector"].store
    opened = []
    transaction = store.transaction

    def counted():
        opened.append(1)
        return transaction()

    monkeypatch.setattr(store, "transaction", counted)
    client = app.test_client()
    answer = client.post("/", json={"to": NUMBER, "text": "hi", "client_ref": "c-1"}, headers=AUTH)
    assert len(opened) == 2  # claim_send, finish_send
    uuid = answer.get_json()["trackingId"]  # the answer is not closed: nothing ran after it
    assert [row["stage"] for row in trail_rows(store, uuid)] == ["send"]
    opened.clear()
    webhook(client, "/webhooks/status", status_body("delivered", uuid), record=False)
    assert len(opened) == 2  # record_status (leasing the new event), event_sent
    assert [row["stage"] for row in trail_rows(store, uuid)] == ["send", "status", "forward"]


def trail_rows(store, uuid):
    from connector.diagnostics import trail

    return trail.by(store, "message_uuid", uuid)


def test_an_opt_in_by_hand_joins_the_number_history(app, story):
    assert cli(app, "optin", NUMBER).exit_code == 0
    traced = json.loads(cli(app, "trace", NUMBER, "--json").output)
    assert [h["state"] for h in traced["subscription"]["history"]] == ["OPTOUT", "OPTIN"]
    assert traced["subscription"]["history"][1]["decided_by"] == "by hand"
    assert traced["subscription"]["state"] == "OPTIN"
    assert traced["messages"][-1]["direction"] == "by hand"
