"""What the send and webhook paths tell trace, doctor and report: each hook is one line in the
module it watches, and lands here. `init_app` wires the rest without touching those modules:
the store's transactions carry the trail, the clients are wrapped to time their calls, and
request hooks check the host and the MoEngage Authorization header and flush after answers.
"""

import logging
import time
from contextlib import contextmanager
from urllib.parse import urlsplit

from flask import g, request

from . import cli_ops, trail
from .errors import Failure
from .evidence import Evidence
from .logsafe import escape  # warnings are printed by `doctor`: no control characters
from .moengage import NotAccepted

log = logging.getLogger(__name__)
REFUSED = ("rejected", "undeliverable", "failed")
# Schemes named as received when the Authorization header is not `Custom key:secret`; any
# other first word may be a key or secret typed without the scheme, so it is never shown.
KNOWN_SCHEMES = {"custom", "basic", "bearer", "token", "apikey", "digest", "key"}
WATCHED = ("dispatch.", "webhooks.")  # endpoints whose Host must be PUBLIC_URL's


def init_app(app):
    ctx = app.extensions["connector"]
    settings = ctx.settings
    ctx.evidence = Evidence(settings.evidence_flush_seconds, settings.warning_clear_seconds)
    ctx.store_hooks.append(_watch_store)
    ctx.vonage = TracedVonage(ctx.vonage)
    ctx.moengage = TracedMoEngage(ctx.moengage, ctx.evidence)
    expected_host = _host(settings.public_url)
    trail.drop()  # nothing another app (a test's) left queued on this thread goes to this one

    @app.before_request
    def before():
        g.observed = True  # flushed after the answer, not at teardown
        trail.drop()
        watched = expected_host and (request.endpoint or "").startswith(WATCHED)
        if watched and _host(f"//{request.host}") != expected_host:
            ctx.evidence.seen(8, "host", host=request.host[:100], expected=expected_host)

    @app.after_request
    def after(response):
        if response.status_code == 401 and request.endpoint == "dispatch.dispatch":
            _check_authorization(ctx, request.headers.get("Authorization"))
        if trail.pending() or ctx.evidence.due():
            response.call_on_close(lambda: _flush(ctx))
        return response

    @app.teardown_appcontext
    def command_done(exc):
        """A command (`flask push`, `optin`): what it left to write is written as it ends."""
        if not g.get("observed") and ctx.store_opened:  # `--help` opens no database
            _flush(ctx, force=True)

    cli_ops.init_app(app)


def _host(url):
    """The host name alone: a port (`:443`, or a PaaS's internal one) is not a wrong host."""
    try:
        return (urlsplit(url).hostname or "") if url else ""
    except ValueError:
        return ""


def _watch_store(store):
    """As the store opens: its transactions carry the trail, and a change by hand is noted."""
    store.transaction = _carrying(store.transaction)
    store.set_subscription = _noting_by_hand(store.set_subscription)


def _carrying(transaction):
    """The store's transaction, writing this thread's queued trail rows before it commits."""

    @contextmanager
    def wrapped():
        with transaction() as tx:
            yield tx
            trail.write(tx)

    return wrapped


def _noting_by_hand(set_subscription):
    """The store's opt-out/opt-in made by hand (`flask optin`), kept in the number's history;
    written as the command ends."""

    def wrapped(number, state, *args, **kwargs):
        applied, event_ids = set_subscription(number, state, *args, **kwargs)
        if applied:
            trail.note("subscription", None, None, number, state=state, by="hand")
        return applied, event_ids

    return wrapped


def _flush(ctx, force=False):
    try:
        trail.flush(ctx.store)
        if force or ctx.evidence.due():
            ctx.evidence.flush(ctx.store)
    except Exception:  # the answer is out; losing a trail row must not crash
        log.exception("could not record the trail or warnings' evidence")
        trail.drop()


# -- hooks ----------------------------------------------------------------------------------
def sent(ctx, req, status, answer, started, replay=False):
    """sending.py: the send's answer is about to be recorded (or was replayed)."""
    vonage = trail.sent(req, status, answer, started, replay)
    if vonage and vonage["status"] in (401, 402, 403):
        ctx.evidence.seen(2, f"vonage:{vonage['status']}", reason=vonage["error"])


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
        from .countries import calling_code

        ctx.evidence.seen(7, f"carrier:{calling_code(to)}:{code}")


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


def rejected(ctx, reason):
    """webhooks.py: a webhook refused by signatures.verify."""
    from .doctor import signature_check

    ctx.evidence.seen(3, f"signature:{signature_check(reason)}", reason=reason[:200])


def _check_authorization(ctx, header):
    """A 401 to a send: was it MoEngage's header (warning 1) or Vonage's refusal (2)?"""
    from .sending import parse_credentials

    try:
        parse_credentials(header)
    except Failure:
        ctx.evidence.seen(1, "authorization", form=describe_authorization(header))


def describe_authorization(header):
    """The header's shape, never its value: the scheme if it is a known word, and whether a
    colon separates two parts."""
    if not header or not header.strip():
        return "no Authorization header"
    scheme, _, value = header.strip().partition(" ")
    named = f"scheme `{scheme}`" if scheme.lower() in KNOWN_SCHEMES else "no recognised scheme"
    if not value.strip():
        return f"{named} and nothing after it"
    key, colon, secret = value.strip().partition(":")
    if not colon:
        return f"{named}, no colon between key and secret"
    if not key or not secret:
        return f"{named}, the key or the secret empty"
    if scheme.lower() == "custom":  # the shape is right: the characters or the length are not
        return f"{named}, a key and a secret holding other than printable ASCII, or too long"
    return f"{named}, a key and a secret separated by a colon"


# -- the clients, timed ---------------------------------------------------------------------
class TracedVonage:
    """The Vonage client, its answer kept for the send's trail row."""

    def __init__(self, client):
        self._client = client

    def __getattr__(self, name):
        return getattr(self._client, name)

    def send(self, *args, **kwargs):
        trail.vonage_begin()
        try:
            uuid = self._client.send(*args, **kwargs)
        except Failure as exc:
            trail.vonage_end(exc.reason)
            raise
        trail.vonage_end()
        return uuid


class TracedMoEngage:
    """The MoEngage client: each forward or Data API call becomes a trail row, riding the
    transaction that marks the event sent or failed."""

    def __init__(self, client, evidence):
        self._client = client
        self._evidence = evidence

    def __getattr__(self, name):
        return getattr(self._client, name)

    def deliver(self, event, *args, **kwargs):
        started = time.monotonic()
        try:
            status = self._client.deliver(event, *args, **kwargs)
        except NotAccepted as exc:
            self._note(event, started, error=str(exc))
            key = "data_api" if event.target == "data_api" else "moengage"
            self._evidence.seen(6 if key == "data_api" else 5, key, last=str(exc)[:200])
            raise
        self._note(event, started, http=status)
        if event.target == "data_api":
            self._evidence.seen(6, "data_api_ok")
        return status

    @staticmethod
    def _note(event, started, **outcome):
        ms = round((time.monotonic() - started) * 1000, 1)
        if event.target == "data_api":
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
