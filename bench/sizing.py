"""Bytes the database keeps per send: `python -m bench.sizing [--database-url URL] [-n N]`.

Makes N sends as the connector does (the store's own methods, realistic values: a client_ref
key, MoEngage ids, the answer), each with its two status events forwarded, and measures what
the tables and their indexes grew by: the SQLite file (after a checkpoint), or PostgreSQL's
pg_total_relation_size of sends and events, both right after the writes (dead row versions
included: each send is updated once, each event twice) and after a VACUUM (what autovacuum
leaves for reuse). docs/operations.md's sizing table is `sends/day x RETENTION_DAYS x bytes`.
`--steady TICKS` measures the size once traffic and pruning are steady instead.
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

from connector.relay.events import delivery_event
from connector.store import PostgresStore, SqliteStore

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
            event_id = store.record_status(message, status, final, payload, now + 1).event_id
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


def steady(store, size, after_prune, ticks, per_tick=100, live_ticks=20):
    """Steady traffic and retention: each tick makes `per_tick` sends, then prunes those older
    than `live_ticks` ticks, then `after_prune()` (PostgreSQL: VACUUM as autovacuum would).
    Returns [(tick, live sends, bytes, bytes per live send)] every 10 ticks."""
    samples = []
    for tick in range(ticks):
        make_sends(store, per_tick, 1e9 + tick)
        while True:
            done = store.prune_batch(1e9 + tick - live_ticks + 0.5, 1e9 + tick, 200)
            if max(done.sends, done.events) < 200:
                break
        after_prune()
        if tick % 10 == 9:
            live = store.query("SELECT COUNT(*) FROM sends")[0][0]
            samples.append((tick + 1, live, size(store), round(size(store) / live)))
    return samples


def autovacuum(url, schema):
    """VACUUM each table autovacuum's default rule would: dead rows > 50 + 20 % of live."""

    def check():
        with psycopg.connect(url, autocommit=True) as conn:
            for table in TABLES:
                live, dead = conn.execute(
                    "SELECT n_live_tup, n_dead_tup FROM pg_stat_user_tables"
                    " WHERE schemaname = %s AND relname = %s",
                    (schema, table),
                ).fetchone()
                if dead > 50 + 0.2 * live:
                    conn.execute(f"VACUUM {table}")

    return check


def file_size(path):
    def size(store):
        store.query("PRAGMA wal_checkpoint(TRUNCATE)")
        return os.path.getsize(path)

    return size


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


def run(n, database_url="", ticks=0):
    """{backend: measurement}: SQLite always, PostgreSQL when a URL is given; with `ticks`,
    the steady state instead of a fresh fill."""
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "sizing.db")
        store = SqliteStore(path)
        store.init_schema()
        if ticks:
            results["sqlite"] = steady(store, file_size(path), lambda: None, ticks)
        else:
            results["sqlite"] = measure(store, sqlite_bytes, n)
        store.close()
    if database_url:
        with fresh_schema(database_url) as (schema, url):
            store = PostgresStore(url, pool_size=2)
            store.init_schema()
            if ticks:
                results["postgres"] = steady(store, postgres_bytes, autovacuum(url, schema), ticks)
            else:
                tables = ", ".join(TABLES)
                results["postgres"] = measure(
                    store, postgres_bytes, n, lambda _: vacuum(url, tables)
                )
            store.close()
    return results


def main():
    parser = argparse.ArgumentParser(prog="python -m bench.sizing", description=__doc__)
    parser.add_argument("-n", type=int, default=2000, help="sends to make (default 2000)")
    parser.add_argument("--database-url", default="", help="also measure this PostgreSQL")
    parser.add_argument(
        "--steady",
        type=int,
        default=0,
        metavar="TICKS",
        help="instead: TICKS ticks of 100 sends, 2,000 kept (the oldest pruned each tick; "
        "PostgreSQL VACUUMed by autovacuum's default rule); size per live send every 10 ticks",
    )
    args = parser.parse_args()
    print(json.dumps(run(args.n, args.database_url, args.steady), indent=2))


if __name__ == "__main__":
    main()
