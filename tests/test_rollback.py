"""A rollback to the first release (before schema versions, so it cannot refuse a newer
database) fails at its start on a database this connector migrated, instead of answering
/health 200 and sending a client_ref retry a second time. The first release's SQL is taken as
it shipped: its start is the CREATE statements of tests/fixtures/schema1.sql, run in one
transaction; its send path's queries are copied from connector/store/base.py of that release."""

import sqlite3
import time

import psycopg
import pytest
from test_upgrade import DIALECTS, FIXTURE, MESSAGE, load_first_release

from connector.settings import load_settings
from connector.store import open_store

# Two of the first release's queries on sends: finish_send (after Vonage took the SMS) and find_send.
FIRST_RELEASE_WRITES = [
    (
        (
            "UPDATE sends SET state = ?, http_status = ?, answer = ?, message_uuid = ?,"
            " finished_at = ? WHERE idem_key = ? AND token = ?"
        ),
        ("done", 200, "{}", "new-uuid", 1.0, "ref:x", "t"),
    ),
    (
        (
            "SELECT recipient, campaign_id, customer_id, started_at, http_status"
            " FROM sends WHERE message_uuid = ?"
        ),
        (MESSAGE,),
    ),
]


def first_release_start(backend):
    """The statements the first release ran at every start (its init_schema)."""
    script = FIXTURE.read_text()
    for word, replacement in DIALECTS[backend].items():
        script = script.replace(word, replacement)
    chunks = [
        "\n".join(line for line in chunk.splitlines() if not line.startswith("--")).strip()
        for chunk in script.split(";\n")
    ]
    return [chunk for chunk in chunks if chunk.startswith("CREATE")]


def as_first_release(database, backend, statements):
    """Run `statements` [(sql, params)] in one transaction, as the first release did."""
    if backend == "sqlite":
        conn = sqlite3.connect(database["database_path"], isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, params in statements:
                    conn.execute(sql, params)
            finally:
                conn.execute("ROLLBACK")  # whatever it did, this test keeps nothing
        finally:
            conn.close()
        return
    with psycopg.connect(database["database_url"]) as conn:
        try:
            with conn.transaction():
                for sql, params in statements:
                    conn.execute(sql.replace("?", "%s"), params)
                raise _KeepNothing
        except _KeepNothing:
            pass


class _KeepNothing(Exception):
    pass


ERRORS = (sqlite3.OperationalError, psycopg.errors.UndefinedColumn)


def test_the_first_release_starts_on_its_own_database(backend, database):
    load_first_release(database, backend, time.time())
    as_first_release(database, backend, [(sql, ()) for sql in first_release_start(backend)])
    as_first_release(database, backend, FIRST_RELEASE_WRITES)  # what it then did, works


def test_the_first_release_cannot_start_on_a_migrated_database(backend, database):
    load_first_release(database, backend, time.time())
    open_store(load_settings(database, environ={})).close()  # upgraded, then rolled back
    start = [(sql, ()) for sql in first_release_start(backend)]
    with pytest.raises(ERRORS) as refused:
        as_first_release(database, backend, start)
    assert "message_uuid" in str(refused.value)
    for write in FIRST_RELEASE_WRITES:  # nor, had it started, could it record a send
        with pytest.raises(ERRORS):
            as_first_release(database, backend, [write])
    store = open_store(load_settings(database, environ={}))  # and this connector still works
    try:
        assert store.find_send(MESSAGE)["recipient"] == "447700900003"  # carried over
        assert store.count_pending() == 1 and store.is_opted_out("447700900001")
    finally:
        store.close()
