"""The MoEngage client under faults: a forward that trickles still ends within MOENGAGE_TIMEOUT,
headers and body included; what MoEngage did not accept stays pending."""

import time

from conftest import inbound_body, send, status_body, webhook
from standins import Answer

PADDED = {"status": "success", "pad": "x" * 150}
NUMBER = "447700900000"
WORKSPACE = {"moengage_workspace_id": "WS123", "moengage_data_api_key": "data-key-xyz"}


def test_a_forward_whose_answer_trickles_ends_in_time_and_stays_pending(make_app, moengage):
    """One byte every 0.1 s: the status line alone would take 1.7 s, the whole answer 20 s."""
    app = make_app(moengage_timeout=0.6)
    moengage.script(Answer(200, PADDED, trickle=0.1))
    started = time.monotonic()
    response = webhook(app.test_client(), "/webhooks/status", status_body())
    assert response.status_code == 503
    assert time.monotonic() - started < 4.0  # far below the trickle's 20 s
    assert len(app.extensions["connector"].store.pending_events()) == 1
    # Vonage redelivers once MoEngage answers normally again: forwarded then.
    assert webhook(app.test_client(), "/webhooks/status", status_body()).status_code == 200
    assert app.extensions["connector"].store.pending_events() == []


def test_a_forward_whose_body_trickles_counts_moengages_status(make_app, moengage):
    """MoEngage said 200 at once: accepted, even if the rest of its answer never comes."""
    app = make_app(moengage_timeout=0.6)
    moengage.script(Answer(200, PADDED, trickle=0.1, trickle_body_only=True))
    started = time.monotonic()
    response = webhook(app.test_client(), "/webhooks/status", status_body())
    assert response.status_code == 200
    assert time.monotonic() - started < 4.0  # far below the trickle's 16 s
    assert app.extensions["connector"].store.pending_events() == []


def test_data_api_tries_all_end_within_the_timeout(make_app, moengage, vonage):
    """Track User trickling: its inline retries do not multiply the wait."""
    app = make_app(moengage_timeout=0.6, **WORKSPACE)
    client = app.test_client()
    assert send(client, {"to": NUMBER, "text": "hi", "customer_id": "user-42"}).status_code == 200
    slow = Answer(500, PADDED, trickle=0.1)
    moengage.script(Answer(200, {}), slow, slow, slow)  # the reply's forward, then Track User
    started = time.monotonic()
    assert webhook(client, "/webhooks/inbound", inbound_body("STOP")).status_code == 503
    assert time.monotonic() - started < 4.0  # three trickled tries would take a minute
    assert len(moengage.posts("/v1/customer/")) == 1
