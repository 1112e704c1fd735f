"""What runs around every request: the trail and the warnings' evidence written after the
answer, the Host and Authorization checks behind warnings 1 and 8, and the background turns
(pruning, the sweep of pending events) a request may start once it is answered.
"""

import logging
from urllib.parse import urlsplit

from flask import g, request

from connector import bodies as payload
from connector.diagnostics import trail
from connector.diagnostics.probing import PROBING
from connector.errors import Failure
from connector.relay.send_request import parse_credentials, parse_send
from connector.store import journal

log = logging.getLogger(__name__)
# Schemes named as received when the Authorization header is not `Custom key:secret`; any
# other first word may be a key or secret typed without the scheme, so it is never shown.
KNOWN_SCHEMES = {"custom", "basic", "bearer", "token", "apikey", "digest", "key"}
WATCHED = ("dispatch.", "webhooks.")  # endpoints whose Host must be PUBLIC_URL's


def init_app(app):
    ctx = app.extensions["connector"]
    expected_host = _host(ctx.settings.public_url)
    trail.drop()  # nothing another app (a test's) left queued on this thread goes to this one

    @app.before_request
    def before():
        g.observed = True  # flushed after the answer, not at teardown
        trail.drop()

    @app.after_request
    def after(response):
        watched = expected_host and (request.endpoint or "").startswith(WATCHED)
        if watched and _host(f"//{request.host}") != expected_host:
            _check_host(ctx, response, expected_host)
        if response.status_code == 401 and request.endpoint == "dispatch.dispatch":
            _check_authorization(ctx, request.headers.get("Authorization"))
        if journal.pending() or ctx.evidence.due():
            response.call_on_close(lambda: _flush(ctx))
        return response

    @app.after_request
    def background_turns(response):
        """Pruning and the sweep run in their own threads: the request does not wait."""
        interval = ctx.pruner.due(ctx.settings)
        if interval:
            response.call_on_close(lambda: ctx.pruner.start(ctx, interval))
        ctx.sweeper.poke(ctx)
        return response

    @app.teardown_appcontext
    def command_done(exc):
        """A command (`flask push`, `optin`): what it left to write is written as it ends."""
        if not g.get("observed") and ctx.store_opened:  # `--help` opens no database
            _flush(ctx, force=True)


def _host(url):
    """The host name alone: a port (`:443`, or a PaaS's internal one) is not a wrong host."""
    try:
        return (urlsplit(url).hostname or "") if url else ""
    except ValueError:
        return ""


def _flush(ctx, force=False):
    try:
        ctx.store.flush_journal()
        if force or ctx.evidence.due():
            ctx.evidence.flush(ctx.store)
    except Exception:  # the answer is out; losing a trail row must not crash
        log.exception("could not record the trail or warnings' evidence")
        trail.drop()


def _check_host(ctx, response, expected):
    """A request for another host than PUBLIC_URL's: a configuration fault only when it is
    MoEngage's or Vonage's own (a webhook whose signature held, a send Vonage's credentials
    carried); anyone can forge a Host header, so anything else is counted as probing, and
    the host it named is never kept."""
    if request.endpoint == "dispatch.dispatch":  # answered past the credentials' check
        genuine = response.status_code < 400 or response.status_code == 422
    else:
        genuine = bool(g.get("signed"))
    if genuine:
        ctx.evidence.seen(8, "host", host=request.host[:100], expected=expected)
    else:
        ctx.evidence.seen(PROBING, "probe:host")


def _check_authorization(ctx, header):
    """A 401 to a send: was it MoEngage's header (warning 1) or Vonage's refusal (2)? A header
    not of the `Custom` form counts against MoEngage's configuration only on a request that
    looks like MoEngage's (a send body the connector accepts); else it is probing."""
    try:
        parse_credentials(header)
    except Failure:
        try:
            parse_send(
                payload.load_object(payload.read(request), request.mimetype),
                ctx.settings.vonage_from,
                ctx.settings.default_country,
            )
        except Failure:
            ctx.evidence.seen(PROBING, "probe:authorization")
            return
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
