"""The `retention` part of `python -m bench`: does the database level off, and what does pruning
cost the sends?

Two connectors, each on a fresh database, take the same steady open-loop load (sends and their
status webhooks) in turns: one with RETENTION_DAYS of a year (nothing old enough to prune: the
baseline, measured in the same run on the same shared machine), one with RETENTION_DAYS=1
(pruning deletes as fast as the load adds). Each database's size is sampled all along; the p99
overhead of sends and webhooks is compared between the two.

RETENTION_DAYS is at least 1 (settings are checked at start), and a day is longer than a
benchmark, so the bench ages what the connectors write instead (`Aging`): every second, in
both databases alike, the finished sends, forwarded events and trace steps older than
`--retention-seconds` (default 20) are moved a day back (the clock they were written by
shifted by a day), and the shared `prune` turn, due every 5 minutes with a retention of days,
is made due now (the 5 minutes passed). A worker takes the turn when it next asks (each asks
every 30 s, LOCAL_CHECK in connector/retention.py) and deletes what was moved: in the pruning
connector a row lives about --retention-seconds + up to 30 s. The baseline's rows are moved
too (a day is well inside its year) and its turns come as often, so the two differ in the
deletes only. The sends the status webhooks refer to are recorded before each turn
(bench/__main__.py's record_messages), stamped with the turn's end so they outlive it.
"""

import re
import threading
import time
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psycopg
from psycopg import sql

DAY = 86400.0
SAMPLE_EVERY = 5.0
AGE_EVERY = 1.0  # seconds between two agings of a database's rows
PRUNED = re.compile(
    r"pruned (\d+) sends, (\d+) forwarded events and \d+ trace steps in (\d+) batches,"
    r" longest ([\d.]+) ms"
)


@contextmanager
def fresh_database(out, database_url, name):
    """(env, size()) of a new SQLite file, or a new schema in the PostgreSQL database."""
    if not database_url:
        path = Path(out) / f"{name}.db"
        for suffix in ("", "-wal", "-shm", "-lock"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)

        def file_size():
            """(the database file, its WAL) in bytes."""
            return tuple(
                Path(f"{path}{s}").stat().st_size if Path(f"{path}{s}").exists() else 0
                for s in ("", "-wal")
            )

        yield {"DATABASE_PATH": str(path), "DATABASE_URL": ""}, file_size
        return
    schema = f"bench_{name}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    sep = "&" if "?" in database_url else "?"
    url = f"{database_url}{sep}options=-csearch_path%3D{schema}"

    def schema_size():
        with psycopg.connect(database_url, autocommit=True) as conn:
            return conn.execute(
                "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = %s AND c.relkind = 'r'",
                (schema,),
            ).fetchone()[0], 0  # tables with their indexes; PostgreSQL's WAL is the server's

    try:
        yield {"DATABASE_URL": url}, schema_size
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


class Aging(threading.Thread):
    """Every AGE_EVERY seconds, in one connector's database: its rows older than `seconds`
    moved a day back, and its prune turn made due (see the module's docstring)."""

    def __init__(self, bench, env, seconds):
        super().__init__(daemon=True)
        self.bench, self.env, self.seconds = bench, env, seconds
        self.moved, self.stop, self.error = 0, threading.Event(), None

    def run(self):
        store = self.bench.open_database(self.env)
        try:
            while not self.stop.wait(AGE_EVERY):
                self.moved += age(store, time.time(), self.seconds)
        except Exception as exc:  # noqa: BLE001 - shown in the part's notes
            self.error = exc
        finally:
            store.close()


def age(store, now, seconds):
    """Move the finished rows written between a day and `seconds` ago a day back, and make the
    prune turn due now: the rows moved. Short transactions, queued with the workers' writes."""
    edge, fresh = now - seconds, now - DAY / 2  # a row before `fresh` was moved already
    moved = 0
    with store.transaction() as tx:
        moved += tx.execute(
            "UPDATE sends SET started_at = started_at - ?, finished_at = finished_at - ?"
            " WHERE started_at < ? AND started_at > ? AND state != 'pending'",
            (DAY, DAY, edge, fresh),
        ).rowcount
    with store.transaction() as tx:
        moved += tx.execute(
            "UPDATE events SET created_at = created_at - ?, sent_at = sent_at - ?"
            " WHERE created_at < ? AND created_at > ? AND state != 'pending'",
            (DAY, DAY, edge, fresh),
        ).rowcount
    with store.transaction() as tx:
        moved += tx.execute(
            "UPDATE trail SET at = at - ? WHERE at < ? AND at > ?", (DAY, edge, fresh)
        ).rowcount
        tx.execute(
            "UPDATE schedule SET next_at = ? WHERE task = 'prune' AND next_at > ?", (now, now)
        )
    return moved


class Sampler(threading.Thread):
    """The database size every SAMPLE_EVERY seconds while the load runs."""

    def __init__(self, size):
        super().__init__(daemon=True)
        self.size, self.samples, self.stop = size, [], threading.Event()

    def run(self):
        start = time.monotonic()
        while True:
            self.samples.append((time.monotonic() - start, self.size()))
            if self.stop.wait(SAMPLE_EVERY):
                self.samples.append((time.monotonic() - start, self.size()))
                return


def merge(results):
    """One result of several loadgen runs of the same server: latencies pooled."""
    merged = dict(results[0])
    merged["latencies"], merged["codes"] = {}, {}
    for result in results:
        for kind, values in result["latencies"].items():
            merged["latencies"].setdefault(kind, []).extend(values)
        for kind, codes in result["codes"].items():
            into = merged["codes"].setdefault(kind, {})
            for code, n in codes.items():
                into[code] = into.get(code, 0) + n
    merged["duration"] = sum(r["duration"] for r in results)
    for key in ("connector_cpu", "standins_cpu", "loadgen_cpu", "peak_rss_mb"):
        merged[key] = max(r[key] for r in results)
    merged["locked"] = sum(r["locked"] for r in results)
    return merged


def part(bench, standins, env, out, args):
    """Both servers up at once, loaded in turns (baseline, pruning, baseline, ...), so the
    machine's other load falls on both alike; returns their rows after printing them."""
    seconds = args.retention_seconds
    runs = [("baseline", "RETENTION_DAYS=365 (nothing to prune)", 365)]
    runs.append(("pruning", f"RETENTION_DAYS=1, rows aged a day after {seconds:g} s", 1))
    spec = {
        "mode": "open",
        "rate": args.retention_rate,
        "weights": {"send": 1, "status": 2},
        "warmup": 1.0,
        "duration": args.retention_duration / args.retention_rounds,
    }
    with ExitStack() as stack:
        servers = []
        for name, _, days in runs:
            db_env, size = stack.enter_context(
                fresh_database(out, args.database_url, f"retention-{name}")
            )
            log = Path(out) / f"connector-retention-{name}.log"
            server_env = {**env, **db_env, "RETENTION_DAYS": str(days)}
            server = stack.enter_context(bench.Gunicorn("app:app", server_env, log))
            sampler, aging = Sampler(size), Aging(bench, server_env, seconds)
            sampler.start()
            aging.start()
            servers.append((server, sampler, log, [], aging))
        turn = spec["warmup"] + spec["duration"]
        for _ in range(args.retention_rounds):
            for server, _, _, results, _ in servers:
                # the turn's messages outlive it: aged (and pruned) only once it is over
                results.append(bench.run_load(server, standins, spec, stamp=time.time() + turn))
        for _, sampler, _, _, aging in servers:
            sampler.stop.set()
            aging.stop.set()
            sampler.join()
            aging.join()
    rows = []
    load = f"{args.retention_rate}/s open, 1 send : 2 webhooks"
    for (name, label, _), (_, sampler, log, results, aging) in zip(runs, servers, strict=True):
        pruned = [tuple(map(float, m)) for m in PRUNED.findall(log.read_text())]
        note = f"{label}; pruned {sum(p[0] for p in pruned):.0f} sends and " + (
            f"{sum(p[1] for p in pruned):.0f} events in {len(pruned)} turns, "
            f"{sum(p[2] for p in pruned):.0f} batches, longest batch "
            f"{max((p[3] for p in pruned), default=0):.1f} ms; {aging.moved} rows aged"
        )
        if aging.error is not None:
            note += f"; aging stopped: {type(aging.error).__name__}: {aging.error}"
        result = merge(results)
        for kind in ("send", "status"):
            r = bench.row(f"retention: {name}, {kind}", load, result, [kind], note=note)
            r["retention"] = (name, kind)
            rows.append(bench.show_row(r))
    bench.show("")
    bench.show(f"| database size, MB, every {SAMPLE_EVERY:g} s | samples |\n|---|---|")
    for (name, _, _), (_, sampler, _, _, _) in zip(runs, servers, strict=True):
        for i, what in enumerate(("tables", "SQLite WAL")):
            if any(b[i] for _, b in sampler.samples):
                sizes = ", ".join(f"{b[i] / 1e6:.2f}" for _, b in sampler.samples)
                bench.show(f"| {name}: {what} | {sizes} |")
    bench.show("")
    return rows


def targets(rows):
    """(target, met, measured) lines for bench's table: size levels off, p99 unchanged."""
    by = {r["retention"]: r for r in rows if "retention" in r}
    lines = []
    for kind in ("send", "status"):
        base, pruning = by.get(("baseline", kind)), by.get(("pruning", kind))
        if base and pruning:
            lines.append(
                (
                    f"pruning costs the {'sends' if kind == 'send' else 'statuses'} nothing measurable (p99 overhead)",
                    pruning["o99"] <= base["o99"] * 1.25 + 2,
                    (
                        f"{pruning['o99']:.1f} ms with pruning, {base['o99']:.1f} ms without "
                        f"({pruning['o99'] / base['o99']:.2f}x)"
                    ),
                )
            )
    return lines
