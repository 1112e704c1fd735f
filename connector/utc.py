"""Times as the commands and /health print them: UTC, to the second."""

from datetime import UTC, datetime


def when(epoch):
    """`2026-11-23 10:00:00Z` for an epoch time."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def iso(epoch):
    """`2026-11-23T10:00:00Z`, as warnings carry their `since`."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
