"""Commands for whoever runs the connector: `flask --app app <command>`."""
import click
from flask.cli import with_appcontext

from .services import services
from .store.transfer import NotAConnectorDatabase, copy_sqlite as copy_rows


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
        raise click.ClickException("DATABASE_URL is not set: copy-sqlite copies into the "
                                   "PostgreSQL database it names")
    try:
        counts = copy_rows(path, ctx.store)
    except NotAConnectorDatabase as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Copied {path} into {ctx.store.describe()}:")
    for what, copied, found in counts:
        click.echo(f"  {what}: {copied} of {found} copied")
    click.echo("Rows the database already had, or had newer, were kept as they were.")


COMMANDS = [copy_sqlite]


def init_app(app):
    """Register every command on `app.cli`."""
    for command in COMMANDS:
        app.cli.add_command(command)
