"""The warnings: what the connector's own traffic says is misconfigured, and the fix.

Each rule reads the evidence rows of its warning (evidence.py), and a few read the store, and
returns the warnings it finds. A warning is shown while its evidence is younger than
WARNING_CLEAR_SECONDS; some clear sooner, when the fault is seen to be gone (a status
webhook arrived, nothing is pending, a Data API call succeeded). Nothing here shows a secret or
a full phone number. Shared by `GET /health` and `flask doctor`.
"""

import logging
import time

from connector import clock, countries
from connector.clients.moengage_gate import COOL_OFF
from connector.diagnostics import credential_warnings, destinations, evidence, vonage_errors
from connector.diagnostics.advice import SIGNATURE_ADVICE, SIGNATURE_CHECKS, VONAGE_ADVICE

log = logging.getLogger(__name__)
CARRIER_MIN = 5  # rejections of one code in one country before they count as a cluster
PENDING_CAP = 10_000  # pending events counted at most (a bounded query for /health)
SILENT_CAP = 1_000  # unanswered sends counted at most
PENDING_GRACE_SECONDS = 60.0  # an event pending longer was not forwarded on arrival
PROBING = "probing"  # a note, not a fault: `doctor` still exits 0 for it alone


def signature_check(reason):
    return next((check for prefix, check in SIGNATURE_CHECKS if prefix in reason), "token")


def _ago(seconds):
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# -- the rules ------------------------------------------------------------------------------
def send_authorization(ctx, rows, now):
    row = rows.get("authorization")
    if not row:
        return []
    return [
        evidence.warning(
            "send-authorization",
            f"{row['count']} sends refused with 401 because MoEngage's Authorization header "
            f"is not `Custom <key>:<secret>`; the last one had {row['detail']['form']}.",
            "In MoEngage (Settings > Channels > SMS > the custom sender), set the header "
            "Authorization to `Custom <Vonage API key>:<Vonage API secret>`: the word Custom, "
            "one space, the key, a colon, the secret.",
            row,
        )
    ]


def vonage_credentials(ctx, rows, now):
    found = []
    for status, (message, fix) in VONAGE_ADVICE.items():
        row = rows.get(f"vonage:{status}")
        if row:
            found.append(
                evidence.warning(
                    "vonage-credentials", f"{message}: {row['count']} sends.", fix, row
                )
            )
    return found


def webhook_signature(ctx, rows, now):
    found = []
    for key, row in sorted(rows.items()):
        if key.startswith("signature:"):
            what, fix = SIGNATURE_ADVICE[key.split(":", 1)[1]]
            found.append(
                evidence.warning(
                    "webhook-signature", f"{row['count']} Vonage webhooks {what}.", fix, row
                )
            )
    return found


def status_silence(ctx, rows, now):
    """Sends Vonage accepted more than STATUS_SILENCE_SECONDS ago, none followed by any status
    webhook; only sends younger than that plus WARNING_CLEAR_SECONDS count."""
    settings, store = ctx.settings, ctx.store
    last_status = store.query("SELECT max(at) FROM trail WHERE stage = 'status'")[0][0] or 0
    start = max(last_status, now - settings.status_silence_seconds - settings.warning_clear_seconds)
    unanswered = store.query(
        "SELECT min(at), count(*) FROM (SELECT at FROM trail WHERE stage = 'send'"
        " AND at > ? AND message_uuid IS NOT NULL ORDER BY at LIMIT ?) AS sends",
        (start, SILENT_CAP),
    )[0]
    first, count = unanswered
    if first is None or now - first < settings.status_silence_seconds:
        return []
    where = settings.status_webhook_url or "(PUBLIC_URL is not set)"
    return [
        evidence.warning(
            "no-status-webhooks",
            f"{count}{'+' if count >= SILENT_CAP else ''} sends accepted by Vonage, the first "
            f"{_ago(now - first)} ago, and no "
            "status webhook has arrived since: Vonage is not posting statuses here.",
            "In the Vonage Dashboard, set the application's Status URL to "
            "<PUBLIC_URL>/webhooks/status; set PUBLIC_URL to this connector's public URL so "
            f"each send names it (now: {where}); and under Settings > API settings > SMS "
            "settings choose Messages API.",
            {"since": first, "count": count},
        )
    ]


def moengage_refusing(ctx, rows, now):
    """Events pending for MoEngage, from the events themselves (how many, the oldest, how many
    MoEngage refused and its last answer): shown at once when MoEngage refused one lately,
    and whenever one has waited longer than PENDING_GRACE_SECONDS, until none is pending."""
    store = ctx.store
    pending = store.query(
        "SELECT count(*) FROM (SELECT 1 FROM events WHERE state = 'pending' LIMIT ?) AS p",
        (PENDING_CAP,),
    )[0][0]
    if not pending:
        return []
    oldest = store.query(
        "SELECT created_at FROM events WHERE state = 'pending' ORDER BY id LIMIT 1"
    )[0][0]
    row = rows.get("moengage")
    if not row and now - oldest < PENDING_GRACE_SECONDS:
        return []  # being forwarded right now, as every event is for a moment
    refused = store.query(
        "SELECT count(*) FROM (SELECT 1 FROM events WHERE state = 'pending'"
        " AND last_error IS NOT NULL LIMIT ?) AS r",
        (PENDING_CAP,),
    )[0][0]
    last = store.query(
        "SELECT last_error FROM events WHERE state = 'pending' AND last_error IS NOT NULL"
        " ORDER BY id DESC LIMIT 1"
    )
    answer = row["detail"]["last"] if row else (last[0][0] if last else None)
    some = f"{pending}{'+' if pending >= PENDING_CAP else ''}"
    refusals = (
        f"MoEngage refused {refused}{'+' if refused >= PENDING_CAP else ''} of them; last "
        f"answer: {answer}."
        if refused
        else "none was tried yet (the sweep is off or has not run: PENDING_SWEEP_SECONDS)."
    )
    return [
        evidence.warning(
            "moengage-refusing",
            f"{some} events pending, the oldest {_ago(now - oldest)} old, not accepted by "
            f"MoEngage yet: {refusals}",
            "Check MOENGAGE_DELIVERY_URL against the sender's Delivery tracking URL in MoEngage "
            "(query string included); once fixed, `flask --app app push` forwards the backlog.",
            {"since": oldest, "count": pending},
        )
    ]


def moengage_unanswered(ctx, rows, now):
    """Forwards not even tried, because MoEngage stopped answering (moengage_gate.py); gone
    once nothing is pending, as MoEngage then has everything."""
    row = rows.get("moengage_unanswered")
    if not row or not _pending(ctx.store):
        return []
    return [
        evidence.warning(
            "moengage-unanswered",
            f"MoEngage is not answering within MOENGAGE_TIMEOUT: {row['count']} forwards were "
            f"not tried, so that waiting on it never holds the threads sends need; last: "
            f"{row['detail']['last']}. Their webhooks were answered 503 (Vonage retries) and "
            "the events are kept pending.",
            "Check MoEngage's status and that the host of MOENGAGE_DELIVERY_URL answers (a "
            "firewall or proxy that accepts connections and then drops them looks the same); "
            f"the connector tries again every {COOL_OFF:g} s by itself, and `flask --app app push` "
            "forwards the backlog once MoEngage answers.",
            row,
        )
    ]


def _pending(store):
    return store.query("SELECT 1 FROM events WHERE state = 'pending' LIMIT 1")


def data_api(ctx, rows, now):
    found = []
    refused, ok = rows.get("data_api"), rows.get("data_api_ok")
    if refused and not (ok and ok["last_seen"] > refused["last_seen"]):
        found.append(
            evidence.warning(
                "data-api",
                f"MoEngage's Data API refused {refused['count']} opt-out/opt-in syncs; last "
                f"answer: {refused['detail']['last']}.",
                "Check MOENGAGE_WORKSPACE_ID and MOENGAGE_DATA_API_KEY (MoEngage Settings > "
                "APIs > Data API) and MOENGAGE_API_URL's data centre; then `flask --app app "
                "push`.",
                refused,
            )
        )
    unknown = rows.get("no_customer")
    if unknown:
        found.append(
            evidence.warning(
                "data-api",
                f"{unknown['count']} opt-outs/opt-ins could not be written to MoEngage: no "
                "send to those numbers carried a customer_id.",
                "Add `customer_id` (the user's ID attribute) to the MoEngage sender's body; "
                "the change is synced at the number's next send that carries it.",
                unknown,
            )
        )
    return found


def carrier_rejections(ctx, rows, now):
    found = []
    for key, row in sorted(rows.items()):
        if not key.startswith("carrier:") or row["count"] < CARRIER_MIN:
            continue
        _, country, code = key.split(":", 2)
        fix = vonage_errors.FIX.get(
            code,
            "See Vonage's country-specific features and restrictions for "
            f"{countries.describe(country)}; `flask --app app report` lists failures by code",
        )
        found.append(
            evidence.warning(
                "carrier-rejections",
                f"{row['count']} messages to {countries.describe(country)} rejected with Vonage "
                f"error {code}: {vonage_errors.meaning(code)}.",
                fix,
                row,
            )
        )
    return found


def probing(ctx, rows, now):
    """Requests from callers without credentials, counted apart from the warnings above: a
    forged Host, an Authorization header with no send behind it, a key no team would hold.
    Not a fault of the connector's settings, and no caller-supplied value is shown."""
    found = {key.split(":", 1)[1]: row for key, row in rows.items() if key.startswith("probe:")}
    if not found:
        return []
    kinds = {
        "host": "named another host than PUBLIC_URL's",
        "authorization": "carried no `Custom key:secret` header and no send MoEngage would make",
        "vonage": "carried an API key Vonage refused that is not one of yours",
        "signature": "posted an unsigned or badly signed webhook body Vonage would not send",
    }
    parts = [
        f"{row['count']} {kinds.get(kind, f'({kind})')}" for kind, row in sorted(found.items())
    ]
    first = min(found.values(), key=lambda row: row["since"])
    total = sum(row["count"] for row in found.values())
    return [
        evidence.warning(
            PROBING,
            f"Requests from callers without valid credentials: {'; '.join(parts)}. Probing, "
            "counted apart: it changes no warning above.",
            "Nothing to fix in the settings for these. Set VONAGE_API_KEYS to your API key(s) "
            "so no other key reaches Vonage; if MoEngage's own sends fail, `trace` one.",
            {"since": first["since"], "count": total},
        )
    ]


def wrong_host(ctx, rows, now):
    row = rows.get("host")
    if not row:
        return []
    detail = row["detail"]
    return [
        evidence.warning(
            "wrong-host",
            f"{row['count']} requests arrived for host {detail['host']}, not PUBLIC_URL's "
            f"{detail['expected']}: sends name {detail['expected']} for their status webhooks.",
            "Set PUBLIC_URL to the address MoEngage and Vonage reach this connector at (the "
            "API URL in MoEngage, the Status and Inbound URLs in Vonage).",
            row,
        )
    ]


def database_locks(ctx, rows, now):
    """PostgreSQL: a row the connector needs held by another session (a psql left in a
    transaction), which makes the requests that need it answer 503 after the lock timeout."""
    lock_waits = getattr(ctx.store, "lock_waits", None)
    if lock_waits is None:
        return []
    found = []
    for wait in lock_waits():
        held = "; ".join(
            f"pid {h.pid} (application {h.application or '?'}, user {h.user or '?'}), "
            f"{h.state}, its transaction open for {_ago(h.seconds)}"
            for h in wait.holders
        )
        ran_out = (
            f"{wait.ran_out} statements of this worker gave up waiting "
            f"{ctx.store.timeouts.lock:g} s for a row of {wait.relation}, the last "
            f"{_ago(now - wait.last)} ago; requests that need it answer 503."
            if wait.ran_out
            else f"Another session holds a lock on {wait.relation}."
        )
        pids = ", ".join(str(h.pid) for h in wait.holders) or "<pid>"
        found.append(
            evidence.warning(
                "database-lock",
                f"{ran_out} {'Held by: ' + held + '.' if held else ''}".strip(),
                "End the holding session's transaction (COMMIT or ROLLBACK where it was "
                f"opened), or end the session: SELECT pg_terminate_backend({pids}); find it "
                "with SELECT pid, application_name, state, xact_start FROM pg_stat_activity "
                "WHERE state LIKE 'idle in transaction%'. Setting "
                "idle_in_transaction_session_timeout on the database ends forgotten ones.",
                {"since": wait.since, "count": wait.ran_out},
            )
        )
    return found


def foreign_statuses(ctx, rows, now):
    row = rows.get("foreign")
    if not row:
        return []
    return [
        evidence.warning(
            "foreign-statuses",
            f"{row['count']} status webhooks were for messages this connector has no send of, "
            f"and were not forwarded to MoEngage; the last one: message_uuid "
            f"{row['detail']['message_uuid']}.",
            "Another system sends through this Vonage application, whose Status URL points "
            "here: give each its own Vonage application. A message older than RETENTION_DAYS "
            "is forgotten too, so its late statuses also count here.",
            row,
        )
    ]


def untranslated_webhooks(ctx, rows, now):
    found = []
    for key, row in sorted(rows.items()):
        if key.startswith("untranslated:"):
            route = key.split(":", 1)[1]
            found.append(
                evidence.warning(
                    "untranslated-webhooks",
                    f"{row['count']} signed Vonage {route} webhooks were acknowledged but not "
                    f"forwarded: the connector does not translate their form; the last one was "
                    f"{row['detail']['form']}.",
                    "The connector reads SMS text webhooks in Messages API v1 and v0.1. In the "
                    "Vonage Dashboard, open Applications > this application > Edit > Messages "
                    'and set "Webhook version" to v1; point other channels (WhatsApp, MMS, '
                    "Viber, Messenger) at an application of their own.",
                    row,
                )
            )
    return found


RULES = [
    send_authorization,
    vonage_credentials,
    webhook_signature,
    status_silence,
    moengage_refusing,
    moengage_unanswered,
    data_api,
    carrier_rejections,
    wrong_host,
    destinations.rare_countries,
    clock.webhook_clock,
    clock.database_clock,
    probing,
    database_locks,
    credential_warnings.account_api,
    credential_warnings.refused_pairs,
    untranslated_webhooks,
    foreign_statuses,
]


def warnings(ctx, now=None):
    """Every warning in force now, in the order of RULES."""
    now = time.time() if now is None else now
    rows = evidence.read(ctx.store, now - ctx.settings.warning_clear_seconds)
    found = []
    for rule in RULES:
        found.extend(rule(ctx, rows, now))
    return found


def for_health(ctx, problems):
    """The warnings for `GET /health`: none when the database does not answer (no second
    wait for it), and a failure to read them is logged, never a 503. A worker reuses what it
    read for half EVIDENCE_FLUSH_SECONDS, so a busy /health costs the database nothing more."""
    if any(problem.startswith("database") for problem in problems):
        return []
    cached = getattr(ctx, "health_warnings", None)
    ttl = ctx.settings.evidence_flush_seconds / 2  # the evidence itself is that fresh at best
    if cached and time.monotonic() - cached[0] < ttl:
        return cached[1]
    try:
        found = warnings(ctx)
        ctx.health_warnings = (time.monotonic(), found)
        return found
    except Exception:  # /health answers whatever happens here
        log.exception("could not read the warnings")
        return []
