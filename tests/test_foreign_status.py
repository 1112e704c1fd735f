"""Issue 19 part 4: only statuses of messages this connector sent reach MoEngage.

A status of no recorded send is answered 503 (Vonage redelivers), since Vonage's answer to a
send can overtake the commit that records it; still unknown FOREIGN_AFTER_SECONDS after it
first came, it is dropped as another system's, counted, and named by doctor and /health."""

import threading
import time
import uuid

from conftest import AUTH, send, status_body, webhook
from standins import Answer

from connector.web.webhooks import FOREIGN_AFTER_SECONDS


def tracked(moengage):
    return [r["json"] for r in moengage.posts("/sms/dlr/custom/42") if r["status"] == 200]


def later(app, seconds):
    """As if `seconds` passed since the held statuses first came."""
    with app.extensions["connector"].store.transaction() as tx:
        tx.execute("UPDATE events SET created_at = created_at - ?", (seconds,))


def closed(response):
    response.get_data()
    response.close()  # the trail and the warnings' evidence are written once the answer is out
    return response


def test_a_status_of_a_message_never_sent_is_held_then_dropped_as_foreign(make_app, moengage):
    app = make_app(evidence_flush_seconds=0)
    client, body = app.test_client(), status_body("delivered", "sent-by-someone-else")
    held = closed(webhook(client, "/webhooks/status", body, record=False))
    assert held.status_code == 503 and held.headers["Retry-After"] == "5"
    assert "no send of this message_uuid is recorded" in held.json["error"]
    later(app, FOREIGN_AFTER_SECONDS - 5)
    assert closed(webhook(client, "/webhooks/status", body, record=False)).status_code == 503
    later(app, 5)
    dropped = closed(webhook(client, "/webhooks/status", body, record=False))
    assert dropped.status_code == 200 and dropped.json == {"status": "foreign"}
    assert moengage.requests == []
    assert app.extensions["connector"].store.pending_events() == []
    [warning] = client.get("/health").json["warnings"]
    assert warning["code"] == "foreign-statuses" and warning["count"] == 1
    assert "sent-by-someone-else" in warning["message"]
    result = app.test_cli_runner().invoke(args=["doctor"])
    assert result.exit_code == 1 and "foreign-statuses" in result.output
    trace = app.test_cli_runner().invoke(args=["trace", "sent-by-someone-else"]).output
    assert "not a message this connector sent" in trace


def test_a_status_that_overtakes_its_send_is_forwarded_on_redelivery(client, vonage, moengage):
    """Vonage has accepted the send (and posts its status) before the connector recorded it."""
    message = str(uuid.uuid4())
    vonage.script(Answer(202, {"message_uuid": message}, delay=0.6))
    answers = []
    sending = threading.Thread(
        target=lambda: answers.append(send(client, {"to": "447700900000", "text": "hi"}))
    )
    sending.start()
    time.sleep(0.3)  # the send is with Vonage: its message_uuid is recorded by no one yet
    body = status_body("submitted", message)
    early = webhook(client, "/webhooks/status", body, record=False)
    sending.join()
    assert early.status_code == 503 and moengage.requests == []
    assert answers[0].status_code == 200 and answers[0].json["trackingId"] == message
    again = webhook(client, "/webhooks/status", body, record=False)  # Vonage's redelivery
    assert again.status_code == 200
    assert tracked(moengage) == [
        {"trackingId": message, "status": "sent", "timestamp": "2025-02-03T12:14:25Z"}
    ]


def test_a_send_without_client_ref_or_dedupe_window_is_recorded_for_its_statuses(
    make_app, vonage, moengage
):
    app = make_app(send_dedupe_seconds=0)
    client = app.test_client()
    message = send(client, {"to": "447700900000", "text": "hi"}, headers=AUTH).json["trackingId"]
    answer = webhook(client, "/webhooks/status", status_body("delivered", message), record=False)
    assert answer.status_code == 200 and tracked(moengage)[0]["trackingId"] == message
