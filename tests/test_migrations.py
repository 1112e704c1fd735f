"""Schema versions: a fresh or pre-version database is migrated at start, several processes
starting at once migrate it once, and a database from a newer connector is refused untouched."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from connector.settings import load_settings
from connector.store import PostgresStore, SchemaTooNew, SqliteStore, open_store
from connector.store.migrations import FIRST_RELEASE, LATEST

ROOT = Path(__file__).resolve().parents[1]


def test_a_fresh_database_is_at_the_latest_version(store):
    assert store.schema_version() == LATEST


def test_a_database_made_before_versions_were_recorded_is_migrated_and_kept(database):
    old = open_store(load_settings(database, environ={}))
    with old.transaction() as tx:  # the tables as the first release made them, no version
        tx.execute("DROP TABLE schema_version")
    with old.transaction() as tx:
        tx.execute(
            "INSERT INTO subscriptions (number, state, event_ts, updated_at) "
            "VALUES ('447700900001', 'OPTOUT', 1.0, 1.0)"
        )
    old.close()
    assert FIRST_RELEASE  # the step that adopts such a database

    store = open_store(load_settings(database, environ={}))
    try:
        assert store.schema_version() == LATEST
        assert store.is_opted_out("447700900001")
    finally:
        store.close()


def test_a_database_from_a_newer_connector_is_refused_untouched(database):
    store = open_store(load_settings(database, environ={}))
    with store.transaction() as tx:
        tx.execute("UPDATE schema_version SET version = ?", (LATEST + 1,))
    store.close()
    with pytest.raises(SchemaTooNew) as refused:
        open_store(load_settings(database, environ={}))
    assert f"schema version {LATEST + 1}" in str(refused.value)
    assert f"versions up to {LATEST}" in str(refused.value)
    assert _version(database) == LATEST + 1


def _raw_store(database):
    """The backend without open_store's migration."""
    if database["database_url"]:
        return PostgresStore(database["database_url"], pool_size=1)
    return SqliteStore(database["database_path"])


def _version(database):
    store = _raw_store(database)
    try:
        return store.schema_version()
    finally:
        store.close()


STARTER = """
import json, sys
from test_migrations import _raw_store
store = _raw_store({"database_path": sys.argv[1], "database_url": sys.argv[2]})
print(json.dumps(store.init_schema()))
"""


def test_processes_starting_at_once_migrate_once(database):
    starters = [
        subprocess.Popen(
            [sys.executable, "-c", STARTER, database["database_path"], database["database_url"]],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    results = [p.communicate(timeout=60) for p in starters]
    assert [p.returncode for p in starters] == [0] * 6, [err for _, err in results]
    ran = sorted(step for out, _ in results for step in json.loads(out))
    assert ran == list(range(1, LATEST + 1))  # every step run by exactly one process
    assert _version(database) == LATEST
