"""Copy a SQLite file's state into another store (`flask copy-sqlite`), for a team moving to
PostgreSQL. Safe to run again: it never duplicates a row nor replaces a newer one.

Opt-outs go first, so a copy cut short has already moved what must never be lost. A number's
subscription and contact are replaced only by a newer one; sends and events are kept by their
keys. Events get new ids in the target, in the source's order, and no lease: a lease taken by
the old instance means nothing to the new one.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from connector.store.base import Store

BATCH = 1000

# (what the operator reads, table, columns copied, what to do when the key is already there)
TABLES = [
    (
        "opt-outs and opt-ins",
        "subscriptions",
        "number, state, event_ts, updated_at, synced",
        (
            "ON CONFLICT (number) DO UPDATE SET state = excluded.state, event_ts = excluded.event_ts,"
            " updated_at = excluded.updated_at, synced = excluded.synced"
            " WHERE excluded.event_ts > subscriptions.event_ts"
        ),
    ),
    (
        "contacts",
        "contacts",
        "number, customer_id, updated_at",
        (
            "ON CONFLICT (number) DO UPDATE SET customer_id = excluded.customer_id,"
            " updated_at = excluded.updated_at WHERE excluded.updated_at > contacts.updated_at"
        ),
    ),
    (
        "sends",
        "sends",
        (
            "idem_key, token, state, http_status, answer, tracking_id, recipient,"
            " campaign_id, customer_id, started_at, finished_at"
        ),
        "ON CONFLICT (idem_key) DO NOTHING",
    ),
    (
        "events",
        "events",
        (
            "dedupe_key, message_uuid, target, payload, is_final, state, attempts,"
            " last_error, created_at, sent_at"
        ),
        "ON CONFLICT (dedupe_key) DO NOTHING",
    ),
]


class Copied(NamedTuple):
    what: str  # as the operator reads it
    copied: int  # rows new to the target
    found: int  # rows in the file


class NotAConnectorDatabase(Exception):
    """The file is not SQLite, or holds none of the connector's tables."""


def copy_sqlite(path: str, target: Store) -> list[Copied]:
    """Copy every row of the SQLite file at `path` into `target` (a Store), table by table,
    in batches of BATCH rows each committed on its own; what was copied of each."""
    uri = Path(path).resolve().as_uri() + "?mode=ro"  # never creates or changes the file
    source = sqlite3.connect(uri, uri=True)
    try:
        try:
            present = {
                row[0]
                for row in source.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
        except sqlite3.DatabaseError as exc:
            raise NotAConnectorDatabase(f"{path} is not a SQLite database ({exc})") from None
        missing = [table for _, table, _, _ in TABLES if table not in present]
        if missing:
            raise NotAConnectorDatabase(
                f"{path} has no {', '.join(missing)} table: it is not the connector's database"
            )
        return [
            Copied(what, *_copy_table(source, target, table, columns, on_conflict))
            for what, table, columns, on_conflict in TABLES
        ]
    finally:
        source.close()


def _source_columns(source, table, columns):
    """`columns` as the source file names them: a file made before the rollback guard
    (migrations.ROLLBACK_GUARD) still calls sends.tracking_id message_uuid."""
    present = {row[1] for row in source.execute(f"PRAGMA table_info({table})")}
    if "tracking_id" in columns and "tracking_id" not in present:
        return columns.replace("tracking_id", "message_uuid")
    return columns


def _copy_table(
    source: sqlite3.Connection, target: Store, table: str, columns: str, on_conflict: str
) -> tuple[int, int]:
    marks = ", ".join("?" for _ in columns.split(","))
    insert = f"INSERT INTO {table} ({columns}) VALUES ({marks}) {on_conflict}"
    read = _source_columns(source, table, columns)
    rows = source.execute(f"SELECT {read} FROM {table} ORDER BY rowid")
    copied = found = 0
    while batch := rows.fetchmany(BATCH):
        with target.transaction() as tx:
            copied += tx.executemany(insert, batch).rowcount
        found += len(batch)
    return copied, found
