"""`flask --app app <command>`: push pending events, list and lift opt-outs, requeue events,
copy a SQLite file into PostgreSQL."""

import os
import time
from datetime import UTC, datetime

import click
from flask.cli import with_appcontext

from connector import phone
from connector.commands import diagnose as cli_ops
from connector.commands import pending_view
from connector.commands.context import services
from connector.commands.sign_webhook import sign_webhook_command
from connector.commands.store_access import (
    STORE_FAILURES,
    existing_store,
    failure_line,
    store_command,
)
from connector.diagnostics import trail
from connector.rehearsal import walk as rehearsal
from connector.relay import outbox
from connector.relay.optouts import sync_state
from connector.relay.retention import cutoff, prune
from connector.store import OPTIN, OPTOUT
from connector.store.transfer import NotAConnectorDatabase
from connector.store.transfer import copy_sqlite as copy_rows
from connector.utc import when
from connector.version import __version__

PUSH_PAGE = 500  # events `push` reads at a time
PENDING_LIST = 1000  # events `pending` lists; it counts them all


def require(*variables):
    """Stop a command, naming the fix, when a setting it needs is missing. Only the settings
    the command needs: `optouts` says nothing about MOENGAGE_DELIVERY_URL."""
    found = [p for p in services().settings.problems() if p.split()[0] in variables]
    if found:
        raise click.ClickException("; ".join(found))


@click.command("pending")
@with_appcontext
@store_command
def pending_command():
    """List the events still waiting for MoEngage to accept them, oldest first."""
    store = existing_store()
    rows = store.pending_listing(PENDING_LIST)
    total = store.count_pending()
    for event in rows:
        click.echo(f"#{event.id} {event.target}: {pending_view.describe(event)}")
    cut = f" (only the oldest {len(rows)} are listed)" if len(rows) < total else ""
    click.echo(f"{total} pending{cut}")


@click.command("push")
@with_appcontext
@store_command
def push_command():
    """Forward every pending event to MoEngage now (after an outage or a URL fix).

    Says what happened to each event as it happens; stops after 3 failures in a row (MoEngage
    is still down). Exits 1 when any is still pending afterwards.
    """
    require("MOENGAGE_DELIVERY_URL")
    ctx = services()
    store = existing_store()
    counts = dict.fromkeys((outbox.SENT, outbox.SUPERSEDED, outbox.DONE, outbox.BUSY), 0)
    failed_in_a_row = 0
    for event in _pending_at_start(store):
        outcome = outbox.forward(ctx, event.id)
        _report_push(store, event, outcome)
        counts[outcome] = counts.get(outcome, 0) + 1
        failed_in_a_row = failed_in_a_row + 1 if outcome in (outbox.FAILED, outbox.SHED) else 0
        if failed_in_a_row >= outbox.SWEEP_GIVE_UP:
            click.echo(
                f"stopped after {failed_in_a_row} failures in a row: MoEngage is not accepting "
                "events; run push again once it is back"
            )
            break
    left = store.count_pending()  # whoever forwarded them: this push, the sweep, redeliveries
    dropped = counts[outbox.SUPERSEDED]
    meanwhile = counts[outbox.DONE]
    click.echo(
        f"{counts[outbox.SENT]} sent, {left} still pending"
        + (f", {dropped} dropped as superseded" if dropped else "")
        + (f", {meanwhile} forwarded meanwhile by the connector itself" if meanwhile else "")
    )
    if left or failed_in_a_row >= outbox.SWEEP_GIVE_UP:
        raise SystemExit(1)


def _pending_at_start(store):
    """The events pending when `push` started, oldest first, read a page at a time."""
    upto, after = store.last_event_id(), 0
    while page := store.pending_listing(PUSH_PAGE, after=after, upto=upto):
        yield from page
        after = page[-1].id


def _report_push(store, event, outcome):
    """One line per event, printed as soon as its outcome is known."""
    head = f"#{event.id} {event.target}"
    if outcome == outbox.SENT:
        click.echo(f"sent {head} ({pending_view.describe(event, accepted=True)})")
    elif outcome == outbox.SUPERSEDED:
        why = (
            "the number's opt-out/opt-in changed since; MoEngage gets the newer state"
            if event.target == "data_api"
            else "superseded by the final status MoEngage already has"
        )
        click.echo(f"{head}: dropped: {why} ({pending_view.describe(event)})")
    elif outcome == outbox.DONE:
        click.echo(f"{head}: no longer pending, the connector forwarded it meanwhile")
    elif outcome == outbox.BUSY:
        lease = store.event_lease(event.id)
        until = f" until {when(lease.lease_until)}" if lease and lease.lease_until else ""
        click.echo(
            f"{head}: NOT sent, a connector worker holds it{until} (forwarding "
            "it, or it died doing so); run push again after that if it is still pending "
            f"({pending_view.describe(event)})"
        )
    else:
        now = store.pending_listing(1, event.id)
        click.echo(
            f"{head}: NOT accepted, still pending ({pending_view.describe((now or [event])[0])})"
        )


@click.command("requeue")
@with_appcontext
@click.option("--since", required=True, help="ISO time, e.g. 2026-11-23T10:00:00Z")
@store_command
def requeue_command(since):
    """Mark events MoEngage accepted since SINCE as pending again (they went to a wrong
    tracking URL); then fix MOENGAGE_DELIVERY_URL and run `push`."""
    try:
        moment = datetime.fromisoformat(since)
    except ValueError:
        raise click.BadParameter("use ISO 8601, e.g. 2026-11-23T10:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    count = existing_store().requeue_events(moment.timestamp())
    click.echo(f"{count} events pending again; run `flask --app app push` to send them")


@click.command("optouts")
@with_appcontext
@store_command
def optouts_command():
    """List opted-out numbers (masked), newest first, and whether MoEngage has each."""
    ctx = services()
    rows = existing_store().opted_out()
    waiting = ctx.store.pending_syncs()
    for row in rows:
        state = sync_state(ctx.settings, row.number in waiting, row.synced)
        click.echo(f"{phone.mask(row.number)} since {when(row.event_ts)}, {state}")
    click.echo(f"{len(rows)} opted out")


@click.command("optin")
@with_appcontext
@click.argument("number")
@click.option(
    "--force",
    is_flag=True,
    help="Opt in even when the stored STOP carries a Vonage timestamp later than this "
    "machine's clock (which would otherwise win).",
)
@store_command
def optin_command(number, force):
    """Opt NUMBER back in by hand (it had replied STOP), and write that to MoEngage.

    Exits 1 when the number stays opted out or the sync to MoEngage is left pending.
    """
    ctx = services()
    try:
        number = phone.normalise(number, ctx.settings.default_country)
    except ValueError as exc:
        why = getattr(exc, "why", "give it in international format, e.g. +447700900000")
        raise click.BadParameter(
            f"{number!r} is not a phone number: {why}",
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
    trail.note("subscription", None, None, number, state=OPTIN, by="hand")  # written as it ends
    click.echo(f"{masked} opted in")
    if not ctx.settings.data_api_enabled:
        click.echo("MoEngage Data API not configured: nothing synced")
        return
    if not change.event_ids:
        click.echo("no customer_id known for this number: synced when a send names one")
        return
    outcomes = set(outbox.push(ctx, change.event_ids).values())
    if outcomes <= {outbox.SENT, outbox.DONE}:
        click.echo("synced to MoEngage (moe_sms_subscription = OPTIN)")
    elif outbox.SUPERSEDED in outcomes:  # a STOP came in meanwhile: MoEngage gets that
        click.echo("not synced: the number opted out again meanwhile; MoEngage gets OPTOUT")
        raise SystemExit(1)
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
    except STORE_FAILURES as exc:  # the target: PostgreSQL down, say
        raise click.ClickException(failure_line(ctx.settings, exc)) from None
    click.echo(f"Copied {path} into {ctx.store.describe()}:")
    for table in counts:
        click.echo(f"  {table.what}: {table.copied} of {table.found} copied")
    click.echo("Rows the database already had, or had newer, were kept as they were.")


@click.command("prune")
@click.option("--dry-run", is_flag=True, help="count what would be removed; remove nothing")
@with_appcontext
@store_command
def prune_command(dry_run):
    """Remove sends and forwarded events older than RETENTION_DAYS now (the web workers also
    do this by themselves every few minutes). Pending events, opt-outs and contacts stay."""
    ctx = services()
    now = time.time()
    edge = cutoff(ctx.settings, now)
    click.echo(f"RETENTION_DAYS={ctx.settings.retention_days:g}: older than {when(edge)}")
    if dry_run:
        found = ctx.store.prunable(edge, now)
        click.echo(f"would remove {found.sends} sends and {found.events} forwarded events")
    else:
        done = prune(ctx.store, ctx.settings, now, budget=float("inf"))
        click.echo(
            f"removed {done.sends} sends, {done.events} forwarded events and {done.steps} "
            "trace steps"
        )
    pending, subscriptions, contacts = ctx.store.kept()
    click.echo(
        f"kept: {pending} pending events, {subscriptions} opt-out/opt-in states, "
        f"{contacts} contacts (never removed)"
    )


@click.command("version")
def version_command():
    """Print this connector's version (CHANGELOG.md says what each changed)."""
    click.echo(f"vonage-moengage-connector {__version__}")


def rehearse_command(make_app):
    """`flask rehearse`, walking through an app that `make_app(settings)` builds and starts."""

    @click.command("rehearse")
    def rehearse():
        """Try the connector with no account: a send, its delivery reports, STOP and START,
        against Vonage and MoEngage stand-ins on this machine. Exit 1 if a step misbehaves."""
        # Everything is on loopback: a proxy set for the internet must not be asked for it.
        for name in ("NO_PROXY", "no_proxy"):
            os.environ[name] = ",".join(filter(None, [os.environ.get(name), "127.0.0.1"]))
        if not rehearsal.run(make_app):
            raise SystemExit(1)

    return rehearse


COMMANDS = [
    version_command,
    pending_command,
    push_command,
    requeue_command,
    optouts_command,
    optin_command,
    copy_sqlite,
    sign_webhook_command,
    prune_command,
]


def init_app(app, make_app):
    """Register every command; `make_app(settings)` builds and starts an app (the rehearsal's)."""
    for command in COMMANDS:
        app.cli.add_command(command)
    app.cli.add_command(rehearse_command(make_app))
    cli_ops.init_app(app)
