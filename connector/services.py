"""What the routes work with, built once per app from the settings."""

from dataclasses import dataclass, field

from flask import after_this_request, current_app

from .config import Settings
from .credentials import AcceptedPairs, LegacyRefs
from .moengage import MoEngageClient
from .ratelimit import RateLimiter
from .store import Store, open_store
from .vonage import VonageClient


@dataclass
class Services:
    settings: Settings
    store: Store
    vonage: VonageClient
    moengage: MoEngageClient
    limiter: RateLimiter
    # Events may wait in the store (true at start, and after a failed forward): the next
    # successful forward sweeps them.
    backlog: bool = True
    # Key and secret pairs Vonage accepted, remembered in front of the store.
    accepted_pairs: AcceptedPairs = field(default_factory=AcceptedPairs)
    legacy_refs: LegacyRefs = field(default_factory=LegacyRefs)


def build_services(settings):
    pool = max(settings.threads, 10)
    store = open_store(settings)
    return Services(
        settings=settings,
        store=store,
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
        limiter=RateLimiter(
            settings.vonage_max_rps, store.describe(), max_waiting=max(1, settings.threads // 2)
        ),
    )


def services():
    return current_app.extensions["connector"]


def run_after_response(task):
    """Run `task()` once this request's answer is sent, so the client does not wait for it."""

    @after_this_request
    def schedule(response):
        response.call_on_close(task)
        return response
