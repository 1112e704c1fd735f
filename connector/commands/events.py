"""`flask pending`, `push` and `requeue`: the events waiting for MoEngage, listed, pushed, or
marked pending again."""

from datetime import UTC, datetime

import click
from flask.cli import with_appcontext

from connector.commands import pending_view
from connector.commands.context import services
from connector.commands.store_access import (
    existing_store,
    store_command,
)
from connector.relay import outbox
from connector.utc import when


def require(*variables):
    """Stop a command, naming the fix, when a setting it needs is missing. Only the settings
    the command needs: `optouts` says nothing about MOENGAGE_DELIVERY_URL."""
    found = [p for p in services().settings.problems() if p.split()[0] in variables]
    if found:
        raise click.ClickException("; ".join(found))


PENDING_LIST = 1000  # events `pending` lists; it counts them all


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
    counts, gave_up = outbox.push_pending(
        ctx, each=lambda event, outcome: _report_push(store, event, outcome)
    )
    if gave_up:
        click.echo(
            f"stopped after {outbox.SWEEP_GIVE_UP} failures in a row: MoEngage is not "
            "accepting events; run push again once it is back"
        )
    left = store.count_pending()  # whoever forwarded them: this push, the sweep, redeliveries
    dropped = counts[outbox.SUPERSEDED]
    meanwhile = counts[outbox.DONE]
    click.echo(
        f"{counts[outbox.SENT]} sent, {left} still pending"
        + (f", {dropped} dropped as superseded" if dropped else "")
        + (f", {meanwhile} forwarded meanwhile by the connector itself" if meanwhile else "")
    )
    if left or gave_up:
        raise SystemExit(1)


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
