"""Vonage and MoEngage stand-ins: real HTTP servers on loopback that answer as Vonage's and
MoEngage's published contracts say, so the connector's real clients, timeouts and retries are
what runs. `flask --app app rehearse` and the tests use them; the benchmark has lighter ones
(bench/standins.py: one event loop, no thread per request).

Each server records what it received and can be scripted: `script(...)` queues answers that
the next requests get in turn, after which it answers as the real service does.
"""

import base64
import json
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

E164 = re.compile(r"[1-9][0-9]{6,14}")


# Vonage's problem bodies (RFC 7807), as the Messages API answers them.
PROBLEMS = {
    "not_found": {
        "type": "https://developer.vonage.com/api-errors#not-found",
        "title": "Not Found",
        "detail": "The requested resource does not exist.",
    },
    "unauthorized": {
        "type": "https://developer.nexmo.com/api-errors#unauthorized",
        "title": "Unauthorized",
        "detail": "You did not provide correct credentials.",
    },
    "invalid_json": {
        "type": "https://developer.nexmo.com/api-errors#invalid-json",
        "title": "The request body did not contain valid JSON",
        "detail": "The request body could not be read.",
    },
    "invalid_params": {
        "type": "https://developer.vonage.com/api-errors/messages#1150",
        "title": "Invalid params",
        "detail": "The value of one or more parameters is invalid.",
    },
}


class Answer:
    """A scripted answer: status, JSON body (or `raw` bytes of `content_type`), headers, a delay
    before it, or a hang/drop. `trickle` writes it one byte every that many seconds, from the
    status line on, or from the body on with `trickle_body_only`."""

    def __init__(
        self,
        status=200,
        body=None,
        headers=None,
        delay=0.0,
        drop=False,
        raw=None,
        content_type=None,
        trickle=0.0,
        trickle_body_only=False,
    ):
        self.status, self.body, self.headers = status, body, headers or {}
        self.delay, self.drop = delay, drop
        self.raw, self.content_type = raw, content_type
        self.trickle, self.trickle_body_only = trickle, trickle_body_only

    def data(self):
        if self.raw is not None:
            return self.raw
        return b"" if self.body is None else json.dumps(self.body).encode()


class StandIn:
    def __init__(self):
        self.requests = []
        self._script = []
        self._lock = threading.Lock()
        self.latency = 0.0
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                self.do_POST()

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                record = {
                    "path": self.path,
                    "headers": dict(self.headers),
                    "raw": raw,
                    "time": time.time(),
                }
                try:
                    record["json"] = json.loads(raw)
                except ValueError:
                    record["json"] = None
                answer = stand_in._next(record)
                if answer.delay:
                    time.sleep(answer.delay)
                if answer.drop:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                data = answer.data()
                self.send_response(answer.status)
                ctype = "application/problem+json" if answer.status >= 400 else "application/json"
                self.send_header("Content-Type", answer.content_type or ctype)
                self.send_header("Content-Length", str(len(data)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                if not answer.trickle:
                    self.end_headers()
                    self.wfile.write(data)
                    return
                self._headers_buffer.append(b"\r\n")
                head = b"".join(self._headers_buffer)
                self._headers_buffer = []
                if answer.trickle_body_only:
                    self.wfile.write(head)
                    head = b""
                for i in range(len(head + data)):
                    self.wfile.write((head + data)[i : i + 1])
                    self.wfile.flush()
                    time.sleep(answer.trickle)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # A client that gave up (timeouts are tested on purpose) is not an error here.
        self.server.handle_error = lambda request, address: None
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _next(self, record):
        with self._lock:
            self.requests.append(record)
            scripted = self._script.pop(0) if self._script else None
        if scripted is None:
            if self.latency:
                time.sleep(self.latency)
            scripted = self.answer(record)
        record["status"] = None if scripted.drop else scripted.status
        record["answer"] = None if scripted.drop else scripted.body
        return scripted

    def script(self, *answers):
        with self._lock:
            self._script.extend(answers)

    def reset(self):
        with self._lock:
            self.requests.clear()
            self._script.clear()
        self.latency = 0.0

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()


class VonageStandIn(StandIn):
    """POST /v1/messages as the Messages API v1 spec describes it, and the Account API's GET
    /account/get-balance (basic auth or api_key/api_secret in the query), for the accounts
    given (`{api_key: api_secret}`)."""

    def __init__(self, accounts):
        self.accounts = dict(accounts)
        super().__init__()

    def problem(self, name):
        return {**PROBLEMS[name], "instance": str(uuid.uuid4())}

    def answer(self, record):
        parts = urlsplit(record["path"])
        auth = record["headers"].get("Authorization", "")
        accepted = {
            "Basic " + base64.b64encode(f"{k}:{s}".encode()).decode()
            for k, s in self.accounts.items()
        }
        if parts.path == "/account/get-balance":
            query = dict(parse_qsl(parts.query))
            secret = self.accounts.get(query.get("api_key"))
            if auth not in accepted and (secret is None or secret != query.get("api_secret")):
                return Answer(401, self.problem("unauthorized"))
            return Answer(200, {"value": 10.28, "autoReload": False})
        if parts.path != "/v1/messages":
            return Answer(404, self.problem("not_found"))
        if auth not in accepted:
            return Answer(401, self.problem("unauthorized"))
        body = record["json"]
        if not isinstance(body, dict):
            return Answer(422, self.problem("invalid_json"))
        valid = (
            body.get("message_type") == "text"
            and body.get("channel") == "sms"
            and isinstance(body.get("to"), str)
            and E164.fullmatch(body["to"])
            and body.get("from")
            and isinstance(body.get("text"), str)
            and 1 <= len(body["text"]) <= 3200
            and len(body.get("client_ref") or "") <= 100
        )
        if not valid:
            return Answer(422, self.problem("invalid_params"))
        return Answer(
            202, {"message_uuid": str(uuid.uuid4())}, headers={"X-Request-Id": str(uuid.uuid4())}
        )

    def sent(self):
        """The messages Vonage accepted (requests that got a 202)."""
        return [r["json"] for r in self.requests if r.get("status") == 202]

    def sends(self):
        """Every request made to POST /v1/messages, whatever it was answered."""
        return [r for r in self.requests if urlsplit(r["path"]).path == "/v1/messages"]

    def balance_checks(self):
        return [r for r in self.requests if urlsplit(r["path"]).path == "/account/get-balance"]


class MoEngageStandIn(StandIn):
    """The SMS delivery tracking URL and the Data API's Track User; 200 to both by default."""

    def answer(self, record):
        return Answer(200, {"status": "success"})

    def posts(self, prefix):
        return [r for r in self.requests if r["path"].startswith(prefix)]
