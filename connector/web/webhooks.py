"""Routes: Vonage's signed status and inbound webhooks -> stored, then forwarded to MoEngage.

Each event is committed before it is forwarded, and Vonage gets 200 only once MoEngage has it
(or already had it); otherwise 503, so Vonage redelivers while the event waits in the store.
"""

import functools
import logging
import time

from flask import Blueprint, g, jsonify, request

from connector import bodies as payload
from connector import phone
from connector.clients import signatures
from connector.diagnostics import observe
from connector.errors import Failure
from connector.relay import events as translate
from connector.relay import keywords, outbox
from connector.web.context import services

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
log = logging.getLogger(__name__)
# A status of no send on record is answered 503 this long after it first came: Vonage's answer
# to a send can overtake the commit that records it, and Vonage redelivers after 5, 10, 20, 40 s.
# Still unknown after that, it is another system's message (or one older than RETENTION_DAYS).
FOREIGN_AFTER_SECONDS = 60.0


def signed(view):
    """Verify Vonage's JWT against the raw body before anything else is read."""

    @functools.wraps(view)
    def wrapper():
        raw = payload.read(request)
        try:
            claims = signatures.verify(
                request.headers.get("Authorization"),
                raw,
                services().settings.vonage_signature_secrets,
            )
        except signatures.Rejected as rejected:
            log.warning(
                "webhook %s rejected (%s): %s", request.path, rejected.status, rejected.reason
            )
            observe.rejected(services(), rejected.reason, raw)
            return jsonify({"status": "rejected", "error": rejected.reason}), rejected.status
        ahead = signatures.ahead(claims)
        if ahead:  # accepted: the signature and body are Vonage's, only our clock is off
            log.warning(
                "webhook %s signed %.0f s ahead of this machine's clock", request.path, ahead
            )
            observe.clock_behind(services(), ahead)
        g.signed = True  # Vonage's own: what its Host says counts (observe.py)
        try:
            g.body = payload.load_json(raw)
            return view()
        except translate.Untranslated as untranslated:
            # Signed by Vonage, so a 4xx would drop it for good: acknowledged, logged, counted.
            log.warning(
                "webhook %s acknowledged, not forwarded: %s", request.path, untranslated.form
            )
            observe.untranslated(services(), request.path, untranslated.form)
            return _ack("ignored")
        except Failure as failure:
            if failure.status < 500:
                # Signed by Vonage but unusable: a 4xx, which Vonage does not retry, so a poison
                # event is not redelivered for 24 hours. Logged, since it is dropped.
                log.warning(
                    "webhook %s refused (%s), not retried by Vonage: %s",
                    request.path,
                    failure.status,
                    failure.reason,
                )
            raise

    return wrapper


@bp.post("/status")
@signed
def status():
    ctx = services()
    body = translate.read_status(g.body)
    uuid, vonage_status = body["message_uuid"], body["status"]
    mapped = translate.STATUS_MAP.get(vonage_status)
    if mapped is None:
        log.info("status %s of %s is not forwarded", vonage_status, uuid)
        observe.status(ctx, body, "ignored")
        return _ack("ignored")
    recorded = ctx.store.record_status(
        uuid,
        mapped,
        mapped in translate.FINAL,
        translate.delivery_event(body, mapped),
        ctx.clock.now(),  # the database's: a lease holds as long for every instance
        lease=outbox.lease_seconds(ctx.settings),  # a new one is ours to forward at once
        foreign_after=FOREIGN_AFTER_SECONDS,
    )
    outcome = recorded.outcome
    observe.status(ctx, body, outcome)
    if outcome == "held":
        log.info("status %s of %s waits for its send to be recorded (503)", mapped, uuid)
        return _held()
    if outcome == "foreign":
        log.warning("status %s of %s dropped: not a message this connector sent", mapped, uuid)
        observe.foreign(ctx, uuid)
        return _ack("foreign")
    if outcome in ("duplicate", "superseded"):
        log.info("status %s of %s not forwarded again (%s)", mapped, uuid, outcome)
        return _ack(outcome)
    if recorded.lease is not None:
        return _answer_for([outbox.post(ctx, recorded.lease)])
    return _forward(ctx, [recorded.event_id])


@bp.post("/inbound")
@signed
def inbound():
    ctx = services()
    body = translate.read_inbound(g.body)
    settings = ctx.settings
    word, subscription = keywords.classify(
        body["text"], settings.opt_out_keywords, settings.opt_in_keywords
    )
    number = _number(body["from"])
    event_ts = translate.parse_timestamp(body.get("timestamp")) or time.time()
    recorded = ctx.store.record_inbound(
        body["message_uuid"],
        number,
        subscription,
        event_ts,
        translate.inbound_event(body, word, subscription),
        time.time(),
        settings.data_api_enabled,
    )
    observe.inbound(ctx, body, number, word, subscription, event_ts, recorded.first)
    log.info(
        "inbound verified message_uuid=%s from=%s subscription=%s%s",
        body["message_uuid"],
        phone.mask(number),
        subscription,
        "" if recorded.first else " (redelivery)",
    )
    if not recorded.event_ids:
        return _ack("duplicate")
    return _forward(ctx, recorded.event_ids)


def _number(value):
    """The sender as sends store it (digits only), so a STOP matches later sends to it."""
    try:
        return phone.normalise(value)
    except ValueError:
        return value.strip()


def _forward(ctx, event_ids):
    """200 only once MoEngage has every event; otherwise 503, so Vonage redelivers."""
    # An event another worker is forwarding is waited for, as long as that forward can last.
    return _answer_for(outbox.push(ctx, event_ids, wait=ctx.settings.moengage_timeout + 1).values())


def _answer_for(outcomes):
    if outbox.SHED in outcomes:
        error = (
            "MoEngage is not answering in time, so it was not called; the event is kept and "
            "forwarded on Vonage's retry or by the sweep"
        )
    elif outbox.FAILED in outcomes:
        error = "MoEngage did not accept the event; it is kept and forwarded on Vonage's retry"
    elif outbox.BUSY in outcomes:
        error = (
            "another worker holds this event for MoEngage and has not finished; "
            "Vonage's retry finds it forwarded or forwards it"
        )
    else:
        return _ack("forwarded")
    return jsonify({"status": "pending", "error": error}), 503


def _held():
    error = (
        "no send of this message_uuid is recorded yet (its answer may still be being saved); "
        "redeliver it"
    )
    return jsonify({"status": "pending", "error": error}), 503, {"Retry-After": "5"}


def _ack(outcome):
    return jsonify({"status": outcome}), 200
