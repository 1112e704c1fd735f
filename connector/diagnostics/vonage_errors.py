"""Vonage's SMS error codes (the `error.title` of a status webhook) and what they mean, from
the Messages API v1 specification's `x-errors`; for `flask report` and the carrier warning."""

MEANING = {
    "1000": "Throttled: the account's submission capacity was exceeded",
    "1010": "Missing params",
    "1020": "Invalid params",
    "1022": "Invalid template or template parameters",
    "1030": "Internal error in Vonage's platform",
    "1040": "Invalid message (e.g. an unrecognised number prefix)",
    "1050": "Number barred: the recipient may not receive messages",
    "1060": "Partner account barred",
    "1070": "Provider quota exceeded",
    "1100": "Communication failed: not submitted",
    "1120": "Illegal Sender Address: the sender ID (`from`) is not allowed in that country",
    "1160": "Non white-listed destination (demo account)",
    "1170": "Invalid recipient",
    "1180": "Destination temporarily unavailable",
    "1190": "Absent subscriber permanent: the number is no longer active",
    "1200": "Portability error after the user changed carrier",
    "1210": "Anti-spam rejection by the carrier (sender ID or content)",
    "1220": "Handset busy",
    "1230": "Temporary network failure",
    "1240": "Illegal number: the user sent STOP to this sender",
    "1241": "Too many send requests to the number",
    "1250": "Unroutable: unsupported network, or a prepaid/reseller account",
    "1251": "Unable to route traffic to the destination",
    "1260": "Destination unreachable",
    "1270": "Subscriber age restriction",
    "1280": "Number blocked by carrier",
    "1282": "Message rejected by provider (policy or content)",
    "1290": "Recipient's prepaid account has insufficient funds",
    "1330": "Delivery failed: unknown permanent failure",
    "1331": "Provider error: not responding",
    "1360": "TTL expired before delivery",
    "1420": "Invalid sender for the channel",
    "1430": "Invalid recipient for the channel",
    "1450": "Invalid client reference",
    "1460": "Daily message limit exceeded (10DLC)",
    "1470": "Fraud Defender traffic rule",
    "1472": "Fraud Defender SMS burst protection",
    "1473": "Fraud Defender AIT protection",
    "1474": "Fraud Defender country block",
    "1475": "Fraud Defender network block",
    "1476": "Do Not Originate: the sender is on a DNO list",
    "1480": "Entity Filter: `entity_id` (DLT principal entity) incorrect or missing",
    "1481": "Header Filter: the sender (`from`, DLT header) incorrect or missing",
    "1482": "Content Filter: `content_id` (DLT template) incorrect or missing",
    "1483": "Consent Filter: consent not authorised",
    "1484": "Authentication or compliance failure",
    "1490": "SMS segment timeout: delivery unknown, partial delivery possible",
}

# What to change for the codes a setting or the sender's body can fix.
FIX = {
    "1120": "Use a sender (`from` or VONAGE_FROM) registered or allowed for that country; "
    "see Vonage's country-specific features and restrictions",
    "1160": "Add the number to the demo account's allowed list, or upgrade the Vonage account",
    "1240": "The user opted out with Vonage: stop sending to them (they can reply START)",
    "1460": "Check the 10DLC campaign's daily limit with Vonage",
    "1480": "Send the DLT principal entity ID as `entity_id` in the MoEngage sender's body",
    "1481": "Use the DLT-registered header as the sender (`from` or VONAGE_FROM)",
    "1482": "Send the DLT template ID as `template_id` (Moesms_dltTemplateId) in the body",
    "1483": "Record the users' consent where the destination's regulator requires it",
}


def meaning(code):
    if not str(code).isdigit():
        return f"Vonage gave no error code (status {code})"
    return MEANING.get(str(code), "see Vonage's error code list")
