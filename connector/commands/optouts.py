"""`flask optouts` and `optin`: the opted-out numbers, and lifting one by hand."""

import click
from flask.cli import with_appcontext

from connector import phone
from connector.commands.context import services
from connector.commands.store_access import (
    existing_store,
    store_command,
)
from connector.relay.optouts import opt_in, sync_state
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
    done = opt_in(ctx, number, force)
    if done.outcome == "not opted out":
        click.echo(f"{masked} is not opted out")
        return
    if done.outcome == "later stop":
        click.echo(
            f"{masked} stays opted out: its STOP carries Vonage's timestamp "
            f"{when(done.stop_ts)}, later than this machine's clock ({when(done.now)}), and the "
            "later one wins. Check the clock, or run `optin --force` with the number to "
            "opt it in anyway"
        )
        raise SystemExit(1)
    if done.outcome == "newer stop":
        click.echo(f"{masked} stays opted out: a newer opt-out arrived meanwhile")
        raise SystemExit(1)
    click.echo(f"{masked} opted in")
    click.echo(SYNC_LINES[done.sync])
    if done.sync in ("superseded", "pending"):
        raise SystemExit(1)


# How `optin` tells the sync of an opt-in (relay.optouts.OptIn.sync).
SYNC_LINES = {
    "off": "MoEngage Data API not configured: nothing synced",
    "no customer": "no customer_id known for this number: synced when a send names one",
    "synced": "synced to MoEngage (moe_sms_subscription = OPTIN)",
    "superseded": "not synced: the number opted out again meanwhile; MoEngage gets OPTOUT",
    "pending": "MoEngage did not accept the sync; it is pending: run `push` later",
}
