"""Durable state: sends, forwarded events, opt-outs. One interface, chosen backend at start."""
import logging
from urllib.parse import urlsplit

from .base import OPTIN, OPTOUT, Claim, Event, Store
from .postgres import PostgresStore
from .sqlite import SqliteStore

__all__ = ["OPTIN", "OPTOUT", "Claim", "Event", "Store", "PostgresStore", "SqliteStore",
           "open_store"]

log = logging.getLogger(__name__)
POSTGRES_SCHEMES = ("postgres", "postgresql")  # Heroku still hands out postgres://


def open_store(settings):
    """The backend the settings name, with its schema created (safe to run again):
    PostgreSQL when DATABASE_URL is set, else the SQLite file at DATABASE_PATH."""
    if settings.database_url:
        scheme = urlsplit(settings.database_url).scheme
        if scheme not in POSTGRES_SCHEMES:
            # Only the scheme is named: the rest of the URL holds a password.
            raise ValueError(f"DATABASE_URL must start with postgres:// or postgresql://, "
                             f"not {scheme or '(no scheme)'}://")
        store = PostgresStore(settings.database_url, pool_size=settings.threads)
    else:
        store = SqliteStore(settings.database_path)
    store.init_schema()
    log.info("state kept in %s", store.describe())
    return store
