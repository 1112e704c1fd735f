"""`flask --app app rehearse` (no account, no settings, no network) and `flask --app app
sign-webhook` (replay a webhook by hand, signed as Vonage signs it)."""

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import SIGNATURE_SECRET, inbound_body, record_send, status_body
from gunicorn_proc import ROOT
from werkzeug.serving import make_server

from connector import create_app, start
from connector.rehearsal import loopback
from connector.rehearsal import walk as rehearsal


def started_since(before):
    """Threads started since `before` (a set of threads) still alive, after a brief wait for
    finished request threads to end."""
    deadline = time.monotonic() + 3
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.02)
    return set(threading.enumerate()) - before


def refused(url):
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) != 0


@pytest.fixture
def rehearse(tmp_path, monkeypatch):
    """Run the rehearsal in-process: its output, whether it passed, and its connector's URL.
    Its secrets are known here (to check none is printed) and its temp folder is tmp_path."""
    monkeypatch.setattr(loopback.secrets, "token_urlsafe", lambda n: f"S3CRET{n}" + "x" * 40)
    monkeypatch.setattr(loopback.tempfile, "tempdir", str(tmp_path))

    def make_app(overrides):
        return start(create_app(overrides, environ={}))

    def run(**kwargs):
        lines = []
        passed = rehearsal.run(make_app, out=lines.append, **kwargs)
        text = "\n".join(lines)
        return passed, text, text.split("connector on ", 1)[1].split(",", 1)[0]

    return run


def test_rehearse_walks_through_every_step_and_leaves_nothing(rehearse, tmp_path):
    threads = set(threading.enumerate())
    passed, text, url = rehearse()
    assert passed, text
    for promise in [
        "trackingId is Vonage's message_uuid",
        "MoEngage's tracking URL received 'sent' for the trackingId",
        "MoEngage's tracking URL received 'delivered' for the trackingId",
        "subscription OPTOUT",
        "refused 422: the number opted out",
        "subscription OPTIN",
        "the trace shows the send, Vonage's answer, both statuses and both forwards to MoEngage",
        "Vonage received it",
        "Rehearsal passed: 8 steps",
    ]:
        assert promise in text
    assert "S3CRET" not in text  # API secret, signature secret, Data API key: all masked
    assert "Custom rehearsal:********" in text
    assert started_since(threads) == set() and refused(url)
    assert list(tmp_path.iterdir()) == []  # the throwaway database is gone


def test_rehearse_fails_when_the_connector_breaks_a_promise(rehearse, tmp_path):
    threads = set(threading.enumerate())
    passed, text, url = rehearse(overrides={"opt_out_keywords": ("HALT",)})
    assert not passed
    assert "✗ FAILED: MoEngage's tracking URL received the reply, subscription OPTOUT" in text
    assert "Rehearsal failed at step 4" in text
    assert started_since(threads) == set() and refused(url)
    assert list(tmp_path.iterdir()) == []


def test_flask_rehearse_needs_no_settings_and_reads_none(tmp_path):
    """The command itself, as a newcomer runs it: from a folder whose `.env` holds wrong and
    real-looking settings, with a proxy that answers nothing. It reads none of them."""
    (tmp_path / ".env").write_text(
        "DATABASE_URL=mysql://nowhere/db\n"
        "MOENGAGE_DELIVERY_URL=https://api-01.moengage.com/sms/dlr/custom/1\n"
        "VONAGE_API_URL=https://api.nexmo.com\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VONAGE_", "MOENGAGE_"))}
    env.update(HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", str(ROOT / "app.py"), "rehearse"],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Rehearsal passed" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env"]


@pytest.fixture
def serve():
    """Serve an app over real HTTP on loopback; its base URL."""
    servers = []

    def serve(app):
        start(app)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_port}"

    yield serve
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join()


def write(tmp_path, body):
    path = tmp_path / "webhook.json"
    path.write_text(json.dumps(body))
    return str(path)


def test_sign_webhook_posts_a_body_the_connector_accepts(app, serve, moengage, tmp_path):
    url = serve(app)
    record_send(app, status_body())  # a status of a message the connector sent
    result = app.test_cli_runner().invoke(
        args=["sign-webhook", write(tmp_path, status_body()), "--url", f"{url}/webhooks/status"]
    )
    assert result.exit_code == 0, result.output
    assert '200 {"status":"forwarded"}' in result.output
    assert [r["json"]["status"] for r in moengage.requests] == ["delivered"]
    assert SIGNATURE_SECRET not in result.output


def test_sign_webhook_posts_a_reply_to_inbound_on_port(app, serve, moengage, tmp_path, monkeypatch):
    url = serve(app)
    monkeypatch.setenv("PORT", url.rsplit(":", 1)[1])
    result = app.test_cli_runner().invoke(args=["sign-webhook", write(tmp_path, inbound_body())])
    assert result.exit_code == 0, result.output
    assert f"POST {url}/webhooks/inbound" in result.output
    assert moengage.requests[0]["json"]["subscription"] == "OPTOUT"


def test_sign_webhook_with_another_secret_is_refused_and_fails(make_app, serve, tmp_path):
    url = serve(make_app(vonage_signature_secrets=("the-connector's-own-" + "0" * 32,)))
    result = (
        make_app()
        .test_cli_runner()
        .invoke(
            args=["sign-webhook", write(tmp_path, status_body()), "--url", f"{url}/webhooks/status"]
        )
    )
    assert result.exit_code == 1
    assert "401" in result.output


def test_sign_webhook_needs_the_signature_secret(make_app, tmp_path):
    runner = make_app(vonage_signature_secrets=()).test_cli_runner()
    result = runner.invoke(args=["sign-webhook", write(tmp_path, status_body())])
    assert result.exit_code == 1
    assert "VONAGE_SIGNATURE_SECRET is not set" in result.output


def test_sign_webhook_refuses_a_file_that_is_not_json(app, tmp_path):
    path = tmp_path / "body.txt"
    path.write_text("status=delivered")
    result = app.test_cli_runner().invoke(args=["sign-webhook", str(path)])
    assert result.exit_code == 2
    assert "FILE" in result.output and "not JSON" in result.output


def test_the_readme_opens_with_the_rehearsal_and_its_output_is_true(rehearse):
    readme = (ROOT / "README.md").read_text()
    first = readme.split("\n## ", 2)[1]
    assert first.startswith("Try it without accounts")
    assert ".venv/bin/flask --app app rehearse\n" in first
    excerpt = first.split("```\n", 2)[-1]
    _, text, _ = rehearse()
    promised = [line.strip() for line in excerpt.splitlines() if line.strip().startswith("✓")]
    titles = [line for line in excerpt.splitlines() if re.match(r"\d\. ", line)]
    assert promised and titles
    for line in promised + titles:
        assert line in text
