"""What the send and webhook paths tell trace, doctor and report. The code that knows a step
happened calls the hook here: it queues the step's trail row (written by the thread's next
transaction, connector/store/journal.py) and counts the warnings' evidence.
"""

import time

from connector import countries
from connector.diagnostics import trail
from connector.diagnostics.probing import PROBING, looks_like_vonage, team_key
from connector.errors import Failure
from connector.logsafe import escape

REFUSED = ("rejected", "undeliverable", "failed")


# -- hooks ----------------------------------------------------------------------------------
def sent(ctx, req, status, answer, started, replay=False, api_key=None):
    """sending.py: the send's answer is about to be recorded (or was replayed). Vonage refusing
    a key no team would hold is a caller guessing credentials (probing), not warning 2."""
    # The key only of a send Vonage took: then it is surely a key, never a secret typed in its place.
    vonage = trail.sent(req, status, answer, started, replay, api_key if status == 200 else None)
    if not vonage or vonage["status"] not in (401, 402, 403):
        return
    if vonage["status"] == 402 or team_key(ctx.settings, api_key):
        ctx.evidence.seen(2, f"vonage:{vonage['status']}", reason=vonage["error"])
    else:
        ctx.evidence.seen(PROBING, "probe:vonage")


def refused(ctx, req, failure, pair, started):
    """sending.py: a send refused before anything reached Vonage (credentials.admit): counted
    for `doctor`; its trail row is queued only if pair_checks allows one now (a flood of made-up
    key and secret pairs must not grow the database). Returns whether it was."""
    ctx.evidence.seen(10, "refused_pairs", status=failure.status)
    if not ctx.pair_checks.trail_due(pair):
        return False
    trail.sent(req, failure.status, failure.answer(), started)
    return True


def status(ctx, body, outcome):
    """webhooks.py: a verified status webhook and what became of it (new, pending, duplicate,
    superseded, ignored, held, foreign)."""
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
    sms = body.get("sms") if isinstance(body.get("sms"), dict) else {}
    code = str(error.get("title") or "").strip()[:10] or None
    to = str(body.get("to") or "")[:20] or None
    trail.note(
        "status",
        body["message_uuid"],
        None,
        to,
        vonage_status=body["status"],
        timestamp=body.get("timestamp"),
        code=code,
        reason=str(error.get("detail"))[:200] if error.get("detail") else None,
        price=usage.get("price"),
        currency=usage.get("currency"),
        parts=sms.get("count_total"),
        outcome=outcome,
    )
    if body["status"] in REFUSED and code and to:
        ctx.evidence.seen(7, f"carrier:{countries.key(to)}:{code}")


def inbound(ctx, body, number, word, subscription, event_ts, first):
    """webhooks.py: a verified reply, and the opt-out/opt-in it decided."""
    trail.note(
        "inbound",
        body["message_uuid"],
        None,
        number,
        keyword=word if subscription else None,
        subscription=subscription,
        timestamp=body.get("timestamp"),
        vonage_ts=event_ts,
        redelivery=None if first else True,
    )
    unknown = first and subscription and ctx.settings.data_api_enabled
    if unknown and ctx.store.customer_for(number) is None:
        ctx.evidence.seen(6, "no_customer", subscription=subscription)


def foreign(ctx, message_uuid):
    """webhooks.py: a status of a message this connector has no send of, dropped."""
    ctx.evidence.seen(10, "foreign", message_uuid=escape(message_uuid[:100]))


def untranslated(ctx, path, form):
    """webhooks.py: a signed webhook of a form the connector does not forward."""
    ctx.evidence.seen(9, f"untranslated:{path.rsplit('/', 1)[-1]}", form=escape(form[:100]))


def rejected(ctx, reason, raw=None):
    """webhooks.py: a webhook refused by signatures.verify. Counted against the signature
    settings only when its body looks like Vonage's (a JSON object with a message_uuid);
    anything else is probing."""
    from connector.diagnostics.doctor import signature_check

    if raw is not None and not looks_like_vonage(raw):
        ctx.evidence.seen(PROBING, "probe:signature")
        return
    ctx.evidence.seen(3, f"signature:{signature_check(reason)}", reason=reason[:200])


def clock_behind(ctx, seconds):
    """webhooks.py: a webhook signed `seconds` ahead of this machine's clock, accepted."""
    ctx.evidence.seen(10, "clock:webhook", ahead=round(seconds))


def vonage_call(call):
    """`call()` (the Vonage request of a send), its answers and time kept for the send's row."""
    trail.vonage_begin()
    try:
        message_uuid = call(trail.vonage_answered)
    except Failure as exc:
        trail.vonage_end(exc.reason)
        raise
    trail.vonage_end()
    return message_uuid


def forwarded(ctx, event, started, status=None, error=None, shed=False):
    """outbox.py: one attempt to give `event` to MoEngage (tracking URL or Data API), queued
    before the transaction that marks the event sent or failed, which writes it. `shed`: not
    tried, as MoEngage is not answering (moengage_gate.py)."""
    ms = round((time.monotonic() - started) * 1000, 1)
    outcome = {"error": error} if error is not None else {"http": status}
    data_api = event.target == "data_api"
    if shed:
        ctx.evidence.seen(9, "moengage_unanswered", target=event.target, last=error[:200])
    elif error is not None:
        ctx.evidence.seen(
            6 if data_api else 5, "data_api" if data_api else "moengage", last=error[:200]
        )
    elif data_api:
        ctx.evidence.seen(6, "data_api_ok")
    if data_api:
        payload = event.payload
        trail.note(
            "sync",
            event.message_uuid,
            None,
            payload.get("number"),
            subscription=payload.get("subscription"),
            customer_id=payload.get("customer_id"),
            attempt=event.attempts + 1,
            ms=ms,
            **outcome,
        )
        return
    what = event.dedupe_key.split(":")[0]
    if what == "status":
        what = event.payload.get("status")
    trail.note(
        "forward",
        event.message_uuid,
        None,
        None,
        event=what,
        attempt=event.attempts + 1,
        ms=ms,
        **outcome,
    )
