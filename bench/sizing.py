"""Bytes the database keeps per send: `python -m bench.sizing [--database-url URL] [-n N]`.

Makes N sends as the connector does (the store's own methods, realistic values: a client_ref
key, MoEngage ids, the answer), each with its two status events forwarded, and measures what
the tables and their indexes grew by: the SQLite file (after a checkpoint), or PostgreSQL's
pg_total_relation_size of sends and events, both right after the writes (dead row versions
included: each send is updated once, each event twice) and after a VACUUM (what autovacuum
leaves for reuse). The README's sizing table is `sends/day x RETENTION_DAYS x bytes`.
"""

import argparse
import json
import os
import tempfile
import time
import uuid
from contextlib import contextmanager

import psycopg
from psycopg import sql

from connector.store import PostgresStore, SqliteStore
from connector.translate import delivery_event

TABLES = ("sends", "events")


def make_sends(store, n, now):
    """N sends, each with a `sent` then a `delivered` status forwarded to MoEngage."""
    for i in range(n):
        message = str(uuid.uuid4())
        key = f"ref:{uuid.uuid4().hex}{uuid.uuid4().hex}"  # sha256 hex, as sending.py makes
        claim = store.claim_send(
            key, now, None, 9.0, f"4477009{i:05d}", "6543a1b2c3d4e5f6a7b8c9d0", f"user-{i:08d}"
        )
        answer = {"trackingId": message, "status": "sent"}
        store.finish_send(key, claim.token, 200, answer, now + 0.2, True, message)
        body = {"message_uuid": message, "timestamp": "2026-11-23T10:00:09Z"}
        for status, final in (("sent", False), ("delivered", True)):
            payload = delivery_event(body, status)
            _, event_id = store.record_status(message, status, final, payload, now + 1)
            store.lease_event(event_id, now + 1, 30.0)
            store.event_sent(event_id, now + 1.1)


def sqlite_bytes(store):
    store.query("PRAGMA wal_checkpoint(TRUNCATE)")
    (pages,), (size,), (free,) = (
        store.query(f"PRAGMA {p}")[0] for p in ("page_count", "page_size", "freelist_count")
    )
    return (pages - free) * size


def postgres_bytes(store):
    return store.query("SELECT " + " + ".join(f"pg_total_relation_size('{t}')" for t in TABLES))[0][
        0
    ]


def measure(store, size, n, vacuum=None):
    before = size(store)
    started = time.monotonic()
    make_sends(store, n, time.time())
    result = {
        "sends": n,
        "bytes_per_send": (size(store) - before) / n,
        "seconds": round(time.monotonic() - started, 1),
    }
    if vacuum:
        vacuum(store)
        result["after_vacuum"] = (size(store) - before) / n
    return result


@contextmanager
def fresh_schema(url):
    name = f"sizing_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield name, f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{name}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


def vacuum(url, tables):
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"VACUUM {tables}")


def run(n, database_url=""):
    """{backend: measurement}: SQLite always, PostgreSQL when a URL is given."""
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = SqliteStore(os.path.join(tmp, "sizing.db"))
        store.init_schema()
        results["sqlite"] = measure(store, sqlite_bytes, n)
        store.close()
    if database_url:
        with fresh_schema(database_url) as (_, url):
            store = PostgresStore(url, pool_size=2)
            store.init_schema()
            tables = ", ".join(TABLES)
            results["postgres"] = measure(store, postgres_bytes, n, lambda _: vacuum(url, tables))
            store.close()
    return results


def main():
    parser = argparse.ArgumentParser(prog="python -m bench.sizing", description=__doc__)
    parser.add_argument("-n", type=int, default=2000, help="sends to make (default 2000)")
    parser.add_argument("--database-url", default="", help="also measure this PostgreSQL")
    args = parser.parse_args()
    print(json.dumps(run(args.n, args.database_url), indent=2))


if __name__ == "__main__":
    main()
