"""PostgreSQL down: sends and /health answer 503 fast, with a reason, and recover without a
restart. MoEngage waits 5 s for a send; a 503 inside that lets it retry, silence does not."""

import time
import uuid

import pgtest
import pytest
from conftest import SIGNATURE_SECRET, send, status_body, webhook
from pgserver import PrivatePostgres

from connector import create_app


@pytest.fixture
def server():
    pg = PrivatePostgres().start()
    yield pg
    pg.remove()


def timed(call):
    started = time.monotonic()
    answer = call()
    return answer, time.monotonic() - started


def body(**extra):
    return {"to": "447700900000", "text": "Flash sale", "client_ref": str(uuid.uuid4()), **extra}


def test_database_down_is_503_within_the_bounds_and_recovers(server, vonage, moengage):
    app = create_app(
        {
            "database_url": server.url,
            "vonage_api_url": vonage.url,
            "moengage_delivery_url": f"{moengage.url}/sms/dlr/custom/42",
            "vonage_signature_secrets": (SIGNATURE_SECRET,),
            "vonage_from": "Acme",
            "vonage_timeout": 4.0,
            "vonage_max_rps": 30,  # the shared send schedule is in the database too
        }
    )
    client = app.test_client()
    try:
        assert send(client, body()).status_code == 200
        health = client.get("/health")
        assert health.status_code == 200
        assert health.json["database_pool"]["size"] == 4
        assert health.json["database_pool"]["open"] >= 1

        server.stop()
        for extra in ({}, {"customer_id": "u-1"}):
            answer, took = timed(lambda extra=extra: send(client, body(**extra)))
            assert answer.status_code == 503, answer.json
            assert "database is unavailable" in answer.json["error"]
            assert answer.headers["Retry-After"] == "1"
            assert took < 1.5
        down = status_body(message_uuid=str(uuid.uuid4()))
        hook = webhook(client, "/webhooks/status", down, record=False)  # nothing can be recorded
        assert hook.status_code == 503  # Vonage redelivers it
        health, took = timed(lambda: client.get("/health"))
        assert health.status_code == 503
        assert any("database" in p for p in health.json["problems"])
        assert took < 1.0
        assert len(vonage.requests) == 1  # nothing sent that could not be recorded

        server.start()
        deadline = time.monotonic() + 30
        while (answer := send(client, body())).status_code != 200:
            assert answer.status_code == 503 and time.monotonic() < deadline, answer.json
            time.sleep(0.2)
        assert client.get("/health").status_code == 200
    finally:
        app.extensions["connector"].store.close()


@pytest.mark.skipif(not pgtest.URL, reason=pgtest.SKIP_REASON)
def test_a_worker_out_of_connections_answers_503_naming_the_pool(vonage, moengage):
    with pgtest.fresh_schema() as url:
        app = create_app(
            {
                "database_url": url,
                "database_pool_size": 1,
                "vonage_api_url": vonage.url,
                "moengage_delivery_url": f"{moengage.url}/sms/dlr/custom/42",
                "vonage_signature_secrets": (SIGNATURE_SECRET,),
                "vonage_from": "Acme",
            }
        )
        store = app.extensions["connector"].store
        try:
            client = app.test_client()
            with store._connection():  # another thread's long transaction, say
                answer = send(client, body())
                health = client.get("/health").json
            assert answer.status_code == 503
            assert "DATABASE_POOL_SIZE" in answer.json["error"]
            assert health["database_pool"] == {"size": 1, "open": 1, "in_use": 1, "waiting": 0}
            assert send(client, body()).status_code == 200  # the connection is back
            assert len(vonage.requests) == 1
        finally:
            store.close()
