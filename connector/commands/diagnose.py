"""`flask --app app trace ID`, `doctor` and `report`: a message's life, what is misconfigured,
a period at a glance. They read the database only, so they work from a PaaS one-off shell
(`heroku run`, Render's shell) against production."""

import json
import time
from datetime import UTC, datetime, timedelta

import click
from flask.cli import with_appcontext

from connector.commands.context import services
from connector.commands.store_access import existing_store, store_command
from connector.diagnostics import doctor, report, trace
from connector.utc import when


@click.command("trace")
@click.argument("ident", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of lines.")
@click.option("--unmask", is_flag=True, help="With --json: phone numbers in full.")
@with_appcontext
@store_command
def trace_command(ident, as_json, unmask):
    """Every step of a message, oldest first: ID is a trackingId (Vonage message_uuid), a
    client_ref, or a phone number (its sends, replies and opt-out history)."""
    if unmask and not as_json:
        raise click.UsageError("--unmask shows numbers in full, and only with --json")
    found = trace.find(
        existing_store(), ident, unmask=unmask, country=services().settings.default_country
    )
    if found is None:
        click.echo(f"nothing recorded for {ident!r} (trackingId, client_ref or phone number)")
        raise SystemExit(1)
    if as_json:
        click.echo(json.dumps(found, indent=2))
    else:
        for line in trace.lines(found):
            click.echo(line)


@click.command("doctor")
@with_appcontext
@store_command
def doctor_command():
    """What the connector's settings and its own traffic say is wrong, with the fix for each;
    exit 1 when there is anything."""
    ctx = services()
    problems = list(ctx.settings.problems())
    found = doctor.warnings(ctx) if existing_store() else []
    for problem in problems:
        click.echo(f"[setting] {problem}\n")
    for warning in found:
        click.echo(
            f"[{warning['code']}] {warning['message']} Seen {_times(warning['count'])} since "
            f"{warning['since']}.\n  Fix: {warning['fix']}\n"
        )
    if problems or any(warning["code"] != doctor.PROBING for warning in found):
        raise SystemExit(1)
    click.echo(
        "No problem found: settings complete, and no warning in the last "
        f"{ctx.settings.warning_clear_seconds:g} s of traffic"
        + (" (probing apart)." if found else ".")
    )


def _times(count):
    return "once" if count == 1 else f"{count} times"


def _moment(value):
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter("use ISO 8601, e.g. 2026-11-23T00:00:00Z") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@click.command("report")
@click.option("--since", help="ISO 8601 start (default: 24 hours ago).")
@click.option("--until", help="ISO 8601 end (default: now).")
@click.option("--campaign", help="Only the sends of this campaign_id.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of lines.")
@with_appcontext
@store_command
def report_command(since, until, campaign, as_json):
    """Sends by answer, delivery rate, failures by Vonage error code, opt-outs and opt-ins,
    SMS parts and cost by currency."""
    start = _moment(since) if since else time.time() - timedelta(days=1).total_seconds()
    end = _moment(until) if until else None
    built = report.build(existing_store(), start, end, campaign)
    if as_json:
        click.echo(json.dumps(built, indent=2))
        return
    for line in report.lines(built, when):
        click.echo(line)


COMMANDS = [trace_command, doctor_command, report_command]


def init_app(app):
    for command in COMMANDS:
        app.cli.add_command(command)
