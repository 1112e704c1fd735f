"""Key and secret pairs Vonage refused (401/403), remembered for REFUSED_FOR seconds in the
store, so every worker and instance answers the same wrong pair without asking Vonage again.

A row is the pair's keyed hash (never the key or the secret), when Vonage refused it, and the
answer the caller was given (Vonage's own words), so a remembered refusal reads as the first
one did. Rows older than REFUSED_FOR are deleted as new ones come, a batch at a time, so the
table holds at most what ten minutes of refusals bring.
"""

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

REFUSED_FOR = 600.0  # seconds a pair Vonage refused is answered from memory
EXPIRE_BATCH = 100  # expired rows deleted per new refusal


class RefusedPairs:
    """Mixed into Store: uses its `transaction()` and `query()`."""

    def transaction(self) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        raise NotImplementedError

    def credentials_refused(self, pair_hash: str, now: float, status: int, reason: str) -> None:
        """Vonage refused this pair at `now`; the caller was answered `status`, `reason`. A pair
        once accepted is forgotten as accepted: its secret was changed or revoked."""
        with self.transaction() as tx:
            tx.execute(
                "DELETE FROM refused_credentials WHERE pair_hash IN (SELECT pair_hash FROM"
                " refused_credentials WHERE refused_at < ? ORDER BY refused_at LIMIT ?)",
                (now - REFUSED_FOR, EXPIRE_BATCH),
            )
            tx.execute(
                "INSERT INTO refused_credentials (pair_hash, refused_at, status, reason)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (pair_hash) DO UPDATE SET"
                " refused_at = excluded.refused_at, status = excluded.status,"
                " reason = excluded.reason",
                (pair_hash, now, status, reason[:500]),
            )
            tx.execute("DELETE FROM accepted_credentials WHERE pair_hash = ?", (pair_hash,))

    def credentials_refusal(self, pair_hash: str, now: float) -> tuple[int, str] | None:
        """(status, reason) Vonage's refusal of this pair was answered with, if it was refused
        within REFUSED_FOR of `now`; else None."""
        rows = self.query(
            "SELECT status, reason FROM refused_credentials WHERE pair_hash = ? AND refused_at > ?",
            (pair_hash, now - REFUSED_FOR),
        )
        return (rows[0][0], rows[0][1]) if rows else None
