"""Opt-outs as an operator reads them: whether a number's state has reached MoEngage."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connector.settings import Settings


def sync_state(settings: "Settings", waiting: bool, synced: bool) -> str:
    """Where a number's opt-out or opt-in stands with MoEngage's Data API, and why."""
    if waiting:
        return "queued for MoEngage, not accepted yet (`push` retries it)"
    if synced:
        return "synced to MoEngage"
    if not settings.data_api_enabled:
        return (
            "not synced: the MoEngage Data API is not configured "
            "(MOENGAGE_WORKSPACE_ID, MOENGAGE_DATA_API_KEY)"
        )
    return "not synced: no customer_id known yet (synced when a send names one)"
