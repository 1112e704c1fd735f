"""Warning 9: sends reaching a country that makes up under 1 % of the last day's, while
DEFAULT_COUNTRY is empty: the usual sign that MoEngage holds national numbers, read as
international ones (a US `2025550143` sent to +20, Egypt). Read from the trail's sends."""

from connector import countries, phone
from connector.utc import iso

DAY = 86400.0
SHARE = 0.01  # a country under this share of the day's sends is named
# Sends are grouped in the database by their first digits (a few hundred groups at most, not
# a row per send); each group's country is then the library's, from its smallest number.
PREFIX = 4


def rare_countries(ctx, rows, now):
    """One warning per country under SHARE of the sends Vonage accepted in the last day."""
    if ctx.settings.default_country:
        return []
    groups = ctx.store.query(
        f"SELECT substr(number, 1, {PREFIX}), count(*), min(number), min(at) FROM trail"
        " WHERE stage = 'send' AND at >= ? AND message_uuid IS NOT NULL AND number IS NOT NULL"
        f" GROUP BY substr(number, 1, {PREFIX})",
        (now - DAY,),
    )
    by_region = {}
    for _, count, example, first in groups:
        region = countries.of(example).region
        total, kept, since = by_region.get(region, (0, example, first))
        by_region[region] = (total + count, min(kept, example), min(since, first))
    total = sum(count for count, _, _ in by_region.values())
    return [
        _warning(region, count, total, example, since)
        for region, (count, example, since) in sorted(by_region.items())
        if count < SHARE * total
    ]


def _warning(region, count, total, example, since):
    return {
        "code": "rare-country",
        "message": (
            f"{count} of the last day's {total} sends ({count / total:.2%}) went to "
            f"{countries.describe(region)}, e.g. {phone.mask(example)}: with DEFAULT_COUNTRY "
            "empty, a number without its country code is read as international, so a "
            "national number can reach another country."
        ),
        "fix": (
            "If MoEngage holds numbers without their country code, set DEFAULT_COUNTRY to "
            "their country (e.g. GB, US, IN), or store them with it (+44...). If these "
            "sends are meant for that country, nothing is wrong."
        ),
        "since": iso(since),
        "count": count,
    }
