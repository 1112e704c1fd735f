"""The Vonage SMS connector for MoEngage: `create_app()` builds the Flask app."""

import logging
import os

import click
from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from connector import commands, logsafe
from connector.bodies import MAX_BODY, TOO_LARGE
from connector.errors import Failure
from connector.relay.services import build_services
from connector.settings import load_settings
from connector.version import __version__
from connector.web import health, webhooks
from connector.web import hooks as request_hooks
from connector.web import send as dispatch

__all__ = ["__version__", "create_app", "start"]
from connector.setting_schema import SettingError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def create_app(config=None, environ=None):
    """Build the app from the environment (or `environ`, a dict read instead of the environment
    and `.env`); `config` (a dict of Settings fields) overrides it.

    Building opens no database and complains about nothing, so any `flask --app app` command
    (even `--help`) does only what it is asked; `start(app)` does both before serving, and a
    setting outside what it allows stops it, and opening the database (Settings.rejected).
    """
    settings = load_settings(config, environ=environ, lenient=True)
    configure_logging(_level(settings, config, environ))
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.json.sort_keys = False
    app.extensions["connector"] = build_services(settings)

    app.register_blueprint(dispatch.bp)
    app.register_blueprint(webhooks.bp)
    app.register_blueprint(health.bp)
    if settings.console_password:  # off: every /console URL is a 404
        from connector.web.console import bp as console

        app.register_blueprint(console)
    request_hooks.init_app(app)
    commands.init_app(app, make_app=lambda overrides: start(create_app(overrides, environ={})))
    register_error_handlers(app)
    return app


def start(app):
    """What a server does before its first request: open (and migrate) the database, so a bad
    DATABASE_URL or a schema from a newer connector stops the start loudly, and log every
    setting that keeps the connector from working. gunicorn.conf.py calls it in each worker."""
    ctx = app.extensions["connector"]
    if ctx.settings.rejected:
        raise SettingError(ctx.settings.rejected)
    ctx.serving = True  # requests' statements fit in their deadline (store/pg_locks.py)
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


def _level(settings, config, environ):
    """LOG_LEVEL; for a `flask` command with no LOG_LEVEL given, WARNING: an operator running
    `doctor` or `push` reads the command's own lines, not the server's INFO log."""
    given = (os.environ if environ is None else environ).get("LOG_LEVEL", "").strip()
    if given or "log_level" in (config or {}) or click.get_current_context(silent=True) is None:
        return settings.log_level
    return "WARNING"


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
