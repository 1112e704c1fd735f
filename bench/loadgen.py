"""The load generator: asyncio, raw HTTP/1.1 over keep-alive connections, one process.

Reads a JSON spec on stdin, writes a JSON result on stdout: per kind of request the latencies
(ms) of those answered 200 inside the measured window (other answers under "<kind> <status>"),
the answers by status code, and this process's own CPU time, so a reader can see it was not
the bottleneck.

Modes:
- closed: `concurrency` users, each sends its next request as soon as the last is answered.
- open: requests start at a fixed `rate` whatever the answers do (latency counts from the
  planned start, so a slow connector cannot hide its queue).

Kinds, mixed by `weights`:
- send: a MoEngage send, every body unique (a new recipient and text), so the connector's
  duplicate check never answers from an earlier send.
- status: a signed Vonage v1 status webhook. Each user walks its messages through `submitted`
  then `delivered`; a share (`duplicates`) is delivered again, re-signed, by another user, as
  Vonage redelivers. The (message_uuid, status) pairs answered 200 are returned, for the
  exactly-once check against what the MoEngage stand-in received.

The connector forwards statuses only of messages it sent (another's is answered 503, then
dropped), so with `messages` ({"prefix", "count"}) in the spec the statuses are of the messages
`message_uuid(prefix, 0 .. count - 1)`, whose sends bench/__main__.py recorded in the
connector's database before the row; past `count` a random uuid, counted in
`unknown_messages` (count None: nothing was recorded, every n is used). The pairs of every
new status, whatever its answer, are returned too (`attempted`): one answered 503 may still
reach MoEngage once, by the connector's sweep.
"""

import asyncio
import collections
import hashlib
import json
import random
import resource
import sys
import time
import uuid
from datetime import UTC, datetime

import jwt

FORWARDED_AS = {"submitted": "sent", "delivered": "delivered"}
# A connection idle this long is not reused: gunicorn closes one idle for its keep-alive (5 s),
# and a request sent as it does so meets a reset. A careful client keeps its idle time under
# the server's, as this one does (only the open-loop rows leave connections idle that long).
MAX_IDLE = 4.0


def message_uuid(prefix, n):
    """The n-th message of a row whose messages are named by `prefix` (8 hex digits): a
    well-formed UUID that bench/__main__.py can record as sent before the row starts."""
    return f"{prefix}-0000-4000-8000-{n:012x}"


class Connection:
    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None
        self.used = time.monotonic()

    async def request(self, data):
        """Send one request's bytes; return the answer's status code (a 429 without
        Retry-After comes back as "429 without Retry-After", an error in every row)."""
        if self.reader is not None and self.reader.at_eof():
            self.close()  # the server closed it while idle (its keep-alive timeout)
        if self.writer is not None and time.monotonic() - self.used > MAX_IDLE:
            self.close()  # the server may be closing it right now: a reset, not an answer
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(data)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, close, retry_after = 0, False, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
            elif name == b"retry-after" and value.strip().isdigit():
                retry_after = True
        if length:
            await self.reader.readexactly(length)
        self.used = time.monotonic()
        if close:
            self.close()
        if status == 429 and not retry_after:
            return "429 without Retry-After"
        return status

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def http_post(path, headers, body):
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Workload:
    def __init__(self, spec):
        self.spec = spec
        self.tag = uuid.uuid4().hex[:8]
        self.sends = 0
        self.redeliveries = collections.deque()
        self.weights = spec.get("weights", {"send": 1})
        self.random = random.Random(spec.get("seed", 1))
        self.messages = spec.get("messages")  # None: no send recorded (a checkout forwarding all)
        self.next_message = 0  # shared by the users: each known message is walked once
        self.unknown_messages = 0

    def message(self):
        """The next message to walk: a known one (its send recorded) while any is left."""
        if self.messages is None:
            return str(uuid.uuid4())
        n, self.next_message = self.next_message, self.next_message + 1
        if self.messages["count"] is None or n < self.messages["count"]:
            return message_uuid(self.messages["prefix"], n)
        self.unknown_messages += 1  # the connector holds its statuses (503): the row says so
        return str(uuid.uuid4())

    def send(self):
        """A MoEngage send no earlier one resembles."""
        self.sends += 1
        n = self.sends + self.spec.get("offset", 0)
        body = json.dumps(
            {
                "to": f"447{n % 10**9:09d}",
                "text": f"Bench {self.tag} #{n}: your code is {n % 10000:04d}",
                "campaign_id": f"bench-{self.tag}",
            }
        )
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Custom {self.spec['api_key']}:{self.spec['api_secret']}",
        }
        return "send", http_post(self.spec.get("path", "/"), headers, body.encode()), None

    def status(self, message_uuid, status):
        body = json.dumps(
            {
                "message_uuid": message_uuid,
                "to": "447700900000",
                "from": "Acme",
                "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "status": status,
                "client_ref": f"bench-{self.tag}",
                "usage": {"currency": "EUR", "price": "0.0333"},
                "channel": "sms",
            }
        ).encode()
        return self.signed(body), f"{message_uuid} {FORWARDED_AS[status]}"

    def signed(self, body):
        claims = {
            "iat": int(time.time()),
            "jti": str(uuid.uuid4()),
            "iss": "Vonage",
            "payload_hash": hashlib.sha256(body).hexdigest(),
            "api_key": self.spec["api_key"],
            "application_id": self.spec["application_id"],
        }
        token = jwt.encode(claims, self.spec["signature_secret"], algorithm="HS256")
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
        return http_post("/webhooks/status", headers, body), body

    def user(self):
        """One user's requests, in order: sends and its messages' status webhooks."""
        kinds, weights = list(self.weights), list(self.weights.values())
        statuses = []
        while True:
            if self.random.choices(kinds, weights)[0] == "send":
                yield self.send()
                continue
            if self.redeliveries:
                data, _ = self.signed(self.redeliveries.popleft())
                yield "status", data, None
                continue
            if not statuses:
                walked = self.message()
                statuses = [(walked, "submitted"), (walked, "delivered")]
            (data, body), key = self.status(*statuses.pop(0))
            if self.random.random() < self.spec.get("duplicates", 0):
                self.redeliveries.append(body)
            yield "status", data, key


class Results:
    def __init__(self, start, end):
        self.start, self.end = start, end
        self.latencies = collections.defaultdict(list)
        self.codes = collections.defaultdict(collections.Counter)
        self.forwarded = set()
        self.attempted = set()
        self.forwarded_in_window = 0

    def record(self, kind, started, finished, status, key):
        self.codes[kind][str(status)] += 1
        if key:
            self.attempted.add(key)
        if status == 200 and key:
            self.forwarded.add(key)
        if self.start <= finished < self.end:
            self.forwarded_in_window += bool(status == 200 and key)
            name = kind if status == 200 else f"{kind} {status}"
            self.latencies[name].append(round((finished - started) * 1000, 3))


async def attempt(conn, data):
    try:
        return await asyncio.wait_for(conn.request(data), 10)
    except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
        conn.close()
        return type(exc).__name__


async def closed(spec, workload, results, stop_at):
    async def user():
        conn = Connection("127.0.0.1", spec["port"])
        requests = workload.user()
        while time.perf_counter() < stop_at:
            kind, data, key = next(requests)
            started = time.perf_counter()
            status = await attempt(conn, data)
            results.record(kind, started, time.perf_counter(), status, key)
        conn.close()

    await asyncio.gather(*(user() for _ in range(spec["concurrency"])))


async def open_(spec, workload, results, start, stop_at):
    idle, running = [], set()
    requests = workload.user()

    async def one(planned, kind, data, key):
        conn = idle.pop() if idle else Connection("127.0.0.1", spec["port"])
        status = await attempt(conn, data)
        results.record(kind, planned, time.perf_counter(), status, key)
        idle.append(conn)

    interval, n = 1.0 / spec["rate"], 0
    while True:
        planned = start + n * interval
        if planned >= stop_at:
            break
        kind, data, key = next(requests)  # built before its time, so it does not delay it
        delay = planned - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(planned, kind, data, key))
        running.add(task)
        task.add_done_callback(running.discard)
        n += 1
    await asyncio.gather(*running)
    for conn in idle:
        conn.close()


async def main(spec):
    start = time.perf_counter() + 0.05
    measured = start + spec.get("warmup", 1.0)
    stop_at = measured + spec["duration"]
    results, workload = Results(measured, stop_at), Workload(spec)
    if spec["mode"] == "open":
        await open_(spec, workload, results, start, stop_at)
    else:
        await closed(spec, workload, results, stop_at)
    return results, workload


if __name__ == "__main__":
    spec = json.load(sys.stdin)
    wall = time.perf_counter()
    results, workload = asyncio.run(main(spec))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    json.dump(
        {
            "latencies": results.latencies,
            "codes": results.codes,
            "forwarded": sorted(results.forwarded),
            "attempted": sorted(results.attempted),
            "forwarded_in_window": results.forwarded_in_window,
            "unknown_messages": workload.unknown_messages,
            "duration": spec["duration"],
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "wall_seconds": time.perf_counter() - wall,
        },
        sys.stdout,
    )
