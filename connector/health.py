"""Route: `GET /health`, for the PaaS and for a newcomer checking their settings."""

from flask import Blueprint, jsonify

from .services import services

bp = Blueprint("health", __name__)


@bp.get("/health")
def health():
    ctx = services()
    problems = list(ctx.settings.problems())
    try:
        ctx.store.ping()
    except Exception as exc:  # noqa: BLE001 - any database failure is reported, not raised
        problems.append(f"database does not answer: {type(exc).__name__}")
    body = {
        "status": "ok" if not problems else "unavailable",
        "database": ctx.store.describe().split(":", 1)[0],
        "data_api_sync": ctx.settings.data_api_enabled,
        "status_webhooks_requested": bool(ctx.settings.public_url),
        "api_keys_limited": bool(ctx.settings.vonage_api_keys),
    }
    if problems:
        body["problems"] = problems
    return jsonify(body), 200 if not problems else 503
