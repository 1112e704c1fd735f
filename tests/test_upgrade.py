"""Upgrade in place: a database made by the first release (tests/fixtures/schema1.sql, no
schema_version) is opened by this connector under gunicorn, migrated, and every promise it
held is still kept, over real HTTP: opt-outs, client_ref replays, pending and sent events."""

import sqlite3
import time
from pathlib import Path

import psycopg
import requests
from conftest import AUTH, inbound_body, sign, status_body
from gunicorn_proc import Connector
from test_migrations import _version
from test_restart import connector_env

from connector.store.migrations import LATEST

FIXTURE = Path(__file__).parent / "fixtures" / "schema1.sql"
DIALECTS = {
    "sqlite": {"{id}": "INTEGER PRIMARY KEY AUTOINCREMENT", "{real}": "REAL"},
    "postgres": {"{id}": "BIGSERIAL PRIMARY KEY", "{real}": "DOUBLE PRECISION"},
}
MESSAGE = "11111111-1111-4111-8111-111111111111"
STOPPED = "22222222-2222-4222-8222-222222222222"


def load_first_release(database, backend, now):
    """The fixture's tables and rows, as the first release left them."""
    script = FIXTURE.read_text()
    for word, replacement in {**DIALECTS[backend], "{now}": repr(now)}.items():
        script = script.replace(word, replacement)
    statements = [
        "\n".join(line for line in chunk.splitlines() if not line.startswith("--"))
        for chunk in script.split(";\n")
    ]
    statements = [s for s in statements if s.strip()]
    if backend == "sqlite":
        with sqlite3.connect(database["database_path"]) as conn:
            for statement in statements:
                conn.execute(statement)
        return
    with psycopg.connect(database["database_url"], autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def post_webhook(url, path, body):
    raw = requests.models.complexjson.dumps(body).encode()
    return requests.post(f"{url}{path}", data=raw, headers=sign(raw), timeout=5)


def test_a_first_release_database_keeps_every_promise(
    tmp_path, backend, database, vonage, moengage
):
    load_first_release(database, backend, time.time())
    assert _version(database) == 0
    connector = Connector(connector_env(database, vonage, moengage)).start(tmp_path / "log")
    try:
        url = connector.url
        assert _version(database) == LATEST

        # Opted out before the upgrade: still refused, whether synced or not.
        for number in ("447700900001", "447700900002"):
            answer = requests.post(url, json={"to": number, "text": "Hi"}, headers=AUTH, timeout=5)
            assert answer.status_code == 422, answer.text
        # MoEngage reruns a send it made before the upgrade: the same answer, no second SMS.
        rerun = {"to": "447700900003", "text": "Your order", "client_ref": "order-77"}
        answer = requests.post(url, json=rerun, headers=AUTH, timeout=5)
        assert answer.status_code == 200
        assert answer.json() == {"trackingId": MESSAGE, "status": "sent"}
        assert (
            vonage.sends() == []
        )  # (the Account API may be asked once: opt-outs are told to confirmed pairs)

        # Vonage redelivers the final status left pending: forwarded now, and only now.
        delivered = status_body("delivered", message_uuid=MESSAGE)
        assert post_webhook(url, "/webhooks/status", delivered).json()["status"] == "forwarded"
        # Redeliveries of what MoEngage already has are not forwarded again.
        assert post_webhook(url, "/webhooks/status", delivered).json()["status"] == "duplicate"
        submitted = status_body("submitted", message_uuid=MESSAGE)
        assert post_webhook(url, "/webhooks/status", submitted).json()["status"] == "duplicate"
        stop = inbound_body("STOP", message_uuid=STOPPED, sender="447700900002")
        assert post_webhook(url, "/webhooks/inbound", stop).json()["status"] == "duplicate"
    finally:
        connector.kill()

    forwarded = [r["json"] for r in moengage.requests]
    assert forwarded == [
        {"trackingId": MESSAGE, "status": "delivered", "timestamp": "2026-11-23T10:00:09Z"}
    ]
