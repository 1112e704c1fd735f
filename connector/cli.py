"""`flask --app app <command>`: push pending events, list and lift opt-outs, requeue events,
copy a SQLite file into PostgreSQL."""

import os
import time
from datetime import UTC, datetime

import click
from flask.cli import with_appcontext

from . import outbox, phone
from .rehearsal import rehearse_command
from .replay import sign_webhook_command
from .retention import prune_command
from .services import services
from .store import OPTIN, OPTOUT
from .store.transfer import NotAConnectorDatabase
from .store.transfer import copy_sqlite as copy_rows
from .utc import when

PUSH_LIMIT = 1_000_000  # every event pending when `push` starts, in practice


def existing_store():
    """The store, for a command that only reads. A SQLite file that does not exist is a
    mistyped DATABASE_PATH or the wrong folder, not an empty database: say so (exit 1) and
    create nothing."""
    ctx = services()
    path = ctx.settings.database_path
    if not ctx.settings.database_url and not os.path.exists(path):
        raise click.ClickException(
            f"no database at {os.path.abspath(path)} (DATABASE_PATH={path}): nothing to read. "
            "Check DATABASE_PATH, or run this from the folder the connector runs in."
        )
    return ctx.store


def require(*variables):
    """Stop a command, naming the fix, when a setting it needs is missing. Only the settings
    the command needs: `optouts` says nothing about MOENGAGE_DELIVERY_URL."""
    found = [p for p in services().settings.problems() if p.split()[0] in variables]
    if found:
        raise click.ClickException("; ".join(found))


def _print_pending(rows):
    for row in rows:
        error = row.last_error
        click.echo(
            f"#{row.id} {row.target} since {when(row.created_at)}, {row.attempts} tries"
            f"{': ' + error if error else ''}"
        )


@click.command("pending")
@with_appcontext
def pending_command():
    """List the events still waiting for MoEngage to accept them."""
    rows = existing_store().pending_events()
    _print_pending(rows)
    click.echo(f"{len(rows)} pending")


@click.command("push")
@with_appcontext
def push_command():
    """Forward every pending event to MoEngage now (after an outage or a URL fix).

    Says what happened to each event; exits 1 when any is still pending afterwards.
    """
    require("MOENGAGE_DELIVERY_URL")
    ctx = services()
    targets = {row.id: row.target for row in ctx.store.pending_events(limit=PUSH_LIMIT)}
    outcomes = outbox.push(ctx, list(targets))
    for event_id, outcome in outcomes.items():
        _report_push(ctx.store, event_id, targets[event_id], outcome)
    left = [i for i, outcome in outcomes.items() if outcome in (outbox.BUSY, outbox.FAILED)]
    _print_pending([row for row in ctx.store.pending_events() if row.id in set(left)])
    sent = sum(outcome == outbox.SENT for outcome in outcomes.values())
    done = sum(outcome == outbox.DONE for outcome in outcomes.values())
    meanwhile = f", {done} forwarded meanwhile by the connector itself" if done else ""
    click.echo(f"{sent} sent, {len(left)} still pending{meanwhile}")
    if left:
        raise SystemExit(1)


def _report_push(store, event_id, target, outcome):
    if outcome == outbox.SENT:
        click.echo(f"sent #{event_id} {target}")
    elif outcome == outbox.DONE:
        click.echo(f"#{event_id} {target}: no longer pending, the connector forwarded it meanwhile")
    elif outcome == outbox.BUSY:
        lease = store.event_lease(event_id)
        until = f" until {when(lease.lease_until)}" if lease and lease.lease_until else ""
        click.echo(
            f"#{event_id} {target}: NOT sent, a connector worker holds it{until} (forwarding "
            "it, or it died doing so); run push again after that if it is still pending"
        )


@click.command("requeue")
@with_appcontext
@click.option("--since", required=True, help="ISO time, e.g. 2026-11-23T10:00:00Z")
def requeue_command(since):
    """Mark events MoEngage accepted since SINCE as pending again (they went to a wrong
    tracking URL); then fix MOENGAGE_DELIVERY_URL and run `push`."""
    try:
        moment = datetime.fromisoformat(since)
    except ValueError:
        raise click.BadParameter("use ISO 8601, e.g. 2026-11-23T10:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    count = services().store.requeue_events(moment.timestamp())
    click.echo(f"{count} events pending again; run `flask --app app push` to send them")


@click.command("optouts")
@with_appcontext
def optouts_command():
    """List opted-out numbers (masked), newest first, and whether MoEngage has each."""
    ctx = services()
    rows = existing_store().opted_out()
    waiting = ctx.store.pending_syncs()
    for row in rows:
        state = _sync_state(ctx, row.number in waiting, row.synced)
        click.echo(f"{phone.mask(row.number)} since {when(row.event_ts)}, {state}")
    click.echo(f"{len(rows)} opted out")


def _sync_state(ctx, waiting, synced):
    if waiting:
        return "queued for MoEngage, not accepted yet (`push` retries it)"
    if synced:
        return "synced to MoEngage"
    if not ctx.settings.data_api_enabled:
        return (
            "not synced: the MoEngage Data API is not configured "
            "(MOENGAGE_WORKSPACE_ID, MOENGAGE_DATA_API_KEY)"
        )
    return "not synced: no customer_id known yet (synced when a send names one)"


@click.command("optin")
@with_appcontext
@click.argument("number")
@click.option(
    "--force",
    is_flag=True,
    help="Opt in even when the stored STOP carries a Vonage timestamp later than this "
    "machine's clock (which would otherwise win).",
)
def optin_command(number, force):
    """Opt NUMBER back in by hand (it had replied STOP), and write that to MoEngage.

    Exits 1 when the number stays opted out or the sync to MoEngage is left pending.
    """
    ctx = services()
    try:
        number = phone.normalise(number)
    except ValueError:
        raise click.BadParameter(
            f"{number!r} is not a phone number: give 7 to 15 digits in international format, "
            "country code first (e.g. +447700900000)",
            param_hint="NUMBER",
        ) from None
    masked = phone.mask(number)
    stored = ctx.store.subscription(number)
    if stored is None or stored.state != OPTOUT:
        click.echo(f"{masked} is not opted out")
        return
    now = time.time()
    stamp = now
    if stored.event_ts > now:  # a later Vonage timestamp wins: only --force outranks it
        if not force:
            click.echo(
                f"{masked} stays opted out: its STOP carries Vonage's timestamp "
                f"{when(stored.event_ts)}, later than this machine's clock ({when(now)}), and the "
                "later one wins. Check the clock, or run `optin --force` with the number to "
                "opt it in anyway"
            )
            raise SystemExit(1)
        stamp = stored.event_ts  # an equal timestamp: the later arrival, this one, wins
    change = ctx.store.set_subscription(number, OPTIN, stamp, now, ctx.settings.data_api_enabled)
    if not change.applied:
        click.echo(f"{masked} stays opted out: a newer opt-out arrived meanwhile")
        raise SystemExit(1)
    click.echo(f"{masked} opted in")
    if not ctx.settings.data_api_enabled:
        click.echo("MoEngage Data API not configured: nothing synced")
    elif not change.event_ids:
        click.echo("no customer_id known for this number: synced when a send names one")
    elif all(o in outbox.DELIVERED for o in outbox.push(ctx, change.event_ids).values()):
        click.echo("synced to MoEngage (moe_sms_subscription = OPTIN)")
    else:
        click.echo("MoEngage did not accept the sync; it is pending: run `push` later")
        raise SystemExit(1)


@click.command("copy-sqlite")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@with_appcontext
def copy_sqlite(path):
    """Copy the SQLite file PATH into the database DATABASE_URL names, opt-outs first.

    Safe to run twice: a newer opt-out/opt-in or contact already in the database is kept, and
    sends and events are never duplicated.
    """
    ctx = services()
    if not ctx.settings.database_url:
        raise click.ClickException(
            "DATABASE_URL is not set: copy-sqlite copies into the PostgreSQL database it names"
        )
    try:
        counts = copy_rows(path, ctx.store)
    except NotAConnectorDatabase as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Copied {path} into {ctx.store.describe()}:")
    for table in counts:
        click.echo(f"  {table.what}: {table.copied} of {table.found} copied")
    click.echo("Rows the database already had, or had newer, were kept as they were.")


COMMANDS = [
    pending_command,
    push_command,
    requeue_command,
    optouts_command,
    optin_command,
    copy_sqlite,
    rehearse_command,
    sign_webhook_command,
    prune_command,
]


def init_app(app):
    for command in COMMANDS:
        app.cli.add_command(command)
