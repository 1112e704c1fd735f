"""A hung MoEngage (connections accepted, no answer) must never take the threads sends need.

Per worker process: at most `limit` calls wait on MoEngage for longer than SLOW at once (a
bulkhead: a healthy MoEngage's calls end well before SLOW, so however many are in flight none
is refused; a hung one's pile up past it, and then the rest are), and after
TRIP_AFTER time-outs in a row to one target no call is made to it for COOL_OFF seconds (a
circuit breaker), then one trial call decides. A call refused here fails at once with Shed:
the webhook answers Vonage 503 (Vonage retries) and the event stays pending for the sweep.
Knows no Flask and no store: the client calls it, observe.py reports it.
"""

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
TRIP_AFTER = 3  # time-outs in a row: one slow answer is noise, three is a hung MoEngage
COOL_OFF = 30.0  # seconds without a call once tripped; Vonage's and the sweep's retries wait
SLOW = 1.0  # seconds after which a call counts as waiting on MoEngage


class NotAccepted(Exception):
    """MoEngage did not answer 2xx in time; the event stays pending. `timed_out`: it gave no
    answer within MOENGAGE_TIMEOUT (what the breaker counts), rather than a refusal."""

    def __init__(self, reason: str, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.timed_out = timed_out


class Shed(NotAccepted):
    """Not tried: too many calls already wait on MoEngage, or its circuit is open."""


class _Breaker:
    def __init__(self) -> None:
        self.timeouts = 0
        self.open_until: float | None = None  # monotonic time; None while closed
        self.trial = False  # a call is testing whether MoEngage answers again

    def refusal(self, now: float) -> str | None:
        if self.open_until is None:
            return None
        if now < self.open_until:
            return (
                f"not tried: MoEngage gave no answer to {self.timeouts} calls in a row "
                f"(circuit open, tried again in {self.open_until - now:.0f} s)"
            )
        return (
            "not tried: one call is testing whether MoEngage answers again" if self.trial else None
        )


class Gate:
    """One per worker process (built with the client); thread-safe."""

    def __init__(self, limit: int, trip_after: int = TRIP_AFTER, cool_off: float = COOL_OFF):
        self.limit = limit
        self.trip_after = trip_after
        self.cool_off = cool_off
        self._lock = threading.Lock()
        self._waiting = 0
        self._started: dict[int, float] = {}  # each call in flight: when it started (monotonic)
        self._next_call = 0
        self._breakers: dict[str, _Breaker] = {}
        self._full_logged = float("-inf")

    def call(self, target: str, attempt: Callable[[], T]) -> T:
        """`attempt()` (a call to MoEngage for `target`) if a slot is free and the target's
        circuit is not open; otherwise Shed at once. Its time-outs and answers move the breaker."""
        trial, call = self._enter(target)
        try:
            result = attempt()
        except NotAccepted as exc:
            self._leave(target, trial, call, timed_out=exc.timed_out)
            raise
        except BaseException:
            self._leave(target, trial, call, timed_out=False)
            raise
        self._leave(target, trial, call, timed_out=False)
        return result

    def _enter(self, target: str) -> tuple[bool, int]:
        now = time.monotonic()
        with self._lock:
            breaker = self._breakers.setdefault(target, _Breaker())
            refusal = breaker.refusal(now)
            slow = sum(1 for started in self._started.values() if now - started >= SLOW)
            if refusal is None and slow >= self.limit:
                refusal = (
                    f"not tried: {slow} calls of this worker already wait on MoEngage over "
                    f"{SLOW:g} s"
                )
                if now - self._full_logged > 10:  # a line every 10 s, not one per webhook
                    self._full_logged = now
                    log.warning("MoEngage is slow: %s; webhooks answered 503 meanwhile", refusal)
            if refusal is not None:
                raise Shed(refusal)
            self._waiting += 1
            self._next_call += 1
            self._started[self._next_call] = now
            trial = breaker.open_until is not None
            breaker.trial = breaker.trial or trial
            return trial, self._next_call

    def _leave(self, target: str, trial: bool, call: int, timed_out: bool) -> None:
        with self._lock:
            self._waiting -= 1
            del self._started[call]
            breaker = self._breakers[target]
            if trial:
                breaker.trial = False
            if not timed_out:
                if breaker.open_until is not None:
                    log.info("MoEngage (%s) answers again: circuit closed", target)
                breaker.timeouts, breaker.open_until = 0, None
                return
            breaker.timeouts += 1
            if trial or (breaker.open_until is None and breaker.timeouts >= self.trip_after):
                breaker.open_until = time.monotonic() + self.cool_off
                log.warning(
                    "MoEngage (%s) gave no answer to %d calls in a row: not called for %g s "
                    "(circuit open); webhooks answered 503, events kept pending",
                    target,
                    breaker.timeouts,
                    self.cool_off,
                )

    def circuit_open(self) -> bool:
        """Whether any target's circuit is open now: then nothing waits on MoEngage at all."""
        now = time.monotonic()
        with self._lock:
            return any(
                b.open_until is not None and now < b.open_until for b in self._breakers.values()
            )

    def state(self) -> dict:
        """{target: "closed" | "open" | "testing"} and how many calls wait now, for /health."""
        now = time.monotonic()
        with self._lock:
            circuits = {
                target: "closed"
                if b.open_until is None
                else ("open" if now < b.open_until else "testing")
                for target, b in self._breakers.items()
            }
            return {"waiting": self._waiting, "limit": self.limit, "circuits": circuits}
