"""What a `flask` command works with: the Services of the app it runs in."""

from flask import current_app

from connector.relay.services import of


def services():
    return of(current_app)
