"""Routes: the operator console under /console (issue 18), served only when CONSOLE_PASSWORD is
set. Pages are rendered on the server and work without JavaScript.

Signing in is the only route open without a session; every other page redirects to it and a
download answers 401. Every POST needs the session's CSRF token (403 otherwise, nothing done).
"""

import logging
import secrets
import time

from flask import Blueprint, Response, g, redirect, render_template, request, url_for

from connector.web.console import auth
from connector.web.context import services

log = logging.getLogger(__name__)
bp = Blueprint(
    "console",
    __name__,
    url_prefix="/console",
    template_folder="templates",
    static_folder="static/console",
    static_url_path="/static",
)
COOKIE = "console_session"
SIGN_IN_COOKIE = "console_sign_in"  # the sign-in form's CSRF token, before any session
OPEN = ("console.overview", "console.sign_in", "console.static")
DOWNLOADS = ("console.optouts_csv",)
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}


def _password():
    return services().settings.console_password


@bp.before_request
def guard():
    """Find the session; refuse what needs one without it, and any POST without its token."""
    g.csrf = auth.find_session(
        services().store, request.cookies.get(COOKIE), _password(), time.time()
    )
    if request.endpoint in OPEN:
        return None
    if g.csrf is None:
        if request.endpoint in DOWNLOADS:
            return Response("Sign in first.\n", 401, mimetype="text/plain")
        return redirect(url_for("console.overview"), 303)
    if request.method == "POST" and not auth.csrf_ok(g.csrf, request.form.get("csrf")):
        log.warning("console: %s refused: no valid CSRF token", request.path)
        return _refused(403, "This form has expired or did not come from this console.")
    return None


@bp.after_request
def headers(response):
    response.headers.update(HEADERS)
    return response


def _refused(status, message, **headers):
    page = render_template(
        "console/refused.html", status=status, message=message, csrf=g.get("csrf")
    )
    return page, status, headers


def _secure():
    """The cookie is Secure whenever the request came over https (X-Forwarded-Proto is
    trusted as gunicorn's FORWARDED_ALLOW_IPS says) or PUBLIC_URL is https."""
    return request.is_secure or services().settings.public_url.startswith("https:")


# -- signing in and out ---------------------------------------------------------------------
def sign_in_page(status=200, message=None):
    token = secrets.token_urlsafe(32)
    page = render_template("console/sign_in.html", token=token, message=message)
    response = Response(page, status)
    response.set_cookie(
        SIGN_IN_COOKIE, token, path="/console", httponly=True, samesite="Strict",
        secure=_secure(), max_age=3600,
    )  # fmt: skip
    return response


@bp.post("/sign-in")
def sign_in():
    ctx = services()
    client = auth.client_of(request.remote_addr, request.headers.get("X-Forwarded-For"))
    token = request.cookies.get(SIGN_IN_COOKIE)
    if not auth.csrf_ok(token, request.form.get("csrf")):
        log.warning("console: sign-in from %s refused: no valid CSRF token", client)
        return _refused(403, "This form has expired: open the sign-in page again.")
    now = time.time()
    outcome = auth.attempt(ctx.store, client, request.form.get("password", ""), _password(), now)
    if outcome == "wrong":
        log.warning("console: sign-in from %s refused: wrong password", client)
        return sign_in_page(401, "Wrong password.")
    if outcome != "ok":
        log.warning("console: sign-in from %s refused (429): %s", client, outcome)
        return _refused(
            429, f"Too many attempts ({outcome}). Try again in a minute.", **{"Retry-After": "60"}
        )
    session, _ = auth.open_session(ctx.store, _password(), now)
    log.info("console: signed in from %s", client)
    response = redirect(url_for("console.overview"), 303)
    response.set_cookie(
        COOKIE, session, path="/console", httponly=True, samesite="Strict", secure=_secure()
    )
    response.delete_cookie(SIGN_IN_COOKIE, path="/console")
    return response


@bp.post("/sign-out")
def sign_out():
    auth.close_session(services().store, request.cookies.get(COOKIE))
    response = redirect(url_for("console.overview"), 303)
    response.delete_cookie(COOKIE, path="/console", httponly=True, samesite="Strict")
    return response


from connector.web.console import pages  # noqa: F401 - the pages register themselves on `bp`
