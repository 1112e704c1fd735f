"""A per-API-key send rate shared by every worker process of one instance.

Vonage allows 30 requests/s per API key by default and bounces the excess with 429s; MoEngage
pushes a campaign far faster. Each send takes the next free slot (slots evenly spaced, GCRA),
waits for it, and is refused with 429 + Retry-After when the slot is further off than it may wait.
The schedule lives in a small file per API key, locked with flock, so all gunicorn workers
share it without a server.
"""

import fcntl
import hashlib
import math
import os
import tempfile
import threading
import time

from .errors import Failure

# Slots are spaced so that `rps` of them span 1.05 s, not 1 s: the few ms between a slot and
# the request reaching Vonage vary, and at exact spacing a late send and an early one put
# rps + 1 into one of Vonage's seconds. Measured with bench/: 31 in a second at exact spacing.
MARGIN = 0.05


class RateLimiter:
    def __init__(self, rps, instance_id, max_waiting=16):
        """`max_waiting`: sends of this process that may sleep for a slot at once; beyond it
        a send that would have to wait is refused at once, so a campaign faster than `rps`
        cannot tie up every thread (status webhooks need some too)."""
        self.interval = (1.0 + MARGIN) / rps if rps > 0 else 0.0
        self.max_waiting = max_waiting
        self._waiting = 0
        self._lock = threading.Lock()
        digest = hashlib.sha256(instance_id.encode()).hexdigest()[:16]
        self.directory = os.path.join(tempfile.gettempdir(), f"vonage-sms-connector-{digest}")
        if self.interval:
            os.makedirs(self.directory, exist_ok=True)

    def acquire(self, api_key, max_wait):
        """Block until this send's slot and return it (epoch seconds); raise Failure(429) if
        the slot is more than `max_wait` s off, or any wait when enough sends wait already."""
        if not self.interval:
            return time.time()
        if self._waiting >= self.max_waiting:
            max_wait = 0.0
        slot, wait = self._reserve(api_key, max_wait)
        if wait > 0:
            with self._lock:
                self._waiting += 1
            try:
                time.sleep(wait)
            finally:
                with self._lock:
                    self._waiting -= 1
        return slot

    def check(self, api_key, max_wait):
        """Raise the Failure(429) `acquire` would raise now, taking nothing: a cheap look that
        lets the excess of a campaign be refused before the send writes anything."""
        if not self.interval:
            return
        if self._waiting >= self.max_waiting:
            max_wait = 0.0
        fd = os.open(self._path(api_key), os.O_RDONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                next_free = float(os.pread(fd, 64, 0) or 0)
            except ValueError:
                next_free = 0.0
        finally:
            os.close(fd)
        wait = next_free - time.time()
        if max_wait < wait < 3600:
            raise _refusal(wait)

    def _path(self, api_key):
        name = hashlib.sha256(api_key.encode()).hexdigest()[:24]
        return os.path.join(self.directory, name)

    def _reserve(self, api_key, max_wait):
        """Take the next free slot of `api_key` if it is at most `max_wait` s away."""
        fd = os.open(self._path(api_key), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            now = time.time()
            try:
                next_free = float(os.pread(fd, 64, 0) or 0)
            except ValueError:
                next_free = 0.0
            if next_free > now + 3600:  # clock stepped back: start afresh
                next_free = 0.0
            slot = max(now, next_free)
            wait = slot - now
            if wait > max_wait:
                raise _refusal(wait)
            os.pwrite(fd, repr(slot + self.interval).encode().ljust(64), 0)
        finally:
            os.close(fd)  # also releases the lock
        return slot, wait


def _refusal(wait):
    return Failure(
        429,
        "the send rate for this Vonage API key (VONAGE_MAX_RPS) is used up; retry later",
        retry_after=max(1, math.ceil(wait)),
    )
