"""Verify Vonage's signed webhooks: an HS256 JWT in `Authorization: Bearer`, whose
`payload_hash` claim is the SHA-256 of the raw body. Pure functions; no Flask.

Vonage's own SDK verifiers check only the signature; the hash check is what stops a valid
token from being replayed with another body. There is deliberately no maximum age: Vonage
retries a webhook for 24 h and a redelivered event is deduplicated anyway. Nor a limit on an
`iat` in the future: it says this machine's clock is behind, not that the webhook is forged,
and a 401 (never retried by Vonage) would lose a STOP to the clock. `ahead` measures it for a
warning.
"""

import hashlib
import hmac
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import jwt

ALGORITHM = "HS256"
FUTURE_LEEWAY = 300  # an `iat` further ahead of our clock than this is warned about


class Rejected(Exception):
    """A webhook that must not be acted on; `status` is the answer (401, or 503 to get a retry)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def verify(authorization: str | None, raw_body: bytes, secrets: Sequence[str]) -> dict[str, Any]:
    """Return the token's claims if the request is Vonage's, else raise Rejected."""
    if authorization is None:
        # Vonage's documented rare unsigned callback: a 5xx makes it retry, signed.
        raise Rejected(503, "no Authorization header (unsigned callback)")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Rejected(401, "Authorization is not a Bearer token")
    if not secrets:
        raise Rejected(503, "VONAGE_SIGNATURE_SECRET is not set")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Rejected(401, "token is not a JWT") from None
    if header.get("alg") != ALGORITHM:
        raise Rejected(401, f"token algorithm {header.get('alg')!r} is not {ALGORITHM}")
    claims = _decode(token, secrets)
    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, (int, float)):
        raise Rejected(401, "token `iat` is not a number")
    expected = hashlib.sha256(raw_body).hexdigest()
    payload_hash = claims.get("payload_hash")
    if not isinstance(payload_hash, str) or not hmac.compare_digest(
        payload_hash.lower().encode(), expected.encode()
    ):
        raise Rejected(401, "payload_hash does not match the body")
    return claims


def ahead(claims: Mapping[str, Any], now: float | None = None) -> float:
    """Seconds the token was issued ahead of this machine's clock when more than
    FUTURE_LEEWAY, else 0: by about that much this clock is behind Vonage's."""
    seconds = claims["iat"] - (time.time() if now is None else now)
    return seconds if seconds > FUTURE_LEEWAY else 0.0


def _decode(token: str, secrets: Sequence[str]) -> dict[str, Any]:
    """Try each configured secret (rotation); only a bad signature moves on to the next."""
    for secret in secrets:
        try:
            return jwt.decode(
                token,
                secret,
                algorithms=[ALGORITHM],
                options={
                    "require": ["iat", "payload_hash"],
                    "verify_iat": False,
                    "verify_aud": False,
                },
            )
        except jwt.InvalidSignatureError:
            continue
        except jwt.PyJWTError as exc:
            raise Rejected(401, f"token rejected: {exc}") from None
    raise Rejected(401, "signature matches no configured signature secret")


def sign(raw_body: bytes, secret: str, **claims: Any) -> str:
    """An `Authorization` value as Vonage signs a webhook: `Bearer` and an HS256 JWT whose
    `payload_hash` is the SHA-256 of the raw body. The connector only verifies; this is for
    `flask rehearse`, `flask sign-webhook` and the tests. `claims` add to or replace Vonage's."""
    payload = {
        "iat": int(time.time()),
        "jti": str(uuid.uuid4()),
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(raw_body).hexdigest(),
        **claims,
    }
    return "Bearer " + jwt.encode(payload, secret, algorithm=ALGORITHM)
