"""`flask --app app <command>`: every operator command, registered on the app. Each lives in
the module named for what it acts on; they read and act through relay/ and diagnostics/."""

import click

from connector.commands import database, diagnose, events, optouts, rehearse
from connector.commands.sign_webhook import sign_webhook_command
from connector.version import __version__


@click.command("version")
def version_command():
    """Print this connector's version (CHANGELOG.md says what each changed)."""
    click.echo(f"vonage-moengage-connector {__version__}")


COMMANDS = [
    version_command,
    events.pending_command,
    events.push_command,
    events.requeue_command,
    optouts.optouts_command,
    optouts.optin_command,
    database.copy_sqlite,
    sign_webhook_command,
    database.prune_command,
]


def init_app(app, make_app):
    """Register every command; `make_app(settings)` builds and starts an app (the rehearsal's)."""
    for command in COMMANDS:
        app.cli.add_command(command)
    app.cli.add_command(rehearse.rehearse_command(make_app))
    diagnose.init_app(app)
