"""Light Vonage and MoEngage stand-ins for the benchmark: one asyncio process, two servers.

connector/rehearsal/standins.py (the tests' and `flask rehearse`'s) runs a thread per request, which would
take CPU the connector needs; these answer on one event loop. The Vonage one answers 202 {"message_uuid"} after its latency and
keeps each arrival time, to check VONAGE_MAX_RPS (its Account API, GET /account/get-balance,
which the connector asks about a key and secret it does not know yet when it must, answers
the balance at once and is counted apart); the MoEngage one answers 200 after its latency
and counts posts per (trackingId, status), to check exactly-once. `GET /_stats` shows what each
received, `POST /_reset` forgets it.

    python -m bench.standins --vonage-latency 0.2 --moengage-latency 0.05
prints `ready <vonage port> <moengage port>` once both listen.
"""

import argparse
import asyncio
import json
import time
import uuid
from collections import Counter


def most_in_one_second(arrivals):
    """The largest number of arrivals inside any window [t, t + 1 s)."""
    arrivals = sorted(arrivals)
    most, first = 0, 0
    for last, t in enumerate(arrivals):
        while t - arrivals[first] >= 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


class StandIn:
    def __init__(self, latency):
        self.latency = latency
        self.reset()

    def reset(self):
        self.arrivals = []
        self.balance_checks = 0

    async def handle(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                method, path, _ = head.split(b" ", 2)
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                raw = await reader.readexactly(length) if length else b""
                if path.startswith(b"/_"):
                    status, body = self.control(method, path)
                elif method == b"GET" and path.startswith(b"/account/get-balance"):
                    self.balance_checks += 1  # not a send: not in the arrivals
                    status, body = 200, {"value": 10.28, "autoReload": False}
                else:
                    self.arrivals.append(time.time())
                    status, body = await self.answer(raw)
                data = json.dumps(body).encode()
                writer.write(
                    b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (status, len(data), data)
                )
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def control(self, method, path):
        if method == b"POST" and path == b"/_reset":
            self.reset()
            return 200, {}
        return 200, self.stats()


class Vonage(StandIn):
    async def answer(self, raw):
        await asyncio.sleep(self.latency)
        return 202, {"message_uuid": str(uuid.uuid4())}

    def stats(self):
        per_second = Counter(int(t) for t in self.arrivals)
        return {
            "received": len(self.arrivals),
            "balance_checks": self.balance_checks,
            "most_in_any_second": most_in_one_second(self.arrivals),
            "per_second": [per_second[s] for s in sorted(per_second)],
        }


class MoEngage(StandIn):
    def reset(self):
        super().reset()
        self.posts = Counter()

    async def answer(self, raw):
        try:
            body = json.loads(raw)
            self.posts[f"{body.get('trackingId')} {body.get('status')}"] += 1
        except (ValueError, AttributeError):
            self.posts["unreadable"] += 1
        await asyncio.sleep(self.latency)
        return 200, {"status": "success"}

    def stats(self):
        return {"received": len(self.arrivals), "posts": self.posts}


async def main(args):
    vonage, moengage = Vonage(args.vonage_latency), MoEngage(args.moengage_latency)
    servers = [
        await asyncio.start_server(s.handle, "127.0.0.1", 0, backlog=1024)
        for s in (vonage, moengage)
    ]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    print("ready", *ports, flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vonage-latency", type=float, default=0.2)
    parser.add_argument("--moengage-latency", type=float, default=0.05)
    try:
        asyncio.run(main(parser.parse_args()))
    except KeyboardInterrupt:
        pass
