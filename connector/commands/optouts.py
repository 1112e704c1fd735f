"""`flask optouts` and `optin`: the opted-out numbers, and lifting one by hand."""

import time

import click
from flask.cli import with_appcontext

from connector import phone
from connector.commands.context import services
from connector.commands.store_access import (
    existing_store,
    store_command,
)
from connector.diagnostics import trail
from connector.relay import outbox
from connector.relay.optouts import sync_state
from connector.store import OPTIN, OPTOUT
from connector.utc import when


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
