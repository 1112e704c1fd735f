"""The console's sign-in: sessions kept in the store, CSRF tokens, the wrong-password throttle.

A signed cookie alone could not be revoked: the cookie holds a random id, the store keeps only
its hash, so "Sign out" (a DELETE every worker and instance sees) makes a copied cookie worthless.
Each session row names the password it was opened with (`password_id`, a slow hash of
CONSOLE_PASSWORD), so a changed password opens none of the old ones. Wrong passwords are counted
in the store too, so the throttle holds across every worker and instance.
"""

import hashlib
import hmac
import logging
import os
import secrets
from functools import cache

from connector.store import Store

log = logging.getLogger(__name__)

IDLE_SECONDS = 12 * 3600
TOUCH_SECONDS = 60  # last_seen is written at most this often per session, not per page
PER_CLIENT = 5  # wrong passwords from one client within WINDOW ...
BLOCK_SECONDS = 60  # ... refuse its further attempts for this long
ALL_CLIENTS = 30  # attempts of all clients together within WINDOW
WINDOW = 60
KEEP_ATTEMPTS = 3600


@cache
def password_id(password: str) -> str:
    """A slow, salted-by-name hash of the password: what session rows are keyed by, so the
    database never holds the password or a fast hash of it."""
    return hashlib.pbkdf2_hmac("sha256", password.encode(), b"connector-console", 200_000).hex()


def _hash(token):
    return hashlib.sha256(token.encode()).hexdigest()


def password_matches(given: str, password: str) -> bool:
    """Constant-time comparison (of equal-length digests, so the length leaks nothing either)."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(password.encode()).digest()
    )


def open_session(store: Store, password: str, now: float) -> tuple[str, str]:
    """A new session: (cookie value, CSRF token)."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with store.transaction() as tx:
        tx.execute("DELETE FROM console_sessions WHERE last_seen < ?", (now - IDLE_SECONDS,))
        tx.execute(
            "INSERT INTO console_sessions (id_hash, password_id, csrf, created_at, last_seen)"
            " VALUES (?, ?, ?, ?, ?)",
            (_hash(token), password_id(password), csrf, now, now),
        )
    return token, csrf


def find_session(store: Store, token: str | None, password: str, now: float) -> str | None:
    """The session's CSRF token if the cookie opens a live session, else None. A session idle
    for IDLE_SECONDS is gone; using one keeps it alive."""
    if not token:
        return None
    rows = store.query(
        "SELECT csrf, last_seen FROM console_sessions WHERE id_hash = ? AND password_id = ?",
        (_hash(token), password_id(password)),
    )
    if not rows or rows[0][1] < now - IDLE_SECONDS:
        return None
    if rows[0][1] < now - TOUCH_SECONDS:
        with store.transaction() as tx:
            tx.execute(
                "UPDATE console_sessions SET last_seen = ? WHERE id_hash = ?", (now, _hash(token))
            )
    return rows[0][0]


def close_session(store: Store, token: str | None) -> None:
    with store.transaction() as tx:
        tx.execute("DELETE FROM console_sessions WHERE id_hash = ?", (_hash(token or ""),))


def csrf_ok(expected: str | None, given: str | None) -> bool:
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


# -- the throttle -------------------------------------------------------------------------
def attempt(store: Store, client: str, given: str, password: str, now: float) -> str:
    """Check a password under the throttle: "ok", "wrong", or why it was refused unchecked.

    One transaction, serialised across workers and instances (a row lock on PostgreSQL, the
    write lock on SQLite), so concurrent attempts cannot all slip under the limits.
    """
    with store.transaction() as tx:
        tx.execute(
            "INSERT INTO schedule (task, next_at) VALUES ('console-sign-in', 0)"
            " ON CONFLICT (task) DO NOTHING"
        )
        tx.execute("SELECT next_at FROM schedule WHERE task = 'console-sign-in'" + store.lock)
        tx.execute("DELETE FROM console_attempts WHERE at < ?", (now - KEEP_ATTEMPTS,))
        reason = _refusal(tx, client, now)
        if reason:
            return reason
        ok = password_matches(given, password)
        tx.execute(
            "INSERT INTO console_attempts (client, at, outcome) VALUES (?, ?, ?)",
            (client, now, "ok" if ok else "wrong"),
        )
        if not ok and _count(tx, "client = ? AND outcome = 'wrong'", client, now) >= PER_CLIENT:
            tx.execute(
                "INSERT INTO console_attempts (client, at, outcome) VALUES (?, ?, 'block')",
                (client, now + BLOCK_SECONDS),
            )
        return "ok" if ok else "wrong"


def _refusal(tx, client, now):
    blocked = tx.execute(
        "SELECT MAX(at) FROM console_attempts WHERE client = ? AND outcome = 'block'", (client,)
    ).fetchone()[0]
    if blocked and blocked > now:
        return "too many wrong passwords from this client"
    if _count(tx, "outcome != 'block'", None, now) >= ALL_CLIENTS:
        return "too many sign-in attempts from all clients"
    return None


def _count(tx, where, client, now):
    params = ((client,) if client is not None else ()) + (now - WINDOW,)
    return tx.execute(
        f"SELECT COUNT(*) FROM console_attempts WHERE {where} AND at > ?", params
    ).fetchone()[0]


def client_of(remote_addr: str | None, forwarded_for: str | None) -> str:
    """Who is signing in: the address the platform's router saw (the last X-Forwarded-For
    entry, which the client cannot forge) when the peer is a proxy gunicorn trusts
    (FORWARDED_ALLOW_IPS, as for X-Forwarded-Proto), else the peer's own address."""
    setting = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
    trusted = {ip.strip() for ip in setting.split(",")}
    if forwarded_for and ("*" in trusted or (remote_addr or "") in trusted):
        return forwarded_for.split(",")[-1].strip()[:64]
    return (remote_addr or "?")[:64]
