"""What the routes work with, built once per app from the settings."""

import threading
from dataclasses import dataclass, field

from connector.clients.moengage import MoEngageClient
from connector.clients.vonage import VonageClient
from connector.clock import Clock
from connector.diagnostics.evidence import Evidence
from connector.relay.credentials import AcceptedPairs, LegacyRefs
from connector.relay.outbox import Sweeper
from connector.relay.pair_checks import PairChecks
from connector.relay.ratelimit import RateLimiter
from connector.relay.retention import Pruner
from connector.relay.send_records import LateRecords
from connector.setting_schema import SettingError
from connector.settings import Settings
from connector.store import Store, describe, open_store


@dataclass
class Services:
    settings: Settings
    vonage: VonageClient
    moengage: MoEngageClient
    limiter: RateLimiter
    sweeper: Sweeper
    evidence: Evidence
    pruner: Pruner = field(default_factory=Pruner)
    # Key and secret pairs Vonage accepted, remembered in front of the store.
    accepted_pairs: AcceptedPairs = field(default_factory=AcceptedPairs)
    legacy_refs: LegacyRefs = field(default_factory=LegacyRefs)
    # The clock leases and send windows are decided on (the database's, with PostgreSQL).
    clock: Clock = field(default_factory=Clock)
    # Send answers the store could not take yet (a database restarting), written later.
    late_records: LateRecords = field(default_factory=LateRecords)
    # Set by `connector.start` (a server): the store's statements then fit in a request.
    serving: bool = False
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
            if self.settings.rejected:  # never a default in place of what was refused
                raise SettingError(self.settings.rejected)
            with self._opening:
                if self._store is None:
                    self._store = open_store(self.settings, serving=self.serving)
        return self._store

    @property
    def store_opened(self):
        return self._store is not None

    def close(self):
        """Give the database's connections back, if it was opened at all, once the background
        prune and sweep are over (their transactions would run on closed connections)."""
        if self._store is not None:
            self.pruner.wait(5.0)
            self.sweeper.wait(5.0)
            self.late_records.flush(self._store)
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
            # A quarter of the threads at most wait on MoEngage; the rest stay free for sends.
            max_waiting=max(2, settings.threads // 4),
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
        evidence=Evidence(settings.evidence_flush_seconds, settings.warning_clear_seconds),
        pair_checks=PairChecks(
            describe(settings),
            None if settings.database_url else f"{settings.database_path}-checks",
        ),
    )
    if settings.database_url:  # instances share the database's clock
        ctx.clock = Clock(lambda: ctx.store)
    return ctx


def of(app):
    """The Services an app was built with (create_app keeps them in `app.extensions`)."""
    return app.extensions["connector"]
