"""Fair accept on the one shared listening socket (connector/server/worker.py).

Every worker wakes when a connection arrives on the shared socket, and whichever wakes first
takes it: one worker took most of a burst of new connections, and a kept-alive connection
stays where it was accepted (bench/RESULTS.md). So each worker publishes how many connections
it holds in a table every worker maps (made at import, before gunicorn forks: gunicorn.conf.py
imports the worker), and takes a new connection only while it holds at most FAIR_MARGIN more
than the least loaded live worker, which will take it instead.
"""

import mmap
import multiprocessing
import os
import struct
import time

SLOTS, FAIR_MARGIN, STALE_SECONDS = 64, 2, 2.5
_SLOT = struct.Struct("iid")  # pid (0: free), connections, when (monotonic) last published
_TABLE = mmap.mmap(-1, SLOTS * _SLOT.size)  # anonymous, MAP_SHARED: one table for all workers
_CLAIM = multiprocessing.Lock()  # two workers booting at once never take the same slot


class Share:
    """This worker's row of the table."""

    def __init__(self, capacity: int):
        self.capacity = capacity  # a worker holding this many takes no more (worker_connections)
        self.slot = self._claim()

    def _claim(self) -> int:
        """The first slot free or not published for STALE_SECONDS (its worker died)."""
        with _CLAIM:
            now = time.monotonic()
            for slot in range(SLOTS):
                pid, _, when = _SLOT.unpack_from(_TABLE, slot * _SLOT.size)
                if not pid or now - when > STALE_SECONDS:
                    _SLOT.pack_into(_TABLE, slot * _SLOT.size, os.getpid(), 0, now)
                    return slot
        return -1  # more than SLOTS workers: this one accepts without comparing

    def publish(self, held: int) -> None:
        if self.slot >= 0:
            _SLOT.pack_into(_TABLE, self.slot * _SLOT.size, os.getpid(), held, time.monotonic())

    def leave(self) -> None:
        """Stopping: no longer a worker the others compare themselves with."""
        if self.slot >= 0:
            _SLOT.pack_into(_TABLE, self.slot * _SLOT.size, 0, 0, 0.0)

    def over(self, held: int) -> bool:
        """True when a live worker holds more than FAIR_MARGIN fewer connections (and has
        room): let it take the next one."""
        if held >= self.capacity:
            return True
        now, least = time.monotonic(), None
        for slot in range(SLOTS):
            pid, conns, when = _SLOT.unpack_from(_TABLE, slot * _SLOT.size)
            if slot == self.slot or not pid or now - when > STALE_SECONDS:
                continue
            if conns < self.capacity and (least is None or conns < least):
                least = conns
        return least is not None and held > least + FAIR_MARGIN
