"""PostgreSQL lock and statement timeouts: no statement of a serving connector waits past its
request's deadline, and a wait that ran out is named (by `/health` and `flask doctor`).

A session that holds a row the connector needs (a `psql` left in a transaction, a client that
vanished mid-transaction) used to hang every send on the `send_schedule` row until the pool
filled. Every pooled connection now carries `lock_timeout` and `statement_timeout`, set once as
it connects (no round trip per statement), as shares of VONAGE_TIMEOUT: a statement waits at
most a quarter of it for a lock and runs at most half of it, so a send still answers 503 within
VONAGE_TIMEOUT, before anything reaches Vonage. An operator's command (`flask report` over a
month of sends, say) is no request: it waits longer for a lock and its queries run as long as
they take. Migrations use their own connection, untimed.
"""

import math
import re
import threading
import time
from typing import Any, NamedTuple

from connector.store.base import StoreUnavailable

DEFAULT_BUDGET = 4.0  # VONAGE_TIMEOUT's default: the time a request's statements fit in
COMMAND_LOCK_WAIT = 10.0  # an operator's command waits this long for a lock, then says so
LOCK_SHARE = 0.25
STATEMENT_SHARE = 0.5
SHOWN_FOR = 60.0  # seconds a wait that ran out stays named after the last one
_RELATION = re.compile(r'relation "([^"]+)"')

# Client sessions whose transaction, open longer than the lock timeout, has locked rows of
# (or written to) one of this schema's tables: what blocks us. A mere read (AccessShareLock,
# a pg_dump, say) blocks no row and is left out.
# Without the privilege to see other users' sessions (pg_read_all_stats), their state reads
# NULL and they are not listed; the waits this process saw are still named.
HOLDERS = """
SELECT DISTINCT a.pid, coalesce(a.application_name, ''), coalesce(a.usename::text, ''),
    a.state, extract(epoch FROM now() - a.xact_start)::float8, c.relname::text
FROM pg_locks l
JOIN pg_class c ON c.oid = l.relation
JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.granted AND l.pid <> pg_backend_pid() AND l.mode <> 'AccessShareLock'
    AND a.backend_type = 'client backend'
    AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
    AND c.relkind = 'r'
    AND a.xact_start < now() - make_interval(secs => %s)
    AND a.state IN ('idle in transaction', 'idle in transaction (aborted)', 'active')
ORDER BY 5 DESC
LIMIT 5
"""


class Timeouts(NamedTuple):
    lock: float  # seconds a statement waits for a lock
    statement: float | None  # seconds a statement may run, lock waits included (None: no limit)


def timeouts(budget: float | None) -> Timeouts:
    """The timeouts for requests whose statements must fit in `budget` s (VONAGE_TIMEOUT);
    with None, an operator's command's."""
    if budget is None:
        return Timeouts(COMMAND_LOCK_WAIT, None)
    if not math.isfinite(budget) or budget <= 0:
        budget = DEFAULT_BUDGET
    return Timeouts(budget * LOCK_SHARE, budget * STATEMENT_SHARE)


def settings_sql(limits: Timeouts) -> str:
    """The SETs a new connection runs, in one round trip (a limit is never 0: that is none)."""
    lock = max(1, round(limits.lock * 1000))
    statement = 0 if limits.statement is None else max(1, round(limits.statement * 1000))
    return (
        "SET synchronous_commit = on; "
        f"SET lock_timeout = {lock}; SET statement_timeout = {statement}"
    )


class Holder(NamedTuple):
    pid: int
    application: str
    user: str
    state: str
    seconds: float  # since its transaction began
    relation: str


class LockWait(NamedTuple):
    relation: str
    ran_out: int  # waits that ran out in this worker (0: a holder seen, no wait yet)
    since: float
    last: float
    holders: list[Holder]


class DatabaseLocked(StoreUnavailable):
    """A row this request needs stayed locked by another database session: answered 503."""

    def __init__(self, relation: str, seconds: float) -> None:
        super().__init__(
            f"the database is unavailable: a row of {relation} stayed locked by another "
            f"database session for over {seconds:g} s (GET /health names it); retry later",
            retry_after=1,
        )


class StatementTooSlow(StoreUnavailable):
    def __init__(self, seconds: float | None) -> None:
        super().__init__(
            f"the database is unavailable: a query ran over {seconds or 0:g} s "
            "(the database is overloaded, or a query was cancelled); retry later",
            retry_after=1,
        )


class LockWaits:
    """The lock waits that ran out in this process, by table."""

    def __init__(self) -> None:
        self._seen: dict[str, list[float]] = {}  # relation -> [count, since, last]
        self._lock = threading.Lock()

    def saw(self, exc: Any) -> str:
        """Count a LockNotAvailable; the table it waited on (from PostgreSQL's context)."""
        context = getattr(getattr(exc, "diag", None), "context", None) or ""
        found = _RELATION.search(context)
        relation = found.group(1) if found else "a table"
        now = time.time()
        with self._lock:
            entry = self._seen.get(relation)
            if entry is None or now - entry[2] > SHOWN_FOR:
                self._seen[relation] = [1, now, now]
            else:
                entry[0] += 1
                entry[2] = now
        return relation

    def recent(self, now: float) -> dict[str, tuple[int, float, float]]:
        with self._lock:
            return {
                relation: (int(count), since, last)
                for relation, (count, since, last) in self._seen.items()
                if now - last <= SHOWN_FOR
            }


def report(waits: LockWaits, holders: list[Holder], now: float) -> list[LockWait]:
    """One LockWait per table that a wait ran out on lately or that a holder holds."""
    recent = waits.recent(now)
    relations = list(recent) + [h.relation for h in holders if h.relation not in recent]
    found = []
    for relation in dict.fromkeys(relations):
        held = [h for h in holders if h.relation == relation]
        count, since, last = recent.get(relation, (0, now - max(h.seconds for h in held), now))
        found.append(LockWait(relation, count, since, last, held))
    return found
