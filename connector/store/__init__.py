"""Durable state: sends, forwarded events, opt-outs. One interface, chosen backend at start."""
from .base import OPTIN, OPTOUT, Claim, Event, Store
from .sqlite import SqliteStore

__all__ = ["OPTIN", "OPTOUT", "Claim", "Event", "Store", "SqliteStore", "open_store"]


def open_store(settings):
    """The backend the settings name, with its schema created (safe to run again)."""
    store = SqliteStore(settings.database_path)
    store.init_schema()
    return store
