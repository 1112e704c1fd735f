"""A stored event as the store hands it out, and the JSON the store writes: shared by base.py
and statuses.py (which base.py mixes in, so neither can import the other for these)."""

import json
from collections.abc import Sequence
from typing import Any, NamedTuple


class Event(NamedTuple):
    id: int
    dedupe_key: str
    message_uuid: str | None
    target: str  # tracking | data_api
    payload: dict[str, Any]
    is_final: bool
    attempts: int


def _dumps(value: Any) -> str:
    """Stored JSON without the spaces json.dumps adds by default: bytes kept per send."""
    return json.dumps(value, separators=(",", ":"))


def _event(row: Sequence[Any]) -> Event:
    payload = json.loads(row[4])
    if row[1].startswith("status:") and "trackingId" not in payload:
        payload = {"trackingId": row[2], **payload}  # stored without it: it is message_uuid
    return Event(row[0], row[1], row[2], row[3], payload, bool(row[5]), row[6])
