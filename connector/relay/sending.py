"""The send: MoEngage's request in, one Vonage call at most, MoEngage's answer out.

Plain functions, no Flask: parse and check the request, claim its idempotency key, send,
record the answer so a retry or an identical send gets it without a second SMS.
"""

import logging
import time
from collections import namedtuple
from typing import Any, NamedTuple

from connector import phone
from connector.clients.vonage import VonageError, build_message
from connector.diagnostics import observe
from connector.errors import Failure
from connector.relay import credentials, ratelimit
from connector.relay.pair_checks import NotChecked
from connector.relay.send_records import Record
from connector.relay.send_request import MAX_CLIENT_REF, idempotency_key
from connector.store import StoreUnavailable

log = logging.getLogger(__name__)
POLL_SECONDS = 0.02
STALE_MARGIN = 5.0  # a send pending this long past VONAGE_TIMEOUT died with its worker
# Less time than this left for Vonage: the send is not tried (503, nothing sent). A call the
# deadline cuts after its request left may have sent an SMS whose message_uuid the connector
# never learns (a 504 for good), so a call with next to no time is not worth making.
MIN_VONAGE_SECONDS = 0.25
# A send the worker's loop lets through waits in the thread pool's queue before the route asks
# for its slot, and is refused then if that wait has shrunk its time below the schedule's
# depth; so the loop refuses a send whose slot is known to be over its most wait less this.
QUEUE_MARGIN = 0.5


Result = namedtuple("Result", "status answer headers events")  # events: outbox ids to push


def success(message_uuid):
    return {"trackingId": message_uuid, "status": "sent"}


def send(services, req, api_key, api_secret):
    """Answer one MoEngage send. Never sends twice for a retried or identical request; the
    whole answer fits in VONAGE_TIMEOUT. `events` are opt-out syncs the send made due."""
    started = time.monotonic()
    decision = decide(services, req, api_key, api_secret, started)
    try:
        if decision.result is not None:
            return decision.result
        return _send(services, req, (api_key, api_secret, decision.pair), decision, started)
    finally:
        if decision.ticket is not None:
            decision.ticket.release()


class Decision(NamedTuple):
    """`decide`'s verdict: `result`, an answer to give now; else send, holding `claim` (the
    idempotency key's, if any) and `ticket` (credentials.admit's, released once sent)."""

    result: Result | None
    pair: str
    key: str | None
    window: float | None
    claim: Any
    ticket: Any


def decide(services, req, api_key, api_secret, started, early=False):
    """The send decision, the one place it is made: the key allowed; a send remembered before
    keys included the secret is replayed; a caller admitted (credentials.admit: a pair refused
    or unconfirmable is answered here, before any write); a send nothing is known of refused
    (429) when the key's rate is used up, before any write; an answer kept while the database
    was away replayed; the idempotency key claimed, which replays a remembered answer or joins
    an identical send in flight. The opt-out check comes with the send: telling it needs Vonage
    to have accepted the pair.

    `early`: asked by the worker's event loop (connector/server/early.py), which may only refuse: for
    a pair this process has seen Vonage accept, the rate is judged from what it already knows
    (`known_wait`, no I/O, no lock), nothing is written, and None means the route must decide
    (it asks this again)."""
    settings, store = services.settings, services.store
    credentials.check_allowed(settings, api_key)
    pair = credentials.pair_hash(api_key, api_secret)
    key, window = idempotency_key(pair, req, settings.send_dedupe_seconds)
    now = services.clock.now()  # the database's: instances agree on windows and staleness
    if req.client_ref and services.legacy_refs(store):  # sends from before keys held secrets
        if early:
            return None  # replaying one asks Vonage to confirm the pair: the route's to do
        legacy = credentials.legacy_replay(services, api_key, api_secret, pair, req.client_ref, now)
        if legacy:
            return Decision(_answer(*legacy), pair, key, window, None, None)
    if early:
        if not services.accepted_pairs.known_here(pair, time.time()):
            return None  # only a pair Vonage accepted has a slot to wait for
        ticket = None
    else:
        try:  # before any write: a caller without credentials leaves nothing behind
            ticket = credentials.admit(services, api_key, api_secret, pair, req.to, started)
        except (NotChecked, credentials.Unconfirmed, VonageError) as failure:
            return Decision(
                _refused(services, req, failure, pair, started), pair, key, window, None, None
            )
    known = early or ticket.known  # a pair not known good takes no slot (credentials.py)
    if services.limiter.interval and known and not (key and store.send_outcome(key) is not None):
        # Under a campaign over VONAGE_MAX_RPS most sends are refused: a send nothing is known
        # of is refused before any write, so a 429 need not wait for a commit. The slot itself
        # is still taken just before the call to Vonage, so no write delays a send past it.
        refusal = _rate_refusal(services, api_key, started, early)
        if refusal is not None:
            if not early:  # the loop sums its refusals up in one line a second
                log_failure(req, refusal)
            observe.sent(services, req, refusal.status, refusal.answer(), started, api_key=api_key)
            answer = _answer(refusal.status, refusal.answer(), refusal.retry_after)
            return Decision(answer, pair, key, window, None, ticket)
    if early:
        return None
    kept = key and services.late_records.answer(key)
    if kept and kept.remember and (window is None or now - kept.finished_at < window):
        log.info("send to=%s answered from an earlier one not recorded yet", phone.mask(req.to))
        observe.sent(services, req, kept.status, kept.answer, started, replay=True, api_key=api_key)
        return Decision(_answer(kept.status, kept.answer), pair, key, window, None, ticket)
    claim = None
    if key:
        claim = store.claim_send(
            key,
            now,
            window,
            settings.vonage_timeout + STALE_MARGIN,
            req.to,
            req.campaign_id,
            req.customer_id,
        )
        if claim.kind == "replay":
            log.info(
                "send to=%s answered from an identical earlier send (%s)",
                phone.mask(req.to),
                claim.status,
            )
            observe.sent(
                services, req, claim.status, claim.answer, started, replay=True, api_key=api_key
            )
            return Decision(_answer(claim.status, claim.answer), pair, key, window, claim, ticket)
        if claim.kind == "wait":
            joined = _join(services, key, started + settings.vonage_timeout + 0.25, req)
            return Decision(joined, pair, key, window, claim, ticket)
    return Decision(None, pair, key, window, claim, ticket)


def _refused(services, req, failure, pair, started):
    """A send `credentials.admit` refused (any other Failure, a database one, goes up to the
    error handler as before). One refused before anything reached Vonage is
    counted, and logged and traced at most once a minute per pair (pair_checks.py)."""
    if not isinstance(failure, NotChecked):
        log_failure(req, failure)
        observe.sent(services, req, failure.status, failure.answer(), started)
    elif observe.refused(services, req, failure, pair, started):
        log_failure(req, failure)
    return _answer(failure.status, failure.answer(), failure.retry_after)


def _send(services, req, caller, decision, started):
    """Send what `decide` let through: `caller` is (api_key, api_secret, pair)."""
    settings, store = services.settings, services.store
    api_key, _, pair = caller
    key, claim, ticket = decision.key, decision.claim, decision.ticket
    accepted = False  # did Vonage accept this caller's key and secret?
    try:
        message_uuid = _send_once(services, req, caller, ticket, started)
        status, answer, remember, retry_after = 200, success(message_uuid), True, None
        accepted = True
    except Failure as failure:
        message_uuid = None
        accepted = isinstance(failure, OptedOut)  # told only once the pair was confirmed
        status, answer = failure.status, failure.answer()
        remember, retry_after = failure.remember, failure.retry_after
        log_failure(req, failure)
        if isinstance(failure, VonageError) and failure.status == 401:
            credentials.refused(services, pair, failure)  # Vonage refused the pair
    except Exception:
        # Our own fault (the database, say), before or without a Vonage answer: release the
        # key so MoEngage's retry tries again instead of waiting out a stale claim.
        if key:
            store.finish_send(
                key,
                claim.token,
                500,
                Failure(500, "internal error").answer(),
                services.clock.now(),
                remember=False,
            )
        raise
    observe.sent(services, req, status, answer, started, api_key=api_key)
    if key:
        # Retried for the time left, then kept for the background: never a 503 once Vonage
        # has answered (MoEngage's retry would send again, or wait on a claim never ended).
        done = services.clock.now()
        record = Record(key, claim.token, status, answer, done, remember, message_uuid, done)
        services.late_records.record(store, record, started + settings.vonage_timeout)
    elif message_uuid:  # its status webhooks must find it (webhooks.py forwards only those)
        store.record_sent(
            message_uuid, req.to, req.campaign_id, req.customer_id, services.clock.now()
        )
    events = _accepted(services, req, pair) if accepted else []
    return _answer(status, answer, retry_after, events)


def _rate_refusal(services, api_key, started, early):
    """The Failure(429) of a send over the key's rate, or None. Early, a send waits in the
    thread pool's queue before the route would ask: it is refused only if its slot is known
    to be over its most wait less QUEUE_MARGIN away."""
    max_wait = max_wait_for_slot(services.settings, started)
    if not early:
        try:
            services.limiter.check(api_key, max_wait=max_wait)
        except Failure as failure:
            return failure
        return None
    wait = services.limiter.known_wait(api_key, max(max_wait - QUEUE_MARGIN, 0.0))
    return None if wait is None else ratelimit.refusal(wait)


class OptedOut(Failure):
    """The recipient opted out; told only to a key and secret Vonage accepted."""


def _accepted(services, req, pair):
    """Vonage accepted the caller's key and secret: remember the pair, and only now link the
    number to the send's customer_id (queueing a STOP that waited for one), so a caller
    without the secret cannot re-point a number to another MoEngage user."""
    now = time.time()
    services.accepted_pairs.accepted(pair, now)
    if not req.customer_id:
        return []
    try:
        return services.store.remember_contact(
            req.to, req.customer_id, now, services.settings.data_api_enabled
        )
    except StoreUnavailable as exc:  # the SMS is out: its answer stands, the link waits
        log.warning(
            "send to=%s: customer_id not linked to the number (the next send naming it "
            "links it): %s",
            phone.mask(req.to),
            exc.reason,
        )
        return []


def max_wait_for_slot(settings, started):
    """How long a send may wait for its rate slot: until 1 s before VONAGE_TIMEOUT."""
    return settings.vonage_timeout - (time.monotonic() - started) - 1.0


def log_failure(req, failure):
    log.warning(
        "send to=%s campaign=%s client_ref=%s failed: %s %s",
        phone.mask(req.to),
        req.campaign_id,
        req.client_ref,
        failure.status,
        failure.reason,
    )


def _send_once(services, req, caller, ticket, started):
    settings = services.settings
    api_key, api_secret, pair = caller
    if services.store.is_opted_out(req.to):
        remaining = settings.vonage_timeout - (time.monotonic() - started)
        credentials.confirm(services, api_key, api_secret, pair, time.time(), remaining)
        raise OptedOut(
            422,
            "the recipient opted out (replied STOP); not sent. A START reply "
            "or `flask --app app optin` opts them back in",
        )
    # Built before the wait for the slot, so that once the slot comes only the call is left.
    message = build_message(
        req.to,
        req.sender,
        req.text,
        client_ref=req.client_ref or (req.campaign_id or "")[:MAX_CLIENT_REF],
        content_id=req.template_id,
        entity_id=req.entity_id,
        webhook_url=settings.status_webhook_url,
    )
    if ticket.known:  # a pair not known good takes no slot: it is a probe (credentials.admit)
        services.limiter.acquire(api_key, max_wait=max_wait_for_slot(settings, started))
    remaining = settings.vonage_timeout - (time.monotonic() - started)
    if remaining < MIN_VONAGE_SECONDS:
        raise Failure(
            503,
            f"VONAGE_TIMEOUT={settings.vonage_timeout:g} s ran out before the send could go to "
            f"Vonage (the connector's own steps took {time.monotonic() - started:.2f} s): "
            "not sent; retry later",
            retry_after=1,
        )
    message_uuid = observe.vonage_call(
        lambda on_answer: services.vonage.send(api_key, api_secret, message, remaining, on_answer)
    )
    if ticket.probe:
        credentials.probe_accepted(services, api_key, pair)
    # One line a send, once its outcome is known: under load each line costs a lock and a
    # write, and two a send were 6-8 % of its CPU (bench/RESULTS.md).
    log.info(
        "send to=%s campaign=%s client_ref=%s: vonage accepted message_uuid=%s",
        phone.mask(req.to),
        req.campaign_id,
        req.client_ref,
        message_uuid,
    )
    return message_uuid


def _join(services, key, deadline, req):
    """An identical send is with Vonage now: answer with its outcome instead of sending again
    (from this process's memory if it could not be recorded yet)."""
    log.info("send to=%s waits for an identical send in flight", phone.mask(req.to))
    while time.monotonic() < deadline:
        kept = services.late_records.answer(key)
        if kept is not None:
            return _answer(kept.status, kept.answer)
        outcome = services.store.send_outcome(key)
        if outcome and outcome.state != "pending":
            return _answer(outcome.status, outcome.answer)
        time.sleep(POLL_SECONDS)
    return _answer(
        504,
        Failure(
            504, "an identical send is still waiting for Vonage; this one was not sent again"
        ).answer(),
    )


def _answer(status, answer, retry_after=None, events=()):
    headers = {"Retry-After": str(retry_after or 1)} if status in (429, 503) else {}
    return Result(status, answer, headers, list(events))
