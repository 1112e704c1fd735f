"""Route: `GET /health`, for the PaaS and for a newcomer checking their settings."""

from flask import Blueprint, jsonify

from connector.diagnostics import doctor
from connector.store import StoreUnavailable, describe
from connector.version import __version__
from connector.web.context import services

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    ctx = services()
    problems = list(ctx.settings.problems())
    if ctx.settings.rejected:  # settings outside what they allow: no database opened for them
        return jsonify({"status": "unavailable", "problems": problems}), 503
    try:
        ctx.store.ping()
    except StoreUnavailable as exc:  # the file gone or replaced, no connection: says which
        problems.append(str(exc))
    except Exception as exc:  # noqa: BLE001 - any database failure is reported, not raised
        problems.append(f"database does not answer: {type(exc).__name__}")
    else:
        problems.extend(ctx.store.problems())  # answers, but takes no writes (a full disk)
    body = {
        "status": "ok" if not problems else "unavailable",
        "version": __version__,
        "database": describe(ctx.settings).split(":", 1)[0],
        "data_api_sync": ctx.settings.data_api_enabled,
        "status_webhooks_requested": bool(ctx.settings.public_url),
        "api_keys_limited": bool(ctx.settings.vonage_api_keys),
        # This worker's calls waiting on MoEngage and its circuits (connector/clients/moengage_gate.py).
        "moengage": ctx.moengage.gate.state(),
    }
    body["warnings"] = doctor.for_health(ctx, problems)
    pool_use = getattr(ctx.store, "pool_use", None)
    if pool_use:  # PostgreSQL: this worker's connections (DATABASE_POOL_SIZE)
        body["database_pool"] = pool_use()
    if problems:
        body["problems"] = problems
    return jsonify(body), 200 if not problems else 503
