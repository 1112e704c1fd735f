"""What the routes work with, built once per app from the settings."""

import threading
from dataclasses import dataclass, field

from flask import after_this_request, current_app

from .config import Settings
from .credentials import AcceptedPairs, LegacyRefs
from .moengage import MoEngageClient
from .outbox import Sweeper
from .pair_checks import PairChecks
from .ratelimit import RateLimiter
from .store import Store, describe, open_store
from .vonage import VonageClient


@dataclass
class Services:
    settings: Settings
    vonage: VonageClient
    moengage: MoEngageClient
    limiter: RateLimiter
    sweeper: Sweeper
    # Functions given the store as it opens (observe.py makes its transactions carry the trail).
    store_hooks: list = field(default_factory=list, repr=False)
    # Key and secret pairs Vonage accepted, remembered in front of the store.
    accepted_pairs: AcceptedPairs = field(default_factory=AcceptedPairs)
    legacy_refs: LegacyRefs = field(default_factory=LegacyRefs)
    # Checks of pairs not known good, bounded per pair, per instance and in the trail.
    pair_checks: PairChecks | None = None
    _store: Store | None = field(default=None, repr=False)
    _opening: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def store(self):
        """The database, opened (and migrated) on first use: building the app touches no file,
        so `flask --app app --help` creates nothing. gunicorn opens it before serving
        (`connector.start`), so a bad DATABASE_URL still stops the start."""
        if self._store is None:
            with self._opening:
                if self._store is None:
                    store = open_store(self.settings)
                    for hook in self.store_hooks:
                        hook(store)
                    self._store = store
        return self._store

    @property
    def store_opened(self):
        return self._store is not None

    def close(self):
        """Give the database's connections back, if it was opened at all."""
        if self._store is not None:
            self._store.close()


def build_services(settings):
    pool = max(settings.threads, 10)
    ctx = Services(
        settings=settings,
        vonage=VonageClient(
            settings.vonage_api_url, pool_size=pool, account_url=settings.vonage_account_url
        ),
        moengage=MoEngageClient(
            settings.moengage_delivery_url,
            settings.data_api_base,
            settings.moengage_workspace_id,
            settings.moengage_data_api_key,
            settings.moengage_timeout,
            pool_size=pool,
        ),
        # Half the threads at most wait for a send slot; the rest answer webhooks meanwhile.
        # With PostgreSQL the schedule is in the database, shared with every other instance.
        limiter=RateLimiter(
            settings.vonage_max_rps,
            describe(settings),
            max_waiting=max(1, settings.threads // 2),
            # Opened on the first send, as every other use of the store.
            store=(lambda: ctx.store) if settings.database_url else None,
        ),
        sweeper=Sweeper(settings.pending_sweep_seconds),
        pair_checks=PairChecks(
            describe(settings),
            None if settings.database_url else f"{settings.database_path}-checks",
        ),
    )
    return ctx


def services():
    return current_app.extensions["connector"]


def run_after_response(task):
    """Run `task()` once this request's answer is sent, so the client does not wait for it."""

    @after_this_request
    def schedule(response):
        response.call_on_close(task)
        return response
