"""Issue 12: a send over VONAGE_MAX_RPS refused in the worker's event loop (connector/server/early.py),
with the route's answer, and only when the route would surely refuse it too: both ask the one
send decision, `sending.decide` (issue 17)."""

import json
import os
import signal
import socket
import sqlite3
import tempfile
import time
import uuid

import h11
import pytest
from conftest import send
from gunicorn_proc import Connector
from standins import API_KEY, API_SECRET

from connector.diagnostics import trail
from connector.errors import Failure
from connector.relay import sending
from connector.relay.ratelimit import MARGIN, RateLimiter
from connector.server import early

BODY = {"to": "447700900000", "text": "Flash sale", "campaign_id": "spring"}


@pytest.fixture(autouse=True)
def schedules_in_tmp_path(tmp_path, monkeypatch):
    """The limiter keeps its schedule files in the temp directory: this test's own."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


def raw_send(body, authorization=f"Custom {API_KEY}:{API_SECRET}", path="/", extra=b""):
    data = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: connector\r\nContent-Type: application/json\r\n"
        f"Authorization: {authorization}\r\nContent-Length: {len(data)}\r\n"
    ).encode()
    return bytearray(head + extra + b"\r\n" + data)


def ask(answerer, raw):
    """What the worker's loop does with a whole request: h11 frames it, the answerer decides."""
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(bytes(raw))
    request, body = conn.next_event(), b""
    while not isinstance(event := conn.next_event(), h11.EndOfMessage):
        body += event.data
    return answerer(request, body)


@pytest.fixture
def full(make_app, vonage, backend):
    """An app whose schedule one send has filled for 3.7 s (0.3 sends/s), past a new send's
    2.5 s in the loop (VONAGE_TIMEOUT 4 - 1 - the queue's 0.5) and 3 s in the route."""
    if backend != "sqlite":
        pytest.skip("answered early with SQLite only (a PostgreSQL read could hold the loop)")
    app = make_app(vonage_max_rps=0.3, vonage_timeout=4.0)
    assert send(app.test_client(), {**BODY, "text": "first"}).status_code == 200
    return app


def test_a_send_over_the_full_schedule_gets_the_routes_429(full, vonage):
    answer = ask(early.answerer(full), raw_send(BODY))
    routed = send(full.test_client(), {**BODY, "text": "again"})
    assert answer.status == routed.status_code == 429
    assert answer.answer == routed.json
    assert int(answer.headers["Retry-After"]) == int(routed.headers["Retry-After"]) >= 3
    assert len(vonage.requests) == 1  # the first send only


def test_the_loop_and_the_route_ask_the_same_decision(full, monkeypatch):
    """A check added to `sending.decide` holds on both paths: no copy to keep in step."""
    asked = []
    real = sending.decide

    def spy(*args, **kwargs):
        asked.append(kwargs.get("early", False))
        return real(*args, **kwargs)

    monkeypatch.setattr(sending, "decide", spy)
    assert ask(early.answerer(full), raw_send(BODY)).status == 429
    assert send(full.test_client(), {**BODY, "text": "again"}).status_code == 429
    assert asked == [True, False]


@pytest.mark.parametrize(
    "framing",
    [
        lambda raw: raw.replace(b"HTTP/1.1", b"HTTP/1.0", 1),
        lambda raw: raw.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1),
    ],
)
def test_h11_frames_every_request_so_any_framing_gets_the_same_answer(full, framing):
    assert ask(early.answerer(full), framing(raw_send(BODY))).status == 429


def padded(raw, spaces):
    """The same send with its JSON followed by `spaces` blanks (still valid JSON)."""
    head, _, body = bytes(raw).partition(b"\r\n\r\n")
    head = head.replace(
        b"Content-Length: %d" % len(body), b"Content-Length: %d" % (len(body) + spaces)
    )
    return bytearray(head + b"\r\n\r\n" + body + b" " * spaces)


def bad_json():
    return bytearray(raw_send(BODY)[:-2] + b"\x00}")


LEFT_TO_THE_ROUTE = {
    "wrong scheme": lambda: raw_send(BODY, authorization=f"Basic {API_KEY}:{API_SECRET}"),
    "no text": lambda: raw_send({"to": "447700900000"}),
    "not JSON": bad_json,
    "another path": lambda: raw_send(BODY, path="/webhooks/status"),
    "a GET": lambda: bytearray(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    "two Authorizations": lambda: raw_send(BODY, extra=b"Authorization: Custom a:b\r\n"),
    "a body over 64 KiB": lambda: padded(raw_send(BODY), 70_000),
}


@pytest.mark.parametrize("name", LEFT_TO_THE_ROUTE)
def test_what_the_route_would_answer_otherwise_is_left_to_it(full, name):
    assert ask(early.answerer(full), LEFT_TO_THE_ROUTE[name]()) is None


def test_a_send_already_answered_is_replayed_by_the_route_not_refused(full):
    first = {**BODY, "text": "first"}  # identical to the send that filled the schedule
    answerer = early.answerer(full)
    assert ask(answerer, raw_send(first)) is None
    replay = send(full.test_client(), first)
    assert replay.status_code == 200 and replay.json["trackingId"]


def test_a_key_outside_vonage_api_keys_is_left_to_the_route(make_app, vonage, backend):
    if backend != "sqlite":
        pytest.skip("SQLite only")
    app = make_app(vonage_max_rps=0.3, vonage_timeout=4.0, vonage_api_keys=("other",))
    app.extensions["connector"].limiter._learn(API_KEY, 100)
    assert ask(early.answerer(app), raw_send(BODY)) is None
    assert send(app.test_client(), BODY).status_code == 401


def test_nothing_is_refused_before_the_schedule_is_known(make_app, vonage, backend):
    if backend != "sqlite":
        pytest.skip("SQLite only")
    app = make_app(vonage_max_rps=0.3, vonage_timeout=4.0)
    assert ask(early.answerer(app), raw_send(BODY)) is None
    assert early.answerer(make_app()) is None  # no VONAGE_MAX_RPS: nothing to refuse early


def test_with_postgresql_nothing_is_answered_early(make_app, vonage, backend):
    if backend != "postgres":
        pytest.skip("PostgreSQL only")
    assert early.answerer(make_app(vonage_max_rps=0.3)) is None


def test_each_refusal_is_traced_by_the_next_transaction(full):
    store = full.extensions["connector"].store
    answerer = early.answerer(full)
    for n in range(3):
        assert ask(answerer, raw_send({**BODY, "to": f"44770090010{n}"})) is not None
    assert not trail.by(store, "number", "447700900101")  # parked, not yet written
    send(full.test_client(), {**BODY, "text": "first"})  # a replay: its row's flush takes them
    rows = [row for n in range(3) for row in trail.by(store, "number", f"44770090010{n}")]
    assert [(row["stage"], row["http"]) for row in rows] == [("send", 429)] * 3
    assert rows[0]["campaign_id"] == "spring"
    ask(answerer, raw_send(BODY))
    store.flush_journal(force=True)  # as a worker does when it exits
    rows = trail.by(store, "number", "447700900000")  # the first send, its replay, this one
    assert [row["http"] for row in rows] == [200, 200, 429]


def test_known_wait_is_what_the_schedule_last_showed_counting_down():
    limiter = RateLimiter(1, f"test:{uuid.uuid4()}")
    assert limiter.known_wait("key-1", 0) is None  # nothing learned yet
    limiter.acquire("key-1", max_wait=0)  # the next slot is one interval on
    assert limiter.known_wait("key-1", 0.5) == pytest.approx(1 + MARGIN, abs=0.05)
    assert limiter.known_wait("key-1", 2) is None
    assert limiter.known_wait("key-2", 0) is None  # schedules are per key
    with pytest.raises(Failure):
        limiter.acquire("key-1", max_wait=0.5)
    time.sleep(0.2)
    assert limiter.known_wait("key-1", 0.5) == pytest.approx(0.9, abs=0.1)
    limiter._waiting = limiter.max_waiting  # every thread that may wait for a slot waits
    assert limiter.known_wait("key-1", 5) == pytest.approx(0.9, abs=0.1)


def connector_env(tmp_path, vonage):
    return {
        "DATABASE_PATH": str(tmp_path / "c.db"),
        "DATABASE_URL": "",
        "TMPDIR": str(tmp_path),
        "VONAGE_API_URL": vonage.url,
        "MOENGAGE_DELIVERY_URL": "http://127.0.0.1:9/dlr",
        "VONAGE_SIGNATURE_SECRET": "s" * 32,
        "VONAGE_FROM": "Acme",
        "VONAGE_MAX_RPS": "0.3",
        "VONAGE_TIMEOUT": "4",
    }


def test_the_loop_under_gunicorn_refuses_keeps_alive_and_traces_each_refusal(tmp_path, vonage):
    database = tmp_path / "c.db"
    log = tmp_path / "gunicorn.log"
    connector = Connector(connector_env(tmp_path, vonage), workers=1, threads=4).start(log)
    try:
        address = ("127.0.0.1", connector.port)
        with socket.create_connection(address, timeout=5) as sock, sock.makefile("rb") as reader:
            answers = []
            for n in range(12):  # one keep-alive connection throughout
                sock.sendall(raw_send({**BODY, "to": f"4477009000{n:02d}"}))
                answers.append(read_answer(reader))
        assert answers[0][0] == 200
        assert {(status, "Retry-After" in fields) for status, fields in answers[1:]} == {
            (429, True)
        }
    finally:
        os.killpg(connector.proc.pid, signal.SIGTERM)  # a graceful stop: workers exit
        connector.proc.wait(timeout=30)
        connector.log.close()
    text = log.read_text()
    assert "sends refused early: 429" in text  # the loop's summary line, not one a refusal
    assert "Traceback" not in text
    assert len(vonage.requests) == 1
    with sqlite3.connect(database) as conn:  # every refusal's row, the last ones at exit
        rows = conn.execute("SELECT detail FROM trail WHERE stage = 'send'").fetchall()
    assert sorted(json.loads(d)["http"] for (d,) in rows) == [200] + [429] * 11


def test_a_deleted_database_over_the_limit_is_the_routes_503_not_a_429(tmp_path, vonage):
    log = tmp_path / "gunicorn.log"
    connector = Connector(connector_env(tmp_path, vonage), workers=1, threads=4).start(log)
    try:
        address = ("127.0.0.1", connector.port)
        with socket.create_connection(address, timeout=5) as sock, sock.makefile("rb") as reader:
            sock.sendall(raw_send(BODY))
            assert read_answer(reader)[0] == 200  # the schedule is now known full
            (tmp_path / "c.db").unlink()
            sock.sendall(raw_send({**BODY, "text": "again"}))
            assert read_answer(reader)[0] == 503  # the loop's replay check failed: the route
    finally:
        connector.kill()
    assert "DATABASE_PATH" in log.read_text()


def read_answer(reader):
    status = int(reader.readline().split()[1])
    fields = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        fields[name.strip()] = value.strip()
    reader.read(int(fields.get("Content-Length", 0)))
    return status, fields
