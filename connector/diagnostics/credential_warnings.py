"""The warnings about checking callers' key and secret pairs (doctor.py's RULES): Vonage's
Account API failing to answer (the sends were 503, the credentials may be right), and a flood
of sends refused before reaching Vonage (made-up or refused pairs). Both apart from the
`vonage-credentials` warning, which is Vonage refusing a pair."""

from connector.diagnostics import evidence
from connector.store.refused import REFUSED_FOR

FLOOD_MIN = 50  # sends refused before reaching Vonage, within the clearing window, to warn


def account_api(ctx, rows, now):
    row = rows.get("account_api")
    if not row:
        return []
    return [
        evidence.warning(
            "account-api",
            f"{row['count']} checks of a Vonage API key and secret with Vonage's Account API "
            f"failed; last error: {row['detail']['last']}. Those sends were answered 503 and "
            "not made; this says nothing against the key and secret.",
            f"Check that this server reaches {ctx.settings.vonage_account_url} (a firewall, "
            "a proxy, DNS) and Vonage's status page (https://vonageapi.statuspage.io); do not "
            "change the credentials in MoEngage for this. MoEngage's retries send once it "
            "answers.",
            row,
        )
    ]


def refused_pairs(ctx, rows, now):
    row = rows.get("refused_pairs")
    if not row or row["count"] < FLOOD_MIN:
        return []
    minutes = max(row["last_seen"] - row["since"], 60.0) / 60
    return [
        evidence.warning(
            "refused-pairs",
            f"{row['count']} sends were refused before reaching Vonage (about "
            f"{row['count'] / minutes:.0f} a minute): their key and secret were refused by "
            f"Vonage in the last {REFUSED_FOR / 60:.0f} minutes, or came faster than unknown "
            f"pairs are checked ({ctx.pair_checks.per_second} a second). Someone without your "
            "credentials may be probing the connector; they sent nothing and spent nothing.",
            "If MoEngage's sender is yours and still works, set VONAGE_API_KEYS to your "
            "team's API keys so other keys are refused outright, and restrict who can reach "
            "the connector. If your own sends are among them, correct the secret in MoEngage's "
            "Authorization header.",
            row,
        )
    ]
