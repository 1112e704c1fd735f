"""The clock leases, the identical-send window, the stale-send limit and the shared schedule
are decided on. With PostgreSQL it is the database server's, shared by every instance, as the
rate schedule's already is (ratelimit.py): an instance whose own clock is 15 s ahead would
otherwise take over a lease another instance still holds (a status forwarded twice) and find
an identical send's window over (a second SMS). SQLite's workers share one machine's clock.

The database's time is not asked per request: its offset from this machine's clock is measured
as NTP does (the server read its clock between the moments the query left and its answer
came back) every REFRESH seconds, and added to this machine's time.
"""

import logging
import threading
import time

from connector.utc import iso

log = logging.getLogger(__name__)
REFRESH = 30.0  # seconds between measurements of the offset (clocks drift by ppm)
RETRY = 5.0  # after a failed measurement (the database down): the last offset meanwhile
MAX_ROUND_TRIP = 0.5  # a slower answer measures the offset too loosely to be kept
WARN_SECONDS = 5.0  # /health and doctor warn when this instance is further off than this


class Clock:
    """`now()`: the shared clock's time. `offset`: the database's clock minus this machine's."""

    def __init__(self, store=None):
        self._store = store  # a function giving the store; None: this machine's clock decides
        self.offset = 0.0
        self.measured = False
        self._next = 0.0
        self._measuring = threading.Lock()

    def now(self) -> float:
        if self._store is not None and time.monotonic() >= self._next:
            self.measure()
        return time.time() + self.offset

    def measure(self) -> None:
        """Measure the offset now, unless another thread is doing so (it then keeps the last)."""
        if not self._measuring.acquire(blocking=False):
            return
        try:
            sent = time.time()
            server = self._store().database_time()
            received = time.time()
            if received - sent <= MAX_ROUND_TRIP:
                self.offset, self.measured = server - (sent + received) / 2, True
            self._next = time.monotonic() + REFRESH
        except Exception:  # noqa: BLE001 - the request's own query reports the database
            log.warning("could not read the database's clock; its last offset is used")
            self._next = time.monotonic() + RETRY
        finally:
            self._measuring.release()


def database_clock(ctx, rows, now):
    """Warning: this instance's clock is off the database's by more than WARN_SECONDS."""
    clock = ctx.clock
    clock.now()  # measures, when due
    if not clock.measured or abs(clock.offset) <= WARN_SECONDS:
        return []
    way = "ahead of" if clock.offset < 0 else "behind"
    return [
        {
            "code": "clock",
            "message": (
                f"This instance's clock is {abs(clock.offset):.1f} s {way} the database "
                "server's. Leases, the identical-send window and the shared schedule are "
                "decided on the database's clock, so no send or status is doubled, but this "
                "machine's times in logs and Vonage's token checks are off by as much."
            ),
            "fix": "Synchronise this machine's clock (NTP), and the database server's.",
            "since": iso(now),
            "count": 1,
        }
    ]


def webhook_clock(ctx, rows, now):
    """Warning: Vonage signed webhooks further ahead of this clock than the signatures allow."""
    row = rows.get("clock:webhook")
    if not row:
        return []
    return [
        {
            "code": "clock",
            "message": (
                f"{row['count']} Vonage webhooks were signed ahead of this machine's clock (the "
                f"last by {row['detail']['ahead']} s; their `iat` is in the future): this clock is "
                "behind. They were accepted, since their signature and payload_hash are right."
            ),
            "fix": "Synchronise this machine's clock (NTP).",
            "since": iso(row["since"]),
            "count": row["count"],
        }
    ]
