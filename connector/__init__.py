"""The Vonage SMS connector for MoEngage: `create_app()` builds the Flask app."""

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from . import logsafe
from .config import load_settings
from .errors import Failure
from .payload import MAX_BODY, TOO_LARGE
from .services import build_services

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def create_app(config=None, environ=None):
    """Build the app from the environment (or `environ`, a dict read instead of the environment
    and `.env`); `config` (a dict of Settings fields) overrides it.

    Building opens no database and complains about nothing, so any `flask --app app` command
    (even `--help`) does only what it is asked; `start(app)` does both before serving.
    """
    settings = load_settings(config, environ=environ)
    configure_logging(settings.log_level)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.json.sort_keys = False
    app.extensions["connector"] = build_services(settings)

    from . import cli, dispatch, health, observe, retention, webhooks

    app.register_blueprint(dispatch.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(health.bp)
    cli.init_app(app)
    observe.init_app(app)
    retention.init_app(app)
    register_error_handlers(app)
    return app


def start(app):
    """What a server does before its first request: open (and migrate) the database, so a bad
    DATABASE_URL or a schema from a newer connector stops the start loudly, and log every
    setting that keeps the connector from working. gunicorn.conf.py calls it in each worker."""
    ctx = app.extensions["connector"]
    ctx.store  # noqa: B018 - opening it is the point
    settings = ctx.settings
    log = logging.getLogger("connector")
    for problem in settings.problems():
        log.error("configuration: %s", problem)
    if settings.vonage_timeout >= 5:
        log.warning(
            "configuration: VONAGE_TIMEOUT=%g leaves no margin in MoEngage's 5 s "
            "wait; keep it under 5",
            settings.vonage_timeout,
        )
    return app


def configure_logging(level):
    """One line per event on stderr, where a PaaS collects it; values callers supplied are
    escaped as each record is made (logsafe.py), so no caller can write a line of its own."""
    logsafe.install()
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format=LOG_FORMAT)
    logging.getLogger("connector").setLevel(level)


def register_error_handlers(app):
    """Every error is JSON `{"status": "failed", "error": ...}`, never an HTML page."""

    @app.errorhandler(Failure)
    def failure(exc):
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
        return jsonify(exc.answer()), exc.status, headers

    @app.errorhandler(HTTPException)
    def http_error(exc):
        reason = exc.description
        if exc.code == 413:
            reason = TOO_LARGE
        return jsonify({"status": "failed", "error": reason}), exc.code
