"""`flask --app app sign-webhook FILE`: post a webhook body to a connector signed as Vonage
signs it, with this connector's VONAGE_SIGNATURE_SECRET, so a webhook can be replayed by hand
(a status Vonage sent while the tunnel was down, an inbound STOP to try, a body from the logs).
"""

import json
import os

import click
import requests
from flask.cli import with_appcontext

from connector.clients.signatures import sign
from connector.commands.context import services


def default_url(body):
    """This machine's connector (PORT, as gunicorn binds it): /webhooks/status for a body with
    a `status`, /webhooks/inbound for a reply."""
    kind = "status" if isinstance(body, dict) and "status" in body else "inbound"
    return f"http://127.0.0.1:{os.environ.get('PORT') or '8000'}/webhooks/{kind}"


@click.command("sign-webhook")
@click.argument("file", type=click.File("rb"))
@click.option(
    "--url",
    help="Where to post it. Default: http://127.0.0.1:$PORT/webhooks/status, or "
    "/webhooks/inbound when the body has no `status`.",
)
@with_appcontext
def sign_webhook_command(file, url):
    """Post the JSON webhook body in FILE ('-': standard input), signed with
    VONAGE_SIGNATURE_SECRET as Vonage signs it, and print the connector's answer. Exit 1 unless
    it answers 2xx."""
    secrets = services().settings.vonage_signature_secrets
    if not secrets:
        raise click.ClickException(
            "VONAGE_SIGNATURE_SECRET is not set: sign-webhook signs with it, as Vonage does"
        )
    raw = file.read()
    try:
        body = json.loads(raw)
    except ValueError:
        raise click.BadParameter("is not JSON (a webhook body is)", param_hint="FILE") from None
    url = url or default_url(body)
    headers = {"Authorization": sign(raw, secrets[0]), "Content-Type": "application/json"}
    try:
        answer = requests.post(url, data=raw, headers=headers, timeout=30, allow_redirects=False)
    except requests.RequestException as exc:
        raise click.ClickException(f"could not post to {url}: {type(exc).__name__}") from None
    click.echo(f"POST {url}, signed with VONAGE_SIGNATURE_SECRET")
    click.echo(f"{answer.status_code} {answer.text.strip()}")
    if not 200 <= answer.status_code < 300:
        raise SystemExit(1)
