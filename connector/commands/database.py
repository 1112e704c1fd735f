"""`flask copy-sqlite` and `prune`: moving a SQLite file's state into PostgreSQL, pruning now."""

import time

import click
from flask.cli import with_appcontext

from connector.commands.context import services
from connector.commands.store_access import (
    STORE_FAILURES,
    failure_line,
    store_command,
)
from connector.relay.retention import cutoff, prune
from connector.store.transfer import NotAConnectorDatabase
from connector.store.transfer import copy_sqlite as copy_rows
from connector.utc import when


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
