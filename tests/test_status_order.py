"""Issue 19 part 5: the first final status stored wins, and nothing follows it at MoEngage.

Vonage redelivers what was not answered 2xx, so a message's `submitted`, `delivered` and
`rejected` can arrive at the same instant, each more than once. Whatever the interleaving,
MoEngage gets exactly one final per message and never a `sent` after it. Many threads on one
app here (both backends); two instances on one PostgreSQL in test_scaleout.py.
"""

import json
import threading
import time
import uuid

import pytest
from conftest import AUTH, status_body, webhook
from standins import Answer

STORM = ("submitted", "delivered", "rejected") * 2  # each status, and Vonage's redelivery
FINAL = {"delivered", "failed"}


def at_once(calls):
    """Run the calls in threads released together; their results, in order."""
    results = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(i):
        barrier.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def fire(app, message, statuses):
    """Post the message's statuses at once, each from its own thread and client."""
    return at_once(
        [
            lambda status=status: webhook(
                app.test_client(), "/webhooks/status", status_body(status, message)
            )
            for status in statuses
        ]
    )


def moengage_saw(moengage):
    """{trackingId: [status, ...]} in the order MoEngage accepted them."""
    seen = {}
    for post in sorted(moengage.posts("/sms/dlr/custom/42"), key=lambda r: r["time"]):
        if post["status"] == 200:
            seen.setdefault(post["json"]["trackingId"], []).append(post["json"]["status"])
    return seen


def assert_one_final_and_nothing_after(seen, messages):
    assert sorted(seen) == sorted(messages)
    for message, statuses in seen.items():
        finals = [s for s in statuses if s in FINAL]
        assert len(finals) == 1, (message, statuses)
        assert statuses[-1] in FINAL, (message, statuses)  # no `sent` after the final


def test_a_storm_of_statuses_gives_moengage_one_final_per_message(make_app, moengage):
    moengage.latency = 0.02  # each forward takes a moment, as over a network
    app = make_app()
    messages = [str(uuid.uuid4()) for _ in range(15)]
    for message in messages:
        answers = fire(app, message, STORM)
        assert [a.status_code for a in answers] == [200] * len(STORM)
    assert_one_final_and_nothing_after(moengage_saw(moengage), messages)


def test_submitted_and_delivered_together_never_end_on_sent(make_app, moengage):
    moengage.latency = 0.02
    app = make_app()
    messages = [str(uuid.uuid4()) for _ in range(30)]
    for message in messages:
        fire(app, message, ("submitted", "delivered"))
    seen = moengage_saw(moengage)
    assert all(statuses[-1] == "delivered" for statuses in seen.values()), seen


def test_the_first_final_stored_wins_even_before_moengage_has_it(make_app, moengage):
    """MoEngage refuses the first final: it stays pending, and a later final is still not
    forwarded; the first one is, on Vonage's redelivery."""
    app = make_app()
    client = app.test_client()
    moengage.script(Answer(503, {}))
    message = str(uuid.uuid4())
    assert webhook(client, "/webhooks/status", status_body("rejected", message)).status_code == 503
    late = webhook(client, "/webhooks/status", status_body("delivered", message))
    assert late.status_code == 200 and late.json == {"status": "superseded"}
    assert webhook(client, "/webhooks/status", status_body("rejected", message)).status_code == 200
    assert moengage_saw(moengage) == {message: ["failed"]}


def test_a_sent_waiting_when_the_final_is_stored_is_dropped(make_app, moengage):
    app = make_app()
    client, store = app.test_client(), app.extensions["connector"].store
    moengage.script(Answer(503, {}))
    message = str(uuid.uuid4())
    assert webhook(client, "/webhooks/status", status_body("submitted", message)).status_code == 503
    assert webhook(client, "/webhooks/status", status_body("delivered", message)).status_code == 200
    assert store.pending_events() == []  # dropped as the final was stored, not left waiting
    assert webhook(client, "/webhooks/status", status_body("submitted", message)).status_code == 200
    assert moengage_saw(moengage) == {message: ["delivered"]}


@pytest.mark.parametrize("repeat", range(3))
def test_a_final_waits_for_a_sent_being_posted(make_app, moengage, repeat):
    """The `sent` is with MoEngage when the final arrives: the final follows it, not overtakes."""
    moengage.latency = 0.3
    app = make_app()
    message = str(uuid.uuid4())

    def status(name, delay):
        time.sleep(delay)
        return webhook(app.test_client(), "/webhooks/status", status_body(name, message))

    answers = at_once([lambda: status("submitted", 0), lambda: status("delivered", 0.1)])
    assert [a.status_code for a in answers] == [200, 200]
    assert moengage_saw(moengage) == {message: ["sent", "delivered"]}
    sent, final = sorted(moengage.posts("/sms/dlr/custom/42"), key=lambda r: r["time"])
    assert final["time"] >= sent["time"] + moengage.latency  # posted once `sent` was answered


def test_the_report_counts_the_final_that_won(make_app, vonage, moengage):
    app = make_app()
    client = app.test_client()
    message = client.post("/", json={"to": "447700900000", "text": "hi"}, headers=AUTH)
    message = message.get_json()["trackingId"]
    moengage.script(Answer(503, {}))
    webhook(client, "/webhooks/status", status_body("rejected", message), record=False).close()
    webhook(client, "/webhooks/status", status_body("delivered", message), record=False).close()
    result = app.test_cli_runner().invoke(
        args=["report", "--since", "2000-01-01T00:00:00Z", "--json"]
    )
    report = json.loads(result.output)
    assert report["delivered"] == 0 and [f["count"] for f in report["failures"]] == [1]
