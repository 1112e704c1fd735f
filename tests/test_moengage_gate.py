"""A hung MoEngage never starves sends: per worker, few threads may wait on MoEngage at once
(the rest of its webhooks answer 503 at once, the events kept pending), and after consecutive
time-outs MoEngage is not called for a while (the circuit breaker), named by /health and
`flask doctor`. The fault test runs real gunicorn against a MoEngage that accepts connections
and never answers."""

import concurrent.futures
import os
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests
from conftest import AUTH, record_sends, status_body, webhook
from gunicorn_proc import ROOT, Connector
from standins import Answer
from test_restart import connector_env, signed_post

from connector.clients import moengage_gate
from connector.clients.moengage_gate import Gate, NotAccepted, Shed
from connector.settings import load_settings
from connector.store import open_store

SLOW = Answer(200, {}, delay=2.0)  # longer than the tests' MOENGAGE_TIMEOUT of 0.3 s


def timing_out():
    raise NotAccepted("no answer from MoEngage within 0.3 s", timed_out=True)


def test_a_busy_but_answering_moengage_is_never_shed():
    """Calls that answer before SLOW are never refused, however many are in flight: a healthy
    MoEngage under a campaign's status webhooks gets every one."""
    gate, entered = Gate(2), threading.Barrier(9)

    def quick():
        entered.wait(5)  # 9 in flight at once, over the limit of 2
        time.sleep(0.05)
        return 200

    with concurrent.futures.ThreadPoolExecutor(9) as pool:
        assert [
            f.result() for f in [pool.submit(gate.call, "tracking", quick) for _ in range(9)]
        ] == [200] * 9


def test_the_gate_lets_limit_calls_wait_and_refuses_the_next_at_once(monkeypatch):
    monkeypatch.setattr(moengage_gate, "SLOW", 0.1)  # the production 1 s, shortened
    gate, entered, release = Gate(2), threading.Barrier(3), threading.Event()

    def hang():
        entered.wait()
        release.wait(5)
        return 200

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        held = [pool.submit(gate.call, "tracking", hang) for _ in range(2)]
        entered.wait(5)
        time.sleep(0.15)  # both now wait longer than SLOW
        started = time.monotonic()
        with pytest.raises(Shed, match="2 calls of this worker already wait on MoEngage"):
            gate.call("tracking", lambda: 200)
        assert time.monotonic() - started < 0.05
        release.set()
        assert [f.result() for f in held] == [200, 200]
    assert gate.call("tracking", lambda: 201) == 201  # slots given back


def test_the_breaker_opens_after_consecutive_time_outs_then_one_trial_decides():
    gate = Gate(4, trip_after=3, cool_off=0.3)
    for _ in range(2):
        with pytest.raises(NotAccepted):
            gate.call("tracking", timing_out)
    assert gate.call("tracking", lambda: 200) == 200  # an answer resets the count
    for _ in range(3):
        with pytest.raises(NotAccepted) as caught:
            gate.call("tracking", timing_out)
        assert not isinstance(caught.value, Shed)
    with pytest.raises(Shed, match="circuit open"):
        gate.call("tracking", lambda: 200)
    assert gate.call("data_api", lambda: 200) == 200  # another target has its own circuit
    assert gate.state()["circuits"] == {"tracking": "open", "data_api": "closed"}
    time.sleep(0.35)
    with pytest.raises(NotAccepted):  # the trial times out: open again at once
        gate.call("tracking", timing_out)
    with pytest.raises(Shed, match="circuit open"):
        gate.call("tracking", lambda: 200)
    time.sleep(0.35)
    assert gate.call("tracking", lambda: 200) == 200  # the trial answered: closed
    assert gate.call("tracking", lambda: 200) == 200


def test_refusals_do_not_trip_the_breaker():
    gate = Gate(4, trip_after=1)
    for _ in range(3):
        with pytest.raises(NotAccepted):
            gate.call("tracking", lambda: (_ for _ in ()).throw(NotAccepted("MoEngage said 503")))
    assert gate.call("tracking", lambda: 200) == 200


def post(client, body):
    """A webhook as Vonage posts it, its answer read and closed (the evidence is written then)."""
    response = webhook(client, "/webhooks/status", body)
    response.get_data()
    response.close()
    return response


def test_a_hung_moengage_is_not_called_once_the_circuit_opens(make_app, moengage):
    app = make_app(moengage_timeout=0.3, evidence_flush_seconds=0)
    client, ctx = app.test_client(), app.extensions["connector"]
    ctx.moengage.gate.cool_off = 0.5  # the production 30 s, shortened
    moengage.script(SLOW, SLOW, SLOW)
    for i in range(3):  # each waits MOENGAGE_TIMEOUT: the third opens the circuit
        answer = post(client, status_body(message_uuid=f"m-{i}"))
        assert answer.status_code == 503 and "did not accept" in answer.json["error"]
    started = time.monotonic()
    shed = post(client, status_body(message_uuid="m-3"))
    assert time.monotonic() - started < 0.2  # not a MOENGAGE_TIMEOUT's wait
    assert shed.status_code == 503 and "not answering in time" in shed.json["error"]
    assert len(moengage.requests) == 3  # not called
    assert len(ctx.store.pending_events()) == 4  # every event kept
    health = client.get("/health").json
    assert health["moengage"]["circuits"] == {"tracking": "open"}
    [warning] = [w for w in health["warnings"] if w["code"] == "moengage-unanswered"]
    assert "MOENGAGE_TIMEOUT" in warning["message"] and "MOENGAGE_DELIVERY_URL" in warning["fix"]
    doctor = app.test_cli_runner().invoke(args=["doctor"])
    assert doctor.exit_code == 1 and "[moengage-unanswered]" in doctor.output
    time.sleep(0.55)  # MoEngage answers again: Vonage's retry is the trial, then all flows
    assert post(client, status_body(message_uuid="m-3")).status_code == 200
    assert post(client, status_body(message_uuid="m-0")).status_code == 200
    assert client.get("/health").json["moengage"]["circuits"] == {"tracking": "closed"}


def test_a_redelivery_does_not_wait_for_another_workers_forward_while_the_circuit_is_open(
    app, moengage
):
    """Waiting for another worker's forward holds a thread as a call to MoEngage does."""
    ctx, uuid = app.extensions["connector"], "held-1"
    _, event_id, _ = ctx.store.record_status(uuid, "delivered", True, {}, time.time())
    ctx.store.lease_event(event_id, time.time(), 30.0)  # another worker, waiting on MoEngage
    for _ in range(3):  # this worker's own forwards timed out: its circuit opened
        with pytest.raises(NotAccepted):
            ctx.moengage.gate.call("tracking", timing_out)
    started = time.monotonic()
    held = post(app.test_client(), status_body(message_uuid=uuid))
    assert time.monotonic() - started < 1.0  # not MOENGAGE_TIMEOUT + 1 s
    assert held.status_code == 503 and "another worker" in held.json["error"]
    assert moengage.requests == []


def test_push_stops_calling_a_hung_moengage_and_says_what_is_still_pending(make_app, moengage):
    app = make_app(moengage_timeout=0.3)
    store = app.extensions["connector"].store
    for i in range(5):
        store.record_status(f"p-{i}", "delivered", True, {"trackingId": f"p-{i}"}, time.time())
    moengage.script(SLOW, SLOW, SLOW)
    result = app.test_cli_runner().invoke(args=["push"])
    assert result.exit_code == 1
    assert "0 sent, 5 still pending" in result.output
    assert "stopped after 3 failures in a row" in result.output  # issue 20: push stops
    assert len(moengage.requests) == 3 and len(store.pending_events()) == 5


class SilentMoEngage:
    """MoEngage accepting every connection and never answering: each is kept open, unread."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.accepted.append(self.sock.accept()[0])
            except OSError:  # closed
                return

    def close(self):
        self.sock.close()
        for conn in self.accepted:
            conn.close()


SECONDS, WEBHOOKS_PER_S, SENDS_PER_S = 10, 30, 5


def timed(call):
    started = time.monotonic()
    try:
        return call().status_code, time.monotonic() - started
    except requests.RequestException:
        return None, time.monotonic() - started


def test_sends_are_answered_in_time_while_moengage_hangs(tmp_path, database, vonage, moengage):
    """The issue's load, over 10 s instead of 25: the deploy files' 2 workers x 32 threads,
    MOENGAGE_TIMEOUT at its default 5 s, 30 status webhooks/s and 5 sends/s."""
    silent = SilentMoEngage()
    env = connector_env(database, vonage, moengage, VONAGE_TIMEOUT="4")
    env["MOENGAGE_DELIVERY_URL"] = f"{silent.url}/sms/dlr/custom/42"
    connector = Connector(env, workers=2, threads=32).start(tmp_path / "gunicorn.log")
    bodies = [status_body(message_uuid=f"hang-{t}") for t in range(SECONDS * WEBHOOKS_PER_S)]
    record_sends(database, *bodies)  # messages this connector sent: only theirs are forwarded
    webhooks, sends = [], []
    try:
        with concurrent.futures.ThreadPoolExecutor(400) as pool:
            start = time.monotonic()
            for tick in range(SECONDS * WEBHOOKS_PER_S):
                time.sleep(max(0.0, start + tick / WEBHOOKS_PER_S - time.monotonic()))
                body = bodies[tick]
                url = f"{connector.url}/webhooks/status"
                webhooks.append(pool.submit(timed, lambda u=url, b=body: signed_post(u, b)))
                if tick % (WEBHOOKS_PER_S // SENDS_PER_S) == 0:
                    send = {"to": "447700900000", "text": f"Order {tick} shipped"}
                    sends.append(pool.submit(timed, lambda s=send: _send(connector.url, s)))
            webhooks = [f.result() for f in webhooks]
            sends = [f.result() for f in sends]
        health = _health_naming_the_circuit(connector.url)
        doctor = _doctor(env)
    finally:
        connector.kill()
        silent.close()
    assert len(sends) == SECONDS * SENDS_PER_S
    late = [(code, round(took, 2)) for code, took in sends if code != 200 or took >= 5.0]
    assert late == [], f"{len(late)} of {len(sends)} sends not answered 200 within 5 s"
    assert {code for code, _ in webhooks} == {503}  # Vonage retries every one
    store = open_store(load_settings(database, environ={}))
    try:
        assert len(store.pending_events(limit=10_000)) == len(webhooks)  # all kept
    finally:
        store.close()
    assert health is not None, "no /health named the open circuit"
    assert "[moengage-unanswered]" in doctor


def _send(url, body):
    return requests.post(url, json=body, headers=AUTH, timeout=15)


def _health_naming_the_circuit(url):
    deadline = time.monotonic() + 15  # the evidence is written every EVIDENCE_FLUSH_SECONDS
    while time.monotonic() < deadline:
        body = requests.get(f"{url}/health", timeout=5).json()
        if any(w["code"] == "moengage-unanswered" for w in body["warnings"]):
            return body
        time.sleep(0.5)
    return None


def _doctor(env):
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "doctor"],
        check=False,
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout
