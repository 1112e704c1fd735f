"""A send Vonage accepted keeps its answer through a short database outage: recording it is
retried for the time the request has left, MoEngage gets the trackingId (never a 503, which
it would retry), and a retry of that send learns the message_uuid instead of a 504. With
PostgreSQL restarted (a private server) and with the SQLite file moved away and back."""

import os
import threading
import time
import uuid

import pytest
from conftest import SIGNATURE_SECRET, send
from pgserver import PrivatePostgres

from connector import create_app, start


def body(**extra):
    return {"to": "447700900000", "text": "Flash sale", "client_ref": str(uuid.uuid4()), **extra}


def during_vonage_answer(vonage, fault):
    """Run `fault()` once, as Vonage takes the next message (after the connector's claim)."""
    real = vonage.answer

    def answer(record):
        vonage.answer = real
        fault()
        return real(record)

    vonage.answer = answer


def in_background(call, after):
    thread = threading.Timer(after, call)
    thread.start()
    return thread


def accepted_uuid(vonage):
    return vonage.requests[-1]["answer"]["message_uuid"]


def make(settings, vonage, moengage, **extra):
    return start(
        create_app(
            {
                "vonage_api_url": vonage.url,
                "moengage_delivery_url": f"{moengage.url}/sms/dlr/custom/42",
                "vonage_signature_secrets": (SIGNATURE_SECRET,),
                "vonage_from": "Acme",
                "vonage_timeout": 4.0,
                **settings,
                **extra,
            }
        )
    )


@pytest.fixture
def server():
    pg = PrivatePostgres().start()
    yield pg
    pg.remove()


@pytest.fixture
def restore_vonage(vonage):
    yield vonage
    vonage.__dict__.pop("answer", None)


def test_a_postgresql_restart_as_vonage_accepts_loses_no_answer(server, restore_vonage, moengage):
    vonage = restore_vonage
    app = make({"database_url": server.url}, vonage, moengage)
    client = app.test_client()
    restarted = []
    try:
        assert send(client, body()).status_code == 200  # the pool is open and warm
        during_vonage_answer(
            vonage, lambda: (server.stop(), restarted.append(in_background(server.start, 0.2)))
        )
        first = body()
        started = time.monotonic()
        answer = send(client, first)
        assert answer.status_code == 200, answer.json  # recorded once the server was back
        assert answer.json["trackingId"] == accepted_uuid(vonage)
        assert time.monotonic() - started < 5.0  # within MoEngage's wait
        restarted[0].join(30)
        assert len(app.extensions["connector"].late_records) == 0  # nothing left to record
        retry = send(client, first)  # MoEngage retrying the same send (say, a lost answer)
        assert retry.status_code == 200 and retry.json == answer.json
        assert len(vonage.sends()) == 2  # one SMS each, none twice
    finally:
        for thread in restarted:
            thread.join(30)
        app.extensions["connector"].close()


def test_an_outage_longer_than_the_send_keeps_its_answer_for_its_retries(
    server, restore_vonage, moengage
):
    vonage = restore_vonage
    app = make({"database_url": server.url}, vonage, moengage, vonage_timeout=2.0)
    client = app.test_client()
    try:
        assert send(client, body()).status_code == 200
        during_vonage_answer(vonage, server.stop)  # down for longer than the send has left
        first = body()
        answer = send(client, first)
        assert answer.status_code == 200, answer.json  # not a 503: the SMS is out
        assert answer.json["trackingId"] == accepted_uuid(vonage)
        assert len(app.extensions["connector"].late_records) == 1
        retry = send(client, first)  # the database still down: answered from memory
        assert retry.status_code == 200 and retry.json == answer.json
        server.start()
        deadline = time.monotonic() + 30
        while len(app.extensions["connector"].late_records):  # written in the background
            assert time.monotonic() < deadline
            time.sleep(0.1)
        other = make({"database_url": server.url}, vonage, moengage)  # another worker
        try:
            retry = send(other.test_client(), first)
            assert retry.status_code == 200 and retry.json == answer.json
        finally:
            other.extensions["connector"].close()
        assert len(vonage.sends()) == 2
    finally:
        app.extensions["connector"].close()


def test_the_sqlite_file_moved_away_briefly_as_vonage_accepts_loses_no_answer(
    tmp_path, restore_vonage, moengage
):
    vonage = restore_vonage
    path = str(tmp_path / "connector.db")
    app = make({"database_path": path, "database_url": ""}, vonage, moengage)
    client = app.test_client()
    moved = []

    def move_away():
        os.rename(path, f"{path}.away")
        moved.append(in_background(lambda: os.rename(f"{path}.away", path), 0.2))

    try:
        assert send(client, body()).status_code == 200
        during_vonage_answer(vonage, move_away)
        first = body(client_ref=None)  # an identical send, keyed by its content
        answer = send(client, first)
        assert answer.status_code == 200, answer.json
        assert answer.json["trackingId"] == accepted_uuid(vonage)
        assert len(app.extensions["connector"].late_records) == 0
        retry = send(client, first)
        assert retry.status_code == 200 and retry.json == answer.json
        assert len(vonage.sends()) == 2
    finally:
        for thread in moved:
            thread.join(5)
        app.extensions["connector"].close()
