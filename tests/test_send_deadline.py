"""A send whose own steps (a slow database) used up VONAGE_TIMEOUT is not tried: 503 with
the reason and Retry-After, nothing sent, never a 502 with a negative time."""

import re
import threading

import pytest
from conftest import send


def test_a_send_with_no_time_left_for_vonage_answers_503_and_sends_nothing(
    backend, make_app, vonage
):
    if backend != "sqlite":
        pytest.skip("only SQLite makes a write wait for another (PostgreSQL: test_pg_locks.py)")
    app = make_app(vonage_timeout=1.0)
    store = app.extensions["connector"].store
    started, release = threading.Event(), threading.Event()

    def slow_write():  # another request's write holding the database 0.9 s
        with store.transaction() as tx:
            tx.execute(
                "INSERT INTO contacts (number, customer_id, updated_at) VALUES ('1', 'c', 0)"
            )
            started.set()
            release.wait(0.9)

    holder = threading.Thread(target=slow_write)
    holder.start()
    started.wait(5)
    answer = send(app.test_client(), {"to": "447700900000", "text": "Hi", "client_ref": "late-1"})
    holder.join(5)
    assert answer.status_code == 503, answer.json
    assert "VONAGE_TIMEOUT=1 s ran out before the send could go to Vonage" in answer.json["error"]
    assert not re.search(r"-\d", answer.json["error"])
    assert answer.headers["Retry-After"] == "1"
    assert vonage.sends() == []
    retry = send(app.test_client(), {"to": "447700900000", "text": "Hi", "client_ref": "late-1"})
    assert retry.status_code == 200  # the 503 was not remembered: MoEngage's retry sends
