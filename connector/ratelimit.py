"""A per-API-key send rate shared by every worker process of one instance.

Vonage allows 30 requests/s per API key by default and bounces the excess with 429s; MoEngage
pushes a campaign far faster. Each send takes the next free slot (slots 1/rps apart, GCRA),
waits for it, and is refused with 429 + Retry-After when the slot is further off than it may wait.
The schedule lives in a small file per API key, locked with flock, so all gunicorn workers
share it without a server.
"""
import fcntl
import hashlib
import math
import os
import tempfile
import time

from .errors import Failure


class RateLimiter:
    def __init__(self, rps, instance_id):
        self.interval = 1.0 / rps if rps > 0 else 0.0
        digest = hashlib.sha256(instance_id.encode()).hexdigest()[:16]
        self.directory = os.path.join(tempfile.gettempdir(), f"vonage-sms-connector-{digest}")
        if self.interval:
            os.makedirs(self.directory, exist_ok=True)

    def acquire(self, api_key, max_wait):
        """Block until this send's slot; raise Failure(429) if that is more than `max_wait` s."""
        if not self.interval:
            return 0.0
        name = hashlib.sha256(api_key.encode()).hexdigest()[:24]
        fd = os.open(os.path.join(self.directory, name), os.O_RDWR | os.O_CREAT, 0o600)
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
                raise Failure(429, "the send rate for this Vonage API key (VONAGE_MAX_RPS) is "
                              "used up; retry later", retry_after=max(1, math.ceil(wait)))
            record = repr(slot + self.interval).encode()
            os.pwrite(fd, record.ljust(64), 0)
        finally:
            os.close(fd)  # also releases the lock
        if wait > 0:
            time.sleep(wait)
        return wait
