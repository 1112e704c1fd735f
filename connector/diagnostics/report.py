"""`flask report`: a period at a glance, from the trail: sends by answer, delivery rate,
failures by Vonage error code, opt-outs and opt-ins, SMS parts and cost by currency.

Statuses are counted per message (its latest of each kind), redeliveries once; a status that
arrives after the period still counts for a send made in it. A final status superseded by one
stored first does not count: the report says what MoEngage was told.
"""

from decimal import Decimal, InvalidOperation

from connector import countries
from connector.diagnostics import trail, vonage_errors

DELIVERED = "delivered"
FAILED = ("rejected", "undeliverable", "failed")


def build(store, start, end=None, campaign=None):
    sends = [
        row
        for row in trail.since(store, ["send"], start, end)
        if campaign is None or row.get("campaign_id") == campaign
    ]
    by_answer = {}
    for row in sends:
        label = str(row.get("http")) + (" (replayed)" if row.get("replay") else "")
        by_answer[label] = by_answer.get(label, 0) + 1
    accepted = {
        row["message_uuid"] for row in sends if row["message_uuid"] and not row.get("replay")
    }
    by_country = {}
    for row in sends:
        if row.get("number"):
            label = countries.label(row["number"])
            by_country[label] = by_country.get(label, 0) + 1
    latest = {}  # message_uuid -> its status rows by Vonage status, latest last
    decided = {}  # the same, without those a final stored first superseded (MoEngage's view)
    for row in trail.since(store, ["status"], start):
        if row["message_uuid"] in accepted:
            latest.setdefault(row["message_uuid"], {})[row.get("vonage_status")] = row
            if row.get("outcome") != "superseded":
                decided.setdefault(row["message_uuid"], {})[row.get("vonage_status")] = row
    delivered = sum(1 for statuses in decided.values() if DELIVERED in statuses)
    failures, parts, cost = {}, 0, {}
    for message, statuses in latest.items():
        final = decided.get(message, {})
        failed = next((final[s] for s in FAILED if s in final), None)
        if failed and DELIVERED not in final:
            code = failed.get("code") or failed.get("vonage_status")
            failures[code] = failures.get(code, 0) + 1
        priced = [row for row in statuses.values() if row.get("price") is not None]
        counted = [row for row in statuses.values() if row.get("parts") is not None]
        if counted:
            parts += _int(counted[-1]["parts"])
        if priced:
            currency = priced[-1].get("currency") or "?"
            cost[currency] = cost.get(currency, Decimal(0)) + _decimal(priced[-1]["price"])
    changes = {"OPTOUT": 0, "OPTIN": 0}
    for row in trail.since(store, ["inbound"], start, end):
        if row.get("subscription") in changes and not row.get("redelivery"):
            changes[row["subscription"]] += 1
    return {
        "since": start,
        "until": end,
        "campaign": campaign,
        "sends": len(sends),
        "by_answer": dict(sorted(by_answer.items())),
        "by_country": dict(sorted(by_country.items(), key=lambda item: (-item[1], item[0]))),
        "accepted": len(accepted),
        "delivered": delivered,
        "delivery_rate": round(delivered / len(accepted), 4) if accepted else None,
        "awaiting_final_status": len(accepted) - delivered - sum(failures.values()),
        "failures": [
            {"code": code, "count": count, "meaning": vonage_errors.meaning(code)}
            for code, count in sorted(failures.items(), key=lambda item: -item[1])
        ],
        "opt_outs": changes["OPTOUT"],
        "opt_ins": changes["OPTIN"],
        "sms_parts": parts,
        "cost": {currency: str(total) for currency, total in sorted(cost.items())},
    }


def _int(value):
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _decimal(value):
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return Decimal(0)


def lines(report, when):
    """The report as text; `when` formats an epoch."""
    period = f"since {when(report['since'])}" + (
        f" until {when(report['until'])}" if report["until"] else ""
    )
    out = [f"Report {period}" + (f", campaign {report['campaign']}" if report["campaign"] else "")]
    answers = ", ".join(f"{label}: {n}" for label, n in report["by_answer"].items()) or "none"
    out.append(f"sends: {report['sends']} (by answer: {answers})")
    places = ", ".join(f"{label}: {n}" for label, n in report["by_country"].items()) or "none"
    out.append(f"sends by country: {places}")
    rate = report["delivery_rate"]
    out.append(
        f"accepted by Vonage: {report['accepted']}, delivered: {report['delivered']}"
        + (f" ({rate:.1%})" if rate is not None else "")
        + f", awaiting a final status: {report['awaiting_final_status']}"
    )
    out.append("failures by Vonage error code:" + ("" if report["failures"] else " none"))
    for failure in report["failures"]:
        out.append(f"  {failure['code']}: {failure['count']}  {failure['meaning']}")
    out.append(f"opt-outs: {report['opt_outs']}, opt-ins: {report['opt_ins']}")
    cost = ", ".join(f"{total} {currency}" for currency, total in report["cost"].items())
    out.append(f"SMS parts: {report['sms_parts']}, cost: {cost or 'none reported'}")
    return out
