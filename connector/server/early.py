"""The excess of a campaign refused in the worker's event loop, before a thread or Flask.

MoEngage pushes a campaign at its throttle (1,000 sends/s by default); Vonage takes 30/s per
API key. Through a thread and Flask each 429 waited in the thread pool's queue behind the
sends (issue 12). Here the worker (connector/server/worker.py) asks, for a whole send request, the
route's own decision (`sending.decide`, early): it refuses only what the route would surely
refuse, with the route's answer and trail row; anything else goes on to the route.

What runs here is bounded: nothing is asked unless this process already knows the key's
schedule is full (`RateLimiter.known_wait`, memory only); then one JSON body of at most
MAX_EARLY_BODY is parsed and one SQLite row read by its key (PostgreSQL is never asked here: a query
could hold the loop as long as the pool waits). A refusal the decision raises (401, 400, the
store's 503) is the route's to answer.
"""

import logging
import sqlite3
import time

from connector import bodies as payload
from connector.errors import Failure
from connector.relay import send_request, sending
from connector.store import journal

log = logging.getLogger(__name__)
SEND_PATHS = (b"/", b"/webhooks/message-dispatcher")
LOG_EVERY = 1.0  # seconds between log lines of early refusals
# A send's body is a few KiB (`text` is at most 3,200 characters); a larger one is the route's,
# so the loop never parses more than this.
MAX_EARLY_BODY = 64 * 1024


def answerer(app):
    """An `Answerer` for this app's worker, or None when nothing can be refused early."""
    ctx = app.extensions.get("connector")
    if ctx is None or not ctx.limiter.interval or ctx.settings.database_url:
        return None
    return Answerer(ctx)


class Answerer:
    """`answerer(request, body)`: the route's answer (a `sending.Result`) to a whole request
    (an h11.Request and its body), or None to leave it to the route. Its log lines are summed up: the route's line for the first
    refusal in a second, then one line for the rest (a campaign at MoEngage's 1,000/s over a
    30/s limit would otherwise write ~970 lines a second). Each refusal still has its trail
    row, for `flask trace` and `flask report`."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.held = 0  # refusals not logged yet
        self.logged_at = -LOG_EVERY

    def __call__(self, request, body):
        if request.method != b"POST" or request.target.partition(b"?")[0] not in SEND_PATHS:
            return None
        if len(body) > MAX_EARLY_BODY:
            return None
        started = time.monotonic()
        refused = self.refusal(_fields(request.headers), body, started)
        if refused is None:
            return None
        req, result = refused
        if started - self.logged_at >= LOG_EVERY and not self.held:
            sending.log_failure(req, Failure(result.status, result.answer["error"]))
            self.logged_at = started
        else:
            self.held += 1
            self.tick()
        return result

    def refusal(self, fields, body, started):
        """(the send, the route's 429 Result) when `sending.decide` refuses it early; else None.
        Its trail row is parked for the next transaction of any thread."""
        ctx = self.ctx
        try:
            api_key, api_secret = send_request.parse_credentials(fields.get(b"authorization"))
            if ctx.limiter.known_wait(api_key, 0.0) is None:
                return None  # the schedule is not known full: nothing to decide here
            mimetype = (fields.get(b"content-type") or "").partition(";")[0].strip().lower()
            req = send_request.parse_send(
                payload.load_object(body, mimetype),
                ctx.settings.vonage_from,
                ctx.settings.default_country,
            )
            decision = sending.decide(ctx, req, api_key, api_secret, started, early=True)
        except (Failure, sqlite3.Error):
            return None  # the route answers it (401, 400, the store's 503)
        if decision is None:
            return None
        journal.park()  # no transaction follows in the event loop: the next one of any thread
        return req, decision.result

    def tick(self, force=False):
        """Log the refusals held back, once LOG_EVERY has passed (the worker calls it at
        every turn of its loop, and with `force` as it exits, so the last ones are told)."""
        now = time.monotonic()
        if self.held and (force or now - self.logged_at >= LOG_EVERY):
            log.warning(
                "%d more sends refused early: 429 the send rate for this Vonage API key "
                "(VONAGE_MAX_RPS) is used up (the last %.1f s)",
                self.held,
                now - self.logged_at,
            )
            self.held, self.logged_at = 0, now


def _fields(headers):
    """A field's value when it occurs once (None when twice: the route refuses that)."""
    found, twice = {}, set()
    for name, value in headers:
        if name in found:
            twice.add(name)
        found[name] = value.decode("latin-1")
    return {name: value for name, value in found.items() if name not in twice}
