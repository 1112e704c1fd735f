"""What each refused webhook check and each Vonage refusal of a send means, and its fix:
the words of warnings 2 and 3 (doctor.py), as tables."""

# A signature failure's reason (signatures.py) -> which check failed.
SIGNATURE_CHECKS = [
    ("no Authorization", "header"),
    ("Authorization is not", "scheme"),
    ("VONAGE_SIGNATURE_SECRET is not set", "secret_unset"),
    ("signature matches no", "signature"),
    ("payload_hash", "payload_hash"),
    ("token `iat`", "iat"),
]
SIGNATURE_ADVICE = {
    "header": (
        "arrived without an Authorization header",
        (
            "Turn on signed webhooks for the Vonage account (Dashboard > Settings > Signed "
            "webhooks); a proxy in front of the connector may also be dropping the header"
        ),
    ),
    "scheme": (
        "carried an Authorization header that is not a Bearer token",
        (
            "Something between Vonage and the connector replaces the Authorization header; "
            "let it through unchanged"
        ),
    ),
    "secret_unset": (
        "could not be checked: VONAGE_SIGNATURE_SECRET is not set",
        (
            "Copy the signature secret from Vonage (Dashboard > Settings > Signed webhooks) into "
            "VONAGE_SIGNATURE_SECRET"
        ),
    ),
    "signature": (
        "were signed with a secret that is not VONAGE_SIGNATURE_SECRET",
        (
            "Copy the account's current signature secret into VONAGE_SIGNATURE_SECRET (while "
            "rotating, list old and new separated by a comma)"
        ),
    ),
    "payload_hash": (
        "were signed correctly, but the body is not the one Vonage signed (payload_hash)",
        (
            "The secret is right: a proxy or load balancer between Vonage and the connector "
            "changes request bodies (re-encoding, decompression); let them through unchanged"
        ),
    ),
    "iat": (
        "carried a token whose `iat` (issued at) is not a number",
        "Make sure only Vonage posts to /webhooks/status and /webhooks/inbound",
    ),
    "token": (
        "carried a malformed token",
        "Make sure only Vonage posts to /webhooks/status and /webhooks/inbound",
    ),
}
VONAGE_ADVICE = {
    "401": (
        "Vonage refused the API key and secret (401)",
        (
            "Correct the key and secret in MoEngage's sender header `Authorization: Custom "
            "<Vonage API key>:<Vonage API secret>` (Vonage Dashboard > API settings)"
        ),
    ),
    "403": (
        "Vonage refused the API key's access (403)",
        (
            "Check that the API key in MoEngage's sender header is active and allowed to use the "
            "Messages API (Vonage Dashboard > API settings)"
        ),
    ),
    "402": (
        "Vonage refused sends for low balance (402)",
        "Top up the Vonage account's balance (Dashboard > Billing)",
    ),
}
