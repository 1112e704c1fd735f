"""The database as a `flask` command sees it: only the server creates one, and a command that
cannot use it says so in one line naming the database it looked for, and exits 1.

A SQLite file that does not exist is a mistyped DATABASE_PATH or the wrong folder (or, with
its `-lock` file left, a database deleted or moved), never an empty database to report on;
PostgreSQL down, unreachable or refusing is named by its host, never its user or password.
"""

import functools
import os
import sqlite3
from urllib.parse import urlsplit

import click
import psycopg

from connector.commands.context import services
from connector.store import SchemaTooNew, StoreUnavailable, describe


def missing_database(settings):
    """Why the database the settings name cannot be read, with the fix; None if it is there,
    or the database is PostgreSQL. A refused DATABASE_URL or DATABASE_PATH never reads another."""
    if settings.rejected:
        return "\n".join(f"configuration: {problem}" for problem in settings.rejected)
    path = settings.database_path
    if settings.database_url or os.path.exists(path):
        return None
    where = f"{os.path.abspath(path)} (DATABASE_PATH={path})"
    if os.path.exists(f"{path}-lock"):
        return (
            f"no database at {where}, but {path}-lock shows one was there: it was deleted or "
            "moved, and nothing was created. Put it back; or, to start the connector on an "
            f"empty database (forgetting every opt-out and send), delete {path}-lock"
        )
    return (
        f"no database at {where}: nothing to read, and nothing was created. Check "
        "DATABASE_PATH, or run this from the folder the connector runs in"
    )


def existing_store():
    """The store, opened for a command; a missing SQLite file stops the command (exit 1)."""
    ctx = services()
    missing = missing_database(ctx.settings)
    if missing:
        raise click.ClickException(missing)
    return ctx.store


def failure_line(settings, exc):
    """One line for a store failure: the database it names, and what went wrong."""
    where = describe(settings)
    if isinstance(exc, (StoreUnavailable, SchemaTooNew, ValueError)):
        reason = getattr(exc, "reason", None) or str(exc)
    else:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    password = urlsplit(settings.database_url).password if settings.database_url else None
    if password:
        reason = reason.replace(password, "***")
    return f"cannot use the database {where}: {reason}"


STORE_FAILURES = (StoreUnavailable, SchemaTooNew, psycopg.Error, sqlite3.Error)


def store_command(command):
    """Run `command` (inside the app context) with its store failures answered in one line."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        settings = services().settings
        missing = missing_database(settings)
        if missing:
            raise click.ClickException(missing)
        try:
            return command(*args, **kwargs)
        except STORE_FAILURES as exc:
            raise click.ClickException(failure_line(settings, exc)) from None
        except ValueError as exc:
            if "DATABASE_URL" not in str(exc):
                raise
            raise click.ClickException(failure_line(settings, exc)) from None

    return wrapper
