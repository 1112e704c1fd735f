"""Checks of key and secret pairs not known good, kept few whatever callers send.

Anyone can post a send with any `Custom key:secret`. Before this, each such send could make
the connector call Vonage (an Account API check of the pair, or the send itself) and write a
trail row, so a flood of made-up pairs made the operator's IP hammer Vonage and grew the
database. Here, per process: one check of a pair at a time (sends of the same pair wait for
its outcome instead of asking again), at most CHECKS_PER_SECOND checks a second for the whole
instance (a schedule file shared by its workers), and a trail row for a send refused before
anything reached Vonage at most once a minute per pair, TRAIL_ROWS_PER_MINUTE in all; every
such refusal is still counted in the evidence, so `doctor` sees the flood.
"""

import math
import os
import threading
import time

from connector.errors import Failure
from connector.relay.ratelimit import FileSchedule

CHECKS_PER_SECOND = 5  # Vonage calls for pairs not known good, per instance
CHECK_WAIT = 1.0  # the longest a send waits for its turn to be checked
TRAIL_EVERY = 60.0  # seconds between trail rows of one pair's refusals before Vonage
TRAIL_ROWS_PER_MINUTE = 60  # such rows per process and minute, whatever the pairs
MAX_PAIRS_NOTED = 10_000  # pairs whose last trail row a process remembers
CHECKS_NAME = "vonage-pair-checks"  # the budget's name among the send schedules (PostgreSQL)


class NotChecked(Failure):
    """A send refused before anything reached Vonage: its pair was refused within ten minutes,
    or the pair could not be checked (no turn left this second, or its check still running)."""


class _OneFile(FileSchedule):
    """A schedule in one named file (`<DATABASE_PATH>-checks`), whatever its name."""

    def __init__(self, path):
        self.directory = os.path.dirname(path)
        self._file = path

    def path(self, name):
        return self._file


def _too_many(wait):
    return NotChecked(
        503,
        "too many unknown Vonage API keys and secrets to check right now "
        f"(at most {CHECKS_PER_SECOND} a second); this send was not made. Retry later",
        retry_after=max(1, math.ceil(wait)),
    )


class PairChecks:
    """One per app: the checks in flight in this process, the instance's budget, the trail's."""

    per_second = CHECKS_PER_SECOND  # as `doctor` names the limit

    def __init__(self, instance_id: str, budget_path: str | None = None):
        """`budget_path`: the file holding the checks' schedule (with SQLite, next to the
        database, so it is shared by the machine's workers and goes with the database's
        folder); None: a file in the machine's temp directory, named after `instance_id`."""
        self.instance_id, self.budget_path = instance_id, budget_path
        self._budget = None  # the schedule, made on the first check
        self._leads: dict[
            str, threading.Event
        ] = {}  # pair -> Event set when this process's check of it ends
        self._lock = threading.Lock()
        self._noted: dict[str, float] = {}  # pair -> monotonic time of its last trail row
        self._minute = (0.0, 0)  # (start, rows written in it)

    def lead(self, pair: str, deadline: float) -> bool:
        """True: this send checks `pair` (call `done` after). False: another send's check of
        it ended meanwhile (look again). Raises NotChecked(503) at `deadline` (monotonic)."""
        with self._lock:
            running = self._leads.get(pair)
            if running is None:
                self._leads[pair] = threading.Event()
                return True
        if running.wait(max(deadline - time.monotonic(), 0.0)):
            return False
        raise NotChecked(
            503,
            "Vonage is still checking this API key and secret for an earlier send; "
            "this one was not sent. Retry shortly",
            retry_after=1,
        )

    def done(self, pair: str) -> None:
        with self._lock:
            running = self._leads.pop(pair, None)
        if running is not None:
            running.set()

    def turn(self, deadline: float) -> None:
        """Wait for this instance's next check slot (CHECKS_PER_SECOND); raise NotChecked(503)
        with Retry-After when it is further off than CHECK_WAIT or the send's `deadline`."""
        max_wait = min(CHECK_WAIT, deadline - time.monotonic() - 0.5)
        slot, wait = self._schedule().reserve(CHECKS_NAME, 1.0 / CHECKS_PER_SECOND, max_wait)
        if slot is None:
            raise _too_many(wait)
        if wait > 0:
            time.sleep(wait)

    def refuse_if_spent(self) -> None:
        """Raise what `turn` would when no check slot is near, taking none: a send that needs
        no check (its recipient has not opted out) answers as one that does, so the answer
        never tells a caller Vonage has not accepted whether the recipient opted out."""
        wait = self._schedule().peek(CHECKS_NAME)
        if wait > CHECK_WAIT:
            raise _too_many(wait)

    def _schedule(self):
        if self._budget is None:  # made on first use: building the app creates no file
            if self.budget_path:
                self._budget = _OneFile(self.budget_path)
            else:
                self._budget = FileSchedule(self.instance_id)
        return self._budget

    def trail_due(self, pair: str) -> bool:
        """Whether a send refused before reaching Vonage gets its trail row: the pair's first in
        TRAIL_EVERY seconds, and within this minute's TRAIL_ROWS_PER_MINUTE."""
        now = time.monotonic()
        with self._lock:
            if now - self._noted.get(pair, -math.inf) < TRAIL_EVERY:
                return False
            start, rows = self._minute
            if now - start >= 60.0:
                start, rows = now, 0
            if rows >= TRAIL_ROWS_PER_MINUTE:
                return False
            self._minute = (start, rows + 1)
            if len(self._noted) >= MAX_PAIRS_NOTED:
                self._noted.clear()
            self._noted[pair] = now
            return True
