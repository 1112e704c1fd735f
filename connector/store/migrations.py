"""The schema as numbered steps, written once for both backends (`{id}` and `{real}` are the
only dialect words). The database records the last step it ran in `schema_version`; a newer
connector runs the steps it lacks at start, each in one transaction, one process at a time
(the others wait, then find nothing left to do). An older connector refuses a newer database.

Adding a step: append `(what it does, [SQL, or a function of the transaction])` to STEPS. Never
edit or reorder a step that has shipped: deployed databases already ran it.
"""

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
    "CREATE INDEX IF NOT EXISTS sends_by_message ON sends (message_uuid)",
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


# Retention (store/retention.py): pruning finds old rows by these indexes instead of scanning
# whole tables under the write lock, and `housekeeping` holds when the next prune is due, shared
# by every worker and instance so one prunes at a time.
RETENTION = [
    "CREATE INDEX IF NOT EXISTS sends_by_age ON sends (started_at)",
    "CREATE INDEX IF NOT EXISTS events_by_age ON events (created_at)",
    """CREATE TABLE IF NOT EXISTS housekeeping (
        task TEXT PRIMARY KEY,
        next_at {real} NOT NULL
    )""",
]


STEPS = [
    # Also a no-op on a database made before versions were recorded: same tables, IF NOT EXISTS.
    ("sends, contacts, subscriptions and events", FIRST_RELEASE),
    ("indexes by age and the housekeeping table, for retention", RETENTION),
]
LATEST = len(STEPS)

_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer connector than this one."""


def _check(version):
    if version > LATEST:
        raise SchemaTooNew(
            f"the database is at schema version {version}, but this connector knows versions up "
            f"to {LATEST}: it was upgraded by a newer connector. Deploy that version (or newer) "
            "instead of this one; the database was not changed"
        )
    return version


def migrate(store, dialect):
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
