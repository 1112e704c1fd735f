"""Route: MoEngage's send, `POST /` and `POST /webhooks/message-dispatcher`."""

import json

from flask import Blueprint, jsonify, request

from . import outbox, sending
from .errors import Failure
from .services import run_after_response, services

bp = Blueprint("dispatch", __name__)


@bp.post("/")
@bp.post("/webhooks/message-dispatcher")
def dispatch():
    ctx = services()
    api_key, api_secret = sending.parse_credentials(request.headers.get("Authorization"))
    req = sending.parse_send(read_body(), ctx.settings.vonage_from)
    result = sending.send(ctx, req, api_key, api_secret)
    if result.events:  # opt-out syncs this send's customer_id made possible
        run_after_response(lambda: outbox.push(ctx, result.events))
    return jsonify(result.answer), result.status, result.headers


def read_body():
    """The body as a dict: form fields, or a JSON object (whatever the Content-Type says,
    since MoEngage's Raw body type may send JSON without it)."""
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return request.form.to_dict()
    raw = request.get_data(cache=True)  # over MAX_CONTENT_LENGTH: 413
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Failure(400, "the body must be a JSON object (or form fields)") from None
    if not isinstance(body, dict):
        raise Failure(400, "the body must be a JSON object")
    return body
