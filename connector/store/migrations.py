"""The schema, written once for both backends: `{id}` and `{real}` are the only dialect words."""

TABLES = [
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


def statements(id_type, real_type):
    return [sql.format(id=id_type, real=real_type) for sql in TABLES]
