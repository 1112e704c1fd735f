"""What the console's Opt-outs, Pending, Health and Setup pages do and show: `flask optin`,
`flask push`, `/health` and `doctor`, and the set-up guide's values with a live check of each
step from the connector's own traffic."""

import hashlib
import hmac
import json
import os
import time
from dataclasses import fields

from connector import phone
from connector.diagnostics import doctor
from connector.relay import optouts, outbox
from connector.relay.optouts import sync_state as describe_sync
from connector.settings import SETTINGS
from connector.store import OPTOUT, describe
from connector.store import tally as console_tally
from connector.version import __version__
from connector.web.console import auth as console_auth

PUSH_BUDGET = 20.0  # seconds one "Push now" may take; the rest is left for the next one
ENV_NAMES = {setting.field: setting.env for setting in SETTINGS}
SECRETS = {setting.field for setting in SETTINGS if setting.secret}


def sync_state(ctx, number, synced, waiting):
    return describe_sync(ctx.settings, number in waiting, synced)


# -- opt-in by hand: a number is named by a reference, never in the page ---------------------
def ref(ctx, number, event_ts):
    """An opaque name of an opted-out number for forms and links: its STOP's timestamp and a
    keyed hash, so the page source never holds the number."""
    return f"{event_ts!r}~{_mac(ctx, number)}"


def _mac(ctx, number):
    key = console_auth.password_id(ctx.settings.console_password).encode()
    return hmac.new(key, number.encode(), hashlib.sha256).hexdigest()[:20]


def resolve(ctx, reference):
    """The opted-out number `reference` names, or None."""
    stamp, _, mac = (reference or "").partition("~")
    try:
        event_ts = float(stamp)
    except ValueError:
        return None
    rows = ctx.store.query(
        "SELECT number FROM subscriptions WHERE state = ? AND event_ts = ?", (OPTOUT, event_ts)
    )
    return next((r[0] for r in rows if hmac.compare_digest(_mac(ctx, r[0]), mac)), None)


def opt_in(ctx, number, force=False):
    """What `flask optin` does (relay.optouts.opt_in): (ok, what happened)."""
    masked = phone.mask(number)
    done = optouts.opt_in(ctx, number, force)
    if done.outcome == "not opted out":
        return True, f"{masked} is not opted out"
    if done.outcome == "later stop":
        return False, (
            f"{masked} stays opted out: its STOP carries a Vonage timestamp later than this "
            "machine's clock, and the later one wins. Check the clock, or tick "
            "'Opt in anyway'."
        )
    if done.outcome == "newer stop":
        return False, f"{masked} stays opted out: a newer opt-out arrived meanwhile"
    return done.sync in ("off", "no customer", "synced"), f"{masked} opted in; {SYNC[done.sync]}"


SYNC = {
    "off": "MoEngage Data API not configured: nothing synced",
    "no customer": "no customer_id known: synced when a send names one",
    "synced": "synced to MoEngage (moe_sms_subscription = OPTIN)",
    "superseded": "not synced: the number opted out again meanwhile; MoEngage gets OPTOUT",
    "pending": "MoEngage did not accept the sync, it is pending",
}


def push(ctx, budget=PUSH_BUDGET):
    """What `flask push` does, within `budget` seconds: {outcome: count}, how many were found
    pending and how many of those were not tried."""
    found = ctx.store.count_pending()
    counts, _ = outbox.push_pending(ctx, deadline=time.monotonic() + budget)
    return {"counts": counts, "untried": max(0, found - sum(counts.values())), "found": found}


# -- health ---------------------------------------------------------------------------------
def health(ctx):
    problems = list(ctx.settings.problems())
    try:
        ctx.store.ping()
        problems.extend(ctx.store.problems())
    except Exception as exc:  # noqa: BLE001 - reported on the page, as /health does
        problems.append(f"database does not answer: {type(exc).__name__}")
    pool_use = getattr(ctx.store, "pool_use", None)
    return {
        "problems": problems,
        # The warnings read the database: none when it does not answer.
        "warnings": [] if any(p.startswith("database") for p in problems) else doctor.warnings(ctx),
        "settings": settings_shown(ctx.settings),
        "database": describe(ctx.settings),
        "schema": ctx.store.schema_version(),
        "pool": json.dumps(pool_use()) if pool_use else None,
        "version": _version(),
    }


def settings_shown(settings):
    """[(name, value)]: every setting, secrets as set/not set only, DATABASE_URL as its
    backend and host (never its user or password)."""
    shown = []
    for field in fields(settings):
        value = getattr(settings, field.name)
        if field.name in SECRETS:
            value = "set (hidden)" if value else "not set"
        elif field.name == "database_url":
            value = describe(settings) if value else "not set"
        elif isinstance(value, tuple):
            value = ", ".join(value)
        shown.append((ENV_NAMES.get(field.name, field.name.upper()), str(value)))
    return shown


def _version():
    """This connector's version, and the deployed commit when the platform says it."""
    for var in ("SOURCE_VERSION", "HEROKU_SLUG_COMMIT", "RENDER_GIT_COMMIT"):
        if os.environ.get(var):
            return f"{__version__} (commit {os.environ[var][:12]})"
    return __version__


# -- setup: a live check per step ------------------------------------------------------------
CHECKS = [
    # (counter, what it proves, warning codes that explain its absence, cause if none)
    (
        "sends",
        "a send received from MoEngage",
        ("send-authorization", "wrong-host"),
        (
            "MoEngage has not called this connector: check the sender's API URL (trailing slash "
            "included), then send a test SMS from MoEngage"
        ),
    ),
    (
        "accepted",
        "Vonage accepted the API key and secret",
        ("vonage-credentials",),
        (
            "no send reached Vonage with a key and secret it accepted: check the Authorization "
            "header"
        ),
    ),
    (
        "statuses",
        "a signed status webhook received and verified",
        ("webhook-signature", "no-status-webhooks"),
        (
            "Vonage has not posted a status here: set the application's Status URL and the "
            "signature secret (VONAGE_SIGNATURE_SECRET)"
        ),
    ),
    (
        "forward_ok",
        "MoEngage accepted a forwarded event",
        ("moengage-refusing",),
        ("nothing forwarded yet: it follows the first status webhook; check MOENGAGE_DELIVERY_URL"),
    ),
    (
        "sync_ok",
        "the Data API accepted an opt-out/opt-in sync",
        ("data-api",),
        (
            "no sync yet: it follows the first STOP or START reply from a number a send named a "
            "customer_id for"
        ),
    ),
]


def checks(ctx):
    """{counter: {seen, what, cause}}: when each step was last seen working, or why not."""
    found = doctor.warnings(ctx)
    result = {}
    for name, what, codes, cause in CHECKS:
        seen = console_tally.last_seen(ctx.store, name)
        explained = [w["message"] + " Fix: " + w["fix"] for w in found if w["code"] in codes]
        if name == "sync_ok" and not ctx.settings.data_api_enabled:
            cause = "the Data API is not configured (MOENGAGE_WORKSPACE_ID, MOENGAGE_DATA_API_KEY)"
        result[name] = {"seen": seen, "what": what, "cause": explained or [cause]}
    return result
