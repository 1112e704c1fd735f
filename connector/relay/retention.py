"""Pruning with no cron and no extra process: a PaaS web dyno has neither, so the web workers
do it, after a response is sent (the request that triggers it never waits), at most once per
interval across all workers and instances (the turn is taken in the database), in small
batches that let the sends' own writes in between. `flask --app app prune` does it now.
"""

import logging
import threading
import time
from collections import namedtuple
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from connector.clock import Clock
    from connector.settings import Settings
    from connector.store import Store

log = logging.getLogger(__name__)
DAY = 86400.0
BATCH = 200  # rows per DELETE: a few ms of the write lock
MAX_EVERY = 300.0  # prune at least this often (seconds), so a batch's backlog stays small
LOCAL_CHECK = 30.0  # a worker asks the database whether it is its turn at most this often
MAX_SECONDS = 30.0  # one prune stops after this long; the next turn carries on
PRUNE_TASK = "prune"  # its row in the shared `schedule` table


def every(settings: "Settings") -> float:
    """Seconds between prunes: 5 minutes, or an eighth of a short retention (bench, tests)."""
    return max(1.0, min(MAX_EVERY, settings.retention_days * DAY / 8))


def cutoff(settings: "Settings", now: float) -> float:
    return now - settings.retention_days * DAY


Run = namedtuple("Run", "sends events batches longest_ms steps")


def prune(
    store: "Store",
    settings: "Settings",
    now: float | None = None,
    batch: int = BATCH,
    budget: float = MAX_SECONDS,
) -> Run:
    """Delete everything older than the retention, batch by batch; returns a Run: the rows
    deleted, the batches, and the longest batch (what a write could have waited for it).

    Between batches it sleeps as long as the batch took, so under load the workers' own
    writes get at least half the write lock's time.
    """
    now = time.time() if now is None else now
    edge = cutoff(settings, now)
    sends = events = steps = batches = 0
    longest = 0.0
    stop = time.monotonic() + budget
    while True:
        started = time.monotonic()
        done = store.prune_batch(edge, now, batch)
        traced = store.prune_trail(edge, batch)
        took = time.monotonic() - started
        sends, events, batches = sends + done.sends, events + done.events, batches + 1
        steps += traced
        longest = max(longest, took)
        if max(*done, traced) < batch or time.monotonic() + took > stop:
            return Run(sends, events, batches, round(longest * 1000, 1), steps)
        time.sleep(took)


class _Services(Protocol):
    """What a prune needs of the app's Services (which imports this module: no cycle)."""

    @property
    def store(self) -> "Store": ...
    @property
    def settings(self) -> "Settings": ...
    @property
    def clock(self) -> "Clock": ...


class Pruner:
    """Per app: when this process last asked for a turn, and whether a prune is running."""

    def __init__(self) -> None:
        self.next_check = 0.0
        self.running = threading.Lock()
        self.thread: threading.Thread | None = None

    def due(self, settings: "Settings") -> float | None:
        """The interval when this process should ask for a prune turn now, else None: a
        monotonic clock read per request; the database is asked only every LOCAL_CHECK."""
        if time.monotonic() < self.next_check:
            return None
        interval = every(settings)
        self.next_check = time.monotonic() + min(LOCAL_CHECK, interval)
        return interval

    def start(self, ctx: _Services, interval: float) -> None:
        """A thread of its own, not the request's: gunicorn reads the next request on a
        keep-alive connection only once the request's thread is free again."""
        if self.running.acquire(blocking=False):
            self.thread = threading.Thread(target=self.run, args=(ctx, interval), daemon=True)
            self.thread.start()

    def wait(self, timeout: float = 10.0) -> None:
        """Until the prune started last is over (for tests and a clean shutdown)."""
        if self.thread is not None:
            self.thread.join(timeout)

    def run(self, ctx: _Services, interval: float) -> None:
        """Prune if it is this process's turn. A daemon thread: a worker stopped mid-batch
        rolls the batch back, and the next turn carries on."""
        try:
            if not ctx.store.claim_turn(PRUNE_TASK, ctx.clock.now(), interval):
                return  # another worker or instance has this turn
            done = prune(ctx.store, ctx.settings)
            if done.sends or done.events or done.steps:
                log.info(
                    "pruned %d sends, %d forwarded events and %d trace steps in %d batches,"
                    " longest %.1f ms",
                    done.sends,
                    done.events,
                    done.steps,
                    done.batches,
                    done.longest_ms,
                )
        except Exception:  # never the request's problem: the next turn tries again
            log.exception("prune failed; the next turn tries again")
        finally:
            self.running.release()
