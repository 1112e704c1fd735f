"""`flask --app app <command>`: push pending events, list and lift opt-outs, requeue events,
copy a SQLite file into PostgreSQL."""

import time
from datetime import UTC, datetime

import click
from flask.cli import with_appcontext

from . import outbox, phone
from .retention import prune_command
from .services import services
from .store import OPTIN
from .store.transfer import NotAConnectorDatabase
from .store.transfer import copy_sqlite as copy_rows


def _when(epoch):
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _print_pending(rows):
    for event_id, target, attempts, error, created in rows:
        click.echo(
            f"#{event_id} {target} since {_when(created)}, {attempts} tries"
            f"{': ' + error if error else ''}"
        )


@click.command("pending")
@with_appcontext
def pending_command():
    """List the events still waiting for MoEngage to accept them."""
    rows = services().store.pending_events()
    _print_pending(rows)
    click.echo(f"{len(rows)} pending")


@click.command("push")
@with_appcontext
def push_command():
    """Forward every pending event to MoEngage now (after an outage or a URL fix)."""
    ctx = services()
    targets = {row[0]: row[1] for row in ctx.store.pending_events()}
    sent, left = outbox.push_pending(ctx)
    for event_id in sent:
        click.echo(f"sent #{event_id} {targets[event_id]}")
    _print_pending([row for row in ctx.store.pending_events() if row[0] in set(left)])
    click.echo(f"{len(sent)} sent, {len(left)} still pending")
    if left:
        raise SystemExit(1)


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
    """List opted-out numbers (masked), newest first."""
    rows = services().store.opted_out()
    for number, event_ts, synced in rows:
        state = "synced to MoEngage" if synced else "not synced (no customer_id known yet)"
        click.echo(f"{phone.mask(number)} since {_when(event_ts)}, {state}")
    click.echo(f"{len(rows)} opted out")


@click.command("optin")
@with_appcontext
@click.argument("number")
def optin_command(number):
    """Opt NUMBER back in by hand (it had replied STOP), and write that to MoEngage."""
    ctx = services()
    try:
        number = phone.normalise(number)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if not ctx.store.is_opted_out(number):
        click.echo(f"{phone.mask(number)} is not opted out")
        return
    now = time.time()
    _, event_ids = ctx.store.set_subscription(
        number, OPTIN, now, now, ctx.settings.data_api_enabled
    )
    click.echo(f"{phone.mask(number)} opted in")
    if not ctx.settings.data_api_enabled:
        click.echo("MoEngage Data API not configured: nothing synced")
    elif not event_ids:
        click.echo("no customer_id known for this number: synced when a send names one")
    elif outbox.push(ctx, event_ids):
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
    for what, copied, found in counts:
        click.echo(f"  {what}: {copied} of {found} copied")
    click.echo("Rows the database already had, or had newer, were kept as they were.")


COMMANDS = [
    pending_command,
    push_command,
    requeue_command,
    optouts_command,
    optin_command,
    copy_sqlite,
    prune_command,
]


def init_app(app):
    for command in COMMANDS:
        app.cli.add_command(command)
