"""Who may send, and what a caller learns before Vonage has accepted its key and secret.

The Vonage API key is not secret (it is in every signed webhook's `api_key` claim), so nothing
a send answers from the connector's own state (a replayed answer, an opt-out) may rest on the
key alone: replays and joins are keyed by the pair (`pair_hash`), and an opt-out is told only
to a pair Vonage accepted.
"""

import hashlib
import hmac
import json
import logging
import math
import threading

from .errors import Failure
from .vonage import VonageError

log = logging.getLogger(__name__)
KNOWN_FOR = 24 * 3600.0  # a pair Vonage accepted this long ago is checked again
REFRESH_AFTER = 3600.0  # an accepted pair's time in memory is brought forward this often
MAX_REMEMBERED = 10_000  # pairs kept in each process's memory


def pair_hash(api_key, api_secret):
    """HMAC-SHA256 of the key, keyed with the secret: the same for the same pair in every
    process and instance, useless without the secret, and never the secret itself."""
    digest = hmac.new(api_secret.encode(), b"vonage-api-key:" + api_key.encode(), hashlib.sha256)
    return digest.hexdigest()


def check_allowed(settings, api_key):
    """VONAGE_API_KEYS, when set, limits the connector to the team's own accounts."""
    if settings.vonage_api_keys and api_key not in settings.vonage_api_keys:
        log.warning("send refused: its Vonage API key is not in VONAGE_API_KEYS")
        raise Failure(401, "this connector does not send for that Vonage API key")


class AcceptedPairs:
    """The pairs Vonage accepted recently. A send Vonage took is remembered in this process
    only (no write on the send's path); a pair the Account API confirmed is also written to the
    store, so other processes and restarts do not ask Vonage again for a day."""

    def __init__(self):
        self._seen = {}  # pair_hash -> when Vonage last accepted it (as far as we know)
        self._lock = threading.Lock()

    def accepted(self, pair, now):
        """Vonage took a send with `pair` at `now`."""
        if now - self._seen.get(pair, -math.inf) >= REFRESH_AFTER:
            self._remember(pair, now)

    def confirmed(self, store, pair, now):
        """Vonage's Account API accepted `pair` at `now`."""
        store.credentials_accepted(pair, now)
        self._remember(pair, now)

    def known(self, store, pair, now):
        """Did Vonage accept `pair` within KNOWN_FOR?"""
        if now - self._seen.get(pair, -math.inf) < KNOWN_FOR:
            return True
        at = store.credentials_accepted_at(pair)
        if at is None or now - at >= KNOWN_FOR:
            return False
        self._remember(pair, at)
        return True

    def _remember(self, pair, at):
        with self._lock:
            if len(self._seen) >= MAX_REMEMBERED:
                self._seen.clear()
            self._seen[pair] = at


def confirm(services, api_key, api_secret, pair, now, timeout):
    """Return once Vonage is known to accept the pair; else raise Failure(401), so a caller
    without the right secret learns nothing from what the connector knows (an opt-out).

    A pair Vonage took a send from (in this process) or confirmed (in any) within a day is
    known; any other is checked once with Vonage's Account API, and a 401/403 there is
    answered as Vonage answers a send with it.
    """
    if services.accepted_pairs.known(services.store, pair, now):
        return
    try:
        services.vonage.check_credentials(api_key, api_secret, timeout)
    except VonageError as exc:
        if exc.status == 401:
            raise
        log.warning("could not confirm a Vonage API key and secret: %s", exc.reason)
        raise Failure(
            401,
            f"Vonage did not confirm the API key and secret in time ({exc.reason}); not sent",
        ) from None
    services.accepted_pairs.confirmed(services.store, pair, now)


def legacy_ref_key(api_key, client_ref):
    """The idempotency key a `client_ref` had before keys included the secret (API key alone)."""
    digest = hashlib.sha256(json.dumps(["ref", api_key, client_ref]).encode()).hexdigest()
    return f"ref:{digest}"


def legacy_replay(services, api_key, api_secret, pair, client_ref, now):
    """(status, answer) of a send remembered under the old key, replayed to a pair Vonage
    accepts (raises Failure 401 otherwise); None when there is no such send. Keeps a
    `client_ref` sent before the upgrade from being sent again, without telling its answer to
    a caller who has only the key."""
    if not services.legacy_refs(services.store):
        return None
    outcome = services.store.send_outcome(legacy_ref_key(api_key, client_ref))
    if outcome is None or outcome.state != "done":
        return None
    confirm(services, api_key, api_secret, pair, now, services.settings.vonage_timeout - 0.5)
    return outcome.status, outcome.answer


class LegacyRefs:
    """Whether the store holds `client_ref` keys of the old form: asked once per process."""

    def __init__(self):
        self._found = None

    def __call__(self, store):
        if self._found is None:
            self._found = store.has_legacy_refs()
        return self._found
