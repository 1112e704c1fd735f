"""The schema as numbered steps, written once for both backends (`{id}` and `{real}` are the
only dialect words). The database records the last step it ran in `schema_version`; a newer
connector runs the steps it lacks at start, each in one transaction, one process at a time
(the others wait, then find nothing left to do). An older connector refuses a newer database.

Adding a step: append `(what it does, [SQL, or a function of the transaction])` to STEPS. Never
edit or reorder a step that has shipped: deployed databases already ran it.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connector.store.base import Store

FIRST_RELEASE = [
    # One row per idempotency key (client_ref, or the duplicate-send fingerprint); the answer
    # given to MoEngage is kept so a retry gets the same answer without a second SMS.
    """CREATE TABLE IF NOT EXISTS sends (
        idem_key TEXT PRIMARY KEY,
        token TEXT NOT NULL,
        state TEXT NOT NULL,
        http_status INTEGER,
        answer TEXT,
        message_uuid TEXT,
        recipient TEXT NOT NULL,
        campaign_id TEXT,
        customer_id TEXT,
        started_at {real} NOT NULL,
        finished_at {real}
    )""",
    # (A callable since the rollback guard renamed the column: see _sends_by_message.)
    lambda tx: _sends_by_message(tx),
    # The MoEngage user last sent to at each number, for writing opt-outs back to MoEngage.
    """CREATE TABLE IF NOT EXISTS contacts (
        number TEXT PRIMARY KEY,
        customer_id TEXT NOT NULL,
        updated_at {real} NOT NULL
    )""",
    # Latest opt-out/opt-in per number; event_ts is Vonage's timestamp, so older events lose.
    # synced = 0 while the change still waits for a customer_id to be written to MoEngage.
    """CREATE TABLE IF NOT EXISTS subscriptions (
        number TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        event_ts {real} NOT NULL,
        updated_at {real} NOT NULL,
        synced INTEGER NOT NULL DEFAULT 0
    )""",
    # The outbox: every event for MoEngage, forwarded once (dedupe_key), kept until accepted.
    """CREATE TABLE IF NOT EXISTS events (
        id {id},
        dedupe_key TEXT NOT NULL UNIQUE,
        message_uuid TEXT,
        target TEXT NOT NULL,
        payload TEXT NOT NULL,
        is_final INTEGER NOT NULL DEFAULT 0,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        lease_until {real},
        last_error TEXT,
        created_at {real} NOT NULL,
        sent_at {real}
    )""",
    "CREATE INDEX IF NOT EXISTS events_by_message ON events (message_uuid)",
    "CREATE INDEX IF NOT EXISTS events_by_state ON events (state, id)",
]

# Trace, doctor and report (issue 10). `trail`: one row per step of a message's life (a send
# answered, a Vonage status, a forward, a reply), append-only, written inside the transaction
# the step already makes; `detail` is a small JSON object. `evidence`: one row per warning
# cause, counters that each worker flushes every few seconds (connector/diagnostics/evidence.py).
OBSERVE = [
    """CREATE TABLE IF NOT EXISTS trail (
        id {id},
        at {real} NOT NULL,
        stage TEXT NOT NULL,
        message_uuid TEXT,
        ref TEXT,
        number TEXT,
        detail TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS trail_by_message ON trail (message_uuid)",
    "CREATE INDEX IF NOT EXISTS trail_by_ref ON trail (ref) WHERE ref IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS trail_by_number ON trail (number)",
    "CREATE INDEX IF NOT EXISTS trail_by_stage ON trail (stage, at)",
    """CREATE TABLE IF NOT EXISTS evidence (
        key TEXT PRIMARY KEY,
        code INTEGER NOT NULL,
        count INTEGER NOT NULL,
        since {real} NOT NULL,
        last_seen {real} NOT NULL,
        detail TEXT NOT NULL
    )""",
]

# VONAGE_MAX_RPS's schedule with PostgreSQL, shared by every instance: one row per API key
# (named by a hash of it), updated in place by each send (connector/relay/ratelimit.py). SQLite
# keeps its schedule in flock'd files, since all its workers are on one machine; the table
# is made there too, empty, so both backends have one schema.
SEND_SCHEDULE = [
    """CREATE TABLE IF NOT EXISTS send_schedule (
        name TEXT PRIMARY KEY,
        next_free {real} NOT NULL,
        slot {real},
        updated_at {real} NOT NULL
    )""",
]

# When a task shared by every worker (the sweep of pending events, the prune) is next due: the
# one worker that moves `next_at` forward runs it.
SCHEDULE = [
    """CREATE TABLE IF NOT EXISTS schedule (
        task TEXT PRIMARY KEY,
        next_at {real} NOT NULL
    )""",
]

# Keyed hashes (HMAC-SHA256 keyed with the secret, never the secret itself) of the Vonage API
# key and secret pairs Vonage's Account API confirmed, and when: a caller is told a recipient
# opted out only with a pair Vonage accepted (found here, or seen take a send in this process).
ACCEPTED_CREDENTIALS = [
    """CREATE TABLE IF NOT EXISTS accepted_credentials (
        pair_hash TEXT PRIMARY KEY,
        accepted_at {real} NOT NULL
    )""",
]


# Retention (store/retention.py): pruning finds old rows by these indexes instead of scanning
# whole tables under the write lock. When the next prune is due is the `prune` task's row in
# `schedule`, so one worker of all instances prunes at a time.
RETENTION = [
    "CREATE INDEX IF NOT EXISTS sends_by_age ON sends (started_at)",
    "CREATE INDEX IF NOT EXISTS events_by_age ON events (created_at)",
    "CREATE INDEX IF NOT EXISTS trail_by_age ON trail (at)",
]


# sends.message_uuid renamed tracking_id (the trackingId MoEngage was answered), and its index
# with it: the first release, which knew no schema version and so cannot refuse a newer
# database, then fails at its start (its `CREATE INDEX IF NOT EXISTS sends_by_message ON sends
# (message_uuid)` finds no such column) instead of answering /health 200 and sending a
# client_ref retry a second time (docs/deploy.md, "Rolling back"). The rows are kept as they
# are; only the index is dropped, and built again under its new name in the same transaction.
def _has_column(tx, table, column):
    """Whether `table` has `column`, asked the same way of both backends (a savepoint keeps
    PostgreSQL's transaction usable after the failed probe)."""
    tx.execute("SAVEPOINT probe")
    try:
        tx.execute(f"SELECT {column} FROM {table} LIMIT 0")
    except Exception:  # noqa: BLE001 - sqlite3's or psycopg's "no such column"
        tx.execute("ROLLBACK TO SAVEPOINT probe")
        return False
    finally:
        tx.execute("RELEASE SAVEPOINT probe")
    return True


def _sends_by_message(tx):
    """Step 1's index on sends.message_uuid, as the first release made it; a database that
    lost its schema_version after ROLLBACK_GUARD renamed the column has that index already."""
    if not _has_column(tx, "sends", "tracking_id"):
        tx.execute("CREATE INDEX IF NOT EXISTS sends_by_message ON sends (message_uuid)")


def _rename_tracking_id(tx):
    if not _has_column(tx, "sends", "tracking_id"):
        tx.execute("ALTER TABLE sends RENAME COLUMN message_uuid TO tracking_id")
    tx.execute("DROP INDEX IF EXISTS sends_by_message")  # an index: no row is lost
    tx.execute("CREATE INDEX IF NOT EXISTS sends_by_tracking_id ON sends (tracking_id)")


ROLLBACK_GUARD = [_rename_tracking_id]
# The console (issue 18). `console_tally`: counters per hour, API key and name (sends,
# delivered, error:<code>, cost:<currency> ...), added to by every transaction that writes
# trail rows (connector/store/tally.py), so the overview sums a few thousand rows instead of
# scanning the trail; `shard` spreads one hour's counters over several rows so concurrent
# PostgreSQL transactions rarely wait for the same one. `console_sessions`: signed-in
# sessions by a hash of their cookie, so signing out revokes one everywhere; `password_id`
# (a hash of CONSOLE_PASSWORD) makes a changed password end them all. `console_attempts`:
# sign-in attempts, counted by every worker and instance for the throttle.
CONSOLE = [
    """CREATE TABLE IF NOT EXISTS console_tally (
        bucket INTEGER NOT NULL,
        api_key TEXT NOT NULL,
        name TEXT NOT NULL,
        shard INTEGER NOT NULL,
        n INTEGER NOT NULL,
        amount {real} NOT NULL,
        last_at {real} NOT NULL,
        PRIMARY KEY (bucket, api_key, name, shard)
    )""",
    "CREATE INDEX IF NOT EXISTS console_tally_by_name ON console_tally (name, bucket)",
    """CREATE TABLE IF NOT EXISTS console_sessions (
        id_hash TEXT PRIMARY KEY,
        password_id TEXT NOT NULL,
        csrf TEXT NOT NULL,
        created_at {real} NOT NULL,
        last_seen {real} NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS console_attempts (
        id {id},
        client TEXT NOT NULL,
        at {real} NOT NULL,
        outcome TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS console_attempts_by_client ON console_attempts (client, at)",
    "CREATE INDEX IF NOT EXISTS console_attempts_by_age ON console_attempts (at)",
    # The Messages page's search by campaign id, and the Opt-outs page's list, newest first.
    "CREATE INDEX IF NOT EXISTS sends_by_campaign ON sends (campaign_id, started_at)",
    "CREATE INDEX IF NOT EXISTS subscriptions_by_state ON subscriptions (state, event_ts)",
]


# Keyed hashes of the key and secret pairs Vonage refused (401/403), kept ten minutes
# (connector/store/refused.py): every worker and instance answers a wrong pair again without
# asking Vonage, and unauthenticated traffic cannot make the connector call it per request.
REFUSED_CREDENTIALS = [
    """CREATE TABLE IF NOT EXISTS refused_credentials (
        pair_hash TEXT PRIMARY KEY,
        refused_at {real} NOT NULL,
        status INTEGER NOT NULL,
        reason TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS refused_credentials_by_age ON refused_credentials (refused_at)",
]


STEPS: list[tuple[str, list[Any]]] = [
    # Also a no-op on a database made before versions were recorded: same tables, IF NOT EXISTS.
    ("sends, contacts, subscriptions and events", FIRST_RELEASE),
    ("trail and evidence, for trace, doctor and report", OBSERVE),
    ("send_schedule: VONAGE_MAX_RPS shared by every instance on PostgreSQL", SEND_SCHEDULE),
    ("schedule of the tasks workers share", SCHEDULE),
    ("accepted_credentials: key and secret pairs Vonage accepted", ACCEPTED_CREDENTIALS),
    ("indexes by age, for retention", RETENTION),
    ("sends.tracking_id: the first release refuses to start on this database", ROLLBACK_GUARD),
    ("console: tally, sessions, sign-in attempts, search indexes", CONSOLE),
    ("refused_credentials: pairs Vonage refused, kept 10 minutes", REFUSED_CREDENTIALS),
]
LATEST = len(STEPS)

_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer connector than this one."""


def _check(version: int) -> int:
    if version > LATEST:
        raise SchemaTooNew(
            f"the database is at schema version {version}, but this connector knows versions up "
            f"to {LATEST}: it was upgraded by a newer connector. Deploy that version (or newer) "
            "instead of this one; the database was not changed"
        )
    return version


def migrate(store: "Store", dialect: dict[str, str]) -> list[int]:
    """Run the steps the database lacks; return the numbers of those this process ran.

    `store.schema_version()` is a cheap look that skips the locks when nothing is due;
    `store.schema_transaction()` is exclusive across processes and instances.
    """
    if _check(store.schema_version()) == LATEST:
        return []
    ran = []
    for number, (_, statements) in enumerate(STEPS, 1):
        with store.schema_transaction() as tx:
            tx.execute(_VERSION_TABLE)
            row = tx.execute("SELECT version FROM schema_version").fetchone()
            if _check(row[0] if row else 0) >= number:
                continue  # another process ran it while this one waited
            for statement in statements:
                if callable(statement):
                    statement(tx)
                else:
                    tx.execute(statement.format(**dialect))
            if row:
                tx.execute("UPDATE schema_version SET version = ?", (number,))
            else:
                tx.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
            ran.append(number)
    return ran
