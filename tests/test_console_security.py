"""The console's security rules (issue 18), on both backends: off without CONSOLE_PASSWORD,
sessions kept in the store, cookie flags, CSRF, the wrong-password throttle, headers, and
nothing shown without a session."""

import logging
import time

import pytest
from consolekit import NUMBER, PASSWORD, csrf_of, form_token, sign_in, signed_in, traffic

from connector.settings import load_settings

PAGES = ["/console/messages", "/console/optouts", "/console/pending", "/console/health",
         "/console/setup", f"/console/messages/{NUMBER}"]  # fmt: skip


@pytest.fixture
def console(make_app):
    return make_app(console_password=PASSWORD)


def test_without_console_password_every_console_url_is_404(app, make_app):
    assert make_app(console_password=PASSWORD).test_client().get("/console").status_code == 200
    client = app.test_client()
    for path in ["/console", "/console/", *PAGES, "/console/optouts.csv",
                 "/console/static/console.css"]:  # fmt: skip
        assert client.get(path).status_code == 404, path
    assert client.post("/console/sign-in", data={"password": PASSWORD}).status_code == 404
    assert client.get("/health").status_code in (200, 503)  # nothing else changes


def test_a_short_console_password_stops_the_start_naming_the_setting():
    with pytest.raises(ValueError, match="CONSOLE_PASSWORD") as refused:
        load_settings(environ={"CONSOLE_PASSWORD": "short-pw"})
    assert "short-pw" not in str(refused.value)


def test_sign_in_form_without_a_session(console):
    page = console.test_client().get("/console")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert '<label for="password">Password</label>' in html
    assert ">Sign in</button>" in html and "Sign out" not in html


def test_pages_redirect_downloads_401_and_nothing_leaks(console):
    traffic(signed_in(console))
    client = console.test_client()
    for path in ["/console?period=7d", *PAGES]:
        answer = client.get(path)
        if path.startswith("/console?"):
            assert answer.status_code == 200 and "Sign in" in answer.get_data(as_text=True)
            assert 'id="sends"' not in answer.get_data(as_text=True)
        else:
            assert answer.status_code == 303, path
            assert answer.headers["Location"].endswith("/console")
            assert NUMBER[-4:] not in answer.get_data(as_text=True)
    csv = client.get("/console/optouts.csv")
    assert csv.status_code == 401 and "0000" not in csv.get_data(as_text=True)


def test_session_cookie_flags_over_http_and_https(console):
    answer = sign_in(console.test_client())
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    secure = sign_in(console.test_client(), base_url="https://console.example")
    assert "Secure" in secure.headers["Set-Cookie"]


def test_public_url_over_https_makes_the_cookie_secure(make_app):
    app = make_app(console_password=PASSWORD, public_url="https://sms.example.com")
    assert "; Secure" in sign_in(app.test_client()).headers["Set-Cookie"]


def test_every_console_page_carries_the_security_headers(console):
    client = signed_in(console)
    for path in ["/console", *PAGES, "/console/optouts.csv"]:
        headers = client.get(path).headers
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, path
        assert "unsafe-inline" not in csp and "http" not in csp
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["Cache-Control"] == "no-store"
    assert console.test_client().get("/console").headers["Cache-Control"] == "no-store"


def test_sign_out_revokes_the_session_on_the_server(console):
    client = signed_in(console)
    cookie = client.get_cookie("console_session", path="/console").value
    out = client.post("/console/sign-out", data={"csrf": csrf_of(client)})
    assert out.status_code == 303
    thief = console.test_client()
    thief.set_cookie("console_session", cookie, path="/console")
    assert thief.get("/console/messages").status_code == 303
    assert 'id="sends"' not in thief.get("/console").get_data(as_text=True)


def test_a_session_works_in_every_instance_until_the_password_changes(console, make_app):
    client = signed_in(console)
    cookie = client.get_cookie("console_session", path="/console").value
    other = make_app(console_password=PASSWORD).test_client()  # another instance, same store
    other.set_cookie("console_session", cookie, path="/console")
    assert other.get("/console/messages").status_code == 200
    changed = make_app(console_password=PASSWORD + "!").test_client()
    changed.set_cookie("console_session", cookie, path="/console")
    assert changed.get("/console/messages").status_code == 303


def test_a_session_idle_for_12_hours_is_gone(console):
    client = signed_in(console)
    store = console.extensions["connector"].store
    with store.transaction() as tx:
        tx.execute("UPDATE console_sessions SET last_seen = ?", (time.time() - 11.9 * 3600,))
    assert client.get("/console/messages").status_code == 200  # and this use renews it
    assert store.query("SELECT last_seen FROM console_sessions")[0][0] > time.time() - 60
    with store.transaction() as tx:
        tx.execute("UPDATE console_sessions SET last_seen = ?", (time.time() - 12 * 3600 - 1,))
    assert client.get("/console/messages").status_code == 303


def test_a_post_without_a_valid_csrf_token_is_403_and_changes_nothing(console):
    client = signed_in(console)
    traffic(client)
    store = console.extensions["connector"].store
    optouts = client.get("/console/optouts").get_data(as_text=True)
    optin = optouts.split('href="/console/optouts/')[1].split('"')[0]
    for data in ({}, {"csrf": "forged"}):
        assert client.post(f"/console/optouts/{optin}", data=data).status_code == 403
        assert client.post("/console/sign-out", data=data).status_code == 403
    assert store.is_opted_out(NUMBER)
    assert client.get("/console/messages").status_code == 200  # still signed in
    blank = console.test_client()
    token = form_token(blank.get("/console").get_data(as_text=True))
    refused = blank.post("/console/sign-in", data={"password": PASSWORD})
    assert refused.status_code == 403 and "console_session" not in str(refused.headers)
    other = console.test_client()  # a token from another browser's form
    assert (
        other.post("/console/sign-in", data={"csrf": token, "password": PASSWORD}).status_code
        == 403
    )


def test_five_wrong_passwords_block_the_client_for_a_minute(console, make_app, caplog):
    caplog.set_level(logging.INFO, "connector")
    client = console.test_client()
    other_instance = make_app(console_password=PASSWORD).test_client()
    for n in range(5):
        who = client if n % 2 else other_instance  # counted in the store, not in a process
        assert sign_in(who, "wrong password " + str(n)).status_code == 401
    refused = sign_in(client)  # even the right password now
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "60"
    assert sign_in(other_instance).status_code == 429
    ok = sign_in(console.test_client(), headers={"X-Forwarded-For": "198.51.100.7"})
    assert ok.status_code == 303  # another client is not blocked
    store = console.extensions["connector"].store
    with store.transaction() as tx:  # a minute later
        tx.execute("UPDATE console_attempts SET at = at - 61")
    assert sign_in(client).status_code == 303
    logged = caplog.text
    assert "wrong password" in logged and "(429)" in logged
    assert "wrong password 1" not in logged and PASSWORD not in logged


def test_at_most_30_attempts_a_minute_from_all_clients(console):
    for n in range(30):
        client = console.test_client()
        who = {"X-Forwarded-For": f"203.0.113.{n}"}
        assert sign_in(client, "wrong", headers=who).status_code == 401
    fresh = sign_in(console.test_client(), headers={"X-Forwarded-For": "192.0.2.1"})
    assert fresh.status_code == 429
