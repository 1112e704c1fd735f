"""Issue 21 item 3: a skewed, a behind or a stepped clock never costs a send, a STOP or an SMS
twice. (b) and (c) on both backends; (a) with two real instances on one PostgreSQL, one of
them running 90 s ahead (its whole process's time.time(), through sitecustomize)."""

import json
import re
import threading
import time
import uuid

import pgtest
import pytest
import requests
from conftest import (
    AUTH,
    SIGNATURE_SECRET,
    inbound_body,
    record_send,
    record_sends,
    send,
    sign,
    status_body,
    webhook,
)
from gunicorn_proc import Connector
from standins import Answer
from test_restart import accepted, connector_env

AHEAD = 400  # Vonage's clock ahead of ours by more than the 5 minutes once refused


def done(response):
    response.get_data()
    response.close()
    return response


def signed_ahead(client, path, body, seconds=AHEAD):
    if path.endswith("/status"):  # a status of a message this connector sent (webhooks.py)
        record_send(client.application, body)
    raw = json.dumps(body).encode()
    return done(client.post(path, data=raw, headers=sign(raw, iat=int(time.time()) + seconds)))


def clock_warnings(app):
    response = done(app.test_client().get("/health"))
    assert response.status_code == 200
    return [w for w in response.get_json()["warnings"] if w["code"] == "clock"]


# -- (b) the connector's clock behind Vonage's ----------------------------------------------
def test_a_stop_signed_400_s_ahead_is_honoured_and_the_clock_named(make_app, vonage, moengage):
    app = make_app(evidence_flush_seconds=0)
    client = app.test_client()
    stop = inbound_body("STOP", sender="447700900000")
    assert signed_ahead(client, "/webhooks/inbound", stop).status_code == 200
    assert send(client, {"to": "+447700900000", "text": "Sale!"}).status_code == 422
    assert vonage.sends() == []
    [warning] = clock_warnings(app)
    assert "ahead of this machine's clock" in warning["message"]
    assert "NTP" in warning["fix"]
    result = app.test_cli_runner().invoke(args=["doctor"])
    assert result.exit_code == 1 and "[clock]" in result.output


def test_a_status_signed_400_s_ahead_is_forwarded(app, moengage):
    body = status_body("delivered", str(uuid.uuid4()))
    assert signed_ahead(app.test_client(), "/webhooks/status", body).status_code == 200
    assert [e["trackingId"] for e in accepted(moengage)] == [body["message_uuid"]]


@pytest.mark.parametrize("seconds", [0, AHEAD, -86400])
def test_a_wrong_signature_or_hash_is_still_401_whatever_the_iat(app, moengage, seconds):
    raw = json.dumps(status_body()).encode()
    iat = int(time.time()) + seconds
    forged = sign(raw, secret="not-the-secret-0123456789abcdef0123456789", iat=iat)
    other_body = sign(b'{"other": 1}', iat=iat)
    client = app.test_client()
    assert done(client.post("/webhooks/status", data=raw, headers=forged)).status_code == 401
    assert done(client.post("/webhooks/status", data=raw, headers=other_body)).status_code == 401
    assert moengage.requests == []


# -- (c) a clock stepped back: the shared turns an hour ahead -------------------------------
def schedule(app, task, seconds_ahead):
    """As a worker whose clock was an hour ahead left the task's row."""
    with app.extensions["connector"].store.transaction() as tx:
        tx.execute(
            "INSERT INTO schedule (task, next_at) VALUES (?, ?)"
            " ON CONFLICT (task) DO UPDATE SET next_at = excluded.next_at",
            (task, time.time() + seconds_ahead),
        )


def test_a_sweep_scheduled_an_hour_ahead_still_pushes_a_pending_event(make_app, moengage):
    app = make_app(pending_sweep_seconds=0.5)
    client = app.test_client()
    moengage.script(Answer(503, {}))
    body = status_body("delivered", str(uuid.uuid4()))
    assert done(webhook(client, "/webhooks/status", body)).status_code == 503  # kept pending
    schedule(app, "outbox-sweep", 3600)
    deadline = time.monotonic() + 5
    while not accepted(moengage) and time.monotonic() < deadline:
        done(client.get("/health"))  # requests poke the sweep
        time.sleep(0.1)
    assert [e["trackingId"] for e in accepted(moengage)] == [body["message_uuid"]]


def test_a_prune_scheduled_an_hour_ahead_still_runs(make_app, moengage):
    app = make_app(retention_days=1.0)  # a prune every 300 s
    store = app.extensions["connector"].store
    claim = store.claim_send("ref:old", time.time() - 2 * 86400, None, 9.0, "447700900000")
    store.finish_send("ref:old", claim.token, 200, {}, time.time() - 2 * 86400, True, "u-old")
    schedule(app, "prune", 3600)
    done(app.test_client().get("/health"))
    app.extensions["connector"].pruner.wait()
    assert store.query("SELECT count(*) FROM sends")[0][0] == 0


def test_a_turn_within_its_interval_is_still_only_one_callers(store):
    now = time.time()
    assert store.claim_turn("task", now, 60.0)
    assert not store.claim_turn("task", now + 30, 60.0)  # due in 30 s: not a clock step
    assert not store.claim_turn("task", now - 4, 60.0)  # a worker whose now is 4 s older
    assert store.claim_turn("task", now - 3600, 60.0)  # an hour back: a step, taken


# -- (a) two instances, one clock 90 s ahead, on PostgreSQL ---------------------------------
SKEW = 90.0
SITECUSTOMIZE = f"""import time
_real = time.time
time.time = lambda: _real() + {SKEW}  # this whole process's clock runs {SKEW} s ahead
"""


@pytest.fixture
def two_instances(tmp_path, vonage, moengage):
    if not pgtest.URL:
        pytest.skip(pgtest.SKIP_REASON)
    skewed = tmp_path / "skewed"
    skewed.mkdir()
    (skewed / "sitecustomize.py").write_text(SITECUSTOMIZE)
    with pgtest.fresh_schema() as url:
        database = {"database_path": str(tmp_path / "unused.db"), "database_url": url}
        env = connector_env(database, vonage, moengage)
        right = Connector(env, workers=1, threads=4).start(tmp_path / "right.log")
        try:
            ahead = Connector({**env, "PYTHONPATH": str(skewed)}, workers=1, threads=4)
            ahead.start(tmp_path / "ahead.log")
            try:
                yield right, ahead, database
            finally:
                ahead.kill()
        finally:
            right.kill()


def post_signed(url, body):
    raw = json.dumps(body).encode()
    return requests.post(url, data=raw, headers=sign(raw, SIGNATURE_SECRET), timeout=15)


def test_an_instance_ahead_neither_forwards_a_redelivery_twice_nor_sends_twice(
    two_instances, vonage, moengage
):
    right, ahead, database = two_instances
    health = requests.get(f"{ahead.url}/health", timeout=5).json()
    [warning] = [w for w in health["warnings"] if w["code"] == "clock"]
    off = re.search(r"clock is ([0-9.]+) s ahead of the database", warning["message"])
    assert off and abs(float(off.group(1)) - SKEW) < 1.0

    # A status whose forward MoEngage answers slowly; Vonage redelivers it to the other
    # instance 0.5 s later, while the first still holds the lease.
    moengage.script(Answer(200, {"status": "success"}, delay=2.0))
    body = status_body("delivered", str(uuid.uuid4()))
    record_sends(database, body)  # a message this connector sent (webhooks.py forwards only those)
    first = threading.Thread(target=post_signed, args=(f"{right.url}/webhooks/status", body))
    first.start()
    time.sleep(0.5)
    again = post_signed(f"{ahead.url}/webhooks/status", body)
    first.join()
    assert again.status_code == 200
    assert len([e for e in accepted(moengage) if e["trackingId"] == body["message_uuid"]]) == 1

    # An identical send retried at the other instance: its window is the database's.
    send_body = {"to": "447700900000", "text": f"Your code is {uuid.uuid4().hex[:6]}"}
    one = requests.post(right.url, json=send_body, headers=AUTH, timeout=5)
    two = requests.post(ahead.url, json=send_body, headers=AUTH, timeout=5)
    assert one.status_code == two.status_code == 200
    assert two.json()["trackingId"] == one.json()["trackingId"]
    assert len([m for m in vonage.sent() if m["text"] == send_body["text"]]) == 1

    # The same while the first is still with Vonage: the other instance waits for it instead
    # of taking it for a send that died (the stale-send limit), and answers with its outcome.
    vonage.script(Answer(202, {"message_uuid": str(uuid.uuid4())}, delay=1.0))
    send_body = {"to": "447700900000", "text": f"Your code is {uuid.uuid4().hex[:6]}"}
    first = {}
    slow = threading.Thread(
        target=lambda: first.update(
            answer=requests.post(right.url, json=send_body, headers=AUTH, timeout=5)
        )
    )
    slow.start()
    time.sleep(0.3)
    joined = requests.post(ahead.url, json=send_body, headers=AUTH, timeout=5)
    slow.join()
    assert first["answer"].status_code == joined.status_code == 200
    assert joined.json()["trackingId"] == first["answer"].json()["trackingId"]
