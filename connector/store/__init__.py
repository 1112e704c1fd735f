"""Durable state: sends, forwarded events, opt-outs. One interface, chosen backend at start."""

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from connector.store.base import OPTIN, OPTOUT, Claim, Store, StoreUnavailable
from connector.store.migrations import LATEST, STEPS, SchemaTooNew
from connector.store.postgres import PostgresStore
from connector.store.rows import Event
from connector.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from connector.settings import Settings

__all__ = [
    "OPTIN",
    "OPTOUT",
    "Claim",
    "Event",
    "PostgresStore",
    "SchemaTooNew",
    "SqliteStore",
    "Store",
    "StoreUnavailable",
    "describe",
    "open_store",
]

log = logging.getLogger(__name__)
POSTGRES_SCHEMES = ("postgres", "postgresql")  # Heroku still hands out postgres://


def describe(settings: "Settings") -> str:
    """The database the settings name, as its store's `describe()` says it (never a user or
    password), without opening it."""
    if not settings.database_url:
        return f"sqlite:{settings.database_path}"
    try:
        return PostgresStore(settings.database_url, pool_size=1).describe()
    except Exception:  # noqa: BLE001 - an unreadable URL is reported when the store opens
        return "postgresql:?"


def open_store(settings: "Settings", serving: bool = False) -> Store:
    """The backend the settings name, migrated to this connector's schema (safe to run again):
    PostgreSQL when DATABASE_URL is set, else the SQLite file at DATABASE_PATH. Raises
    SchemaTooNew, changing nothing, on a database a newer connector has migrated. `serving`:
    for a server's requests, whose statements must fit in VONAGE_TIMEOUT (pg_locks.py)."""
    if settings.database_url:
        scheme = urlsplit(settings.database_url).scheme
        if scheme not in POSTGRES_SCHEMES:
            # Only the scheme is named: the rest of the URL holds a password.
            raise ValueError(
                f"DATABASE_URL must start with postgres:// or postgresql://, "
                f"not {scheme or '(no scheme)'}://"
            )
        store: Store = PostgresStore(
            settings.database_url,
            pool_size=settings.database_pool_size,
            budget=settings.vonage_timeout if serving else None,
        )
    else:
        store = SqliteStore(settings.database_path)
    for step in store.init_schema():
        log.info("database migrated to schema version %d: %s", step, STEPS[step - 1][0])
    log.info("state kept in %s (schema version %d)", store.describe(), LATEST)
    return store
