"""PostgreSQL: a row held by another session (a psql left in a transaction) never hangs a
request. Its statement gives up at the lock timeout, the send answers 503 within
VONAGE_TIMEOUT before anything reaches Vonage, no message shows a negative time, and
`/health` names the table and the session holding it."""

import re
import threading
import time
import uuid

import pgtest
import psycopg
import pytest
from conftest import SIGNATURE_SECRET, send

from connector import create_app, start

pytestmark = pytest.mark.skipif(not pgtest.URL, reason=pgtest.SKIP_REASON)
VONAGE_TIMEOUT = 2.0


def body(ref=None):
    return {"to": "447700900000", "text": "Flash sale", "client_ref": ref or str(uuid.uuid4())}


def within(seconds, call):
    """(answer, seconds taken) of `call()`, or a failed test once `seconds` have passed."""
    done = {}
    started = time.monotonic()
    thread = threading.Thread(target=lambda: done.setdefault("answer", call()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert "answer" in done, f"no answer within {seconds} s: the request hangs on the lock"
    return done["answer"], time.monotonic() - started


@pytest.fixture
def app(vonage, moengage):
    with pgtest.fresh_schema() as url:
        app = start(
            create_app(
                {
                    "database_url": url,
                    "vonage_api_url": vonage.url,
                    "moengage_delivery_url": f"{moengage.url}/sms/dlr/custom/42",
                    "vonage_signature_secrets": (SIGNATURE_SECRET,),
                    "vonage_from": "Acme",
                    "vonage_timeout": VONAGE_TIMEOUT,
                    "vonage_max_rps": 30,  # the shared send schedule is a row in the database
                }
            )
        )
        app.url = url
        yield app
        app.extensions["connector"].close()


@pytest.mark.parametrize(
    ("table", "retry"), [("send_schedule", False), ("sends", True)], ids=["schedule", "sends"]
)
def test_a_row_held_by_another_session_answers_503_in_time_and_health_names_it(
    app, vonage, table, retry
):
    client = app.test_client()
    first = body()
    assert send(client, first).status_code == 200  # the schedule's row exists now
    holder = psycopg.connect(app.url, application_name="psql")
    try:
        holder.execute(f"SELECT * FROM {table} FOR UPDATE")  # and left in its transaction
        for _ in range(3):
            answer, took = within(10, lambda: send(client, first if retry else body()))
            assert answer.status_code == 503, answer.json
            assert took < VONAGE_TIMEOUT
            error = answer.json["error"]
            assert f"a row of {table} stayed locked by another database session" in error
            assert not re.search(r"-\d", error)  # no negative time
            assert answer.headers["Retry-After"] == "1"
        health, took = within(5, lambda: client.get("/health"))
        assert health.status_code == 200 and took < 1.0  # the instance itself is fine
        [warning] = [w for w in health.json["warnings"] if w["code"] == "database-lock"]
        assert f"for a row of {table}" in warning["message"]
        assert "(application psql, user postgres), idle in transaction" in warning["message"]
        pid = holder.info.backend_pid
        assert f"pg_terminate_backend({pid})" in warning["fix"]
        assert len(vonage.sends()) == 1  # nothing reached Vonage that was answered 503
    finally:
        holder.rollback()
        holder.close()
    answer, _ = within(10, lambda: send(client, body()))
    assert answer.status_code == 200


def _limits(store):
    with store._connection() as conn:
        return tuple(
            conn.execute(f"SHOW {name}").fetchone()[0]
            for name in ("lock_timeout", "statement_timeout")
        )


def test_a_servers_statements_carry_timeouts_within_vonage_timeout(app):
    # A quarter and a half of VONAGE_TIMEOUT.
    assert _limits(app.extensions["connector"].store) == ("500ms", "1s")


def test_an_operators_command_waits_longer_for_a_lock_and_its_queries_run_unlimited(app):
    command = create_app({"database_url": app.url, "vonage_timeout": VONAGE_TIMEOUT})
    try:  # not started: as `flask --app app report` runs
        assert _limits(command.extensions["connector"].store) == ("10s", "0")
    finally:
        command.extensions["connector"].close()
