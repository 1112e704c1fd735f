"""Measurements for issue 8 items 13 and 14: slow clients, `kill -HUP` reloads, and how
connections spread over workers. `python -m bench.faults --help`.

- slowloris: sends/s from 64 kept-alive users (Vonage stand-in 200 ms) alone, then with N slow
  connections open (one byte every 2 s, half still in their head, half in their body; each
  reopened when the server closes it, so N stay open), per worker class.
- reload: users making sends on new connections while the master gets `kill -HUP` twice; counts
  the requests that got no answer (reset, closed), per GUNICORN_REUSE_PORT.
- spread: 128 connections opened at once, one request each, then how many each worker holds.
Traffic goes to 127.0.0.1 only; loops are bounded; every process started is stopped.
"""

import argparse
import asyncio
import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.__main__ import (
    API_KEY,
    API_SECRET,
    ROOT,
    SIGNATURE_SECRET,
    StandIns,
    children,
    cpu_seconds,
    free_port,
    http,
    loadgen_spec,
    run_loadgen,
    stop_server,
)

OUT = ROOT / "bench" / "out"
SEND = json.dumps({"to": "447700900000", "text": "Your code is 1234"}).encode()
AUTH = f"Custom {API_KEY}:{API_SECRET}"


class Server:
    """gunicorn with the production config (plus `extra` arguments), own process group."""

    def __init__(self, standins, env=None, extra=(), name="faults"):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(OUT / f"{name}.log", "ab")  # noqa: SIM115 - open while it runs
        env = {
            **os.environ,
            "PORT": str(self.port),
            "DATABASE_PATH": str(OUT / f"{name}.db"),
            "DATABASE_URL": "",
            "VONAGE_API_URL": standins.vonage,
            "MOENGAGE_DELIVERY_URL": f"{standins.moengage}/dlr",
            "VONAGE_SIGNATURE_SECRET": SIGNATURE_SECRET,
            "VONAGE_FROM": "Bench",
            "SEND_DEDUPE_SECONDS": "0",
            **(env or {}),
        }
        cmd = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py", *extra, "app:app"]
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                http(f"{self.url}/health", timeout=1)
                if len(children(self.proc.pid)) >= int(env.get("WEB_CONCURRENCY", "4")):
                    time.sleep(0.5)
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("gunicorn did not start; see bench/out/")

    def stop(self):
        stop_server(self.proc, self.log)


def sends_per_second(server, seconds):
    spec = loadgen_spec(server.port, 2, seconds, mode="closed", concurrency=64, weights={"send": 1})
    pids = [server.proc.pid, *children(server.proc.pid)]
    cpu_before = sum(cpu_seconds(p) for p in pids)
    result = run_loadgen(spec)
    cpu = sum(cpu_seconds(p) for p in pids) - cpu_before
    answered = sum(result["codes"]["send"].values())
    server.cpu_ms_per_send = cpu * 1000 / max(answered, 1)
    return len(result["latencies"].get("send", [])) / seconds, dict(result["codes"]["send"])


async def slow_client(port, body_phase, stop_at, stats):
    """One slow connection, reopened whenever the server ends it, until `stop_at`."""
    head = f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\nContent-Length: {len(SEND)}\r\n"
    while time.monotonic() < stop_at:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            stats["refused"] += 1
            await asyncio.sleep(1)
            continue
        stats["opened"] += 1
        trickle = SEND if body_phase else b"X-Slow: " + b"a" * 1000
        writer.write(head.encode() + (b"\r\n" if body_phase else b""))
        answer = asyncio.ensure_future(reader.read(200))  # done once answered or closed
        try:
            for byte in trickle:
                if time.monotonic() >= stop_at:
                    break
                writer.write(bytes([byte]))
                await asyncio.sleep(2)  # one byte every 2 s
                if answer.done():
                    got = answer.result()
                    if got:
                        stats[got[9:12].decode(errors="replace")] += 1
                    break  # answered or closed by the server: reopen
        except OSError:
            stats["reset"] += 1
        answer.cancel()
        writer.close()


def slowloris(args):
    rows = []
    standins = StandIns(0.2, 0.05)
    try:
        for worker in args.worker_classes:
            extra = () if worker == "default" else ("--worker-class", worker)
            server = Server(standins, extra=extra, name=f"slowloris-{worker}")
            try:
                for n in args.slow:
                    # Alone right before, so both halves of a row see the same machine load.
                    base, _ = sends_per_second(server, args.seconds)
                    base_cpu = server.cpu_ms_per_send
                    stats = collections.Counter(opened=0, refused=0, reset=0)
                    load = SlowLoad(server.port, n, args.seconds + 6, stats)
                    cpu_before = time.process_time()
                    load.start()
                    time.sleep(4)  # let them all connect
                    rate, codes = sends_per_second(server, args.seconds)
                    load.join()
                    stats["client CPU %"] = round(
                        (time.process_time() - cpu_before) / (args.seconds + 6) * 100
                    )
                    cpu = (base_cpu, server.cpu_ms_per_send)
                    rows.append((worker, n, base, rate, codes, dict(stats), cpu))
                    print(rows[-1], flush=True)
            finally:
                server.stop()
    finally:
        standins.stop()
    lines = [
        (
            "| worker | slow connections | sends/s alone | sends/s with them | change "
            "| connector CPU ms per send, alone / with them "
            "| answers to the sends | slow connections: opened / answered |"
        ),
        "|---|--:|--:|--:|--:|--:|---|---|",
    ]
    for worker, n, base, rate, codes, stats, cpu in rows:
        answered = {
            k: v
            for k, v in stats.items()
            if k not in ("opened", "refused", "reset", "client CPU %")
        }
        lines.append(
            f"| {worker} | {n} | {base:.0f} | {rate:.0f} | {(rate - base) / base * 100:+.0f} % "
            f"| {cpu[0]:.2f} / {cpu[1]:.2f} | {codes} | {stats['opened']} / {answered}, "
            f"their CPU {stats['client CPU %']} % |"
        )
    return lines


class SlowLoad:
    """The slow connections, in a thread running their own event loop."""

    def __init__(self, port, n, seconds, stats):
        self.thread = threading.Thread(target=self.run, args=(port, n, seconds, stats))

    def run(self, port, n, seconds, stats):
        async def main():
            stop_at = time.monotonic() + seconds
            tasks = []
            for i in range(n):
                tasks.append(asyncio.create_task(slow_client(port, i % 2 == 1, stop_at, stats)))
                if i % 50 == 49:
                    await asyncio.sleep(0.05)
            await asyncio.gather(*tasks)

        asyncio.run(main())

    def start(self):
        self.thread.start()

    def join(self):
        self.thread.join()


async def one_send(port):
    """A send on a new connection: its status, or why it got none."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            (
                f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\nConnection: close\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(SEND)}\r\n\r\n"
            ).encode()
            + SEND
        )
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return answer[9:12].decode() if answer else "closed without an answer"
    except (OSError, TimeoutError) as exc:
        return type(exc).__name__


def reload_once(args, reuse_port, standins):
    server = Server(standins, env={"GUNICORN_REUSE_PORT": reuse_port}, name=f"reload-{reuse_port}")
    outcomes = collections.Counter()

    async def users(stop_at):
        async def user():
            while time.monotonic() < stop_at:
                outcomes[await one_send(server.port)] += 1

        await asyncio.gather(*(user() for _ in range(args.users)))

    try:
        stop_at = time.monotonic() + args.seconds
        thread = threading.Thread(target=lambda: asyncio.run(users(stop_at)))
        thread.start()
        for _ in range(2):
            time.sleep(args.seconds / 3)
            os.kill(server.proc.pid, signal.SIGHUP)
        thread.join()
    finally:
        server.stop()
    return dict(outcomes)


def reload(args):
    standins = StandIns(0.2, 0.05)
    lines = ["| GUNICORN_REUSE_PORT | sends during two `kill -HUP` | answers |", "|---|--:|---|"]
    try:
        for reuse_port in args.reuse_port:
            outcomes = reload_once(args, reuse_port, standins)
            print(reuse_port, outcomes, flush=True)
            lines.append(f"| {reuse_port} | {sum(outcomes.values())} | {outcomes} |")
    finally:
        standins.stop()
    return lines


def connections_per_worker(server):
    """Established connections to the server's port held by each worker (from /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == server.port and fields[3] == "01":  # ESTABLISHED
                inodes.add(fields[9])
    counts = []
    for pid in children(server.proc.pid):
        held = 0
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                held += 1
        counts.append(held)
    return sorted(counts)


def spread(args):
    standins = StandIns(0.2, 0.05)
    lines = ["| GUNICORN_REUSE_PORT | run | connections per worker (of 128) |", "|---|--:|---|"]
    try:
        for reuse_port in args.reuse_port:
            server = Server(standins, env={"GUNICORN_REUSE_PORT": reuse_port}, name="spread")
            try:
                for run in range(args.runs):
                    counts = asyncio.run(hold_connections(server))
                    lines.append(f"| {reuse_port} | {run + 1} | {counts} |")
                    print(lines[-1], flush=True)
            finally:
                server.stop()
    finally:
        standins.stop()
    return lines


async def hold_connections(server, n=128):
    async def one():
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        await reader.readuntil(b"\r\n\r\n")
        return writer

    writers = await asyncio.gather(*(one() for _ in range(n)))
    await asyncio.sleep(0.3)
    counts = connections_per_worker(server)
    for writer in writers:
        writer.close()
    await asyncio.sleep(0.5)
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=["slowloris", "reload", "spread"])
    parser.add_argument("--seconds", type=float, default=8, help="measured seconds per row")
    parser.add_argument("--slow", type=int, nargs="+", default=[300, 1000])
    parser.add_argument("--worker-classes", nargs="+", default=["gthread", "default"])
    parser.add_argument("--reuse-port", nargs="+", default=["1", "0"])
    parser.add_argument("--users", type=int, default=32)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    lines = {"slowloris": slowloris, "reload": reload, "spread": spread}[args.part](args)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
