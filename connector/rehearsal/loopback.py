"""The connector served over real HTTP on loopback, with Vonage and MoEngage stand-ins and a
throwaway SQLite database, for `flask --app app rehearse`: it sends as MoEngage does, posts
webhooks signed as Vonage does, and prints each exchange with its secrets masked.
"""

import base64
import json
import secrets
import tempfile
import threading
import time
import uuid
from contextlib import ExitStack

import click
import requests
from werkzeug.serving import WSGIRequestHandler, make_server

from connector.clients.signatures import sign
from connector.rehearsal.standins import MoEngageStandIn, VonageStandIn

API_KEY = "rehearsal"  # the Vonage API key MoEngage's sender would carry
TO = "447700900123"  # Ofcom's range for drama: never a real phone
CUSTOMER = "user-42"
WAIT = 2.0  # seconds to wait for what happens after an answer (Data API sync)


class Quiet(WSGIRequestHandler):
    def log_request(self, *args):
        pass


class Rehearsal:
    """The running pieces; a context manager that stops every one of them and deletes the
    database on the way out, whatever happened."""

    def __init__(self, make_app, out=click.echo, overrides=None):
        self.make_app = make_app  # settings -> a started app (connector.create_app, start)
        self.out = out
        self.overrides = overrides or {}
        self.api_secret = secrets.token_urlsafe(12)
        self.signature_secret = secrets.token_urlsafe(24)

    def __enter__(self):
        with ExitStack() as stack:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="rehearsal-"))
            self.vonage = VonageStandIn({API_KEY: self.api_secret})
            stack.callback(self.vonage.close)
            self.moengage = MoEngageStandIn()
            stack.callback(self.moengage.close)
            settings = {
                "database_path": f"{folder}/connector.db",
                "database_url": "",
                "vonage_api_url": self.vonage.url,
                "vonage_from": "Acme",
                "vonage_timeout": 3.0,
                "moengage_delivery_url": f"{self.moengage.url}/sms/dlr/custom/rehearsal",
                "moengage_workspace_id": "REHEARSAL",
                "moengage_data_api_key": secrets.token_urlsafe(12),
                "vonage_signature_secrets": (self.signature_secret,),
                "log_level": "ERROR",  # the exchanges are printed; a refused send is not news here
                "threads": 8,
                **self.overrides,
            }
            app = self.app = self.make_app(settings)
            stack.callback(app.extensions["connector"].close)
            self.server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
            stack.callback(self.server.server_close)
            thread = threading.Thread(target=self.server.serve_forever, daemon=True)
            thread.start()
            stack.callback(thread.join)
            stack.callback(self.server.shutdown)
            self.url = f"http://127.0.0.1:{self.server.server_port}"
            self.http = requests.Session()
            stack.callback(self.http.close)
            self._cleanup = stack.pop_all()
        return self

    def __exit__(self, *exc):
        self._cleanup.close()

    # --- what MoEngage and Vonage do -----------------------------------------------------------

    def send(self, body):
        headers = {"Authorization": f"Custom {API_KEY}:{self.api_secret}"}
        self.out("  MoEngage -> connector: POST /")
        self._show(headers, body)
        answer = self.http.post(f"{self.url}/", json=body, headers=headers, timeout=10)
        self._answer("connector -> MoEngage", answer)
        return answer

    def webhook(self, path, body):
        """POST `body` as Vonage does: the bytes that were signed, and the signature."""
        raw = json.dumps(body).encode()
        headers = {
            "Authorization": sign(raw, self.signature_secret, api_key=API_KEY),
            "Content-Type": "application/json",
        }
        self.out(f"  Vonage -> connector: POST {path}")
        self._show(headers, body)
        answer = self.http.post(f"{self.url}{path}", data=raw, headers=headers, timeout=20)
        self._answer("connector -> Vonage", answer)
        return answer

    def status(self, message_uuid, status):
        return self.webhook(
            "/webhooks/status",
            {
                "message_uuid": message_uuid,
                "to": TO,
                "from": "Acme",
                "timestamp": _now(),
                "status": status,
                "channel": "sms",
                "usage": {"currency": "EUR", "price": "0.0333"},
            },
        )

    def reply(self, text):
        return self.webhook(
            "/webhooks/inbound",
            {
                "channel": "sms",
                "message_uuid": str(uuid.uuid4()),
                "to": "447700900001",
                "from": TO,
                "timestamp": _now(),
                "text": text,
                "sms": {"num_messages": "1", "keyword": text.upper()},
            },
        )

    # --- what the stand-ins received -----------------------------------------------------------

    def received(self, stand_in, since, who):
        """What `stand_in` got after its `since`-th request, printed; waits up to WAIT for
        what the connector does once it has answered."""
        deadline = time.monotonic() + WAIT
        while len(stand_in.requests) <= since and time.monotonic() < deadline:
            time.sleep(0.02)
        got = stand_in.requests[since:]
        for record in got:
            self.out(f"  connector -> {who}: POST {record['path']}")
            self._show(record["headers"], record["json"])
            self.out(f"  {who} answered {record['status']}")
        if not got:
            self.out(f"  {who} received nothing")
        return got

    def _show(self, headers, body):
        auth = headers.get("Authorization")
        if auth:
            self.out(f"    Authorization: {mask(auth)}")
        self.out(f"    {json.dumps(body)}")

    def _answer(self, who, answer):
        self.out(f"  {who}: {answer.status_code} {answer.text.strip()}")


def mask(authorization):
    """An Authorization value with its secret hidden: the key and the token's kind stay."""
    scheme, _, credentials = authorization.partition(" ")
    if scheme == "Custom":
        key, _, _ = credentials.partition(":")
        return f"Custom {key}:********"
    if scheme == "Basic":
        key = base64.b64decode(credentials).decode().partition(":")[0]
        return f"Basic base64({key}:********)"
    if scheme == "Bearer":
        return f"Bearer {credentials[:16]}…(HS256 JWT, payload_hash = SHA-256 of the body)"
    return "********"


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
