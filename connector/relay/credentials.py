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
import time

from connector.clients.vonage import VonageError
from connector.errors import Failure
from connector.relay.pair_checks import NotChecked

log = logging.getLogger(__name__)
KNOWN_FOR = 24 * 3600.0  # a pair Vonage accepted this long ago is checked again
REFRESH_AFTER = 3600.0  # an accepted pair's time in memory is brought forward this often
MAX_REMEMBERED = 10_000  # pairs kept in each process's memory
ANSWER_MARGIN = 0.25  # seconds an Account API check leaves the send to answer in
UNCONFIRMED_RETRY_AFTER = 5  # Retry-After when the Account API could not confirm a pair


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

    def known_here(self, pair, now):
        """Did Vonage accept `pair` within KNOWN_FOR, as far as this process knows? No I/O."""
        return now - self._seen.get(pair, -math.inf) < KNOWN_FOR

    def known(self, store, pair, now):
        """Did Vonage accept `pair` within KNOWN_FOR?"""
        if self.known_here(pair, now):
            return True
        at = store.credentials_accepted_at(pair)
        if at is None or now - at >= KNOWN_FOR:
            return False
        self._remember(pair, at)
        return True

    def forget(self, pair):
        """Vonage refused `pair`: its secret was changed or revoked."""
        with self._lock:
            self._seen.pop(pair, None)

    def _remember(self, pair, at):
        with self._lock:
            if len(self._seen) >= MAX_REMEMBERED:
                self._seen.clear()
            self._seen[pair] = at


class Unconfirmed(Failure):
    """Vonage's Account API could not say whether it accepts a pair (unreachable, too slow,
    an answer that is neither its balance nor its 401/403): not a wrong secret, so a 503."""


class Ticket:
    """How an admitted send goes on: `known` (Vonage accepted its pair: it takes a rate slot),
    `probe` (the pair's first send is its check: no slot; `release` once it is answered)."""

    def __init__(self, known, probe=False, release=None):
        self.known, self.probe = known, probe
        self._release = release

    def release(self):
        if self._release is not None:
            self._release()
            self._release = None


KNOWN, UNKNOWN = Ticket(True), Ticket(False)


def admit(services, api_key, api_secret, pair, to, started):
    """Decide, before the send writes anything, whether a send with `pair` may go on: raise
    the Failure it is answered with, or return its Ticket.

    A pair Vonage refused within ten minutes is answered as it was then. An unknown pair
    sending to an opted-out number is confirmed first (see `confirm`). With VONAGE_MAX_RPS set
    a rate slot is only for a pair known good: an unknown pair's send is its own check, one at
    a time per pair and within the instance's checks a second, and takes no slot, so a wrong
    secret never spends or exhausts the account's rate (sending.py charges the slot once
    Vonage accepts it).
    """
    deadline = started + services.settings.vonage_timeout
    now = time.time()
    if services.accepted_pairs.known(services.store, pair, now):
        return KNOWN
    remembered_refusal(services, pair, now)
    if services.store.is_opted_out(to):
        confirm(services, api_key, api_secret, pair, now, deadline - time.monotonic())
        return KNOWN
    if not services.limiter.interval:
        services.pair_checks.refuse_if_spent()  # as an opted-out recipient's send would be
        return UNKNOWN
    if not _lead(services, pair, deadline):
        return KNOWN
    try:
        services.pair_checks.turn(deadline)
    except Failure:
        services.pair_checks.done(pair)
        raise
    return Ticket(False, probe=True, release=lambda: services.pair_checks.done(pair))


def confirm(services, api_key, api_secret, pair, now, timeout):
    """Return once Vonage is known to accept the pair, so a caller without the right secret
    learns nothing from what the connector knows (an opt-out, an earlier answer).

    A pair Vonage took a send from (in this process) or confirmed (in any) within a day is
    known; any other is checked once with Vonage's Account API (one check of a pair at a time,
    within the instance's checks a second). A 401/403 there is answered as Vonage answers a
    send with it (VonageError 401) and remembered ten minutes; an Account API that cannot tell
    gives Unconfirmed (503): the pair is not known to be wrong.
    """
    deadline = time.monotonic() + timeout
    if not _lead(services, pair, deadline):
        return
    try:
        services.pair_checks.turn(deadline)
        _ask_account_api(services, api_key, api_secret, pair, deadline)
    finally:
        services.pair_checks.done(pair)


def _lead(services, pair, deadline):
    """True when this send is to check `pair`; False once it is known good. Raises the
    remembered refusal, or NotChecked when another send's check outlasts `deadline`."""
    while True:
        if _settled(services, pair):
            return False
        if services.pair_checks.lead(pair, deadline):
            break
    try:  # another send's whole check may have run between the look above and the lead
        if not _settled(services, pair):
            return True
    except BaseException:
        services.pair_checks.done(pair)
        raise
    services.pair_checks.done(pair)
    return False


def _settled(services, pair):
    """True when `pair` is known good; raises its remembered refusal; False when unknown."""
    now = time.time()
    if services.accepted_pairs.known(services.store, pair, now):
        return True
    remembered_refusal(services, pair, now)
    return False


def _ask_account_api(services, api_key, api_secret, pair, deadline):
    timeout = deadline - time.monotonic() - ANSWER_MARGIN
    try:
        if timeout <= 0.05:
            raise VonageError(502, "no time was left to ask it")
        services.vonage.check_credentials(api_key, api_secret, timeout)
    except VonageError as exc:
        if exc.status == 401:
            refused(services, pair, exc)
            raise
        log.warning("Vonage's Account API could not confirm an API key and secret: %s", exc.reason)
        services.evidence.seen(9, "account_api", last=exc.reason[:200])
        raise Unconfirmed(
            503,
            f"Vonage's Account API could not confirm the API key and secret ({exc.reason}); "
            "the send was not made. This is not a sign the key or secret is wrong: retry later",
            retry_after=UNCONFIRMED_RETRY_AFTER,
        ) from None
    services.accepted_pairs.confirmed(services.store, pair, time.time())


def probe_accepted(services, api_key, pair):
    """Vonage took the send that was `pair`'s check: the pair is known good to every worker
    (one write per pair and process a day), and the account's rate slot it used is taken
    now, so the schedule counts it."""
    try:  # the SMS is sent: nothing here may turn its 200 into an error (and a resend)
        services.limiter.charge(api_key)
        services.accepted_pairs.confirmed(services.store, pair, time.time())
    except Exception:
        log.exception("could not record an accepted Vonage API key and secret")
        services.accepted_pairs.accepted(pair, time.time())  # known here, at least


def remembered_refusal(services, pair, now):
    """Raise the answer Vonage's refusal of `pair` got, if it came within ten minutes."""
    found = services.store.credentials_refusal(pair, now)
    if found:
        raise NotChecked(*found)


def refused(services, pair, failure):
    """Vonage refused `pair` (401/403, answered `failure`): remembered ten minutes by every
    worker and instance, and no longer known good here."""
    services.accepted_pairs.forget(pair)
    try:
        services.store.credentials_refused(pair, time.time(), failure.status, failure.reason)
    except Exception:  # the answer stands; only the memory of it is lost
        log.exception("could not remember a refused Vonage API key and secret")


def legacy_ref_key(api_key, client_ref):
    """The idempotency key a `client_ref` had before keys included the secret (API key alone)."""
    digest = hashlib.sha256(json.dumps(["ref", api_key, client_ref]).encode()).hexdigest()
    return f"ref:{digest}"


def legacy_replay(services, api_key, api_secret, pair, client_ref, now):
    """(status, answer) of a send remembered under the old key, replayed to a pair Vonage
    accepts (raises what `confirm` raises otherwise); None when there is no such send. Keeps
    a `client_ref` sent before the upgrade from being sent again, without telling its answer
    to a caller who has only the key."""
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
