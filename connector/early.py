"""The excess of a campaign refused in the worker's event loop, before a thread or Flask.

MoEngage pushes a campaign at its throttle (1,000 sends/s by default); Vonage takes 30/s per
API key. Through a thread and Flask each 429 cost about 2 ms of CPU under load and waited in
the thread pool's queue behind the sends (issue 12: p90 over 500 ms). Here the worker
(connector/worker.py) answers it from the bytes it has read, with no thread handoff, when this
process already knows the key's schedule is full (`RateLimiter.known_wait`, no I/O).

Only a send the route would certainly answer 429 is answered here, with the route's answer,
log line and trail row; anything else (another route, a header or body the route would
refuse, a key and secret this process has not seen Vonage accept, a schedule not known full,
a send remembered for a replay) goes on to the route,
which decides as it always did. The replay check is one read of the send's key: SQLite only,
as a PostgreSQL query could hold the event loop for as long as the pool waits.
"""

import logging
import time

from . import credentials, framing, observe, payload, ratelimit, sending
from .errors import Failure
from .store import journal

log = logging.getLogger(__name__)
SEND_PATHS = ("/", "/webhooks/message-dispatcher")
# A send the loop lets through waits in the thread pool's queue before the route asks for its
# slot, and is refused then if the wait has shrunk its time below the schedule's depth: with a
# campaign over the limit that wait is hundreds of ms. So the loop refuses a send whose slot is
# known to be over (the route's most) - QUEUE_MARGIN away: at VONAGE_TIMEOUT=4, 2.5 s.
QUEUE_MARGIN = 0.5
LOG_EVERY = 1.0  # seconds between log lines of early refusals


def answerer(app):
    """An `Answerer` for this app's worker, or None when nothing can be refused early."""
    ctx = app.extensions.get("connector")
    if ctx is None or not ctx.limiter.interval or ctx.settings.database_url:
        return None
    return Answerer(ctx)


class Answerer:
    """`answerer(raw)`: the whole HTTP answer to the request in `raw`, or None to leave it to
    the route. Its log lines are summed up: the route's line for the first refusal in a
    second, then one line for the rest (a campaign at MoEngage's 1,000/s over a 30/s limit
    would otherwise write ~970 lines a second, a fifth of a refusal's CPU). Each refusal
    still has its trail row, for `flask trace` and `flask report`."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.held = 0  # refusals not logged yet
        self.logged_at = -LOG_EVERY

    def __call__(self, raw):
        request = framing.simple_request(raw)
        if request is None or request.method != "POST":
            return None
        if request.path.partition("?")[0] not in SEND_PATHS:
            return None
        started = time.monotonic()
        refused = refusal(self.ctx, request.fields, request.body, started)
        if refused is None:
            return None
        req, failure = refused
        if started - self.logged_at >= LOG_EVERY and not self.held:
            sending.log_failure(req, failure)
            self.logged_at = started
        else:
            self.held += 1
            self.tick()
        return framing.answer(
            failure.status, failure.answer(), [("Retry-After", str(failure.retry_after))]
        )

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


def refusal(ctx, fields, body, started):
    """(the send, the route's Failure(429) for it) if that is certain without asking the
    schedule (see sending.send, whose checks these are, in its order); else None. The
    refusal's trail row is queued for the next transaction of any thread."""
    settings = ctx.settings
    try:
        api_key, api_secret = sending.parse_credentials(_one(fields, b"authorization"))
        if settings.vonage_api_keys and api_key not in settings.vonage_api_keys:
            return None
        max_wait = sending.max_wait_for_slot(settings, started) - QUEUE_MARGIN
        wait = ctx.limiter.known_wait(api_key, max(max_wait, 0.0))
        if wait is None:
            return None
        mimetype = (_one(fields, b"content-type") or "").partition(";")[0].strip().lower()
        req = sending.parse_send(
            payload.load_object(body, mimetype), settings.vonage_from, settings.default_country
        )
    except Failure:
        return None  # the route answers it (401, 400...)
    pair = credentials.pair_hash(api_key, api_secret)
    if not ctx.accepted_pairs.known_here(pair, time.time()):
        return None  # only a pair Vonage accepted has a slot to wait for; the route answers
    key, _ = sending.idempotency_key(pair, req, settings.send_dedupe_seconds)
    try:
        if req.client_ref and ctx.legacy_refs(ctx.store):
            return None  # it may be a send remembered under the old key: the route replays it
        if key and ctx.store.send_outcome(key) is not None:
            return None  # remembered or in flight: the route replays or joins it
    except Exception:  # noqa: BLE001 - the store's trouble is the route's to answer (503)
        return None
    failure = ratelimit.refusal(wait)
    observe.sent(ctx, req, failure.status, failure.answer(), started, api_key=api_key)
    journal.park()  # no transaction follows in the event loop: the next one of any thread
    return req, failure


def _one(fields, name):
    values = fields.get(name)
    return values[0].decode("latin-1") if values and len(values) == 1 else None
