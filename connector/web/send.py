"""Route: MoEngage's send, `POST /` and `POST /webhooks/message-dispatcher`."""

from flask import Blueprint, jsonify, request

from connector import bodies as payload
from connector.relay import outbox, send_request, sending
from connector.web.context import run_after_response, services

bp = Blueprint("dispatch", __name__)


@bp.post("/")
@bp.post("/webhooks/message-dispatcher")
def dispatch():
    ctx = services()
    api_key, api_secret = send_request.parse_credentials(request.headers.get("Authorization"))
    settings = ctx.settings
    req = send_request.parse_send(read_body(), settings.vonage_from, settings.default_country)
    result = sending.send(ctx, req, api_key, api_secret)
    if result.events:  # opt-out syncs this send's customer_id made possible
        run_after_response(lambda: outbox.push(ctx, result.events))
    return jsonify(result.answer), result.status, result.headers


def read_body():
    """The body as a dict (form fields or a JSON object), read and checked by `payload`."""
    return payload.load_object(payload.read(request), request.mimetype)
