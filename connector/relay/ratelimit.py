"""A per-API-key send rate shared by every worker process, and with PostgreSQL every instance.

Vonage allows 30 requests/s per API key by default and bounces the excess with 429s; MoEngage
pushes a campaign far faster. Each send takes the next free slot (slots evenly spaced, GCRA),
waits for it, and is refused with 429 + Retry-After when the slot is further off than it may wait.

Where the schedule lives follows the database: with SQLite (one machine) a small file per API
key, locked with flock, shared by all gunicorn workers; with PostgreSQL one row per API key in
`send_schedule`, taken by one statement that computes the slot on the server's clock, so every
worker of every instance (dyno) draws from the same schedule and VONAGE_MAX_RPS is the limit for
the whole deployment, not per instance.
"""

import fcntl
import hashlib
import logging
import math
import os
import tempfile
import threading
import time

from connector.errors import Failure

log = logging.getLogger(__name__)

# Slots are spaced so that `rps` of them span 1.1 s, not 1 s: the ms between a slot and the
# request reaching Vonage vary, and at exact spacing a late send and an early one put rps + 1
# into one of Vonage's seconds; a smaller margin let that happen with the cores saturated
# (bench/RESULTS.md, the rate-limit row).
MARGIN = 0.10
# A send that wakes this long after its slot takes a new one instead of leaving: half the
# margin, so two sends' lateness can never differ by the whole 100 ms it covers in a second.
LATE = MARGIN / 2
CLOCK_STEP = 3600  # a schedule this far ahead means the clock stepped back: start afresh
MAX_KEYS_KNOWN = 1000  # API keys whose schedule a process remembers (a team has a few)
IDLE_AFTER = 3600.0  # a schedule whose next free slot is this far past is removed
EXPIRE_EVERY = 600.0  # seconds between a process's looks for idle schedules


def _key_name(api_key):
    """The schedule's name for an API key: a hash, so neither file names nor rows hold it."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:24]


def refusal(wait):
    """The 429 for a send whose slot is `wait` s off, further than it may wait."""
    return Failure(
        429,
        "the send rate for this Vonage API key (VONAGE_MAX_RPS) is used up; retry later",
        retry_after=max(1, math.ceil(wait)),
    )


def _refuse(wait):
    raise refusal(wait)


class FileSchedule:
    """One instance's schedule: a file per API key in the temp directory, under flock."""

    def __init__(self, instance_id):
        digest = hashlib.sha256(instance_id.encode()).hexdigest()[:16]
        self.directory = os.path.join(tempfile.gettempdir(), f"vonage-sms-connector-{digest}")
        os.makedirs(self.directory, exist_ok=True)

    def path(self, api_key):
        return os.path.join(self.directory, _key_name(api_key))

    def peek(self, api_key):
        """Seconds until the next free slot of `api_key` (<= 0: free now), taking nothing. A
        key without a schedule has every slot free: looking creates no file."""
        try:
            fd = os.open(self.path(api_key), os.O_RDONLY)
        except FileNotFoundError:
            return 0.0 - time.time()
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            next_free = _read(fd)
        finally:
            os.close(fd)
        return next_free - time.time()

    def reserve(self, api_key, interval, max_wait):
        """(slot, wait): the next free slot of `api_key` and the seconds until it, taken if at
        most `max_wait` s away; (None, wait) when it is further off."""
        path = self.path(api_key)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_nlink:  # else `expire` removed it as we opened it: again
                    return self._take(fd, interval, max_wait)
            finally:
                os.close(fd)  # also releases the lock

    @staticmethod
    def _take(fd, interval, max_wait):
        now = time.time()
        next_free = _read(fd)
        if next_free > now + CLOCK_STEP:
            next_free = 0.0
        slot = max(now, next_free)
        wait = slot - now
        if wait > max_wait:
            return None, wait
        os.pwrite(fd, repr(slot + interval).encode().ljust(64), 0)
        return slot, wait

    def expire(self, idle):
        """Remove the schedules whose next free slot is over `idle` s past: a key that has not
        sent for that long starts afresh anyway, and the directory keeps only live keys."""
        removed = 0
        for name in os.listdir(self.directory):
            path = os.path.join(self.directory, name)
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_nlink and _read(fd) < time.time() - idle:
                    os.unlink(path)  # under the lock: `reserve` sees it gone and reopens
                    removed += 1
            finally:
                os.close(fd)
        return removed


def _read(fd):
    """The next free slot a schedule file holds (0: empty or unreadable, so free now)."""
    try:
        return float(os.pread(fd, 64, 0) or 0)
    except ValueError:
        return 0.0


# One statement, one row per API key (updated in place, so the table never grows per send).
# The server's clock decides, so every instance measures against the same clock; it is read
# once per send (`c.now`), after the row is locked, so a send that queued for the row is not
# given a wait that is already partly over. The next free slot is taken (next_free moves on by
# one interval) only if it is at most max_wait away; otherwise the row keeps its next_free and
# `slot` comes back NULL, with next_free - now the wait refused. A next_free over an hour
# ahead means the server's clock stepped back: the schedule starts afresh.
# Parameters: name, interval, max_wait, max_wait, interval.
TAKE_SLOT = f"""
INSERT INTO send_schedule AS s (name, next_free, slot, updated_at)
SELECT ?, c.now + ?, c.now, c.now
FROM (SELECT extract(epoch FROM clock_timestamp())::float8 AS now) AS c
ON CONFLICT (name) DO UPDATE SET (slot, next_free, updated_at) = (
    SELECT CASE WHEN f.free - c.now <= ? THEN f.free END,
        CASE WHEN f.free - c.now <= ? THEN f.free + ? ELSE s.next_free END,
        c.now
    FROM (SELECT extract(epoch FROM clock_timestamp())::float8 AS now) AS c,
        LATERAL (SELECT CASE WHEN s.next_free > c.now + {CLOCK_STEP} THEN c.now
            ELSE greatest(s.next_free, c.now) END AS free) AS f
)
RETURNING s.slot, s.next_free, s.updated_at
"""


class PostgresSchedule:
    """Every instance's schedule: the `send_schedule` row of each API key (see TAKE_SLOT).

    A slot is a time on the database server's clock; a send leaves when this machine's clock
    reaches it. The two clocks' offset is measured from the statements themselves, as NTP
    does: the server read its clock between the local times the statement left and its answer
    came back, so offset = server time - midpoint, to within half the round trip. The sample
    with the shortest round trip is kept (see AGEING), so neither a slow answer (a loaded
    database, a busy CPU) nor a skewed clock moves a send off its slot: without it, each send
    left late by its own answer's delay, and a late one and a punctual one came too close."""

    # A kept sample is trusted less as it ages (clocks drift by parts per million): a new one
    # replaces it once its round trip is within this much per second of age of the kept one's.
    # A single slow sample never does: a process whose offset were off by a slow answer's
    # half round trip would send early against the others.
    AGEING = 0.001

    def __init__(self, store):
        self.store = store  # a function returning the PostgresStore: it opens on first use
        self._lock = threading.Lock()
        self._offset, self._rtt, self._since = 0.0, math.inf, 0.0

    def peek(self, api_key):
        """Seconds until the next free slot of `api_key` on the server's clock, taking nothing."""
        rows = self.store().query(
            "SELECT next_free - extract(epoch FROM clock_timestamp())::float8"
            " FROM send_schedule WHERE name = ?",
            (_key_name(api_key),),
        )
        return rows[0][0] if rows else 0.0

    def expire(self, idle):
        """Delete the rows whose next free slot is over `idle` s past (see FileSchedule)."""
        with self.store().transaction() as tx:
            return tx.execute(
                "DELETE FROM send_schedule"
                " WHERE next_free < extract(epoch FROM clock_timestamp())::float8 - ?",
                (idle,),
            ).rowcount

    def reserve(self, api_key, interval, max_wait):
        sent = time.time()
        slot, next_free, now = self.store().query(
            TAKE_SLOT, (_key_name(api_key), interval, max_wait, max_wait, interval)
        )[0]
        offset = self._clock_offset(now, sent, time.time())
        if slot is None:
            return None, next_free - now
        return slot, max(0.0, slot - offset - time.time())

    def _clock_offset(self, server_now, sent, received):
        rtt, offset = received - sent, server_now - (sent + received) / 2
        with self._lock:
            age = time.monotonic() - self._since
            if rtt <= self._rtt + self.AGEING * age:
                self._offset, self._rtt, self._since = offset, rtt, time.monotonic()
            return self._offset


class RateLimiter:
    def __init__(self, rps, instance_id, max_waiting=16, store=None):
        """`max_waiting`: sends of this process that may sleep for a slot at once; beyond it
        a send that would have to wait is refused at once, so a campaign faster than `rps`
        cannot tie up every thread (status webhooks need some too). `store`: a function
        returning a PostgresStore, which keeps the schedule for every instance; otherwise
        the schedule is this machine's files."""
        self.interval = (1.0 + MARGIN) / rps if rps > 0 else 0.0
        self.max_waiting = max_waiting
        self._waiting = 0
        self._lock = threading.Lock()
        self.late = 0  # slots given up because this process woke too late for them
        # API key -> monotonic time before which its schedule surely has no free slot: what
        # this process last learned of it. Slots are only ever taken, so it stays true.
        self._full_until = {}
        self._expired_at = time.monotonic()  # the first look comes EXPIRE_EVERY after start
        self.schedule = None
        if self.interval:
            self.schedule = PostgresSchedule(store) if store else FileSchedule(instance_id)

    @property
    def shared(self):
        """True when the schedule spans instances (PostgreSQL), not one machine."""
        return isinstance(self.schedule, PostgresSchedule)

    def acquire(self, api_key, max_wait):
        """Block until this send's slot and return it (epoch seconds, by the clock that set
        it: the database server's with PostgreSQL); raise Failure(429) if the slot is more
        than `max_wait` s off, or any wait when enough sends wait already.

        A send that wakes more than LATE after its slot (a CPU too busy to run it) takes a
        new slot rather than leave late: late ones bunch with the punctual ones after them,
        and the margin covers only 100 ms of that in any second."""
        if not self.interval:
            return time.time()
        self._expire_idle()
        deadline = time.monotonic() + max_wait
        if self._waiting >= self.max_waiting:
            max_wait = 0.0
        while True:
            slot, wait = self.schedule.reserve(api_key, self.interval, max_wait)
            if slot is None:
                self._learn(api_key, wait)
                _refuse(wait)
            self._learn(api_key, wait + self.interval)  # the next slot is one interval on
            if wait <= 0:
                return slot
            due = time.monotonic() + wait
            self._sleep(wait)
            if time.monotonic() - due <= LATE:
                return slot
            with self._lock:
                self.late += 1
            max_wait = min(max_wait, deadline - time.monotonic())

    def charge(self, api_key):
        """Take `api_key`'s next slot without waiting for it: a send Vonage took without one
        (the first of a key and secret not known good, sending.py) is counted all the same."""
        if self.interval:
            _, wait = self.schedule.reserve(api_key, self.interval, CLOCK_STEP)
            self._learn(api_key, wait + self.interval)  # as `acquire` does

    def _expire_idle(self):
        """Every EXPIRE_EVERY s, one send of this process removes the idle schedules."""
        with self._lock:
            if time.monotonic() - self._expired_at < EXPIRE_EVERY:
                return
            self._expired_at = time.monotonic()
        try:
            self.schedule.expire(IDLE_AFTER)
        except Exception:  # a send never fails for housekeeping
            log.exception("could not remove idle send schedules")

    def check(self, api_key, max_wait):
        """Raise the Failure(429) `acquire` would raise now, taking nothing: a cheap look that
        lets the excess of a campaign be refused before the send writes anything."""
        if not self.interval:
            return
        if self._waiting >= self.max_waiting:
            max_wait = 0.0
        wait = self.schedule.peek(api_key)
        self._learn(api_key, wait)
        if max_wait < wait < CLOCK_STEP:
            _refuse(wait)

    def known_wait(self, api_key, max_wait):
        """The wait `check` would refuse now, if this process already knows it is over
        `max_wait` without asking the schedule; else None. No I/O: the worker's event loop
        asks it (connector/server/early.py)."""
        full_until = self._full_until.get(api_key)
        if not self.interval or full_until is None:
            return None
        if self._waiting >= self.max_waiting:
            max_wait = 0.0
        wait = full_until - time.monotonic()
        return wait if max_wait < wait < CLOCK_STEP else None

    def _learn(self, api_key, wait):
        """The schedule of `api_key` has no free slot for `wait` s from now."""
        if not 0 < wait < CLOCK_STEP:
            return
        until = time.monotonic() + wait
        if until > self._full_until.get(api_key, 0.0):
            if len(self._full_until) > MAX_KEYS_KNOWN:
                self._full_until.clear()
            self._full_until[api_key] = until

    def _sleep(self, seconds):
        with self._lock:
            self._waiting += 1
        try:
            time.sleep(seconds)
        finally:
            with self._lock:
                self._waiting -= 1
